"""Check an exported ONNX model against what TensorRT's ONNX parser and this project accept, before building.

Returns a list of problems (empty when the model is fine), each a line a person can act on. Needs the `onnx`
package (the [train] extra), imported inside audit_onnx.
"""

from __future__ import annotations

from pathlib import Path

from tracker.errors import ModelError

INPUT_NAME = "image"
OUTPUT_NAME = "edges"
OUTPUT_CHANNELS = 2

# Ops the onnx-tensorrt parser supports (docs/operators.md of onnx/onnx-tensorrt) that a U-Net edge model, its
# export from Keras/tf2onnx or PyTorch, and ordinary graph plumbing use. Deliberately a short allow-list:
# anything else is reported so a person checks operators.md for the TensorRT version in use.
TENSORRT_OPS: frozenset[str] = frozenset(
    {
        # convolution, pooling, normalisation
        "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        "BatchNormalization", "InstanceNormalization", "LayerNormalization", "DepthToSpace", "SpaceToDepth",
        "Resize", "Upsample", "Pad",
        # activations
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
        "Softsign", "Softmax", "Clip",
        # element-wise arithmetic
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Abs", "Neg", "Reciprocal", "Max", "Min",
        "Sum", "Mean", "Floor", "Ceil", "Round", "Erf", "Where", "Equal", "Greater", "Less", "Not",
        # tensor plumbing (tf2onnx emits these for NHWC <-> NCHW and dynamic batch handling)
        "Concat", "Split", "Slice", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity",
        "Cast", "Shape", "Gather", "Constant", "ConstantOfShape", "Expand", "Tile", "Range",
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "MatMul", "Gemm", "Dropout",
    }
)  # fmt: skip
# Resize/Upsample restrictions in TensorRT's ONNX parser (onnx-tensorrt docs/operators.md, "Resize").
TENSORRT_RESIZE_COORD_MODES: frozenset[str] = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
TENSORRT_RESIZE_MODES: frozenset[str] = frozenset({"nearest", "linear"})
TENSORRT_NEAREST_MODES: frozenset[str] = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})


def audit_onnx(model: str | Path | object) -> list[str]:
    """ONNX file path or ModelProto -> list of one-line problems for TensorRT and this project ([] when clean)."""
    try:
        import onnx
    except ImportError:
        raise ModelError("auditing an ONNX model needs the onnx package: pip install onnx") from None
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf DecodeError and friends
            raise ModelError(f"cannot read ONNX model {path}: {str(exc).splitlines()[0]}") from None
    else:
        proto = model
    graph = proto.graph
    problems: list[str] = []
    problems += _op_problems(graph, onnx)
    problems += _input_problems(graph, onnx)
    problems += _output_problems(graph, onnx)
    return problems


def _attr(node, name: str, default):
    """Value of attribute `name` of `node`, decoded to str for strings; `default` when absent."""
    for attr in node.attribute:
        if attr.name == name:
            if attr.type == attr.STRING:
                return attr.s.decode()
            if attr.type == attr.INT:
                return attr.i
            if attr.type == attr.FLOAT:
                return attr.f
    return default


def _op_problems(graph, onnx) -> list[str]:
    """Ops outside the allow-list and nearest-neighbour upsampling in any of its exported forms."""
    problems = []
    for node in graph.node:
        label = f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{label} is from custom domain {node.domain!r}; TensorRT would need a plugin for it")
            continue
        if node.op_type not in TENSORRT_OPS:
            problems.append(f"{label}: op not in the TensorRT-supported allow-list (see onnx-tensorrt operators.md)")
            continue
        if node.op_type in ("Resize", "Upsample"):
            mode = _attr(node, "mode", "nearest")  # ONNX's default mode is nearest
            if mode not in TENSORRT_RESIZE_MODES:
                problems.append(f"{label}: mode={mode!r} is not supported by TensorRT (nearest or linear only)")
            if mode == "nearest":
                problems.append(
                    f"{label}: nearest-neighbour upsampling is not allowed in this project "
                    "(blocky edges; use Conv2DTranspose or a linear Resize)"
                )
            coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
            if node.op_type == "Resize" and coord not in TENSORRT_RESIZE_COORD_MODES:
                problems.append(f"{label}: coordinate_transformation_mode={coord!r} is rejected by TensorRT")
            nearest_mode = _attr(node, "nearest_mode", "round_prefer_floor")
            if mode == "nearest" and nearest_mode not in TENSORRT_NEAREST_MODES:
                problems.append(f"{label}: nearest_mode={nearest_mode!r} is rejected by TensorRT")
        if node.op_type == "Tile":
            # Keras 3 exports UpSampling2D(interpolation="nearest") as Unsqueeze -> Tile -> Reshape (ops.repeat):
            # pixel repetition, i.e. nearest-neighbour upsampling. A U-Net has no other use for Tile.
            problems.append(
                f"{label}: pixel repetition (how keras UpSampling2D nearest exports) is nearest-neighbour "
                "upsampling, not allowed in this project; use Conv2DTranspose"
            )
    return problems


def _real_inputs(graph):
    """Graph inputs that are not initializers (old IR versions list weights as inputs too)."""
    weights = {init.name for init in graph.initializer}
    return [value for value in graph.input if value.name not in weights]


def _dims(value) -> list[int | str]:
    """Shape of a ValueInfo: ints for static dims, the dim_param (or '?') for dynamic ones."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _input_problems(graph, onnx) -> list[str]:
    """One float32 (N, H, W, 1) input named 'image' with static H, W."""
    inputs = _real_inputs(graph)
    if len(inputs) != 1:
        return [f"expected one input, found {len(inputs)}: {[v.name for v in inputs]}"]
    value = inputs[0]
    problems = []
    if value.name != INPUT_NAME:
        problems.append(f"input is named {value.name!r}, expected {INPUT_NAME!r}")
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        found = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        problems.append(f"input {value.name!r} is {found}, expected FLOAT (float32)")
    dims = _dims(value)
    if len(dims) != 4:
        return [*problems, f"input {value.name!r} has shape {dims}, expected (N, H, W, 1)"]
    for axis, label in ((1, "H"), (2, "W")):
        if not isinstance(dims[axis], int) or dims[axis] <= 0:
            problems.append(
                f"input {value.name!r} has a dynamic {label} ({dims[axis]!r}); H and W must be fixed integers "
                "(export with a static input size)"
            )
    if dims[3] != 1:
        problems.append(f"input {value.name!r} has {dims[3]!r} channels, expected 1 (NHWC grayscale)")
    return problems


def _output_problems(graph, onnx) -> list[str]:
    """One float32 (N, H, W, 2) output named 'edges'."""
    if len(graph.output) != 1:
        return [f"expected one output, found {len(graph.output)}: {[v.name for v in graph.output]}"]
    value = graph.output[0]
    problems = []
    if value.name != OUTPUT_NAME:
        problems.append(f"output is named {value.name!r}, expected {OUTPUT_NAME!r}")
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        found = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        problems.append(f"output {value.name!r} is {found}, expected FLOAT (float32)")
    dims = _dims(value)
    if dims and (len(dims) != 4 or (isinstance(dims[3], int) and dims[3] != OUTPUT_CHANNELS)):
        problems.append(f"output {value.name!r} has shape {dims}, expected (N, H, W, {OUTPUT_CHANNELS})")
    return problems
