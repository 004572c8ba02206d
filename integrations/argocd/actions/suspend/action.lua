-- Set spec.suspend: a ModelDeployment scales to zero, a TrainingJob stops its run's pods and holds,
-- a FeatureView stops its scheduled materialization.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.suspend = true
return obj
