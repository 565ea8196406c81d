"""OpenVINO on the CPU: the same ONNX model, 2-3x faster than ONNX Runtime on x86 (bfloat16 where the CPU has it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracker.errors import ModelError


def _first_line(exc: Exception) -> str:
    """The most informative single line of a (possibly multi-line, source-location-prefixed) exception text."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("Exception from")]
    return (lines[0] if lines else type(exc).__name__)[:200]


class OpenVinoBackend:
    """One compiled model and one infer request per batch size, created once and reused."""

    name = "openvino"

    def __init__(self, model_path: str | Path, threads: int = 0) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
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
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long multi-line texts
            raise ModelError(f"cannot load ONNX model {model_path}: {_first_line(exc)}") from None
        shape = self._compiled.input(0).get_partial_shape()
        if shape.rank.get_length() != 4 or not all(shape[i].is_static for i in (1, 2)):
            raise ModelError(f"{model_path}: expected a static (N, H, W, 1) input, found {shape}")
        self.input_hw = (shape[1].get_length(), shape[2].get_length())
        self._static_batch = shape[0].get_length() if shape[0].is_static else None
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
        for i in range(n):  # a static-batch model runs item by item
            self._request.infer({0: batch[i : i + 1]}, share_inputs=True)
            out[i] = self._request.get_output_tensor(0).data[0]
        return out

    def close(self) -> None:
        """Drop the compiled model and request."""
        self._request = None
        self._compiled = None
        self._outputs.clear()
