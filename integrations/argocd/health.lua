-- Argo CD health check for mlplatform.dev FeatureView, ModelDeployment, TrainingJob and BatchPrediction.
-- One script for the four kinds (rendered into each resource.customizations.health key).
-- Argo CD runs it with gopher-lua (Lua 5.1) and, for scripts from argocd-cm, only the base,
-- table and os libraries: no string or math library, so no string methods here.
-- Order: not yet observed -> Progressing; Stalled or failed -> Degraded; spec.suspend ->
-- Suspended; Ready -> Healthy (a stale FeatureView is Degraded); pods that cannot start ->
-- Degraded; anything else -> Progressing. The message is our own condition's message.

local hs = {}

-- Ready False reasons that waiting will not fix: the pods cannot be scheduled or started.
local CANNOT_START = {
  CrashLoopBackOff = true,
  ImagePullBackOff = true,
  ErrImagePull = true,
  InvalidImageName = true,
  CreateContainerConfigError = true,
  CreateContainerError = true,
  RunContainerError = true,
  Unschedulable = true,
}

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local status = obj.status
local generation = obj.metadata.generation
-- observedGeneration 0: a status defaulted by the API server, nothing the operator wrote yet.
if status == nil or status.observedGeneration == nil or status.observedGeneration == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the " .. obj.kind
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation ..
    " (status is of generation " .. status.observedGeneration .. ")"
  return hs
end

local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")
local phase = status.phase

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(stalled, "Stalled")
  return hs
end
if phase == "Failed" then
  -- A failed run (TrainingJob) or materialization (FeatureView): a human has to act.
  hs.status = "Degraded"
  hs.message = message_of(ready, "Failed")
  return hs
end

local fresh = condition(status, "Fresh")
local stale = obj.kind == "FeatureView" and fresh ~= nil and fresh.status == "False" and fresh.reason == "Stale"

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  if stale then
    hs.message = message_of(fresh, "Stale")
  else
    hs.message = message_of(ready, "spec.suspend is true")
  end
  return hs
end

local healthy
if obj.kind == "TrainingJob" then
  healthy = phase == "Succeeded"
else
  healthy = ready ~= nil and ready.status == "True"
end
if healthy then
  if stale then
    -- Served, but the features are older than spec.freshness.maxStaleness.
    hs.status = "Degraded"
    hs.message = message_of(fresh, "Stale")
    return hs
  end
  hs.status = "Healthy"
  hs.message = message_of(ready, "Ready")
  return hs
end

if phase == "Degraded" or (ready ~= nil and ready.status == "False" and CANNOT_START[ready.reason]) then
  hs.status = "Degraded"
  hs.message = message_of(ready, "Degraded")
  return hs
end

hs.status = "Progressing"
hs.message = message_of(ready, "Waiting for the operator")
return hs
