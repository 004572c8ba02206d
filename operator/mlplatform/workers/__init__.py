"""Code that runs inside workload pods, shipped as ConfigMaps: standard library and the preset images only."""
