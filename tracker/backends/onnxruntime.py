"""ONNX Runtime on the CPU: the portable reference backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracker.errors import ModelError


class OnnxRuntimeBackend:
    """One InferenceSession, created once; inputs and outputs bound to buffers allocated at load time."""

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int = 0, batch: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0 = one per physical core
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several unrelated types for unreadable or invalid files
            raise ModelError(f"cannot load ONNX model {model_path}: {str(exc).splitlines()[0]}") from None
        inp, out = self._session.get_inputs()[0], self._session.get_outputs()[0]
        if len(inp.shape) != 4 or not all(isinstance(d, int) for d in inp.shape[1:]):
            raise ModelError(f"{model_path}: expected a static (N, H, W, 1) input, found {inp.shape}")
        self.input_name, self.output_name = inp.name, out.name
        self.input_hw = (int(inp.shape[1]), int(inp.shape[2]))
        self._static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._binding = self._session.io_binding()
        self._outputs: dict[int, np.ndarray] = {}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) float32 -> (N, H, W, 2) float32; the result is reused by the next call of the same N."""
        n = batch.shape[0]
        out = self._outputs.get(n)
        if out is None:
            out = self._outputs[n] = np.empty((n, *self.input_hw, 2), dtype=np.float32)
        if self._static_batch is not None and n != self._static_batch:
            for i in range(n):  # a static-batch model runs item by item
                out[i : i + 1] = self._session.run([self.output_name], {self.input_name: batch[i : i + 1]})[0]
            return out
        self._binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch, dtype=np.float32))
        self._binding.bind_output(
            self.output_name, "cpu", element_type=np.float32, shape=out.shape, buffer_ptr=out.ctypes.data
        )
        self._session.run_with_iobinding(self._binding)
        return out

    def close(self) -> None:
        """Drop the session."""
        self._session = None
        self._outputs.clear()
