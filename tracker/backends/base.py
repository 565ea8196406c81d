"""The backend interface every inference engine implements (ONNX Runtime, OpenVINO, TensorRT)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs the edge model: (N, H, W, 1) float32 -> (N, H, W, 2) float32 edge probabilities.

    Loaded once; buffers are allocated at load time and reused. The returned array may be a view
    of an internal buffer that the next call overwrites: copy it if you keep it.
    """

    name: str
    input_hw: tuple[int, int]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) float32 -> (N, H, W, 2) float32 in [0, 1]."""
        ...

    def close(self) -> None:
        """Free sessions and buffers; idempotent."""
        ...


def run_static_batches(run, batch: np.ndarray, step: int, out: np.ndarray) -> np.ndarray:
    """Fill `out` (N, H, W, 2) by calling `run` on chunks of exactly `step` items; the last chunk is zero-padded.

    For models exported with a static batch dimension that is called with another N.
    """
    n = batch.shape[0]
    padded = None
    for start in range(0, n, step):
        stop = min(start + step, n)
        chunk = batch[start:stop]
        if stop - start < step:
            if padded is None:
                padded = np.zeros((step, *batch.shape[1:]), dtype=np.float32)
            padded[: stop - start] = chunk
            padded[stop - start :] = 0.0
            chunk = padded
        out[start:stop] = run(np.ascontiguousarray(chunk, dtype=np.float32))[: stop - start]
    return out
