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
    *,
    layout: str = "nhwc",
    out_channels: int = 2,
    input_dtype: int = TensorProto.FLOAT,
    extra_input: bool = False,
    extra_output: bool = False,
    output_stride: int = 1,
):
    """A two-level U-Net, NHWC (batch, H, W, 1) -> (batch, H, W, 2) sigmoid, as an onnx ModelProto.

    upsample: "transpose" (ConvTranspose), "nearest" or "linear" (Resize with scales). The keyword-only
    arguments build valid ONNX models that break this project's model contract: layout "nchw" (no transposes),
    another number of output channels, a non-float input (cast to float inside), a second input (added to
    the image), a second output (the logits), or an output `output_stride` times smaller than the input.
    """
    rng = np.random.default_rng(seed)
    h, w = hw

    def weight(name, *shape):
        scale = 1.0 / np.sqrt(np.prod(shape[1:]))
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        weight("w1", 4, 1, 3, 3), weight("b1", 4), weight("w2", 8, 4, 3, 3), weight("b2", 8),
        weight("w4", out_channels, 8, 1, 1), weight("b4", out_channels),
    ]  # fmt: skip
    nodes, image = [], input_name
    if input_dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [image], ["image_f"], to=TensorProto.FLOAT))
        image = "image_f"
    if extra_input:
        nodes.append(helper.make_node("Add", [image, "mask"], ["image_m"]))
        image = "image_m"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [image], ["x"], perm=[0, 3, 1, 2]))
    else:
        nodes.append(helper.make_node("Identity", [image], ["x"]))
    nodes += [
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
    ]
    if output_stride > 1:
        k = [output_stride, output_stride]
        nodes.append(helper.make_node("MaxPool", ["prob"], ["prob_s"], kernel_shape=k, strides=k))
    prob = "prob_s" if output_stride > 1 else "prob"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [prob], [output_name], perm=[0, 2, 3, 1]))
    else:
        nodes.append(helper.make_node("Identity", [prob], [output_name]))
    h_dim = "H" if dynamic_h else h
    ho, wo = (f"H/{output_stride}" if dynamic_h else h // output_stride), w // output_stride
    in_shape = [batch, h_dim, w, 1] if layout == "nhwc" else [batch, 1, h_dim, w]
    out_shape = [batch, ho, wo, out_channels] if layout == "nhwc" else [batch, out_channels, ho, wo]
    inputs = [helper.make_tensor_value_info(input_name, input_dtype, in_shape)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, in_shape))
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, out_channels, h_dim, w]))
    graph = helper.make_graph(nodes, "tiny_unet", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by every onnxruntime/TensorRT parser this project supports
    onnx.checker.check_model(model)
    return model


def tiny_classifier(hw: tuple[int, int] = (16, 16), classes: int = 10, seed: int = 0):
    """An image classifier, (N, H, W, 1) float32 -> (N, classes) softmax: a valid model of the wrong kind."""
    rng = np.random.default_rng(seed)
    h, w = hw
    weights = numpy_helper.from_array(rng.standard_normal((h * w, classes)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, 1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# Valid ONNX models that break the model contract, each with a phrase the load error must contain.
CONTRACT_VIOLATIONS: dict[str, tuple[object, str]] = {
    "classifier": (lambda: tiny_classifier(), "output 'scores' has rank 2, not 4"),
    "nchw_input": (lambda: tiny_unet(layout="nchw"), "input 'image' has 16 channels on its last axis, not 1 (an NCHW"),
    "extra_input": (lambda: tiny_unet(extra_input=True), "the model has 2 inputs, not 1"),
    "one_output_channel": (lambda: tiny_unet(out_channels=1), "output 'edges' has 1 channel on its last axis, not 2"),
    "two_outputs": (lambda: tiny_unet(extra_output=True), "the model has 2 outputs, not 1"),
    "uint8_input": (lambda: tiny_unet(input_dtype=TensorProto.UINT8), "input 'image' is uint8, not float32"),
    "dynamic_hw": (lambda: tiny_unet(dynamic_h=True), "input 'image' has a dynamic H or W"),
    "smaller_output": (lambda: tiny_unet(output_stride=2), "output H 8 differs from input H 16"),
}


def save(model, path: Path) -> Path:
    onnx.save(model, str(path))
    return path
