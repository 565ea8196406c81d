"""Iris image quality per frame (ISO/IEC 29794-6 components), quality gates and profiles. Pure functions.

`measure(gray, result)` turns a frame's (H, W) gray pixels and the tracker's two ellipses into
`QualityMeasures`; `assess(measures, result, profile)` marks the frame pass/fail against a `Profile` and names
the failing gates; `quality_of(gray, result, profile)` does both. Nothing here touches the tracker: the run
loop and the capture command call it, after `Tracker` has produced the result, and only when asked.

Where ISO/IEC 29794-6:2015 §6.2 defines a component, the formula follows the standard as MITRE's reference
implementation BIQT-Iris (github.com/mitre/biqt-iris, src/ImageOps.cpp) computes it; its README gives the
"recommended values" used as default gates. The other gates come from open-iris (Worldcoin,
src/iris/pipelines/confs/pipeline.yaml validators) or are project choices, each said where it is set
(`tracker/quality_profiles/default.json` carries the source of every gate).

The measures sample the frame once, on a polar grid in the iris plane (the limbus ellipse's own coordinates:
radius 1 on the limbus), with one cv2.remap; sharpness and motion blur read a square crop inside the limbus.
All of them together cost well under 1 ms per 640x480 frame (README "Capture" has the measured costs).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import TrackerError
from tracker.preprocess import to_gray
from tracker.structures import Ellipse, FrameResult

# Polar grid in the iris plane: angles x normalised radii (1 = limbus). 96 angles put samples ~7 px apart on a
# 100 px limbus; radial steps of 0.025 put ~10 samples across a typical iris annulus.
GRID_ANGLES = 96
GRID_RADII = np.arange(0.0125, 1.2125, 0.025)  # 48 rings, 0..1.2 limbus radii (the sclera ring needs 1.1..1.2)
# ISO §6.2.2 / BIQT ISOContrast regions: pupil inside 0.8 of its boundary; iris from halfway between the
# boundaries to 0.9 of the limbus; sclera 1.1..1.2 of the limbus.
PUPIL_CORE = 0.8
IRIS_OUTER = 0.9
SCLERA_RING = (1.1, 1.2)
# Iris-pupil contrast: the iris just outside the pupil, 1.1..1.2 of the pupil boundary (ISO §6.2.3 reading;
# BIQT samples 1.1..1.2 of the *iris* radius there, which is the sclera ring: taken as a slip, not followed).
PUPIL_RING = (1.1, 1.2)
WEBER_PUPIL_OFFSET = 20.0  # ISO §6.2.3 via BIQT: Weber ratio (iris - pupil) / (20 + pupil), 8-bit levels
WEBER_HALF = 0.75  # contrast = 100 W / (0.75 + W)
# Usable iris area (occlusion_mask): lids and skin are a bright class of the annulus, lashes darker than the iris
# texture by OCCLUSION_SIGMAS robust deviations, glints near saturation. OCCLUSION_FLOOR keeps smooth irises
# from flagging their own texture.
SPECULAR_LEVEL = 245  # 8-bit level: glints saturate (ISO §6.2.1 counts specular reflections as occlusion)
OCCLUSION_SIGMAS = 3.0
OCCLUSION_FLOOR = 12.0  # 8-bit levels
# ISO §6.2.10 sharpness (BIQT ISOSharpness): a 9x9 band-pass kernel read at every 4th row and column; power is
# the sum of the squared responses over the region's pixel count; sharpness = 100 p^2 / (p^2 + c^2), c = 180000.
ISO_SHARPNESS_KERNEL = np.array(
    [
        [0, 1, 1, 2, 2, 2, 1, 1, 0],
        [1, 2, 4, 5, 5, 5, 4, 2, 1],
        [1, 4, 5, 3, 0, 3, 5, 4, 1],
        [2, 5, 3, -12, -24, -12, 3, 5, 2],
        [2, 5, 0, -24, -40, -24, 0, 5, 2],
        [2, 5, 3, -12, -24, -12, 3, 5, 2],
        [1, 4, 5, 3, 0, 3, 5, 4, 1],
        [1, 2, 4, 5, 5, 5, 4, 2, 1],
        [0, 1, 1, 2, 2, 2, 1, 1, 0],
    ],
    np.float32,
)
ISO_SHARPNESS_C = 180000.0
ISO_SHARPNESS_STEP = 4
# The crop for sharpness and motion blur: a square inside the limbus, half-side 0.7 of the semi-minor axis
# (inside the iris for any gaze, so background focus and frame edges do not count).
CROP_HALF = 0.7
# ISO §6.2.9 margins via BIQT ISOMarginAdequacy: the iris should be 0.6 R from the left/right frame edges and
# 0.2 R from the top/bottom; adequacy = min over sides of margin / required, x100, capped at 100.
MARGIN_REQUIRED = (0.6, 0.2)  # (horizontal, vertical), in iris radii


@dataclass(frozen=True, slots=True)
class QualityMeasures:
    """The quality components of one frame; None where a boundary they need is absent or the frame is unusable.

    Percentages are 0-100 (ISO's scale); `grey_scale_bits` is the histogram entropy in bits; `motion_blur` is
    0 (isotropic gradients) to 1 (all gradients along one direction); `gaze_angle_deg` is the off-axis angle.
    """

    usable_iris_area_pct: float | None = None
    iris_sclera_contrast: float | None = None
    iris_pupil_contrast: float | None = None
    pupil_circularity: float | None = None
    grey_scale_bits: float | None = None
    iris_radius_px: float | None = None
    pupil_dilation_pct: float | None = None
    concentricity_pct: float | None = None
    margin_adequacy_pct: float | None = None
    sharpness: float | None = None
    motion_blur: float | None = None
    gaze_angle_deg: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """Measure name -> value, rounded for output (None stays None)."""
        return {k: (None if v is None or not math.isfinite(v) else round(float(v), 3)) for k, v in asdict(self).items()}


MEASURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(QualityMeasures))
TRUSTED_GATE = "trusted"  # the gate that both boundaries are trusted (README "When to trust a result")


@dataclass(frozen=True, slots=True)
class Gate:
    """One threshold on one measure: passes when min <= value <= max (None: unbounded); a missing value fails."""

    measure: str
    min: float | None = None
    max: float | None = None
    source: str = ""

    def passes(self, value: float | None) -> bool:
        """True when `value` is present, finite and within the bounds."""
        if value is None or not math.isfinite(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        """'sharpness >= 20' / '20 <= pupil_dilation_pct <= 70'."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g} <= {self.measure} <= {self.max:g}"
        return f"{self.measure} >= {self.min:g}" if self.min is not None else f"{self.measure} <= {self.max:g}"


@dataclass(frozen=True)
class Profile:
    """Named gates; `require_trusted` adds the `trusted` gate (both boundaries trusted by the calibration)."""

    name: str
    gates: tuple[Gate, ...]
    require_trusted: bool = True
    description: str = ""
    path: str | None = None  # where it was read from (None: built in code)

    def to_dict(self) -> dict:
        """The profile as it is written in a capture record (and readable back by load_profile)."""
        return {
            "name": self.name,
            "description": self.description,
            "require_trusted": self.require_trusted,
            "gates": {
                g.measure: {
                    k: v for k, v in (("min", g.min), ("max", g.max), ("source", g.source)) if v not in (None, "")
                }
                for g in self.gates
            },
        }


@dataclass(frozen=True, slots=True)
class QualityReport:
    """A frame's measures, whether it passes its profile, the failing gates by name, and a score to rank passes."""

    measures: QualityMeasures
    passed: bool
    failed: tuple[str, ...]
    score: float  # higher is better: sharpness x usable iris area / 100 (0 when either is missing)

    def to_dict(self) -> dict:
        """JSON-ready: every measure, `quality_pass`, `quality_failed` (gate names) and `quality_score`."""
        return {
            **self.measures.to_dict(),
            "quality_pass": self.passed,
            "quality_failed": list(self.failed),
            "quality_score": round(self.score, 3),
        }


# --- the measures --------------------------------------------------------------------------------------


def to_gray8(image: np.ndarray) -> np.ndarray:
    """(H, W[, 3|4]) uint8/uint16/float frame -> (H, W) uint8 gray (the tracker's gray: a colour frame's red channel).

    Deeper images are scaled by their full range (uint16: /257; float: x255 of [0, 1]) so the ISO 8-bit
    constants (Weber offset, sharpness c) keep their meaning.
    """
    gray = to_gray(image)
    if gray.dtype == np.uint8:
        return gray
    if gray.dtype == np.uint16:
        return (gray >> 8).astype(np.uint8)
    return np.clip(gray.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class _Grid:
    """Polar samples of one frame: values (R, A) float32, frame coordinates, validity, and region masks."""

    values: np.ndarray
    inside_frame: np.ndarray
    rho: np.ndarray  # (R, 1) normalised limbus radius of each ring
    pupil_rel: np.ndarray  # (R, A) position relative to the pupil ellipse (1 on its boundary), inf without a pupil


def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


_COS, _SIN = _unit_circle(GRID_ANGLES)


def _ellipse_radius_of(e: Ellipse, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Normalised elliptic radius of points (x, y): 1 on the ellipse, <1 inside."""
    c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
    dx, dy = x - e.cx, y - e.cy
    u = (dx * c + dy * s) / max(e.semi_major, 1e-9)
    v = (-dx * s + dy * c) / max(e.semi_minor, 1e-9)
    return np.sqrt(u * u + v * v)


def _sample(gray: np.ndarray, iris: Ellipse, pupil: Ellipse | None) -> _Grid:
    """Read `gray` on the polar grid of the limbus ellipse (one bilinear remap)."""
    c, s = math.cos(iris.angle_rad), math.sin(iris.angle_rad)
    a, b = iris.semi_major, iris.semi_minor
    rho = GRID_RADII[:, None]
    u, v = rho * _COS[None, :] * a, rho * _SIN[None, :] * b
    x = (iris.cx + c * u - s * v).astype(np.float32)
    y = (iris.cy + s * u + c * v).astype(np.float32)
    h, w = gray.shape
    values = cv2.remap(gray, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    pupil_rel = _ellipse_radius_of(pupil, x, y) if pupil is not None else np.full(x.shape, np.inf, np.float32)
    return _Grid(values, inside, rho, pupil_rel)


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _iris_region(grid: _Grid, pupil_ratio: float) -> np.ndarray:
    """ISO's iris sample region: from halfway between the boundaries out to 0.9 of the limbus."""
    mid = (1.0 + 1.0 / max(pupil_ratio, 1e-3)) / 2.0  # halfway, in units of the pupil's own radius
    return (grid.rho <= IRIS_OUTER) & (grid.pupil_rel >= mid) & grid.inside_frame


def occlusion_mask(grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """(annulus, occluded): (R, A) bool masks of the iris annulus samples and of those hidden by lids/lashes/glints.

    The visible annulus is split in two by Otsu's threshold. When the bright class stands clear of the dark one
    (its median more than OCCLUSION_SIGMAS x 2 robust deviations of the dark class above it, and at least
    OCCLUSION_FLOOR levels), it is lid or skin (brighter than iris in NIR). Lashes are samples darker than the
    dark class by more than OCCLUSION_SIGMAS deviations; glints are near saturation. Outside the frame counts
    as occluded.
    """
    annulus = (grid.rho <= 1.0) & (grid.pupil_rel >= 1.0)
    visible_annulus = annulus & grid.inside_frame
    occluded = ~grid.inside_frame & annulus
    # A 3x3 median on the polar image keeps iris texture from reading as occlusion, not lids (they span many samples).
    smooth = cv2.medianBlur(np.clip(grid.values, 0, 255).astype(np.uint8), 3)
    values = smooth[visible_annulus]
    if values.size < 8:
        return annulus, annulus.copy()
    threshold, _ = cv2.threshold(values.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark, bright = values[values <= threshold].astype(np.float32), values[values > threshold].astype(np.float32)
    level = float(np.median(dark))
    spread = max(1.4826 * float(np.median(np.abs(dark - level))), OCCLUSION_FLOOR / OCCLUSION_SIGMAS)
    odd = (smooth < level - OCCLUSION_SIGMAS * spread) | (grid.values >= SPECULAR_LEVEL)
    if bright.size and float(np.median(bright)) - level > max(2 * OCCLUSION_SIGMAS * spread, OCCLUSION_FLOOR):
        odd |= smooth > threshold
    return annulus, occluded | (odd & visible_annulus)


def usable_iris_area(grid: _Grid, annulus: np.ndarray, occluded: np.ndarray) -> float | None:
    """ISO §6.2.1 usable iris area, %: share of the iris annulus (pupil to limbus) not hidden by lids, lashes, glints.

    `annulus`, `occluded` from occlusion_mask. Each polar sample stands for an area proportional to its radius, so
    the share is radius-weighted.
    """
    weight = np.broadcast_to(grid.rho, annulus.shape)
    total = float(weight[annulus].sum())
    return 100.0 * (1.0 - float(weight[occluded].sum()) / total) if total > 0 else None


def contrasts(grid: _Grid, pupil_ratio: float, occluded: np.ndarray) -> tuple[float | None, float | None]:
    """(iris-sclera, iris-pupil) contrast, ISO §6.2.2 and §6.2.3 on medians of non-occluded samples, 0-100.

    iris-sclera = 100 (S - I) / (S + I - 2 P); iris-pupil = 100 W / (0.75 + W), W = (I' - P) / (20 + P), where
    P is the pupil's median (inside 0.8 of its boundary), I the iris's (halfway between the boundaries to 0.9 of
    the limbus), S the sclera's (1.1-1.2 of the limbus), I' the iris just outside the pupil (1.1-1.2 of its
    boundary). Negative values are clipped to 0, as BIQT does. Occluded samples (occlusion_mask) are left out.
    """
    usable = grid.inside_frame & ~occluded
    valid = grid.inside_frame & (grid.values < SPECULAR_LEVEL)
    pupil = _median(grid.values[(grid.pupil_rel <= PUPIL_CORE) & valid])
    iris = _median(grid.values[_iris_region(grid, pupil_ratio) & usable])
    sclera = _median(grid.values[(grid.rho >= SCLERA_RING[0]) & (grid.rho <= SCLERA_RING[1]) & valid])
    near = (grid.pupil_rel >= PUPIL_RING[0]) & (grid.pupil_rel <= PUPIL_RING[1]) & (grid.rho < 1.0) & usable
    iris_near = _median(grid.values[near])
    iris_sclera = None
    if None not in (pupil, iris, sclera):
        divisor = sclera + iris - 2.0 * pupil
        iris_sclera = max(0.0, 100.0 * (sclera - iris) / divisor) if divisor > 0 else 0.0
    iris_pupil = None
    if pupil is not None and iris_near is not None:
        weber = (iris_near - pupil) / (WEBER_PUPIL_OFFSET + pupil)
        iris_pupil = max(0.0, 100.0 * weber / (WEBER_HALF + weber)) if weber > 0 else 0.0
    return iris_sclera, iris_pupil


def grey_scale_utilisation(gray: np.ndarray) -> float:
    """ISO §6.2.5 grey-scale utilisation, bits: entropy -sum p log2 p of the (H, W) uint8 frame's 256-bin histogram.

    BIQT-Iris takes the whole frame (its README says "within the iris portion"): the whole frame is used here.
    """
    # Every other row: the histogram of 150k pixels of a 640x480 frame is the frame's to 0.01 bit, at half the cost.
    hist = cv2.calcHist([gray[::2]], [0], None, [256], [0, 256]).ravel()
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def pupil_circularity(pupil: Ellipse) -> float:
    """ISO §6.2.4 pupil boundary circularity on the fitted boundary, 0-100: 100 x minor / major axis of the pupil.

    ISO measures the boundary's departure from a circle by its Fourier spectrum; the tracker's pupil boundary
    is an ellipse, whose only departure from a circle is its axis ratio.
    """
    return 100.0 * pupil.axis_ratio


def pupil_dilation(pupil: Ellipse, iris: Ellipse) -> float:
    """ISO §6.2.7 pupil dilation, %: 100 x pupil radius / iris radius (semi-major axes: free of foreshortening)."""
    return 100.0 * pupil.semi_major / max(iris.semi_major, 1e-9)


def concentricity(pupil: Ellipse, iris: Ellipse) -> float:
    """ISO §6.2.8 iris-pupil concentricity, %: 100 x (1 - centre distance / iris radius), floored at 0."""
    return max(0.0, 100.0 * (1.0 - math.hypot(pupil.cx - iris.cx, pupil.cy - iris.cy) / max(iris.semi_major, 1e-9)))


def margin_adequacy(iris: Ellipse, frame_hw: tuple[int, int]) -> float:
    """ISO §6.2.9 margin adequacy, %: min over the sides of margin / required margin, x100, clipped to 0..100.

    Required: 0.6 R left and right, 0.2 R up and down; margins from the limbus ellipse's extent to the frame edge
    (BIQT adds the radius on the right and bottom sides, a sign slip not followed).
    """
    h, w = frame_hw
    c, s = math.cos(iris.angle_rad), math.sin(iris.angle_rad)
    half_w = math.hypot(iris.semi_major * c, iris.semi_minor * s)
    half_h = math.hypot(iris.semi_major * s, iris.semi_minor * c)
    r = max(iris.semi_major, 1e-9)
    left, right = iris.cx - half_w, (w - 1) - (iris.cx + half_w)
    top, bottom = iris.cy - half_h, (h - 1) - (iris.cy + half_h)
    ratio = min(
        left / (MARGIN_REQUIRED[0] * r),
        right / (MARGIN_REQUIRED[0] * r),
        top / (MARGIN_REQUIRED[1] * r),
        bottom / (MARGIN_REQUIRED[1] * r),
    )
    return float(np.clip(100.0 * ratio, 0.0, 100.0))


def gaze_angle(iris: Ellipse) -> float:
    """Off-axis gaze angle, degrees, from the limbus ellipse: acos(minor / major) (a circle seen at that angle).

    open-iris's off-gaze score is the eccentricity sqrt(1 - (minor/major)^2) = sin of this angle.
    """
    return math.degrees(math.acos(min(1.0, max(0.0, iris.axis_ratio))))


def _crop(gray: np.ndarray, iris: Ellipse) -> np.ndarray | None:
    """The square inside the limbus (half-side 0.7 semi-minor) clipped to the frame; None when under 9x9."""
    half = CROP_HALF * iris.semi_minor
    h, w = gray.shape
    x0, x1 = max(0, int(iris.cx - half)), min(w, int(iris.cx + half) + 1)
    y0, y1 = max(0, int(iris.cy - half)), min(h, int(iris.cy + half) + 1)
    if x1 - x0 < 9 or y1 - y0 < 9:
        return None
    return gray[y0:y1, x0:x1]


def iso_sharpness(crop: np.ndarray) -> float:
    """ISO §6.2.10 sharpness, 0-100, of an (H, W) uint8 crop inside the iris.

    A 9x9 band-pass (BIQT ISOSharpness kernel) read every 4th row and column; p = sum of squared responses over
    the crop's pixel count; sharpness = 100 p^2 / (p^2 + 180000^2).
    """
    # Only every 4th row and column is read, so the kernel is applied there alone (1/16 of a full convolution).
    windows = np.lib.stride_tricks.sliding_window_view(crop, (9, 9))[::ISO_SHARPNESS_STEP, ::ISO_SHARPNESS_STEP]
    if windows.size == 0:
        return 0.0
    sampled = np.tensordot(windows.astype(np.float32), ISO_SHARPNESS_KERNEL, axes=([2, 3], [0, 1]))
    power = float(np.square(sampled, dtype=np.float64).sum()) / crop.size  # per pixel of the region, as BIQT divides
    return 100.0 * power * power / (power * power + ISO_SHARPNESS_C * ISO_SHARPNESS_C)


def motion_blur(crop: np.ndarray) -> float:
    """Motion blur, 0-1: anisotropy (l1 - l2) / (l1 + l2) of the gradient structure tensor over the (H, W) uint8 crop.

    Not an ISO component (project measure): iris texture and the round pupil edge have gradients in all
    directions; a linear blur removes those along its direction, so the tensor's eigenvalues part.
    """
    gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = float(np.mean(gx * gx)), float(np.mean(gy * gy)), float(np.mean(gx * gy))
    trace = jxx + jyy
    if trace <= 1e-9:
        return 0.0
    return math.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / trace


def measure(gray: np.ndarray, result: FrameResult) -> QualityMeasures:
    """(H, W) uint8 gray frame (see to_gray8) + its FrameResult -> QualityMeasures (None: a boundary is missing)."""
    iris = result.iris.ellipse if result.iris is not None else None
    pupil = result.pupil.ellipse if result.pupil is not None else None
    if gray is None or gray.ndim != 2 or gray.size == 0:
        return QualityMeasures()
    grey = grey_scale_utilisation(gray)
    if iris is None or not _finite(iris):
        return QualityMeasures(grey_scale_bits=grey)
    if pupil is not None and not _finite(pupil):
        pupil = None
    grid = _sample(gray, iris, pupil)
    ratio = pupil.semi_major / max(iris.semi_major, 1e-9) if pupil is not None else None
    annulus, occluded = occlusion_mask(grid)
    sclera_c, pupil_c = contrasts(grid, ratio, occluded) if ratio is not None else (None, None)
    crop = _crop(gray, iris)
    return QualityMeasures(
        usable_iris_area_pct=usable_iris_area(grid, annulus, occluded) if pupil is not None else None,
        iris_sclera_contrast=sclera_c,
        iris_pupil_contrast=pupil_c,
        pupil_circularity=pupil_circularity(pupil) if pupil is not None else None,
        grey_scale_bits=grey,
        iris_radius_px=iris.semi_major,
        pupil_dilation_pct=pupil_dilation(pupil, iris) if pupil is not None else None,
        concentricity_pct=concentricity(pupil, iris) if pupil is not None else None,
        margin_adequacy_pct=margin_adequacy(iris, gray.shape[:2]),
        sharpness=iso_sharpness(crop) if crop is not None else None,
        motion_blur=motion_blur(crop) if crop is not None else None,
        gaze_angle_deg=gaze_angle(iris),
    )


def _finite(e: Ellipse) -> bool:
    return all(math.isfinite(v) for v in (e.cx, e.cy, e.semi_major, e.semi_minor)) and e.semi_minor > 0


# --- gates ---------------------------------------------------------------------------------------------


def assess(measures: QualityMeasures, result: FrameResult, profile: Profile) -> QualityReport:
    """Measures + result -> QualityReport: pass when every gate passes (and both boundaries are trusted, if asked)."""
    failed = [g.measure for g in profile.gates if not g.passes(getattr(measures, g.measure))]
    if profile.require_trusted and not (
        result.iris is not None and result.iris.trusted and result.pupil is not None and result.pupil.trusted
    ):
        failed.insert(0, TRUSTED_GATE)
    sharp, usable = measures.sharpness, measures.usable_iris_area_pct
    score = sharp * usable / 100.0 if sharp is not None and usable is not None else 0.0
    return QualityReport(measures, not failed, tuple(failed), score)


def quality_of(image: np.ndarray | None, result: FrameResult, profile: Profile | None = None) -> QualityReport:
    """A frame's pixels (any tracker-readable image; None: unreadable) + its result -> QualityReport under `profile`.

    The default profile when None. A frame that cannot be converted gives empty measures and fails.
    """
    profile = profile or default_profile()
    try:
        gray = to_gray8(image) if isinstance(image, np.ndarray) and image.size else None
    except (ValueError, cv2.error):
        gray = None
    measures = measure(gray, result) if gray is not None else QualityMeasures()
    return assess(measures, result, profile)


# --- profiles ------------------------------------------------------------------------------------------

DEFAULT_PROFILE_RESOURCE = "quality_profiles/default.json"
_PROFILE_KEYS = {"name", "description", "require_trusted", "gates"}
_GATE_KEYS = {"min", "max", "source"}


def profile_from_dict(data: dict, where: str = "profile") -> Profile:
    """A profile from its dict form ({name, description?, require_trusted?, gates: {measure: {min?, max?, source?}}}).

    TrackerError naming `where` and the offending key for anything else (unknown measure, bound not a number,
    min above max, a gate with no bound).
    """
    if not isinstance(data, dict):
        raise TrackerError(f"{where}: expected a table of name, require_trusted and gates, got {type(data).__name__}")
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise TrackerError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected {sorted(_PROFILE_KEYS)}")
    gates_in = data.get("gates", {})
    if not isinstance(gates_in, dict):
        raise TrackerError(f"{where}: 'gates' must be a table of measure -> {{min, max, source}}")
    gates = []
    for name, spec in gates_in.items():
        if name not in MEASURE_NAMES:
            raise TrackerError(f"{where}: gate {name!r} is not a measure; measures are: {', '.join(MEASURE_NAMES)}")
        if not isinstance(spec, dict) or set(spec) - _GATE_KEYS:
            raise TrackerError(f"{where}: gate {name!r} must be a table with min, max and/or source")
        bounds = []
        for key in ("min", "max"):
            value = spec.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise TrackerError(f"{where}: gate {name!r} {key} must be a finite number, got {value!r}")
            bounds.append(None if value is None else float(value))
        lo, hi = bounds
        if lo is None and hi is None:
            raise TrackerError(f"{where}: gate {name!r} has neither min nor max")
        if lo is not None and hi is not None and lo > hi:
            raise TrackerError(f"{where}: gate {name!r} min {lo:g} is above its max {hi:g}")
        gates.append(Gate(name, lo, hi, str(spec.get("source", ""))))
    require_trusted = data.get("require_trusted", True)
    if not isinstance(require_trusted, bool):
        raise TrackerError(f"{where}: require_trusted must be true or false, got {require_trusted!r}")
    return Profile(
        str(data.get("name", Path(where).stem)), tuple(gates), require_trusted, str(data.get("description", ""))
    )


def load_profile(path: str | Path) -> Profile:
    """Read a profile from a .toml or .json file (same structure; see the shipped default.json); TrackerError if bad."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TrackerError(f"cannot read quality profile {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib  # Python 3.11+; imported here so 3.10 can still read JSON profiles

            data = tomllib.loads(raw.decode("utf-8"))
        elif suffix == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            raise TrackerError(f"quality profile {path} must end in .toml or .json")
    except (ValueError, UnicodeDecodeError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise TrackerError(f"quality profile {path} is not valid {suffix[1:].upper()}: {exc}") from None
    except ModuleNotFoundError:
        raise TrackerError(
            f"TOML profiles need Python 3.11 or later (tomllib); write {path.stem}.json instead"
        ) from None
    profile = profile_from_dict(data, str(path))
    return Profile(profile.name, profile.gates, profile.require_trusted, profile.description, str(path))


_DEFAULT: list[Profile] = []


def default_profile() -> Profile:
    """The shipped default profile (tracker/quality_profiles/default.json), read once."""
    if not _DEFAULT:
        text = resources.files("tracker").joinpath(DEFAULT_PROFILE_RESOURCE).read_text(encoding="utf-8")
        profile = profile_from_dict(json.loads(text), DEFAULT_PROFILE_RESOURCE)
        _DEFAULT.append(Profile(profile.name, profile.gates, profile.require_trusted, profile.description, "default"))
    return _DEFAULT[0]


__all__ = [
    "MEASURE_NAMES",
    "Gate",
    "Profile",
    "QualityMeasures",
    "QualityReport",
    "assess",
    "default_profile",
    "load_profile",
    "measure",
    "profile_from_dict",
    "quality_of",
    "to_gray8",
]
