"""Inference backends behind one protocol: ONNX Runtime, OpenVINO (CPU) and TensorRT (NVIDIA GPUs)."""
