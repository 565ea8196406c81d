"""ONNX Runtime on the CPU: the portable reference backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracker.backends.base import run_static_batches
from tracker.backends.contract import TensorSpec, check_model_io
from tracker.backends.telemetry import import_onnxruntime
from tracker.errors import ModelError

# ONNX Runtime's type strings -> numpy dtype names (the contract's spelling).
_ORT_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "bool": "bool"}


def tensor_spec(arg) -> TensorSpec:
    """An onnxruntime NodeArg -> (name, shape, dtype name): 'tensor(float)' -> 'float32', 'tensor(uint8)' -> 'uint8'."""
    kind = str(arg.type).removeprefix("tensor(").removesuffix(")")
    return arg.name, tuple(arg.shape) if arg.shape is not None else None, _ORT_DTYPES.get(kind, kind)


class OnnxRuntimeBackend:
    """One InferenceSession, created once; inputs and outputs bound to buffers allocated at load time."""

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int = 0, batch: int = 1) -> None:
        ort = import_onnxruntime()

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0 = one per physical core
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several unrelated types for unreadable or invalid files
            raise ModelError(f"cannot load ONNX model {model_path}: {str(exc).splitlines()[0]}") from None
        io = check_model_io(
            [tensor_spec(i) for i in self._session.get_inputs()],
            [tensor_spec(o) for o in self._session.get_outputs()],
            str(model_path),
        )
        self.input_name, self.output_name = io.input_name, io.output_name
        self.input_hw, self._static_batch = io.input_hw, io.batch
        self._binding = self._session.io_binding()
        self._outputs: dict[int, np.ndarray] = {}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) float32 -> (N, H, W, 2) float32; the result is reused by the next call of the same N."""
        n = batch.shape[0]
        out = self._outputs.get(n)
        if out is None:
            out = self._outputs[n] = np.empty((n, *self.input_hw, 2), dtype=np.float32)
        if self._static_batch is not None and n != self._static_batch:
            return run_static_batches(self._run_one, batch, self._static_batch, out)
        self._binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch, dtype=np.float32))
        self._binding.bind_output(
            self.output_name, "cpu", element_type=np.float32, shape=out.shape, buffer_ptr=out.ctypes.data
        )
        self._session.run_with_iobinding(self._binding)
        return out

    def _run_one(self, chunk: np.ndarray) -> np.ndarray:
        """One call of the model's own (static) batch size."""
        return self._session.run([self.output_name], {self.input_name: chunk})[0]

    def close(self) -> None:
        """Drop the session."""
        self._session = None
        self._outputs.clear()
