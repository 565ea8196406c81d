"""Ground truth of the synthetic demo clip and what `iristrack run` reports against it: detection, error, jitter."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tools.evaluation import center_error_px
from tracker.structures import Ellipse


def read_truth_csv(path: str | Path) -> dict[int, tuple[Ellipse | None, Ellipse | None]]:
    """Synthetic clip ground truth (tools.synthetic.write_clip) -> {frame: (iris, pupil)}."""
    truth = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            pair = []
            for prefix in ("iris", "pupil"):
                cells = [row[f"{prefix}_{k}"] for k in ("cx", "cy", "semi_major", "semi_minor", "angle_deg")]
                pair.append(None if "" in cells else Ellipse(*map(float, cells[:4]), math.radians(float(cells[4]))))
            truth[int(row["frame"])] = (pair[0], pair[1])
    return truth


def read_truth_events(path: str | Path) -> dict[int, str]:
    """Synthetic clip ground truth -> {frame: event} (fixation, saccade, pursuit, blink)."""
    with open(path, newline="") as f:
        return {int(row["frame"]): row["event"] for row in csv.DictReader(f)}


@dataclass
class Jitter:
    """Frame-to-frame change of a centre (or of its error against the truth) over consecutive frames."""

    steps_px: list[float] = field(default_factory=list)
    _last: tuple[int, float, float] | None = None

    def add(self, frame_index: int, dx: float | None, dy: float | None = None) -> None:
        """Feed one frame's centre (or error vector); None breaks the run."""
        if dx is None:
            self._last = None
            return
        if self._last is not None and self._last[0] == frame_index - 1:
            self.steps_px.append(math.hypot(dx - self._last[1], dy - self._last[2]))
        self._last = (frame_index, dx, dy)

    def summary(self) -> str:
        """'median X px, p95 Y px over N steps' or 'n/a'."""
        if not self.steps_px:
            return "n/a"
        a = np.asarray(self.steps_px)
        return f"median {np.median(a):.3f} px, p95 {np.percentile(a, 95):.3f} px over {len(a)} frame pairs"


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
            self.errors_px.append(center_error_px(truth, found))

    def line(self, name: str) -> str:
        """One summary line: detection rate and centre error median / p95."""
        if not self.truth_frames:
            return f"{name}: no ground truth"
        rate = len(self.errors_px) / self.truth_frames
        if not self.errors_px:
            return f"{name}: detected 0/{self.truth_frames}"
        e = np.asarray(self.errors_px)
        return (
            f"{name}: detected {len(e)}/{self.truth_frames} ({100 * rate:.1f}%), centre error median "
            f"{np.median(e):.2f} px, p95 {np.percentile(e, 95):.2f} px"
        )


class ClipReport:
    """What `iristrack run` reports per boundary: detection and error against a clip's truth, and jitter.

    Without a truth (any real source), jitter is the frame-to-frame centre change; with one (the demo
    clip), it is the change of the centre *error* during fixations, and detection and error are scored.
    """

    def __init__(self, truth_csv: str | Path | None = None) -> None:
        self._truth = read_truth_csv(truth_csv) if truth_csv else None
        self._events = read_truth_events(truth_csv) if truth_csv else {}
        self._scores = {"iris": TruthComparison(), "pupil": TruthComparison()}
        self._jitter = {"iris": Jitter(), "pupil": Jitter()}

    def add(self, result) -> None:
        """Account one FrameResult."""
        truths = self._truth.get(result.frame_index, (None, None)) if self._truth is not None else (None, None)
        for name, found, gt in (("iris", result.iris, truths[0]), ("pupil", result.pupil, truths[1])):
            meter = self._jitter[name]
            if self._truth is None:
                meter.add(result.frame_index, *(found.ellipse.center_xy if found else (None, None)))
            elif found is None or gt is None or self._events.get(result.frame_index) != "fixation":
                meter.add(result.frame_index, None)
            else:
                meter.add(result.frame_index, found.ellipse.cx - gt.cx, found.ellipse.cy - gt.cy)
            if self._truth is not None and result.frame_index in self._truth:
                self._scores[name].add(gt, found.ellipse if found else None)

    def lines(self) -> list[str]:
        """Summary lines: scores against the truth (when there is one), then jitter."""
        lines = []
        if self._truth is not None:
            lines += [f"against the clip's ground truth: {score.line(name)}" for name, score in self._scores.items()]
        what = "centre error change during fixations" if self._truth is not None else "centre change between frames"
        lines += [f"{name} jitter ({what}): {meter.summary()}" for name, meter in self._jitter.items()]
        return lines
