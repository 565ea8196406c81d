"""Offline trainer (TensorFlow/Keras): data, labels, synthetic mixing, U-Net, losses, training runs, ONNX export."""
