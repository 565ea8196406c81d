"""Typed values that flow between stages: Ellipse, Boundary, Frame, EyeBox, EyeResult, FrameResult."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Ellipse:
    """Pixels, x right / y down; semi-axes with semi_minor <= semi_major; major-axis angle in [0, pi)."""

    cx: float
    cy: float
    semi_major: float
    semi_minor: float
    angle_rad: float

    def __post_init__(self) -> None:
        # Normalise on construction so equal ellipses compare and serialise equally.
        a, b, t = float(self.semi_major), float(self.semi_minor), float(self.angle_rad)
        if b > a:
            a, b, t = b, a, t + math.pi / 2
        object.__setattr__(self, "cx", float(self.cx))
        object.__setattr__(self, "cy", float(self.cy))
        object.__setattr__(self, "semi_major", a)
        object.__setattr__(self, "semi_minor", b)
        object.__setattr__(self, "angle_rad", t % math.pi)

    @classmethod
    def from_cv2(cls, box: tuple) -> Ellipse:
        """cv2.fitEllipse / RotatedRect ((cx, cy), (full_w, full_h), angle_deg) -> canonical form."""
        (cx, cy), (w, h), angle_deg = box
        return cls(cx, cy, w / 2.0, h / 2.0, math.radians(angle_deg))

    @classmethod
    def circle(cls, cx: float, cy: float, radius: float) -> Ellipse:
        """A circle of `radius` pixels centred at (cx, cy)."""
        return cls(cx, cy, radius, radius, 0.0)

    def to_cv2(self) -> tuple[tuple[float, float], tuple[float, float], float]:
        """Canonical form -> ((cx, cy), (full_major, full_minor), angle_deg) for cv2.ellipse."""
        return (self.cx, self.cy), (2 * self.semi_major, 2 * self.semi_minor), math.degrees(self.angle_rad)

    @property
    def angle_deg(self) -> float:
        """Major-axis angle in degrees, [0, 180)."""
        return math.degrees(self.angle_rad)

    @property
    def center_xy(self) -> tuple[float, float]:
        """Centre (x, y) in pixels."""
        return self.cx, self.cy

    @property
    def area_px2(self) -> float:
        """Area in square pixels."""
        return math.pi * self.semi_major * self.semi_minor

    @property
    def axis_ratio(self) -> float:
        """semi_minor / semi_major in (0, 1]; 1 for a circle."""
        return self.semi_minor / self.semi_major if self.semi_major > 0 else 0.0

    def points(self, n: int = 360) -> np.ndarray:
        """(n, 2) float64 points spaced evenly in the parametric angle, frame pixels."""
        t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
        return self.points_at(t)

    def points_at(self, t: np.ndarray) -> np.ndarray:
        """(len(t), 2) float64 points at parametric angles `t` (radians)."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        x = self.semi_major * np.cos(t)
        y = self.semi_minor * np.sin(t)
        return np.stack([self.cx + c * x - s * y, self.cy + s * x + c * y], axis=-1)

    def contains(self, x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Boolean array: which points (x, y) lie inside this ellipse grown by `scale`."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        dx, dy = x - self.cx, y - self.cy
        u = (dx * c + dy * s) / max(scale * self.semi_major, 1e-12)
        v = (-dx * s + dy * c) / max(scale * self.semi_minor, 1e-12)
        return u * u + v * v <= 1.0

    def scaled(self, sx: float, sy: float) -> Ellipse:
        """The image of this ellipse under (x, y) -> (sx * x, sy * y), exact for anisotropic scales."""
        return self.affine(np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]]))

    def affine(self, m: np.ndarray) -> Ellipse:
        """The image of this ellipse under the 2x3 affine map `m` (an ellipse maps to an ellipse)."""
        m = np.asarray(m, dtype=np.float64)
        (a, b, tx), (c_, d, ty) = m.tolist()
        if math.isclose(a, d, rel_tol=1e-9, abs_tol=1e-12) and math.isclose(b, -c_, rel_tol=1e-9, abs_tol=1e-12):
            # A similarity (the eye-crop maps): scale and turn the axes; no SVD on a face run's per-frame path.
            scale = math.hypot(a, c_)
            cx, cy = a * self.cx + b * self.cy + tx, c_ * self.cx + d * self.cy + ty
            return Ellipse(cx, cy, scale * self.semi_major, scale * self.semi_minor, self.angle_rad + math.atan2(c_, a))
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        # Columns of the shape matrix are the semi-axis vectors; map them and take the SVD.
        axes = np.array([[c * self.semi_major, -s * self.semi_minor], [s * self.semi_major, c * self.semi_minor]])
        u, sv, _ = np.linalg.svd(m[:, :2] @ axes)
        centre = m[:, :2] @ np.array([self.cx, self.cy]) + m[:, 2]
        return Ellipse(centre[0], centre[1], sv[0], sv[1], math.atan2(u[1, 0], u[0, 0]))


class Status(str, enum.Enum):
    """Why a frame has the boundaries it has; `ok` when both were found and both are trusted."""

    OK = "ok"
    NO_PUPIL = "no_pupil"  # iris trusted, pupil absent or untrusted (lid over the pupil, glint, dark iris)
    PUPIL_ONLY = "pupil_only"  # pupil trusted, iris absent or untrusted (close-ups where the iris leaves the frame)
    NO_IRIS = "no_iris"  # blink, eye closed or no eye in view
    LOW_CONFIDENCE = "low_confidence"  # boundaries reported, none of them trusted
    BAD_FRAME = "bad_frame"  # the frame could not be decoded or converted


@dataclass(frozen=True, slots=True)
class Boundary:
    """One fitted boundary (iris or pupil): ellipse in frame pixels, confidence in [0, 1], trusted or not.

    `trusted`: the confidence reaches the model's calibrated trust threshold (README "When to trust a result").
    """

    ellipse: Ellipse
    confidence: float
    trusted: bool = True


@dataclass(frozen=True, slots=True)
class Frame:
    """One image from a source: (H, W) or (H, W, 3) uint8/uint16 array (None: unreadable), its index and time.

    `timestamp_s` is None where the source has no clock (image files: no invented time).
    """

    image: np.ndarray | None
    index: int
    timestamp_s: float | None
    source: str = ""


@dataclass(frozen=True, slots=True)
class SizeMm:
    """A length in millimetres and its standard uncertainty (1 SD)."""

    value_mm: float
    sd_mm: float


@dataclass(frozen=True, slots=True)
class EyeBox:
    """An eye's crop in frame pixels: centre, width/height, angle of the corner line, and its side."""

    side: str  # "left" | "right", as the person sees it (unmirrored frame)
    cx: float
    cy: float
    width_px: float
    height_px: float
    angle_rad: float  # direction of the image-left to image-right corner line, y down

    def crop_to_frame(self, crop_wh: tuple[int, int]) -> np.ndarray:
        """2x3 float64 affine: crop pixel (u, v) -> frame pixel (x, y); a similarity (the crop keeps the box aspect)."""
        w, h = crop_wh
        scale = self.width_px / w
        c, s = math.cos(self.angle_rad) * scale, math.sin(self.angle_rad) * scale
        # Pixel centres: the crop spans [-0.5, w - 0.5], so its centre pixel (w - 1) / 2 lands on the box centre.
        u0, v0 = (w - 1) / 2, (h - 1) / 2
        return np.array([[c, -s, self.cx - (c * u0 - s * v0)], [s, c, self.cy - (s * u0 + c * v0)]])

    def corners_xy(self) -> np.ndarray:
        """(4, 2) float64 frame pixels of the box corners, clockwise from the top left (for drawing)."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
        half = unit * [self.width_px / 2, self.height_px / 2]
        return half @ np.array([[c, s], [-s, c]]) + [self.cx, self.cy]


@dataclass(frozen=True, slots=True)
class EyeResult:
    """One eye of a face frame: its box, iris and pupil in frame pixels, status, pupil diameter and distance."""

    side: str
    box: EyeBox
    iris: Boundary | None
    pupil: Boundary | None
    status: Status
    pupil_diameter: SizeMm | None = None  # None unless both boundaries were found
    distance: SizeMm | None = None  # eye to camera, only with a focal length (--focal-px)


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What the tracker found in one frame; boundaries in frame pixels, None when absent.

    `eyes` is None for an eye close-up (the boundaries are `iris` and `pupil`); in a face frame it holds one
    EyeResult per eye found (empty: no face), and `iris`/`pupil` are None.
    """

    source: str
    frame_index: int
    timestamp_s: float | None
    iris: Boundary | None
    pupil: Boundary | None
    status: Status
    latency_ms: float
    pupil_diameter: SizeMm | None = None  # close-ups: from the iris as the ruler (tracker/fit/size.py)
    distance: SizeMm | None = None
    eyes: tuple[EyeResult, ...] | None = None

    def views(self) -> tuple[tuple[Boundary | None, Boundary | None], ...]:
        """(iris, pupil) of each eye looked at: the close-up's one pair, or one pair per eye of a face frame."""
        if self.eyes is None:
            return ((self.iris, self.pupil),)
        return tuple((eye.iris, eye.pupil) for eye in self.eyes)
