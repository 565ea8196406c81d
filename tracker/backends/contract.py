"""The model contract every backend checks at load: one float32 (N, H, W, 1) input -> one float32 (N, H, W, 2) output.

Backends describe their model's inputs and outputs as `TensorSpec`s (name, shape, numpy dtype name; a
dimension that is not a positive int, such as -1, a symbolic name or None, counts as dynamic) and call
`check_model_io`; a model of another layout (a classifier, NCHW, an extra input, one output channel, uint8
input) is refused with one line instead of a traceback or, worse, edge maps of garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

from tracker.errors import ModelError

DTYPE = "float32"
OUTPUT_CHANNELS = 2  # iris, pupil (tracker.preprocess.IRIS / PUPIL)
EXPECTED = (
    f"expected one {DTYPE} input (N, H, W, 1) with static H, W and one {DTYPE} output (N, H, W, {OUTPUT_CHANNELS}) "
    "of the same H, W (iris, pupil edges)"
)

Dim = int | None  # None: dynamic
TensorSpec = tuple[str, tuple[object, ...] | None, str]  # (name, shape or None for unknown rank, numpy dtype name)


@dataclass(frozen=True, slots=True)
class ModelIO:
    """What a backend needs from a model that passed the contract; batch is None when dynamic."""

    input_name: str
    output_name: str
    input_hw: tuple[int, int]
    batch: int | None


def check_model_io(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], source: str) -> ModelIO:
    """ModelIO of a model whose I/O fits the contract; anything else raises ModelError in one line naming `source`."""
    inputs, outputs = [_normalise(s) for s in inputs], [_normalise(s) for s in outputs]
    problem = _problem(inputs, outputs)
    if problem:
        found = f"{_describe(inputs)} -> {_describe(outputs)}"
        raise ModelError(f"{source}: {problem} (found {found}; {EXPECTED})")
    (in_name, in_shape, _), (out_name, _, _) = inputs[0], outputs[0]
    return ModelIO(in_name, out_name, (in_shape[1], in_shape[2]), in_shape[0])


def _normalise(spec: TensorSpec) -> tuple[str, tuple[Dim, ...] | None, str]:
    """Every dimension -> a positive int, or None when dynamic (-1, 0, a symbolic name, None)."""
    name, shape, dtype = spec
    if shape is None:
        return str(name), None, str(dtype)
    dims = tuple(int(d) if isinstance(d, Integral) and not isinstance(d, bool) and d > 0 else None for d in shape)
    return str(name), dims, str(dtype)


def _problem(inputs: list, outputs: list) -> str | None:
    """The first thing about the I/O that breaks the contract, as a clause, or None when it fits."""
    if len(inputs) != 1:
        return f"the model has {len(inputs)} inputs, not 1"
    if len(outputs) != 1:
        return f"the model has {len(outputs)} outputs, not 1"
    (in_name, in_shape, in_dtype), (out_name, out_shape, out_dtype) = inputs[0], outputs[0]
    if in_dtype != DTYPE:
        return f"input {in_name!r} is {in_dtype}, not {DTYPE}"
    if out_dtype != DTYPE:
        return f"output {out_name!r} is {out_dtype}, not {DTYPE}"
    if in_shape is None or len(in_shape) != 4:
        return f"input {in_name!r} has rank {_rank(in_shape)}, not 4 (N, H, W, 1)"
    if in_shape[3] != 1:
        hint = " (an NCHW model? this tracker feeds NHWC)" if in_shape[1] in (1, 3) else ""
        return f"input {in_name!r} has {_channels(in_shape[3])} on its last axis, not 1{hint}"
    if in_shape[1] is None or in_shape[2] is None:
        return f"input {in_name!r} has a dynamic H or W; export the model with a fixed input size"
    if out_shape is None or len(out_shape) != 4:
        return f"output {out_name!r} has rank {_rank(out_shape)}, not 4 (N, H, W, {OUTPUT_CHANNELS})"
    if out_shape[3] != OUTPUT_CHANNELS:
        return f"output {out_name!r} has {_channels(out_shape[3])} on its last axis, not {OUTPUT_CHANNELS}"
    for axis, label in ((1, "H"), (2, "W")):
        if out_shape[axis] is not None and out_shape[axis] != in_shape[axis]:
            return f"output {label} {out_shape[axis]} differs from input {label} {in_shape[axis]}"
    if None not in (in_shape[0], out_shape[0]) and in_shape[0] != out_shape[0]:
        return f"output batch {out_shape[0]} differs from input batch {in_shape[0]}"
    return None


def _describe(specs: list) -> str:
    """'image (1, 128, 128, 1) float32, mask (?, 128, 128, 1) uint8'."""
    parts = []
    for name, shape, dtype in specs:
        dims = (
            "?" if shape is None else "(" + ", ".join(_dim(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        )
        parts.append(f"{name} {dims} {dtype}")
    return ", ".join(parts) or "nothing"


def _dim(dim: Dim) -> str:
    return "?" if dim is None else str(dim)


def _channels(dim: Dim) -> str:
    return "1 channel" if dim == 1 else f"{_dim(dim)} channels"


def _rank(shape: tuple[Dim, ...] | None) -> str:
    return "unknown" if shape is None else str(len(shape))
