-- Clear spec.suspend: the resource runs again (a TrainingJob continues its current run).
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.suspend = false
return obj
