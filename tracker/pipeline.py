"""Tracker: Frame -> FrameResult. Holds a backend, a preprocessor and smoothers; no I/O, no threads."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tracker.backends.base import Backend
from tracker.fit.eye import EyeFit, FitConfig, fit_eye, warm_up
from tracker.fit.smoothing import BoundarySmoother, SmoothingConfig
from tracker.preprocess import Preprocessor
from tracker.structures import Frame, FrameResult, Status


@dataclass(frozen=True)
class TrackerConfig:
    """Fitting and smoothing settings; `smooth` is for videos and cameras, off for unrelated images."""

    fit: FitConfig = field(default_factory=FitConfig)
    smooth: bool = True
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)


@dataclass
class StageTimes:
    """Milliseconds spent in each stage of the last frame (read by `iristrack bench`)."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    fit_ms: float = 0.0


class Tracker:
    """Frame -> FrameResult: preprocess, infer edges, fit limbus and pupil ellipses, smooth over time."""

    def __init__(self, backend: Backend, config: TrackerConfig = TrackerConfig()) -> None:
        self.backend = backend
        self.config = config
        self._pre = Preprocessor(backend.input_hw)
        self._iris = BoundarySmoother(config.smoothing)
        self._pupil = BoundarySmoother(config.smoothing)
        self.times = StageTimes()
        warm_up(backend.input_hw)  # the first frame would otherwise wait for the fitting code to compile

    @classmethod
    def from_model(
        cls,
        model: str | Path | None = None,
        backend: str = "auto",
        config: TrackerConfig = TrackerConfig(),
        **backend_options,
    ) -> Tracker:
        """Load a model (default: the shipped one) on the chosen backend ("auto", "cpu", "onnxruntime", ...)."""
        from tracker.backends.select import load_backend

        loaded, _notice = load_backend(Path(model) if model else None, backend, **backend_options)
        return cls(loaded, config)

    def reset(self) -> None:
        """Forget frame-to-frame state (call between unrelated clips)."""
        self._iris.reset()
        self._pupil.reset()

    @property
    def last_gray(self) -> np.ndarray | None:
        """(H, W) gray frame behind the last edges() call (a new array per frame unless the frame was gray)."""
        return self._pre.last_gray

    def edges(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, 3]) image -> (h, w, 2) float32 edge probabilities at model resolution (a reused buffer)."""
        return self.infer(self.prepare(image))[0]

    def prepare(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W[, 3]) image -> (1, h, w, 1) float32 model input, in `out` or a reused buffer; sets `last_gray`."""
        t0 = time.perf_counter()
        batch = self._pre(image, out)
        self.times.preprocess_ms = (time.perf_counter() - t0) * 1e3
        return batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(1, h, w, 1) model input -> (1, h, w, 2) edge probabilities (a backend buffer its next call reuses)."""
        t0 = time.perf_counter()
        out = self.backend.infer(batch)
        self.times.inference_ms = (time.perf_counter() - t0) * 1e3
        return out

    def fit(self, edges: np.ndarray, frame_hw: tuple[int, int], gray: np.ndarray | None = None) -> EyeFit:
        """(h, w, 2) edge probabilities (+ the (H, W) gray frame for refinement) -> EyeFit, smoothed when configured."""
        t0 = time.perf_counter()
        found = fit_eye(edges, frame_hw, self.config.fit, gray)
        if self.config.smooth:
            found = EyeFit(self._iris.update(found.iris), self._pupil.update(found.pupil), found.status)
        self.times.fit_ms = (time.perf_counter() - t0) * 1e3
        return found

    def __call__(self, frame: Frame | np.ndarray) -> FrameResult:
        """One frame (or a bare image) -> FrameResult with latency_ms measured from the call."""
        t0 = time.perf_counter()
        if not isinstance(frame, Frame):
            frame = Frame(frame, 0, 0.0)
        image = frame.image
        if image is None or image.ndim not in (2, 3) or image.size == 0:
            return FrameResult(frame.source, frame.index, frame.timestamp_s, None, None, Status.BAD_FRAME, 0.0)
        try:
            edges = self.edges(image)
        except (cv2.error, ValueError):  # a pixel type or layout the preprocessing cannot take (int32, bool, 2-channel)
            return FrameResult(frame.source, frame.index, frame.timestamp_s, None, None, Status.BAD_FRAME, 0.0)
        found = self.fit(edges, image.shape[:2], self._pre.last_gray)
        latency_ms = (time.perf_counter() - t0) * 1e3
        return FrameResult(
            frame.source, frame.index, frame.timestamp_s, found.iris, found.pupil, found.status, latency_ms
        )

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
