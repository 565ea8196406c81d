"""Tiny ONNX models built with onnx.helper, for backend, audit and engine tests (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_unet(
    hw: tuple[int, int] = (16, 16),
    upsample: str = "transpose",
    batch: int | str = "N",
    dynamic_h: bool = False,
    input_name: str = "image",
    output_name: str = "edges",
    seed: int = 0,
    opset: int = 17,
):
    """A two-level U-Net, NHWC (batch, H, W, 1) -> (batch, H, W, 2) sigmoid, as an onnx ModelProto.

    upsample: "transpose" (ConvTranspose), "nearest" or "linear" (Resize with scales).
    """
    rng = np.random.default_rng(seed)
    h, w = hw

    def weight(name, *shape):
        scale = 1.0 / np.sqrt(np.prod(shape[1:]))
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        weight("w1", 4, 1, 3, 3), weight("b1", 4), weight("w2", 8, 4, 3, 3), weight("b2", 8),
        weight("w4", 2, 8, 1, 1), weight("b4", 2),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Transpose", [input_name], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["c"]),
    ]
    if upsample == "transpose":
        inits += [weight("w3", 8, 4, 2, 2), weight("b3", 4)]
        nodes.append(helper.make_node("ConvTranspose", ["c", "w3", "b3"], ["u"], strides=[2, 2]))
    else:
        inits += [
            numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales"),
            weight("w3", 4, 8, 1, 1),
            weight("b3", 4),
        ]
        nodes.append(helper.make_node("Resize", ["c", "", "scales"], ["r"], mode=upsample))
        nodes.append(helper.make_node("Conv", ["r", "w3", "b3"], ["u"]))
    nodes += [
        helper.make_node("Concat", ["a", "u"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w4", "b4"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["prob"]),
        helper.make_node("Transpose", ["prob"], [output_name], perm=[0, 2, 3, 1]),
    ]
    h_dim = "H" if dynamic_h else h
    graph = helper.make_graph(
        nodes,
        "tiny_unet",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, h_dim, w, 1])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, h_dim, w, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by every onnxruntime/TensorRT parser this project supports
    onnx.checker.check_model(model)
    return model


def save(model, path: Path) -> Path:
    onnx.save(model, str(path))
    return path
