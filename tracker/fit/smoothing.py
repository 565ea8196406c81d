"""Across frames of a video or camera (not image folders): smoothing, and the sizes a session keeps constant."""

from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, replace

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


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What stays constant across a video: the iris's size; the pupil's size changes only slowly."""

    window: int = 60  # trusted iris sizes remembered (frames)
    established_after: int = 10  # trusted irises needed before the session size is used
    # The limbus does not change size during a session; 15 % covers fitting noise and a head moving the eye
    # closer to or further from the camera within a few frames.
    max_iris_change: float = 0.15
    # Pupil constriction peaks near 5 mm/s (light reflex); at 25 fps and a 3 mm radius that is < 0.2 mm or
    # 7 % a frame; 30 % allows for noise and frame drops, not for a pupil that doubles between two frames.
    max_pupil_change: float = 0.30


class SessionPrior:
    """Untrusts boundaries whose size breaks the session: an iris off the session's size, a pupil that jumps.

    Positions may jump (saccades), sizes may not. `update()` per frame, `reset()` on a new clip.
    """

    def __init__(self, config: SessionConfig = SessionConfig()) -> None:
        self.config = config
        self._iris_sizes: collections.deque[float] = collections.deque(maxlen=config.window)
        self._rejected: list[float] = []  # trusted irises in a row that the session's size refused
        self._last_pupil: float | None = None

    def reset(self) -> None:
        """Forget the session (a new clip, a new person)."""
        self._iris_sizes.clear()
        self._rejected.clear()
        self._last_pupil = None

    def _restart_if_consistent(self) -> None:
        """Enough refused irises in a row that agree with each other: a cut, a zoom or another eye; a new session."""
        if len(self._rejected) < self.config.established_after:
            return
        usual = statistics.median(self._rejected)
        if all(abs(r - usual) <= self.config.max_iris_change * usual for r in self._rejected):
            self._iris_sizes.clear()
            self._iris_sizes.extend(self._rejected)
        self._rejected.clear()

    def update(self, iris: Boundary | None, pupil: Boundary | None) -> tuple[Boundary | None, Boundary | None]:
        """This frame's boundaries, each untrusted where its size is not the session's."""
        if iris is not None and iris.trusted:
            size = iris.ellipse.semi_major
            if len(self._iris_sizes) >= self.config.established_after:
                usual = statistics.median(self._iris_sizes)
                if abs(size - usual) > self.config.max_iris_change * usual:
                    iris = replace(iris, trusted=False)
                    self._rejected.append(size)
                    self._restart_if_consistent()
            if iris.trusted:
                self._iris_sizes.append(size)
                self._rejected.clear()
        if pupil is None or not pupil.trusted:
            self._last_pupil = None
            return iris, pupil
        last, self._last_pupil = self._last_pupil, pupil.ellipse.semi_major
        if last is not None and abs(pupil.ellipse.semi_major - last) > self.config.max_pupil_change * last:
            # One frame of a jump is flagged; the next is compared with nothing, so a real change (a blink that
            # reopens on another pupil size) costs a single frame.
            pupil, self._last_pupil = replace(pupil, trusted=False), None
        return iris, pupil
