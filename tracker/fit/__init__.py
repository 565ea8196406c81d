"""The fitting stage: pure geometry, compiled kernels, the joint eye fit, smoothing over time."""
