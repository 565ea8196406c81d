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
