"""`iristrack check-gpu`: build the engine for the default model, compare TensorRT with ONNX Runtime, time both.

Imports nothing GPU-related at module load; `gpu_unavailable_reason()` says in one line why the check cannot
run on this machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracker.errors import ModelError
from tracker.paths import default_model_path
from tracker.preprocess import Preprocessor

# Named error budgets: TensorRT against ONNX Runtime (CPU, float32) on the same preprocessed frames.
EDGE_TOL = {"fp32": 1e-3, "fp16": 2e-2}  # max abs difference of edge probabilities in [0, 1]
CENTER_TOL_PX = 0.1  # ellipse centre difference, frame pixels
N_FRAMES = 32
TIMING_BATCHES: tuple[int, ...] = (1, 8)
TIMING_ITERS = 200
WARMUP_ITERS = 20


@dataclass(frozen=True, slots=True)
class Timing:
    """Latency of one backend at one batch size: median and p99 per call, and frames per second."""

    backend: str
    batch: int
    median_ms: float
    p99_ms: float
    fps: float


@dataclass
class GpuCheckReport:
    """What check-gpu found: parity numbers, timings, notes, and whether it passed."""

    gpu: str = ""
    engine: str = ""
    precision: str = "fp16"
    max_abs_diff: float = math.nan
    edge_tol: float = 0.0
    max_center_diff_px: float | None = None
    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the edge maps (and ellipse centres, when compared) agree within the budgets."""
        edges_ok = self.max_abs_diff <= self.edge_tol
        centres_ok = self.max_center_diff_px is None or self.max_center_diff_px <= CENTER_TOL_PX
        return bool(edges_ok and centres_ok)


def gpu_unavailable_reason() -> str | None:
    """None when TensorRT can run here, else one line saying why not."""
    from tracker.backends.select import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


def run_gpu_check(
    model_path: Path | None = None,
    precision: str = "fp16",
    n_frames: int = N_FRAMES,
    iters: int = TIMING_ITERS,
    batches: tuple[int, ...] = TIMING_BATCHES,
    progress: Callable[[str], None] | None = None,
) -> GpuCheckReport:
    """Build/load engines for `model_path`, compare with ONNX Runtime on a synthetic clip, and time both."""
    from tracker.backends.onnxruntime import OnnxRuntimeBackend
    from tracker.backends.select import _gpu_label
    from tracker.backends.tensorrt import TensorRTBackend

    say = progress or (lambda _msg: None)
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    report = GpuCheckReport(gpu=_gpu_label(), precision=precision, edge_tol=EDGE_TOL[precision])
    max_batch = max(batches)
    say(f"building or loading the {precision} TensorRT engine for {path.name} (max batch {max_batch})")
    with TensorRTBackend(path, precision=precision, max_batch=max_batch) as trt_backend:
        report.engine = str(trt_backend.engine_path)
        cpu_backend = OnnxRuntimeBackend(path)
        try:
            frames = list(_frames(n_frames, report.notes))
            say(f"comparing edge maps on {len(frames)} frames")
            report.max_abs_diff = _max_edge_diff(frames, trt_backend, cpu_backend)
            report.max_center_diff_px = _max_center_diff(frames, trt_backend, cpu_backend, report.notes)
            for batch in batches:
                say(f"timing batch {batch}")
                report.timings.append(_time_backend(trt_backend, batch, iters))
                report.timings.append(_time_backend(cpu_backend, batch, max(iters // 10, 10)))
            report.timings.append(_time_pipelined(trt_backend, iters))
        finally:
            cpu_backend.close()
    return report


def _frames(n: int, notes: list[str]) -> Iterator[np.ndarray]:
    """Yield n uint8 frames from tools.synthetic.render_clip, or seeded noise + ellipses when it is not there yet."""
    try:
        from tools.synthetic import render_clip
    except ImportError:
        notes.append("tools.synthetic not available: compared on seeded noise frames with drawn ellipses")
        yield from _fallback_frames(n)
        return
    for image, _truth in render_clip(n, size_wh=(320, 240), fps=60.0, seed=0):
        yield image


def _fallback_frames(n: int, size_wh: tuple[int, int] = (320, 240)) -> Iterator[np.ndarray]:
    """(H, W) uint8 frames: noise with a dark pupil inside a mid-grey iris that drifts across the frame."""
    import cv2

    rng = np.random.default_rng(0)
    w, h = size_wh
    for i in range(n):
        image = rng.integers(150, 200, size=(h, w), dtype=np.uint8)
        cx, cy = int(w / 2 + 30 * math.sin(i / 5)), int(h / 2 + 15 * math.cos(i / 7))
        cv2.ellipse(image, (cx, cy), (60, 55), 10, 0, 360, 110, -1)
        cv2.ellipse(image, (cx, cy), (22, 20), 0, 0, 360, 25, -1)
        yield image


def _max_edge_diff(frames: list[np.ndarray], trt_backend, cpu_backend) -> float:
    """Largest |TensorRT - ONNX Runtime| over all frames and both edge channels."""
    prep = Preprocessor(trt_backend.input_hw)
    worst = 0.0
    for image in frames:
        batch = prep(image)
        a = np.array(trt_backend.infer(batch), copy=True)
        b = cpu_backend.infer(batch)
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def _max_center_diff(frames: list[np.ndarray], trt_backend, cpu_backend, notes: list[str]) -> float | None:
    """Largest ellipse-centre distance (px) between trackers on each backend; None (with a note) if unavailable."""
    try:
        from tracker.pipeline import Tracker
    except ImportError:
        notes.append("tracker.pipeline.Tracker not available: ellipse centres not compared")
        return None
    from tracker.structures import Frame

    try:
        from tracker.pipeline import TrackerConfig

        config = TrackerConfig(smooth=False)  # compare per-frame fits, not smoothed tracks
        trackers = [Tracker(trt_backend, config), Tracker(cpu_backend, config)]
    except (ImportError, TypeError) as exc:
        notes.append(f"Tracker(backend) could not be constructed ({exc}): ellipse centres not compared")
        return None
    worst, compared = 0.0, 0
    for i, image in enumerate(frames):
        frame = Frame(image=image, index=i, timestamp_s=i / 60.0, source="check-gpu")
        results = [t(frame) for t in trackers]
        for part in ("pupil", "iris"):
            boundaries = [getattr(r, part) for r in results]
            if all(b is not None for b in boundaries):
                (ax, ay), (bx, by) = (b.ellipse.center_xy for b in boundaries)
                worst = max(worst, math.hypot(ax - bx, ay - by))
                compared += 1
    if compared == 0:
        notes.append("no frame had ellipses on both backends: ellipse centres not compared")
        return None
    return worst


def _time_backend(backend, batch: int, iters: int) -> Timing:
    """Blocking infer() latency at `batch` (random standardised input), after a warm-up."""
    h, w = backend.input_hw
    x = np.random.default_rng(1).standard_normal((batch, h, w, 1)).astype(np.float32)
    for _ in range(WARMUP_ITERS):
        backend.infer(x)
    times = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        backend.infer(x)
        times[i] = time.perf_counter() - t0
    median = float(np.median(times))
    return Timing(backend.name, batch, median * 1e3, float(np.percentile(times, 99)) * 1e3, batch / median)


def _time_pipelined(backend, iters: int) -> Timing:
    """Throughput of batch-1 frames through submit/collect with two in flight (upload overlaps compute)."""
    h, w = backend.input_hw
    x = np.random.default_rng(2).standard_normal((1, h, w, 1)).astype(np.float32)
    times = np.empty(iters)
    pending = backend.submit(x)
    t_prev = time.perf_counter()
    for i in range(iters):
        nxt = backend.submit(x)
        backend.collect(pending)
        pending = nxt
        now = time.perf_counter()
        times[i], t_prev = now - t_prev, now
    backend.collect(pending)
    median = float(np.median(times))
    return Timing(f"{backend.name} (2 in flight)", 1, median * 1e3, float(np.percentile(times, 99)) * 1e3, 1 / median)


def format_report(report: GpuCheckReport) -> str:
    """The report as a plain-text table for the terminal."""
    lines = [
        f"GPU:       {report.gpu}",
        f"engine:    {report.engine} ({report.precision})",
        f"edge maps: max |tensorrt - onnxruntime| = {report.max_abs_diff:.2e} (budget {report.edge_tol:.0e})",
    ]
    if report.max_center_diff_px is not None:
        lines.append(f"centres:   max distance = {report.max_center_diff_px:.3f} px (budget {CENTER_TOL_PX} px)")
    lines += ["", f"{'backend':<26} {'batch':>5} {'median ms':>10} {'p99 ms':>9} {'frames/s':>10}"]
    for t in report.timings:
        lines.append(f"{t.backend:<26} {t.batch:>5} {t.median_ms:>10.3f} {t.p99_ms:>9.3f} {t.fps:>10.1f}")
    lines += [f"note: {note}" for note in report.notes]
    lines.append("PASS" if report.ok else "FAIL: TensorRT and ONNX Runtime disagree beyond the budget")
    return "\n".join(lines)
