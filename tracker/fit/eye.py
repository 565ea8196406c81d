"""Edge maps -> limbus and pupil ellipses in frame pixels, with sanity checks and a confidence. Pure functions.

Ridge points are found with Steger's method: at each candidate pixel the Hessian of the edge
probability gives the ridge normal, and a second-order Taylor step along it gives the sub-pixel ridge
centre. Points are mapped to frame pixels *before* fitting (x and y scale differently), then a RANSAC
ellipse fit rejects lid lines, lashes and glints that survived the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tracker.fit import kernels
from tracker.fit.geometry import EllipseFit, fit_circle_robust, fit_ellipse_robust
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
    min_confidence: float = 0.15
    refine: tuple[str, ...] = ()  # boundaries refined on the full-resolution image (see refine_on_image)
    refine_search_model_px: float = 1.5  # how far along the normal the image edge is searched

    def __post_init__(self) -> None:
        # A NaN threshold once slipped through to the ridge kernel: reject what no edge map can satisfy.
        if not (0.0 < self.threshold <= 1.0):
            raise ValueError(f"threshold must be an edge probability in (0, 1], got {self.threshold}")
        if self.shape not in ("ellipse", "circle"):
            raise ValueError(f"shape must be 'ellipse' or 'circle', got {self.shape!r}")


@dataclass(frozen=True, slots=True)
class EyeFit:
    """Both boundaries of one frame (None when absent) and the status that explains a None."""

    iris: Boundary | None
    pupil: Boundary | None
    status: Status


def ridge_points(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) edge probability -> ((N, 2) float64 sub-pixel ridge centres xy, (N,) peak probabilities).

    Only pixels above `threshold` are examined, so the cost follows the edge length, not the image size.
    """
    # A channel of the edge map is a strided view: read in place (warm_up compiles that layout), not copied.
    return kernels.ridge_points(np.asarray(prob, dtype=np.float32), float(threshold))


def _confidence(fit: EllipseFit, peaks: np.ndarray) -> float:
    """Edge strength of the inliers x their share x perimeter coverage, in [0, 1]."""
    strength = float(peaks[fit.inlier_mask].mean()) if fit.inlier_mask.any() else 0.0
    coverage = min(1.0, fit.angular_coverage / 0.7)
    return float(np.clip(strength * fit.inlier_fraction**0.5 * coverage, 0.0, 1.0))


def fit_boundary(prob: np.ndarray, frame_hw: tuple[int, int], config: FitConfig) -> Boundary | None:
    """(H, W) edge probability of one boundary -> its ellipse in frame pixels, or None if implausible."""
    xy, peaks = ridge_points(prob, config.threshold)
    if len(xy) < config.min_points:
        return None
    if len(xy) > config.max_points:
        keep = np.linspace(0, len(xy) - 1, config.max_points).astype(np.intp)
        xy, peaks = xy[keep], peaks[keep]
    input_hw = prob.shape
    frame_xy = model_to_frame_xy(xy, frame_hw, input_hw)
    px_per_model = float(np.sqrt((frame_hw[0] / input_hw[0]) * (frame_hw[1] / input_hw[1])))
    fitter = fit_circle_robust if config.shape == "circle" else fit_ellipse_robust
    extra = {"geometric_steps": config.geometric_steps} if config.shape != "circle" else {}
    fit = fitter(
        frame_xy,
        **extra,
        inlier_tol_px=config.inlier_tol_model_px * px_per_model,
        iterations=config.ransac_iterations,
        min_points=config.min_points,
    )
    if fit is None or fit.angular_coverage < config.min_coverage:
        return None
    e = fit.ellipse
    if e.axis_ratio < config.min_axis_ratio or e.semi_minor < config.min_semi_axis_model_px * px_per_model:
        return None
    # The ellipse's centre may leave the frame (close-ups), but not by more than its own size.
    margin = e.semi_major
    if not (-margin <= e.cx <= frame_hw[1] + margin and -margin <= e.cy <= frame_hw[0] + margin):
        return None
    confidence = _confidence(fit, peaks)
    return Boundary(e, confidence) if confidence >= config.min_confidence else None


def ellipse_normals(e: Ellipse, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) at parametric angles t and the unit outward normals (N, 2) there."""
    c, s = np.cos(e.angle_rad), np.sin(e.angle_rad)
    ct, st = np.cos(t), np.sin(t)
    local = np.stack([e.semi_minor * ct, e.semi_major * st], axis=1)  # gradient of the implicit form, local frame
    n = np.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1]], axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return e.points_at(t), n


def refine_on_image(
    gray: np.ndarray, e: Ellipse, visible_prob: np.ndarray, config: FitConfig, n_normals: int = 96
) -> Ellipse | None:
    """Move a fitted boundary onto the strongest dark-to-bright step of the full-resolution image.

    The network localises the boundary to a model pixel (2-3 frame pixels); the frame itself has the
    sharp edge. Along each outward normal where the network saw the boundary (`visible_prob`, the edge
    probability sampled at the normal's foot), the image's derivative peak is found with sub-pixel
    (parabolic) precision, and the ellipse is refitted robustly. Returns None when too few normals agree.
    """
    h, w = gray.shape
    px_per_model = float(np.sqrt(h * w / (visible_prob.shape[0] * visible_prob.shape[1])))
    t = np.linspace(0.0, 2 * np.pi, n_normals, endpoint=False)
    foot, normal = ellipse_normals(e, t)
    to_model = np.array([visible_prob.shape[1] / w, visible_prob.shape[0] / h])
    mx = np.clip(((foot[:, 0] + 0.5) * to_model[0] - 0.5).round().astype(np.intp), 0, visible_prob.shape[1] - 1)
    my = np.clip(((foot[:, 1] + 0.5) * to_model[1] - 0.5).round().astype(np.intp), 0, visible_prob.shape[0] - 1)
    seen = visible_prob[my, mx] >= config.threshold
    if seen.sum() < config.min_points:
        return None
    foot, normal = foot[seen], normal[seen]
    step = 0.5
    # Small pupils: never search past a third of the radius, or the far side of a glint becomes the edge.
    reach = min(config.refine_search_model_px * px_per_model, e.semi_minor / 3)
    offsets = np.arange(-reach, reach + step / 2, step, dtype=np.float32)
    map_x = (foot[:, 0:1] + normal[:, 0:1] * offsets).astype(np.float32)
    map_y = (foot[:, 1:2] + normal[:, 1:2] * offsets).astype(np.float32)
    # A normal that leaves the frame would see the border, not the boundary.
    inside = (map_x.min(1) >= 0) & (map_x.max(1) <= w - 1) & (map_y.min(1) >= 0) & (map_y.max(1) <= h - 1)
    if inside.sum() < config.min_points:
        return None
    foot, normal, map_x, map_y = foot[inside], normal[inside], map_x[inside], map_y[inside]
    profile = cv2.remap(gray, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    # Difference over +-1 px (not adjacent samples): sensor noise would otherwise pick the peak.
    slope = profile[:, 4:] - profile[:, :-4]  # dark inside -> bright outside is positive
    k = np.argmax(slope, axis=1)
    inner = (k > 0) & (k < slope.shape[1] - 1)
    rows = np.flatnonzero(inner)
    if len(rows) < config.min_points:
        return None
    kk = k[rows]
    y0, y1, y2 = slope[rows, kk - 1], slope[rows, kk], slope[rows, kk + 1]
    denom = y0 - 2 * y1 + y2
    sub = np.where(denom < 0, 0.5 * (y0 - y2) / np.where(denom < 0, denom, -1), 0.0)
    along = offsets[kk + 2] + sub * step  # slope index i is centred on offsets[i + 2]
    strong = y1 > 0.25 * np.median(y1[y1 > 0]) if (y1 > 0).any() else np.zeros_like(y1, bool)
    xy = foot[rows] + normal[rows] * along[:, None]
    xy = xy[strong]
    if len(xy) < config.min_points:
        return None
    fit = fit_ellipse_robust(
        xy, inlier_tol_px=max(0.75, 0.3 * px_per_model), iterations=48, min_points=config.min_points
    )
    if fit is None or fit.inlier_fraction < 0.7:
        return None
    moved = np.hypot(fit.ellipse.cx - e.cx, fit.ellipse.cy - e.cy)
    # The image edge must confirm the network's boundary, not replace it with another one.
    if moved > reach or abs(fit.ellipse.semi_major - e.semi_major) > reach:
        return None
    return fit.ellipse


def pupil_fits_iris(pupil: Ellipse, iris: Ellipse) -> bool:
    """The pupil lies inside the iris (5% slack for fitting noise) and is clearly smaller than it."""
    return bool(iris.contains(*pupil.points(16).T, scale=1.05).all()) and pupil.semi_major < 0.92 * iris.semi_major


def fit_eye(
    edges: np.ndarray, frame_hw: tuple[int, int], config: FitConfig = FitConfig(), gray: np.ndarray | None = None
) -> EyeFit:
    """(H, W, 2) edge probabilities (limbus, pupil) -> EyeFit in frame pixels; `gray` (H, W) enables refinement."""
    iris = fit_boundary(edges[:, :, IRIS], frame_hw, config)
    pupil = fit_boundary(edges[:, :, PUPIL], frame_hw, config)
    if gray is not None:
        for name, channel in (("iris", IRIS), ("pupil", PUPIL)):
            found = iris if name == "iris" else pupil
            if found is None or name not in config.refine:
                continue
            refined = refine_on_image(gray, found.ellipse, edges[:, :, channel], config)
            if refined is not None:
                if name == "iris":
                    iris = Boundary(refined, found.confidence)
                else:
                    pupil = Boundary(refined, found.confidence)
    if iris is not None and pupil is not None and not pupil_fits_iris(pupil.ellipse, iris.ellipse):
        # Trust the more confident boundary; a pupil outside its iris is a false detection of one of them.
        if pupil.confidence > iris.confidence:
            iris = None
        else:
            pupil = None
    if iris is None and pupil is None:
        return EyeFit(None, None, Status.NO_IRIS)
    if pupil is None:
        return EyeFit(iris, None, Status.NO_PUPIL)
    if iris is None:
        return EyeFit(None, pupil, Status.PUPIL_ONLY)
    return EyeFit(iris, pupil, Status.OK)


def warm_up(input_hw: tuple[int, int] = (128, 128)) -> None:
    """Compile (or load from the on-disk cache) the fitting kernels now, so no live frame waits for it."""
    h, w = input_hw
    iris, pupil = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    cv2.circle(iris, (w // 2, h // 2), round(0.35 * min(h, w)), 1.0, 2)
    cv2.circle(pupil, (w // 2, h // 2), round(0.15 * min(h, w)), 1.0, 2)
    cv2.line(iris, (0, h // 4), (w - 1, h // 4), 1.0, 2)  # a lid-like line: the RANSAC path runs too
    edges = np.empty((h, w, 2), np.float32)
    edges[:, :, IRIS], edges[:, :, PUPIL] = iris, pupil
    fit_eye(cv2.GaussianBlur(edges, (5, 5), 1.0), input_hw)
