"""Edge maps -> limbus and pupil ellipses in frame pixels, with sanity checks and a confidence. Pure functions.

Ridge points are found with Steger's method: at each candidate pixel the Hessian of the edge
probability gives the ridge normal, and a second-order Taylor step along it gives the sub-pixel ridge
centre. Points are mapped to frame pixels *before* fitting (x and y scale differently), then a RANSAC
ellipse fit rejects lid lines, lashes and glints that survived the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tracker.fit import kernels, priors
from tracker.fit.confidence import DEFAULT_CONFIDENCE, ConfidenceModel, Evidence
from tracker.fit.geometry import damped_step, fit_circle_robust, fit_ellipse_robust
from tracker.preprocess import IRIS, PUPIL, model_to_frame_xy
from tracker.structures import Boundary, Ellipse, Status


@dataclass(frozen=True, slots=True)
class FitConfig:
    """Thresholds of the edges -> ellipses stage; distances in model pixels unless named otherwise."""

    threshold: float = 0.35  # edge probability a ridge must reach
    shape: str = "ellipse"  # or "circle"
    inlier_tol_model_px: float = 0.9
    ransac_iterations: int = 96
    # Geometric (orthogonal-distance) refinement after the least-squares fit: on the development set's
    # validation subjects it changed no centre error (iris 2.03 vs 2.01 px, pupil 0.356 both) and costs 0.4 ms.
    geometric_steps: int = 0
    min_points: int = 12
    max_points: int = 400  # a longer ridge is thinned evenly: RANSAC cost grows with points, accuracy barely does
    min_coverage: float = 0.3  # fraction of the perimeter (36 bins) holding inliers
    min_axis_ratio: float = 0.4
    min_semi_axis_model_px: float = 2.5
    # Boundaries refined on the full-resolution image (refine_on_image). The pupil: on the development set's
    # validation subjects its centre error went from 0.362 to 0.328 px (median) at refine_weight 0.8, chosen
    # there from 0.3-1.0 (0.5: 0.335, 1.0: 0.334); the limbus, a soft step, got worse (2.084 -> 2.126 px).
    refine: tuple[str, ...] = ("pupil",)
    refine_search_model_px: float = 1.5  # how far along the normal the image edge is searched
    refine_weight: float = 0.8  # how far a refined centre moves to the image edge's
    # A pupil flatter than its measured limbus is what a closing lid leaves of it (priors.pupil_flatter_than_iris).
    drop_flatter_pupils: bool = True

    def __post_init__(self) -> None:
        # A NaN threshold once slipped through to the ridge kernel: reject what no edge map can satisfy.
        if not (0.0 < self.threshold <= 1.0):
            raise ValueError(f"threshold must be an edge probability in (0, 1], got {self.threshold}")
        if self.shape not in ("ellipse", "circle"):
            raise ValueError(f"shape must be 'ellipse' or 'circle', got {self.shape!r}")
        if not set(self.refine) <= {"iris", "pupil"} or not (0.0 <= self.refine_weight <= 1.0):
            raise ValueError(f"refine takes iris/pupil and a weight in [0, 1], got {self.refine}, {self.refine_weight}")


# With the pupil's shape and centre fixed, only the radius is measured: two side arcs of ~20 degrees each
# (what half-closed lids leave) determine it, where a free ellipse needs a third of the perimeter.
CONSTRAINED_MIN_COVERAGE = 0.1
LIMBUS_SECTORS = 36  # angular sectors of the pupil-frame circle whose share is its coverage


@dataclass(frozen=True, slots=True)
class BoundaryFit:
    """One fitted boundary before the joint decision: ellipse (frame pixels), support and sector coverage."""

    ellipse: Ellipse
    strength: float
    inlier_fraction: float
    coverage: float
    rms_tol: float
    vertical_support: bool  # inliers above or below the centre: the vertical extent is measured, not free
    constrained: bool = False
    px_per_model: float = 1.0


@dataclass(frozen=True, slots=True)
class Points:
    """Ridge points of one edge channel in frame pixels, their peak probabilities, and the fit tolerance."""

    xy: np.ndarray  # (N, 2) float64
    peaks: np.ndarray  # (N,) float64
    tol_px: float  # inlier tolerance in frame pixels (inlier_tol_model_px at this frame's scale)
    px_per_model: float


@dataclass(frozen=True, slots=True)
class EyeFit:
    """Both boundaries of one frame (None when absent), the status, and the evidence behind each confidence."""

    iris: Boundary | None
    pupil: Boundary | None
    status: Status
    iris_evidence: Evidence | None = None
    pupil_evidence: Evidence | None = None


def ridge_points(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) edge probability -> ((N, 2) float64 sub-pixel ridge centres xy, (N,) peak probabilities).

    Only pixels above `threshold` are examined, so the cost follows the edge length, not the image size.
    """
    # A channel of the edge map is a strided view: read in place (warm_up compiles that layout), not copied.
    return kernels.ridge_points(np.asarray(prob, dtype=np.float32), float(threshold))


def boundary_points(prob: np.ndarray, frame_hw: tuple[int, int], config: FitConfig) -> Points:
    """(h, w) edge probability of one boundary -> its ridge points in frame pixels (thinned to max_points)."""
    xy, peaks = ridge_points(prob, config.threshold)
    if len(xy) > config.max_points:
        keep = np.linspace(0, len(xy) - 1, config.max_points).astype(np.intp)
        xy, peaks = xy[keep], peaks[keep]
    input_hw = prob.shape
    px_per_model = float(np.sqrt((frame_hw[0] / input_hw[0]) * (frame_hw[1] / input_hw[1])))
    return Points(
        model_to_frame_xy(xy, frame_hw, input_hw), peaks, config.inlier_tol_model_px * px_per_model, px_per_model
    )


def _boundary_fit(
    e: Ellipse, pts: Points, inliers: np.ndarray, coverage: float, constrained: bool, rms_px: float
) -> BoundaryFit:
    count, strength, vertical = kernels.inlier_support(pts.xy, pts.peaks, inliers, e.cx, e.cy)
    return BoundaryFit(
        e, strength, count / max(len(pts.xy), 1), coverage, rms_px / pts.tol_px, vertical, constrained, pts.px_per_model
    )


def fit_points(
    pts: Points, frame_hw: tuple[int, int], config: FitConfig, shape: str | None = None
) -> BoundaryFit | None:
    """Ridge points -> a robust ellipse (or circle) fit in frame pixels, or None if implausible on its own."""
    if len(pts.xy) < config.min_points:
        return None
    shape = shape or config.shape
    fitter = fit_circle_robust if shape == "circle" else fit_ellipse_robust
    extra = {"geometric_steps": config.geometric_steps} if shape != "circle" else {}
    fit = fitter(
        pts.xy, **extra, inlier_tol_px=pts.tol_px, iterations=config.ransac_iterations, min_points=config.min_points
    )
    if fit is None or fit.angular_coverage < config.min_coverage:
        return None
    e = fit.ellipse
    if e.axis_ratio < config.min_axis_ratio or e.semi_minor < config.min_semi_axis_model_px * pts.px_per_model:
        return None
    # The ellipse's centre may leave the frame (close-ups), but not by more than its own size.
    margin = e.semi_major
    if not (-margin <= e.cx <= frame_hw[1] + margin and -margin <= e.cy <= frame_hw[0] + margin):
        return None
    constrained = shape == "circle" and config.shape != "circle"
    return _boundary_fit(e, pts, fit.inlier_mask, fit.angular_coverage, constrained, fit.rms_residual_px)


def fit_iris_like_pupil(pts: Points, pupil: Ellipse, config: FitConfig) -> BoundaryFit | None:
    """Iris ridge points -> the limbus as the pupil's shape, scaled about nearly the pupil's centre.

    Both boundaries are circles in the iris plane seen at one gaze angle (tracker.fit.priors), so in the frame
    where the pupil is a circle the limbus is a circle around nearly the same centre: its radius is the one
    most ridge points agree on (lid lines and lashes cross many radii; the limbus arcs share one), which fixes
    the vertical extent even when the lids leave only the two side arcs.
    """
    if len(pts.xy) < config.min_points:
        return None
    k = pupil.semi_major / max(pupil.semi_minor, 1e-9)
    lo, hi = pupil.semi_major / priors.PUPIL_IRIS_RATIO[1], pupil.semi_major / priors.PUPIL_IRIS_RATIO[0]
    found, cu, cv, rr, inliers, coverage, rms_px = kernels.limbus_in_pupil_frame(
        pts.xy, pts.peaks, pupil.cx, pupil.cy, pupil.angle_rad, k, lo, hi, pts.tol_px, config.min_points,
        priors.MAX_CENTRE_OFFSET, LIMBUS_SECTORS,
    )  # fmt: skip
    if not found or coverage < CONSTRAINED_MIN_COVERAGE:
        return None
    c, s = math.cos(pupil.angle_rad), math.sin(pupil.angle_rad)
    cx = pupil.cx + c * cu - s * (cv / k)
    cy = pupil.cy + s * cu + c * (cv / k)
    e = Ellipse(cx, cy, rr, rr / k, pupil.angle_rad)
    # Distances in the pupil's frame stretch the minor direction by k: an upper bound of the true residual.
    return _boundary_fit(e, pts, inliers, coverage, True, rms_px)


REFINE_NORMALS = 96  # normals searched around a refined boundary
REFINE_STEP_PX = 0.5  # sample spacing along a normal
REFINE_MIN_SUPPORT = 0.7  # share of the edge points that must lie within the search reach of the fit


def refine_on_image(gray: np.ndarray, e: Ellipse, visible_prob: np.ndarray, config: FitConfig) -> Ellipse | None:
    """Move a fitted boundary's centre `config.refine_weight` of the way to the full-resolution image edge's.

    The network localises the boundary to a model pixel (2-3 frame pixels); the frame itself has the
    sharp edge. Along each outward normal where the network saw the boundary (`visible_prob`), the image's
    dark-to-bright step is found with sub-pixel precision, and one robust Gauss-Newton step (Tukey weights
    within the search reach) fits the ellipse to those points (kernels.image_edge_system). The two
    estimates err differently (the network learnt where annotators draw the boundary; blur, glints and lashes
    displace the image step), and a centre most of the way toward the image's beats either (FitConfig.refine).
    The size stays the network's: a blurred step sits inside or outside the drawn boundary all around, which
    moves no centre but biases a size (development set, pupils: -0.47 px semi-major from the network, -0.68
    px from the image). None when too few normals agree, or the image edge is another boundary.
    """
    h, w = gray.shape
    px_per_model = float(np.sqrt(h * w / (visible_prob.shape[0] * visible_prob.shape[1])))
    # Small pupils: never search past a third of the radius, or the far side of a glint becomes the edge.
    reach = min(config.refine_search_model_px * px_per_model, e.semi_minor / 3)
    jtj, jtr, kept, weighted = kernels.image_edge_system(
        gray, e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad, np.asarray(visible_prob, dtype=np.float32),
        config.threshold, REFINE_NORMALS, reach, REFINE_STEP_PX,
    )  # fmt: skip
    if kept < config.min_points or weighted < max(config.min_points, REFINE_MIN_SUPPORT * kept):
        return None
    step = damped_step(jtj, jtr)  # the ellipse moves by -step (the system is of minus the distance)
    # The image edge must confirm the network's boundary, not replace it with another one.
    if step is None or math.hypot(step[0], step[1]) > reach or abs(step[2]) > reach:
        return None
    k = config.refine_weight
    return Ellipse(e.cx - k * step[0], e.cy - k * step[1], e.semi_major, e.semi_minor, e.angle_rad)


def pupil_fits_iris(pupil: Ellipse, iris: Ellipse) -> bool:
    """The pupil lies inside the iris (5% slack for fitting noise) and is clearly smaller than it."""
    return pupil.semi_major < 0.92 * iris.semi_major and kernels.ellipse_inside(
        pupil.cx, pupil.cy, pupil.semi_major, pupil.semi_minor, pupil.angle_rad,
        iris.cx, iris.cy, iris.semi_major, iris.semi_minor, iris.angle_rad, 1.05, 16,
    )  # fmt: skip


def _one_eye(pupil: BoundaryFit, iris: BoundaryFit) -> bool:
    return pupil_fits_iris(pupil.ellipse, iris.ellipse) and priors.one_eye(pupil.ellipse, iris.ellipse)


def _same_eye(pupil: BoundaryFit, iris: BoundaryFit) -> bool:
    """Size and place agree (the shape may not: a free limbus fit on side arcs is often too flat)."""
    p, i = pupil.ellipse, iris.ellipse
    return (
        pupil_fits_iris(p, i)
        and priors.PUPIL_IRIS_RATIO[0] <= priors.radius_ratio(p, i) <= priors.PUPIL_IRIS_RATIO[1]
        and priors.centre_offset(p, i) <= priors.MAX_CENTRE_OFFSET
    )


def joint_fit(
    iris_pts: Points, pupil_pts: Points, frame_hw: tuple[int, int], config: FitConfig
) -> tuple[BoundaryFit | None, BoundaryFit | None]:
    """Both channels' ridge points -> (iris, pupil) fitted as one eye; either None when it is not there.

    The pupil is fitted on its own (it is the better-defined boundary), then the limbus: the free fit is kept
    when it is one eye with the pupil and its vertical extent is measured; otherwise the limbus is refitted
    with the pupil's shape (fit_iris_like_pupil), or as a circle when there is no pupil. Two boundaries that
    cannot be one eye keep only the better-supported one.
    """
    pupil = fit_points(pupil_pts, frame_hw, config)
    if pupil is not None and not priors.pupil_shape_plausible(pupil.ellipse):
        pupil = None  # the eye slit of a closing lid, a lash shadow
    iris = fit_points(iris_pts, frame_hw, config)
    if iris is not None and not priors.iris_fits_frame(iris.ellipse, frame_hw):
        iris = None  # a face outline, a glasses frame, the eye socket
    if pupil is not None:
        # A free fit on side arcs alone is kept only where its free vertical extent agrees with the pupil's shape.
        if iris is None or not _same_eye(pupil, iris) or not (iris.vertical_support or _one_eye(pupil, iris)):
            like = fit_iris_like_pupil(iris_pts, pupil.ellipse, config) if config.shape != "circle" else None
            if like is not None and _one_eye(pupil, like) and priors.iris_fits_frame(like.ellipse, frame_hw):
                iris = like
            elif iris is not None and not _same_eye(pupil, iris):
                # Not one eye: one of them is something else. Keep the one with the stronger support.
                if _support(pupil) >= _support(iris):
                    iris = None
                else:
                    pupil = None
    elif iris is not None and not iris.vertical_support and config.shape != "circle":
        circle = fit_points(iris_pts, frame_hw, config, shape="circle")
        iris = circle if circle is not None and priors.iris_fits_frame(circle.ellipse, frame_hw) else iris
    return iris, pupil


def lid_cap(pupil: BoundaryFit, iris: BoundaryFit | None, config: FitConfig) -> bool:
    """Whether the pupil is flatter than a limbus whose shape is measured: what a closing lid leaves of it."""
    if iris is None or not iris.vertical_support or iris.constrained or not config.drop_flatter_pupils:
        return False
    return priors.pupil_flatter_than_iris(pupil.ellipse, iris.ellipse)


def _support(fit: BoundaryFit) -> float:
    return fit.strength * fit.inlier_fraction**0.5 * min(1.0, fit.coverage / 0.7)


CONTRAST_SAMPLES = 32  # points around the boundary where the image step across it is read
CONTRAST_BAND = 0.15  # inside / outside samples at (1 -+ this) x the ellipse


def boundary_contrast(gray: np.ndarray, e: Ellipse, spread: float) -> float:
    """Median gray step across the ellipse (outside minus inside, so a dark pupil or iris is positive) / `spread`.

    The image's own evidence, independent of the network: a pupil is darker than the iris around it and an
    iris darker than the sclera, under NIR and visible light; a face outline or a lid line has no such step.
    """
    step = kernels.ring_step(gray, e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad, CONTRAST_BAND, CONTRAST_SAMPLES)
    return 0.0 if math.isnan(step) else float(np.clip(step / max(spread, 1e-6), -3.0, 3.0))


def gray_spread(gray: np.ndarray) -> float:
    """Standard deviation of the frame's gray levels, read on every 4th pixel (cheap at any frame size)."""
    return float(cv2.meanStdDev(gray[::4, ::4])[1][0, 0])


def evidence(
    fit: BoundaryFit,
    partner: BoundaryFit | None,
    is_iris: bool,
    gray: np.ndarray | None = None,
    spread: float = 1.0,
) -> Evidence:
    """The confidence features of one boundary, given the other boundary of the eye (or None) and the frame."""
    offset = gap = 0.0
    if partner is not None:
        pupil, iris = (partner.ellipse, fit.ellipse) if is_iris else (fit.ellipse, partner.ellipse)
        offset, gap = priors.centre_offset(pupil, iris), priors.shape_gap(pupil, iris)
    return Evidence(
        fit.strength,
        fit.inlier_fraction,
        fit.coverage,
        fit.rms_tol,
        _support(partner) if partner is not None else 0.0,
        offset,
        gap,
        fit.constrained,
        boundary_contrast(gray, fit.ellipse, spread) if gray is not None else 0.0,
        math.log2(max(fit.ellipse.semi_major / fit.px_per_model, 1e-3)),
    )


def fit_eye(
    edges: np.ndarray,
    frame_hw: tuple[int, int],
    config: FitConfig = FitConfig(),
    gray: np.ndarray | None = None,
    scorer: ConfidenceModel = DEFAULT_CONFIDENCE,
) -> EyeFit:
    """(h, w, 2) edge probabilities (iris, pupil) -> EyeFit in frame pixels; `gray` (H, W) enables refinement.

    Each reported boundary's confidence comes from `scorer` (calibrated: the probability that the boundary is
    within 5 % of its true radius); below `scorer.drop_below` it is not reported, below `scorer.trust_from` it
    is reported untrusted (`Boundary.trusted` False). The status names what is trusted: ok (both), no_pupil
    (the iris only), pupil_only (the pupil only), low_confidence (something reported, nothing trusted).
    """
    iris_fit, pupil_fit = joint_fit(
        boundary_points(edges[:, :, IRIS], frame_hw, config), boundary_points(edges[:, :, PUPIL], frame_hw, config),
        frame_hw, config,
    )  # fmt: skip
    found: dict[str, tuple[Boundary, Evidence] | None] = {"iris": None, "pupil": None}
    spread = gray_spread(gray) if gray is not None and (iris_fit or pupil_fit) else 1.0
    for name, fit, partner, channel in (("iris", iris_fit, pupil_fit, IRIS), ("pupil", pupil_fit, iris_fit, PUPIL)):
        if fit is None:
            continue
        ev = evidence(fit, partner, name == "iris", gray, spread)
        confidence = scorer(name, ev)
        if confidence < scorer.drop_below[name]:
            continue
        if name == "pupil" and confidence < scorer.trust_from[name] and lid_cap(fit, iris_fit, config):
            continue  # unsure, and contradicting the limbus: a pupil is never reported on the slit
        e = fit.ellipse
        if gray is not None and name in config.refine:
            e = refine_on_image(gray, e, edges[:, :, channel], config) or e
        found[name] = (Boundary(e, confidence, confidence >= scorer.trust_from[name]), ev)
    iris, pupil = found["iris"], found["pupil"]
    status = status_of(iris[0] if iris else None, pupil[0] if pupil else None)
    return EyeFit(
        iris[0] if iris else None, pupil[0] if pupil else None, status, iris[1] if iris else None,
        pupil[1] if pupil else None,
    )  # fmt: skip


def status_of(iris: Boundary | None, pupil: Boundary | None) -> Status:
    """What a user can rely on: ok when both boundaries are trusted, the trusted one's status when only one is."""
    if iris is None and pupil is None:
        return Status.NO_IRIS
    iris_ok, pupil_ok = iris is not None and iris.trusted, pupil is not None and pupil.trusted
    if iris_ok and pupil_ok:
        return Status.OK
    if iris_ok:
        return Status.NO_PUPIL
    if pupil_ok:
        return Status.PUPIL_ONLY
    return Status.LOW_CONFIDENCE


def warm_up(input_hw: tuple[int, int] = (128, 128)) -> None:
    """Compile (or load from the on-disk cache) the fitting kernels now, so no live frame waits for it."""
    h, w = input_hw
    centre, r_iris, r_pupil = (w // 2, h // 2), round(0.35 * min(h, w)), round(0.15 * min(h, w))
    pupil = np.zeros((h, w), np.float32)
    cv2.circle(pupil, centre, r_pupil, 1.0, 2)
    open_eye = np.zeros((h, w), np.float32)
    cv2.circle(open_eye, centre, r_iris, 1.0, 2)
    cv2.line(open_eye, (0, h // 4), (w - 1, h // 4), 1.0, 2)  # a lid-like line: the RANSAC path runs too
    # Side arcs whose free fit is flatter than the round pupil (half-closed lids): the limbus refit in the
    # pupil's frame runs.
    side_arcs = np.zeros((h, w), np.float32)
    for start_deg in (-30, 150):
        cv2.ellipse(side_arcs, centre, (r_iris, round(0.6 * r_iris)), 0, start_deg, start_deg + 60, 1.0, 2)
    for iris in (open_eye, side_arcs):
        edges = np.empty((h, w, 2), np.float32)
        edges[:, :, IRIS], edges[:, :, PUPIL] = iris, pupil
        edges = cv2.GaussianBlur(edges, (5, 5), 1.0)
        for dtype in (np.uint8, np.uint16):  # the image evidence reads 8- and 16-bit frames
            gray = np.full(input_hw, 100, dtype)
            cv2.circle(gray, centre, r_pupil, 30, -1)  # a dark pupil: the refinement's solve compiles now too
            try:
                fit_eye(edges, input_hw, gray=gray)
            except OSError:
                # numba compiled a kernel but could not write its cache (a full disk, a file-size limit): caching
                # is an optimisation, so this process compiles without it rather than failing.
                kernels.uncached()
                fit_eye(edges, input_hw, gray=gray)
