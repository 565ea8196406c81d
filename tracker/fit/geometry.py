"""Pure geometry: least-squares and robust (RANSAC) ellipse and circle fits, point-to-ellipse distances.

The per-point loops of the ellipse path are compiled (tracker.fit.kernels); this module keeps the decisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from tracker.fit import kernels
from tracker.structures import Ellipse

MIN_AXIS_RATIO = 0.2  # semi_minor / semi_major below this is not a pupil or limbus seen by an eye camera
MIN_SEMI_MINOR_PX = 0.5
MAX_SIZE_IN_SPREADS = 10.0  # a semi-major larger than this many point spreads is a near-line, not an eye
COVERAGE_BINS = 36
GEOMETRIC_STEPS = 2  # robust Gauss-Newton steps on orthogonal distances after the least-squares refit
LOCAL_OPT_ROUNDS = 1  # refit-all-hypotheses-on-their-inliers rounds inside RANSAC
SEED_ROUNDS = 3  # trimmed least-squares rounds (fit, keep the points within tolerance, fit again) before RANSAC
EARLY_EXIT_INLIER_FRACTION = 0.9  # a trimmed least-squares seed this good skips RANSAC: only refined
MISS_PROBABILITY = 1e-5  # adaptive RANSAC stops once all samples being unclean is this unlikely (not 1e-3:
# a clean 5-point sample on a short noisy arc is often too rough for local optimisation to rescue)
MIN_RANSAC_ITERATIONS = 8  # floor on the adaptive count: the observed inlier ratio of a few samples is noisy
RANSAC_BATCH = 32  # most hypotheses drawn before the adaptive count is checked again
FOOT_ITERATIONS = 3  # foot-point steps from the default start: ~1e-3 px on eye-like ellipses
EXACT_FOOT_ITERATIONS = 12  # ~1e-12 px even for flat ellipses and points near the centre (8 reach 1e-11)
CONVERGED_STEP_PX = 0.05  # a Gauss-Newton step moving nothing by more than this ends the refinement: the steps
# shrink ~10x each, so the next one would move < 0.01 px


@dataclass(frozen=True, slots=True)
class EllipseFit:
    """A robust fit: the ellipse, which input points support it and how well (pixels, fractions in [0, 1])."""

    ellipse: Ellipse
    inlier_mask: np.ndarray  # (N,) bool over the input points
    rms_residual_px: float  # RMS orthogonal distance of the inliers to the ellipse
    inlier_fraction: float
    angular_coverage: float  # fraction of the 0..2pi bins around the centre that hold inliers


def fit_ellipse_lsq(xy: np.ndarray) -> Ellipse | None:
    """(N, 2) points in pixels -> direct least-squares ellipse (Fitzgibbon), None if < 5 points or degenerate."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 5 or not np.isfinite(xy).all():
        return None
    return _fit_direct(xy, _spread_px(xy))


def _fit_direct(xy: np.ndarray, spread_px: float, keep: np.ndarray | None = None) -> Ellipse | None:
    """(N, 2) finite pixels (those where `keep`, (N,) bool) -> cv2.fitEllipseDirect ellipse if plausible.

    None for fewer than 5 points or an implausible ellipse.
    """
    # fitEllipseDirect always returns an ellipse (never a hyperbola); centring first keeps float32 precise.
    centred, mx, my = kernels.centred_f32(xy, _ALL if keep is None else keep)
    if len(centred) < 5:
        return None
    try:
        (cx, cy), (w, h), angle_deg = cv2.fitEllipseDirect(centred)
    except cv2.error:
        return None
    if not all(math.isfinite(v) for v in (cx, cy, w, h, angle_deg)):
        return None
    e = Ellipse.from_cv2(((cx + mx, cy + my), (w, h), angle_deg))
    return e if _plausible(e, spread_px) else None


def fit_circle_lsq(xy: np.ndarray) -> Ellipse | None:
    """(N, 2) pixels -> geometric least-squares circle (Kasa start, Gauss-Newton), None if < 3 points or degenerate."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 3 or not np.isfinite(xy).all():
        return None
    spread = _spread_px(xy)
    e = _fit_circle_kasa(xy, spread)
    if e is None:
        return None
    # Kasa is biased towards small circles on short arcs; geometric steps remove that. An infinite
    # tolerance makes the robust step a plain least-squares one.
    for _ in range(GEOMETRIC_STEPS + 2):
        nxt, _ = _circle_step(e, xy, math.inf, None)
        if nxt is None:
            break
        e = nxt
    return e if _plausible(e, spread) else None


def _fit_circle_kasa(xy: np.ndarray, spread_px: float) -> Ellipse | None:
    """(N >= 3, 2) finite pixels -> algebraic (Kasa) circle if plausible for points of this spread."""
    mean = xy.mean(axis=0)
    p = xy - mean
    # x^2 + y^2 + D x + E y + F = 0 is linear in (D, E, F).
    sol, *_ = np.linalg.lstsq(np.column_stack([p, np.ones(len(p))]), -(p * p).sum(axis=1), rcond=None)
    c = -sol[:2] / 2
    r2 = c @ c - sol[2]
    if not np.isfinite(r2) or r2 <= 0:
        return None
    e = Ellipse.circle(c[0] + mean[0], c[1] + mean[1], math.sqrt(r2))
    return e if _plausible(e, spread_px) else None


def ellipse_distance_px(e: Ellipse, xy: np.ndarray, iterations: int = FOOT_ITERATIONS) -> np.ndarray:
    """(N, 2) points in pixels -> (N,) unsigned orthogonal distance to the ellipse, pixels.

    FOOT_ITERATIONS steps of the foot-point search are ~1e-3 px accurate on eye-like ellipses, the fit's need;
    EXACT_FOOT_ITERATIONS reach ~1e-12 px on any ellipse and point (evaluation metrics).
    """
    return _distance_px(e, np.asarray(xy, dtype=np.float64).reshape(-1, 2), iterations=iterations)


def angular_coverage(e: Ellipse, xy: np.ndarray, bins: int = COVERAGE_BINS) -> float:
    """Fraction of `bins` equal sectors of the ellipse's parametric angle (0..2pi) that hold at least one point."""
    xy = np.ascontiguousarray(xy, dtype=np.float64).reshape(-1, 2)
    return float(kernels.angular_coverage(e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad, xy, bins))


def fit_ellipse_robust(
    xy: np.ndarray,
    *,
    inlier_tol_px: float = 1.5,
    iterations: int = 128,
    seed: int = 0,
    min_points: int = 8,
    geometric_steps: int = GEOMETRIC_STEPS,
) -> EllipseFit | None:
    """(N, 2) pixels -> MSAC over 5-point conics, then geometric refits on inliers; None when no plausible fit.

    A trimmed least-squares fit seeds the search: when it already explains EARLY_EXIT_INLIER_FRACTION of the
    points it is only refined; otherwise it competes with the RANSAC hypotheses, whose count adapts to the
    best inlier ratio seen (at most `iterations`).
    """
    xy = np.ascontiguousarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n < max(min_points, 5):
        return None
    mx, my, scale = kernels.centroid_spread(xy)
    if not math.isfinite(scale):
        return None
    scale = max(scale, 1e-9)
    seed_fit, seed_inliers, seed_count = _trimmed_direct(xy, inlier_tol_px, scale, min_points)
    if seed_fit is not None and seed_count >= max(min_points, EARLY_EXIT_INLIER_FRACTION * n):
        return _refine(
            xy, seed_inliers, inlier_tol_px, min_points, _fit_direct, _ellipse_step, scale, seed_fit, geometric_steps
        )
    mean = np.array([mx, my])
    seed_conic = np.empty(0) if seed_fit is None else _conic_of(seed_fit, mean, scale)
    best = kernels.ransac_conic(
        (xy - mean) / scale,
        (inlier_tol_px / scale) ** 2,
        seed_conic,
        seed_count,
        iterations,
        seed,
        MISS_PROBABILITY,
        MIN_RANSAC_ITERATIONS,
        RANSAC_BATCH,
        LOCAL_OPT_ROUNDS,
        MIN_AXIS_RATIO,
        MAX_SIZE_IN_SPREADS,
    )
    if not best.any():
        return None
    return _refine(xy, best, inlier_tol_px, min_points, _fit_direct, _ellipse_step, scale, None, geometric_steps)


def fit_circle_robust(
    xy: np.ndarray,
    *,
    inlier_tol_px: float = 1.5,
    iterations: int = 128,
    seed: int = 0,
    min_points: int = 6,
) -> EllipseFit | None:
    """(N, 2) pixels -> MSAC over 3-point circles, then geometric refits on inliers; None when no plausible fit."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n < max(min_points, 3) or not np.isfinite(xy).all():
        return None
    norm, scale = _normalise(xy)
    idx = _sample_subsets(n, 3, iterations, np.random.default_rng(seed))
    centres, radii = _circles_through(norm[idx])
    ok = np.isfinite(radii) & (radii < MAX_SIZE_IN_SPREADS) & (radii * scale >= MIN_SEMI_MINOR_PX)
    if not ok.any():
        return None
    p, c, r = norm.astype(np.float32), centres[ok].astype(np.float32), radii[ok].astype(np.float32)
    d = np.subtract.outer(p[:, 0], c[:, 0])
    d *= d
    dy = np.subtract.outer(p[:, 1], c[:, 1])
    dy *= dy
    d += dy
    np.sqrt(d, out=d)
    d -= r
    d *= d
    inliers = _msac_best(d, (inlier_tol_px / scale) ** 2)
    return _refine(xy, inliers, inlier_tol_px, min_points, _fit_circle_kasa, _circle_step, scale)


def damped_step(jtj: np.ndarray, jtr: np.ndarray) -> np.ndarray | None:
    """A Gauss-Newton system (J^T W J (P, P), consumed; J^T W r (P,)) -> the damped step; None when singular."""
    # Both callers build jtj for this call alone, so it is damped and eliminated in place, not copied.
    step = kernels.damped_solve(jtj, np.asarray(jtr, dtype=np.float64))
    return step if len(step) else None


# --- internals ---------------------------------------------------------------------------------------------


def _refine(
    xy: np.ndarray,
    inliers: np.ndarray,
    tol_px: float,
    min_points: int,
    fit: Callable[[np.ndarray, float], Ellipse | None],
    step: Callable[[Ellipse, np.ndarray, float, Foot | None], tuple[Ellipse | None, Foot]],
    spread_px: float,
    start: Ellipse | None = None,
    steps: int = GEOMETRIC_STEPS,
) -> EllipseFit | None:
    """Least-squares fit on the MSAC inliers (or `start`, one already), robust Gauss-Newton steps; final inliers."""
    if np.count_nonzero(inliers) < min_points:
        return None
    e = fit(xy[inliers], spread_px) if start is None else start
    if e is None:
        return None
    foot = None
    for _ in range(steps):
        nxt, foot = step(e, xy, tol_px, foot)
        if nxt is None or not _plausible(nxt, spread_px):
            break
        moved_px = max(
            abs(nxt.cx - e.cx),
            abs(nxt.cy - e.cy),
            abs(nxt.semi_major - e.semi_major),
            abs(nxt.semi_minor - e.semi_minor),
            abs(math.remainder(nxt.angle_rad - e.angle_rad, math.pi)) * e.semi_major,
        )
        e = nxt
        if moved_px < CONVERGED_STEP_PX:
            break
    warm_cs, iterations = (_NO_WARM, FOOT_ITERATIONS) if foot is None else (foot[1], 1)
    inliers, count, rms_px, coverage = kernels.inlier_summary(
        e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad, xy, warm_cs, iterations, tol_px, COVERAGE_BINS
    )
    if count < min_points:
        return None
    return EllipseFit(e, inliers, rms_px, count / len(xy), coverage)


def _trimmed_direct(
    xy: np.ndarray, tol_px: float, spread_px: float, min_points: int
) -> tuple[Ellipse | None, np.ndarray | None, int]:
    """(N, 2) pixels -> (a direct fit refitted on its own points within tolerance until they settle, those, count).

    Cheap and exact when outliers are few; with a dense lid line it may settle on a compromise, which the
    RANSAC hypotheses it then competes with outscore.
    """
    e = _fit_direct(xy, spread_px)
    if e is None:
        return None, None, 0
    fitted_on = _NONE
    for _ in range(SEED_ROUNDS):
        inliers, count, settled = kernels.sampson_inliers(
            e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad, xy, tol_px, fitted_on
        )
        if settled or count < max(min_points, 5):
            return e, inliers, count
        nxt = _fit_direct(xy, spread_px, inliers)
        if nxt is None:
            return e, inliers, count
        e, fitted_on = nxt, inliers
    inliers, count, _ = kernels.sampson_inliers(e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad, xy, tol_px, _NONE)
    return e, inliers, count


def _conic_of(e: Ellipse, mean: np.ndarray, scale: float) -> np.ndarray:
    """Ellipse in pixels, normalisation (centroid, scale) -> (6,) conic (A, B, C, D, E, F) in normalised units."""
    x0, y0 = (e.cx - mean[0]) / scale, (e.cy - mean[1]) / scale
    ia2, ib2 = (scale / e.semi_major) ** 2, (scale / e.semi_minor) ** 2
    c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
    a, b, cc = c * c * ia2 + s * s * ib2, 2 * c * s * (ia2 - ib2), s * s * ia2 + c * c * ib2
    q = np.array([a, b, cc, -2 * a * x0 - b * y0, -b * x0 - 2 * cc * y0, a * x0 * x0 + b * x0 * y0 + cc * y0 * y0 - 1])
    return q / (a + cc)  # A + C = 1, as the minimal solutions


def _tukey_weights(resid: np.ndarray, tol_px: float) -> np.ndarray:
    """(N,) residuals -> Tukey biweights, zero beyond tol_px.

    Points that graze the tolerance band (where a lid line crosses the limbus) pull far less than
    points on the curve, and the weights re-select inliers at every step.
    """
    w = resid * (1.0 / tol_px)
    w *= w
    np.subtract(1.0, w, out=w)
    np.maximum(w, 0.0, out=w)
    w *= w
    return w


def _weighted_step(jac: np.ndarray, resid: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """(P, N) Jacobian, (N,) residuals and weights -> the damped weighted normal-equation step; None when singular."""
    jw = jac * w
    return damped_step(jw @ jac.T, jw @ resid)


def _ellipse_step(e: Ellipse, xy: np.ndarray, tol_px: float, warm: Foot | None) -> tuple[Ellipse | None, Foot]:
    """One robust Gauss-Newton step on signed orthogonal distances over (cx, cy, a, b, theta)."""
    a, b, th = e.semi_major, e.semi_minor, e.angle_rad
    c, s = math.cos(th), math.sin(th)
    foot = _foot_points(e, xy, warm)
    uv, cs = foot
    on_curve = cs * np.array([[a], [b]])  # foot points in the ellipse frame
    # Unit outward normal at the foot point in the ellipse frame, (b cos t, a sin t) normalised.
    nrm = cs * np.array([[b], [a]])
    nn = np.hypot(nrm[0], nrm[1])
    np.maximum(nn, 1e-12, out=nn)
    nrm /= nn
    resid = np.einsum("ij,ij->j", nrm, uv - on_curve)
    w = _tukey_weights(resid, tol_px)
    if np.count_nonzero(w) < 5:
        return None, foot
    rot = np.array([[c, -s], [s, c]])
    # d(distance)/d(param) = -normal . dX/d(param) at the foot point (the foot-point shift is second order).
    jac = np.empty((5, len(resid)))
    np.matmul(rot, nrm, out=jac[0:2])  # normal in the image frame
    np.multiply(nrm, cs, out=jac[2:4])
    f = rot @ on_curve  # foot point relative to the centre, image frame
    np.multiply(jac[1], f[0], out=jac[4])
    jac[4] -= jac[0] * f[1]
    step = _weighted_step(jac, resid, w)
    if step is None:
        return None, foot
    # The Jacobian above is of -distance, so the step is added with the opposite sign.
    nxt = Ellipse(e.cx - step[0], e.cy - step[1], abs(a - step[2]), abs(b - step[3]), th - step[4])
    return nxt, foot


def _circle_step(e: Ellipse, xy: np.ndarray, tol_px: float, warm: Foot | None) -> tuple[Ellipse | None, Foot]:
    """One robust Gauss-Newton step on signed radial distances over (cx, cy, r); `warm` is unused."""
    dx, dy = xy[:, 0] - e.cx, xy[:, 1] - e.cy
    dist = np.maximum(np.hypot(dx, dy), 1e-12)
    resid = dist - e.semi_major
    w = _tukey_weights(resid, tol_px)
    if np.count_nonzero(w) < 3:
        return None, None
    jac = -np.stack([dx / dist, dy / dist, np.ones_like(dist)])
    step = _weighted_step(jac, resid, w)
    if step is None:
        return None, None
    return Ellipse.circle(e.cx + step[0], e.cy + step[1], abs(e.semi_major + step[2])), None


Foot = tuple[np.ndarray, np.ndarray]  # (2, N) points (u, v) in the ellipse frame; (2, N) (cos t, sin t) of the foot
_NO_WARM = np.empty((2, 0))
_ALL = _NONE = np.empty(0, dtype=bool)  # an empty mask: every point (kernels.centred_f32), no set (sampson_inliers)


def _distance_px(e: Ellipse, xy: np.ndarray, warm: Foot | None = None, iterations: int = FOOT_ITERATIONS) -> np.ndarray:
    """(N, 2) pixels -> (N,) orthogonal distances; `warm` foot points of a nearby ellipse save iterations."""
    uv, cs = _foot_points(e, xy, warm, iterations)
    cs *= np.array([[e.semi_major], [e.semi_minor]])
    uv = uv - cs
    return np.hypot(uv[0], uv[1])


def _foot_points(e: Ellipse, xy: np.ndarray, warm: Foot | None = None, iterations: int = FOOT_ITERATIONS) -> Foot:
    """(N, 2) pixels -> (2, N) points (u, v) in the ellipse frame and (2, N) (cos t, sin t) of their closest points.

    `iterations` from the default start; one from `warm`, the foot points of a nearby ellipse.
    """
    warm_cs, iterations = (_NO_WARM, iterations) if warm is None else (warm[1], 1)
    return kernels.foot_points(e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad, xy, warm_cs, iterations)


def _spread_px(xy: np.ndarray) -> float:
    """RMS distance of the points to their centroid, pixels: the scale that bounds a plausible fit."""
    return float(np.sqrt(((xy - xy.mean(axis=0)) ** 2).sum(axis=1).mean()))


def _plausible(e: Ellipse, spread_px: float) -> bool:
    """A finite ellipse, not a near-line and not absurdly large for the points it came from."""
    return (
        all(math.isfinite(v) for v in (e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad))
        and e.semi_minor >= MIN_SEMI_MINOR_PX
        and e.axis_ratio >= MIN_AXIS_RATIO
        and e.semi_major <= MAX_SIZE_IN_SPREADS * max(spread_px, 1e-9)
    )


def _normalise(xy: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre on the centroid and scale to unit RMS radius, so the 5-point conic systems are well conditioned."""
    centred = xy - xy.mean(axis=0)
    scale = max(float(np.sqrt((centred * centred).sum(axis=1).mean())), 1e-9)
    return centred / scale, scale


def _sample_subsets(n: int, k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, k) int indices in [0, n), distinct within each row."""
    if n <= 64:
        # Few points: with-replacement draws would repeat indices too often.
        return np.argsort(rng.random((count, n)), axis=1)[:, :k]
    idx = rng.integers(0, n, size=(count, k))
    # Repeats are rare (~k^2 / 2n of rows); redraw those rows.
    for _ in range(8):
        srt = np.sort(idx, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if not dup.any():
            break
        idx[dup] = rng.integers(0, n, size=(int(dup.sum()), k))
    return idx


def _msac_best(d2: np.ndarray, tol2: float) -> np.ndarray:
    """(N, K) squared distances -> (N,) inliers of the hypothesis with the least truncated squared cost (MSAC)."""
    # MSAC ranks hypotheses by how well inliers fit, not only how many: better than a count on noisy arcs.
    np.minimum(d2, np.float32(tol2), out=d2)
    best = int(np.argmin(d2.sum(axis=0)))
    return d2[:, best] < np.float32(tol2)


def _circles_through(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 3, 2) point triples -> (K, 2) circumcentres and (K,) radii; inf radius for collinear triples."""
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    ab, ac = b - a, c - a
    cross = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
    ab2, ac2 = (ab * ab).sum(axis=1), (ac * ac).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ux = (ac[:, 1] * ab2 - ab[:, 1] * ac2) / (2 * cross)
        uy = (ab[:, 0] * ac2 - ac[:, 0] * ab2) / (2 * cross)
    radii = np.hypot(ux, uy)
    radii[~np.isfinite(radii)] = np.inf
    return np.column_stack([ux, uy]) + a, radii
