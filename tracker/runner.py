"""The run loop: a source's frames through a Tracker into sinks, with a progress bar and a summary."""

from __future__ import annotations

import csv
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracker.pipeline import Tracker
from tracker.structures import Ellipse, FrameResult


@dataclass
class RunSummary:
    """What a run did: frame counts, detections, speed, and what was skipped or dropped."""

    frames: int = 0
    iris_detected: int = 0
    pupil_detected: int = 0
    elapsed_s: float = 0.0
    dropped_frames: int = 0
    interrupted: bool = False
    skipped: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """End-to-end frames per second (decode, inference, fitting and output)."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Stop(Exception):
    """Raised by the SIGTERM handler so the loop unwinds through the sinks' context managers."""


def run(source, tracker: Tracker, sink, *, progress: bool = False, max_frames: int | None = None,
        on_result: Callable[[FrameResult], None] | None = None, should_stop: Callable[[], bool] | None = None) -> RunSummary:
    """Track every frame of `source` into `sink` (anything with write(frame, result)); SIGINT/SIGTERM end it cleanly."""
    summary = RunSummary()
    bar = None
    if progress and not source.is_live:
        from tqdm import tqdm

        bar = tqdm(total=source.frame_count, unit="frame", dynamic_ncols=True, leave=False)
    previous = _install_sigterm()
    t0 = time.perf_counter()
    try:
        for frame in source:
            result = tracker(frame)
            sink.write(frame, result)
            summary.frames += 1
            summary.iris_detected += result.iris is not None
            summary.pupil_detected += result.pupil is not None
            if on_result is not None:
                on_result(result)
            if bar is not None:
                bar.update()
            if (max_frames and summary.frames >= max_frames) or (should_stop and should_stop()):
                break
    except (KeyboardInterrupt, _Stop):
        summary.interrupted = True
    finally:
        summary.elapsed_s = time.perf_counter() - t0
        summary.dropped_frames = source.dropped_frames
        if bar is not None:
            bar.close()
        signal.signal(signal.SIGTERM, previous)
    return summary


def _install_sigterm():
    def handler(signum, frame):
        raise _Stop

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals to the embedding application
        return signal.getsignal(signal.SIGTERM)


def read_truth_csv(path: str | Path) -> dict[int, tuple[Ellipse | None, Ellipse | None]]:
    """Synthetic clip ground truth (tracker.synthetic.write_clip) -> {frame: (iris, pupil)}."""
    truth = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            pair = []
            for prefix in ("iris", "pupil"):
                cells = [row[f"{prefix}_{k}"] for k in ("cx", "cy", "semi_major", "semi_minor", "angle_deg")]
                pair.append(None if "" in cells else Ellipse(*map(float, cells[:4]), math.radians(float(cells[4]))))
            truth[int(row["frame"])] = (pair[0], pair[1])
    return truth


@dataclass
class TruthComparison:
    """Centre errors of one boundary against a clip's ground truth (frames where the truth has that boundary)."""

    errors_px: list[float] = field(default_factory=list)
    truth_frames: int = 0

    def add(self, truth: Ellipse | None, found: Ellipse | None) -> None:
        """Count one frame."""
        if truth is None:
            return
        self.truth_frames += 1
        if found is not None:
            self.errors_px.append(math.hypot(found.cx - truth.cx, found.cy - truth.cy))

    def line(self, name: str) -> str:
        """One summary line: detection rate and centre error median / p95."""
        if not self.truth_frames:
            return f"{name}: no ground truth"
        rate = len(self.errors_px) / self.truth_frames
        if not self.errors_px:
            return f"{name}: detected 0/{self.truth_frames}"
        e = np.asarray(self.errors_px)
        return (f"{name}: detected {len(e)}/{self.truth_frames} ({100 * rate:.1f}%), centre error median "
                f"{np.median(e):.2f} px, p95 {np.percentile(e, 95):.2f} px")
