"""OpenVINO on the CPU: the same ONNX model, 1.8x faster than ONNX Runtime in bf16 (the same speed in fp32).

Two things are not left to OpenVINO's defaults:

- precision: INFERENCE_PRECISION_HINT is always set, to DEFAULT_PRECISION unless the argument or
  $IRISTRACK_OPENVINO_PRECISION says otherwise. bf16 was chosen by measurement (docs/GPU.md, "OpenVINO
  precision"): on an AVX512_BF16 CPU it runs the shipped model 1.8x faster than fp32 and scores nearly the same
  on the development set's test subjects (iris centre median 1.90 vs 1.88 px, pupil 0.35 both), while its edge
  maps differ from ONNX Runtime by up to 4e-2 (fp32: 1e-6). A CPU without bf16 runs fp32 whatever is asked.
- telemetry: openvino is imported through tracker.backends.telemetry.import_openvino, so Intel's telemetry
  writes nothing and sends nothing unless the user opted in with OpenVINO's own `opt_in_out --opt_in`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tracker.backends.base import run_static_batches
from tracker.backends.contract import TensorSpec, check_model_io
from tracker.backends.telemetry import import_openvino
from tracker.errors import ModelError

PRECISION_ENV = "IRISTRACK_OPENVINO_PRECISION"
# Our name -> OpenVINO's INFERENCE_PRECISION_HINT value.
PRECISIONS: dict[str, str] = {"fp32": "f32", "bf16": "bf16"}
DEFAULT_PRECISION = "bf16"  # where the CPU has it; see the module docstring for the measurement
_HINT_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # OpenVINO's type names -> ours


def _first_line(exc: Exception) -> str:
    """The most informative single line of a (possibly multi-line, source-location-prefixed) exception text."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("Exception from")]
    return (lines[0] if lines else type(exc).__name__)[:200]


def resolve_precision(precision: str | None) -> str:
    """'fp32' or 'bf16': the argument, else $IRISTRACK_OPENVINO_PRECISION, else DEFAULT_PRECISION."""
    value = precision or os.environ.get(PRECISION_ENV) or DEFAULT_PRECISION
    if value.lower() not in PRECISIONS:
        where = f"${PRECISION_ENV}" if not precision else "OpenVINO precision"
        raise ModelError(f"{where} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value.lower()


def tensor_spec(port) -> TensorSpec:
    """An OpenVINO model port -> (name, shape with None for dynamic dims, numpy dtype name)."""
    shape = port.get_partial_shape()
    dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
    element = port.get_element_type()
    try:
        dtype = np.dtype(element.to_dtype()).name
    except Exception:  # types numpy lacks (bf16, u4, dynamic): OpenVINO's own name is clear enough
        dtype = element.get_type_name()
    names = port.get_names()
    return (port.get_any_name() if names else "?"), dims, dtype


class OpenVinoBackend:
    """One compiled model and one infer request per batch size, created once and reused."""

    name = "openvino"

    def __init__(
        self, model_path: str | Path, threads: int = 0, precision: str | None = None, pin_threads: bool = True
    ) -> None:
        requested = resolve_precision(precision)
        ov = import_openvino()

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISIONS[requested]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if not pin_threads:
            # Two OpenVINO models in one process (the face finder and this one, on different threads of a
            # pipelined run) each pin their one thread, and both land on the same core: measured on 2 cores,
            # a face run went from 69 to 122-128 frames/s pipelined with pinning off in both.
            config["ENABLE_CPU_PINNING"] = False
        try:
            # Parse with the onnx package first: OpenVINO's reader tries every frontend on a bad file, logging
            # native noise, and its message names only its own source line.
            import onnx

            onnx.checker.check_model(str(model_path))
        except ImportError:
            pass
        except Exception as exc:
            reason = "not a valid ONNX file" if "parse" in str(exc).lower() else _first_line(exc)
            raise ModelError(f"cannot load ONNX model {model_path}: {reason}") from None
        try:
            model = core.read_model(str(model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long multi-line texts
            raise ModelError(f"cannot load ONNX model {model_path}: {_first_line(exc)}") from None
        # Before compiling: a model of another layout would otherwise run and return garbage.
        io = check_model_io(
            [tensor_spec(p) for p in model.inputs], [tensor_spec(p) for p in model.outputs], str(model_path)
        )
        try:
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelError(f"cannot load ONNX model {model_path}: {_first_line(exc)}") from None
        self.input_hw, self._static_batch = io.input_hw, io.batch
        # What OpenVINO actually runs (a CPU without bf16 support runs fp32 whatever was asked).
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        hint = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self.precision = _HINT_NAMES.get(hint, hint)
        self._request = self._compiled.create_infer_request()
        self._outputs: dict[int, np.ndarray] = {}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) float32 -> (N, H, W, 2) float32; the result is reused by the next call of the same N."""
        n = batch.shape[0]
        if self._static_batch is None or n == self._static_batch:
            self._request.infer({0: batch}, share_inputs=True)
            return self._request.get_output_tensor(0).data
        out = self._outputs.get(n)
        if out is None:
            out = self._outputs[n] = np.empty((n, *self.input_hw, 2), dtype=np.float32)
        return run_static_batches(self._run_one, batch, self._static_batch, out)

    def _run_one(self, chunk: np.ndarray) -> np.ndarray:
        """One call of the compiled model's own (static) batch size; a view of the request's output tensor."""
        self._request.infer({0: chunk}, share_inputs=True)
        return self._request.get_output_tensor(0).data

    def close(self) -> None:
        """Drop the compiled model and request."""
        self._request = None
        self._compiled = None
        self._outputs.clear()
