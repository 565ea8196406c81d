"""The edge U-Net: (N, H, W, 1) standardised gray -> (N, H, W, 2) limbus / pupil edge probabilities.

Only TensorRT-friendly ops: Conv, BatchNorm (folded at export), ReLU, MaxPool, ConvTranspose,
Concat, Sigmoid. No nearest UpSampling2D: tf2onnx exports it as a Resize whose rounding mode
TensorRT's ONNX parser rejects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from tracker.preprocess import CHANNELS, INPUT_HW


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network: input size, width of the first level, number of down-sampling levels."""

    input_hw: tuple[int, int] = INPUT_HW
    base_filters: int = 8
    depth: int = 4

    def to_dict(self) -> dict:
        """JSON-ready form for run folders and model cards."""
        return {**asdict(self), "input_hw": list(self.input_hw)}


def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_unet(config: ModelConfig = ModelConfig()) -> keras.Model:
    """Keras U-Net with `config.depth` levels; each level is two 3x3 conv-BN-ReLU blocks."""
    h, w = config.input_hw
    if h % 2**config.depth or w % 2**config.depth:
        raise ValueError(f"input {h}x{w} must be divisible by 2**depth = {2**config.depth}")
    inputs = keras.Input((h, w, 1), name="image")
    x, skips = inputs, []
    for level in range(config.depth):
        filters = config.base_filters * 2**level
        x = _conv_bn_relu(x, filters, f"down{level}a")
        x = _conv_bn_relu(x, filters, f"down{level}b")
        skips.append(x)
        x = layers.MaxPooling2D(name=f"pool{level}")(x)
    x = _conv_bn_relu(x, config.base_filters * 2**config.depth, "bottom")
    for level in reversed(range(config.depth)):
        filters = config.base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_bn_relu(x, filters, f"up{level}a")
        x = _conv_bn_relu(x, filters, f"up{level}b")
    logits = layers.Conv2D(len(CHANNELS), 1, name="logits")(x)
    outputs = layers.Activation("sigmoid", name="edges", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name="iris_edge_unet")
