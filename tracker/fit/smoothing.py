"""Frame-to-frame smoothing of fitted boundaries for videos and cameras (not for image folders)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tracker.structures import Boundary, Ellipse


@dataclass(frozen=True, slots=True)
class SmoothingConfig:
    """Exponential smoothing of small changes; a jump larger than `snap_fraction` of the radius is taken as is."""

    alpha: float = 0.5  # weight of the new measurement for small changes
    snap_fraction: float = 0.04  # of the semi-major axis: above this, the eye moved (a saccade), so no smoothing


class BoundarySmoother:
    """Smooths one boundary over time; `update()` per frame, `reset()` on a cut or a new source."""

    def __init__(self, config: SmoothingConfig = SmoothingConfig()) -> None:
        self.config = config
        self._state: Ellipse | None = None

    def reset(self) -> None:
        """Forget the past (a new clip, a seek, a lost eye)."""
        self._state = None

    def update(self, measured: Boundary | None) -> Boundary | None:
        """New measurement -> smoothed boundary; a missing measurement clears the state and stays missing."""
        if measured is None:
            self._state = None
            return None
        prev, new = self._state, measured.ellipse
        if prev is None or _jumped(prev, new, self.config.snap_fraction):
            # Snap: smoothing across a saccade would put the ellipse where the eye no longer is.
            self._state = new
            return measured
        a = self.config.alpha
        # Average the angle as a doubled-angle vector: 0 and 179 degrees are the same axis.
        two = 2 * prev.angle_rad, 2 * new.angle_rad
        angle = 0.5 * math.atan2(
            (1 - a) * math.sin(two[0]) + a * math.sin(two[1]), (1 - a) * math.cos(two[0]) + a * math.cos(two[1])
        )
        self._state = Ellipse(
            prev.cx + a * (new.cx - prev.cx),
            prev.cy + a * (new.cy - prev.cy),
            prev.semi_major + a * (new.semi_major - prev.semi_major),
            prev.semi_minor + a * (new.semi_minor - prev.semi_minor),
            angle,
        )
        return Boundary(self._state, measured.confidence, measured.trusted)


def _jumped(prev: Ellipse, new: Ellipse, fraction: float) -> bool:
    """Whether the centre or size changed by more than `fraction` of the semi-major axis (at least 1 px)."""
    limit = max(1.0, fraction * max(prev.semi_major, new.semi_major))
    return math.hypot(new.cx - prev.cx, new.cy - prev.cy) > limit or abs(new.semi_major - prev.semi_major) > limit
