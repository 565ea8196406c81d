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
