"""Tracker: Frame -> FrameResult, the only composer of a frame's stages. No I/O, no threads.

A frame goes through three typed steps, which the run loop may schedule on different threads:
`prepare` (the one usability check, gray conversion and model input, into a caller's buffer) ->
`infer` (the backend only) -> `finish` (fit, smooth, and the one result builder). `__call__` runs the
three in a row. A `Prepared` value carries what `finish` needs, so no step reads state another left behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from tracker.backends.base import Backend
from tracker.fit.confidence import DEFAULT_CONFIDENCE, ConfidenceModel, confidence_for
from tracker.fit.eye import EyeFit, FitConfig, fit_eye, status_of, warm_up
from tracker.fit.size import eye_sizes
from tracker.fit.smoothing import BoundarySmoother, SessionPrior, SmoothingConfig
from tracker.preprocess import Preprocessor
from tracker.structures import Frame, FrameResult, Status


@dataclass(frozen=True)
class TrackerConfig:
    """Fitting and smoothing settings; `smooth` is for videos and cameras, off for unrelated images."""

    fit: FitConfig = field(default_factory=FitConfig)
    smooth: bool = True
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    confidence: ConfidenceModel = DEFAULT_CONFIDENCE  # the model's calibration (confidence_for(model path))
    focal_px: float | None = None  # the camera's focal length in pixels: adds each eye's distance (tracker/fit/size.py)


@dataclass
class StageTimes:
    """Milliseconds spent in each stage of the last frame (read by `iristrack bench`)."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    fit_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Prepared:
    """A frame past `prepare`: its (H, W) gray image (None: unusable, the result is bad_frame) and start time."""

    frame: Frame
    gray: np.ndarray | None
    started_s: float  # perf_counter when preparation began: latency is measured from here

    @property
    def usable(self) -> bool:
        """True when the frame became model input; False for a frame the tracker cannot read."""
        return self.gray is not None


def run_steps(steps, frame: Frame | np.ndarray, buffer: np.ndarray) -> FrameResult:
    """One frame (or a bare image) through the prepare, infer and finish steps of a Tracker or FaceTracker."""
    if not isinstance(frame, Frame):
        frame = Frame(frame, 0, None)
    prepared = steps.prepare(frame, buffer)
    return steps.finish(prepared, steps.infer(buffer) if prepared.usable else None)


def usable_image(image: np.ndarray | None) -> bool:
    """The one shape check of a frame's pixels: a non-empty (H, W) or (H, W, C) array."""
    return isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.size > 0


class Tracker:
    """Frame -> FrameResult: preprocess, infer edges, fit limbus and pupil ellipses, smooth over time."""

    def __init__(self, backend: Backend, config: TrackerConfig = TrackerConfig()) -> None:
        self.backend = backend
        self.config = config
        self._pre = Preprocessor(backend.input_hw)
        self._iris = BoundarySmoother(config.smoothing)
        self._pupil = BoundarySmoother(config.smoothing)
        self._session = SessionPrior()
        self._input = self.input_buffers(1)[0]  # for __call__; run loops bring their own rings
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
        """Load a model (default: the shipped one) and its confidence calibration on the chosen backend."""
        from tracker.backends.select import load_backend
        from tracker.paths import default_model_path

        if config.confidence is DEFAULT_CONFIDENCE:  # read first: a broken calibration fails before the backend opens
            config = replace(config, confidence=confidence_for(model or default_model_path()))
        loaded, _notice = load_backend(Path(model) if model else None, backend, **backend_options)
        return cls(loaded, config)

    def reset(self) -> None:
        """Forget frame-to-frame state (call between unrelated clips)."""
        self._iris.reset()
        self._pupil.reset()
        self._session.reset()

    def input_buffers(self, n: int) -> np.ndarray:
        """(n, 1, h, w, 1) float32: n slots of model input, one frame each (allocate once per run)."""
        return np.empty((n, 1, *self.backend.input_hw, 1), dtype=np.float32)

    def edge_buffers(self, n: int) -> np.ndarray:
        """(n, 1, h, w, 2) float32: n slots of edge maps, one frame each (allocate once per run)."""
        return np.empty((n, 1, *self.backend.input_hw, 2), dtype=np.float32)

    def prepare(self, frame: Frame, out: np.ndarray) -> Prepared:
        """Frame -> Prepared, its model input written into `out` (1, h, w, 1); unusable pixels give gray None."""
        t0 = time.perf_counter()
        gray = None
        if usable_image(frame.image):
            try:
                gray = self._pre.into(frame.image, out)
            except (cv2.error, ValueError):  # pixels the preprocessing cannot take (int32, bool, 2-channel YUYV)
                gray = None
        self.times.preprocess_ms = (time.perf_counter() - t0) * 1e3
        return Prepared(frame, gray, t0)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(1, h, w, 1) model input -> (1, h, w, 2) edge probabilities (a backend buffer its next call reuses)."""
        t0 = time.perf_counter()
        out = self.backend.infer(batch)
        self.times.inference_ms = (time.perf_counter() - t0) * 1e3
        return out

    def finish(self, prepared: Prepared, edges: np.ndarray | None) -> FrameResult:
        """Prepared frame + its (1, h, w, 2) edge maps (None when unusable) -> FrameResult: the one result builder."""
        frame = prepared.frame
        if not prepared.usable or edges is None:
            return FrameResult(frame.source, frame.index, frame.timestamp_s, None, None, Status.BAD_FRAME, 0.0)
        found = self.fit(edges[0], prepared.gray.shape[:2], prepared.gray)
        diameter, distance = eye_sizes(found.iris, found.pupil, self.config.focal_px)
        latency_ms = (time.perf_counter() - prepared.started_s) * 1e3
        return FrameResult(
            frame.source,
            frame.index,
            frame.timestamp_s,
            found.iris,
            found.pupil,
            found.status,
            latency_ms,
            diameter,
            distance,
        )

    def fit(self, edges: np.ndarray, frame_hw: tuple[int, int], gray: np.ndarray | None = None) -> EyeFit:
        """(h, w, 2) edge probabilities (+ the (H, W) gray frame for refinement) -> EyeFit, smoothed when configured."""
        t0 = time.perf_counter()
        found = fit_eye(edges, frame_hw, self.config.fit, gray, self.config.confidence)
        if self.config.smooth:  # a video or camera: frames of one session
            iris, pupil = self._session.update(found.iris, found.pupil)
            iris, pupil = self._iris.update(iris), self._pupil.update(pupil)
            found = replace(found, iris=iris, pupil=pupil, status=status_of(iris, pupil))
        self.times.fit_ms = (time.perf_counter() - t0) * 1e3
        return found

    def edges(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, 3]) image -> (h, w, 2) float32 edge probabilities at model resolution (a reused buffer)."""
        if not self.prepare(Frame(image, 0, None), self._input).usable:
            raise ValueError(f"expected an (H, W) or (H, W, 3) 8/16-bit image, got {getattr(image, 'shape', image)}")
        return self.infer(self._input)[0]

    def __call__(self, frame: Frame | np.ndarray) -> FrameResult:
        """One frame (or a bare image) -> FrameResult with latency_ms measured from the call."""
        return run_steps(self, frame, self._input)

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
