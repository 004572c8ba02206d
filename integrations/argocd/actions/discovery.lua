-- Argo CD action discovery for mlplatform.dev resources: suspend when running, resume when suspended.
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["suspend"] = {["disabled"] = suspended, ["iconClass"] = "fa fa-fw fa-pause-circle", ["displayName"] = "Suspend"}
actions["resume"] = {["disabled"] = not suspended, ["iconClass"] = "fa fa-fw fa-play-circle", ["displayName"] = "Resume"}
return actions
