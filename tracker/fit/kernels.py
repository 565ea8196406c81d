"""Compiled inner loops of the fitting stage: ridge points, ellipse distances, inlier summaries, RANSAC, refinement.

They are the per-frame work after inference. Written as NumPy they were ~150 small array calls per
frame (1.9 ms of CPU, all of it holding the GIL, so the inference thread waited on the fitting thread);
compiled with numba they run without the GIL (`nogil`) and in a fraction of the time. `cache=True`
keeps the machine code in ~/.cache/iristrack/numba (tracker.paths.cache_dir; a NUMBA_CACHE_DIR the user
set wins), so only the first run after an install compiles (seconds) and nothing is written beside the
installed package. The seed fit's and the inlier summaries' kernels (centred_f32, sampson_inliers,
inlier_summary, inlier_support) and the one-eye containment check replaced NumPy expressions of a few
microseconds each, called several times per boundary: together ~0.3 ms of a close-up frame's fit stage; the
limbus refit in the pupil's frame (limbus_in_pupil_frame) went from 0.14 ms to 0.01 ms where it runs.
Pure functions on arrays; the geometry module wraps them in typed results.
"""

from __future__ import annotations

import math
import os

from tracker.paths import cache_dir

# numba reads its cache location when it is first imported; keep its files with the project's other caches.
os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))

import numba  # noqa: E402
import numpy as np  # noqa: E402

_JIT = {"nogil": True, "error_model": "numpy"}


_DISPATCHERS = []  # every compiled kernel, so a process can stop caching them all (uncached)


def _compiled(fn):
    """numba.njit with the machine code cached on disk, or compiled per process where no cache is writable."""
    try:
        kernel = numba.njit(cache=True, **_JIT)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install, no home)
        kernel = numba.njit(cache=False, **_JIT)(fn)
    _DISPATCHERS.append(kernel)
    return kernel


def uncached() -> None:
    """Compile the kernels in this process only, writing no cache (after a write failed: a full disk, a limit)."""
    from numba.core.caching import NullCache

    for kernel in _DISPATCHERS:
        kernel._cache = NullCache()


@_compiled
def ridge_points(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 edge probability -> ((N, 2) float64 sub-pixel ridge centres xy, (N,) float64 peaks).

    Steger's method at each interior pixel >= threshold, in row-major order: the normal is the eigenvector
    of the most negative Hessian eigenvalue, and a second-order Taylor step along it gives the ridge centre,
    kept when it stays inside the pixel and the profile across the ridge is a maximum.
    """
    h, w = prob.shape
    # One scan collects the candidates (flat indices), so the outputs are sized by the edge length, not the
    # image, and the Hessian work visits only them (a second full scan cost as much as the counting one).
    at = np.empty(max(h - 2, 0) * max(w - 2, 0), dtype=np.int32)
    candidates = 0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            if prob[y, x] >= threshold:  # NaN never passes
                at[candidates] = y * w + x
                candidates += 1
    xy = np.empty((candidates, 2))
    peaks = np.empty(candidates)
    n = 0
    for i in range(candidates):
        y, x = divmod(at[i], w)
        c = float(prob[y, x])
        left, right = float(prob[y, x - 1]), float(prob[y, x + 1])
        up, down = float(prob[y - 1, x]), float(prob[y + 1, x])
        gx, gy = (right - left) * 0.5, (down - up) * 0.5
        hxx, hyy = right - 2 * c + left, down - 2 * c + up
        hxy = (
            float(prob[y + 1, x + 1])
            - float(prob[y + 1, x - 1])
            - float(prob[y - 1, x + 1])
            + float(prob[y - 1, x - 1])
        ) * 0.25
        lam = (hxx + hyy) * 0.5 - math.sqrt(((hxx - hyy) * 0.5) ** 2 + hxy * hxy)
        nx, ny = hxy, lam - hxx
        if abs(nx) + abs(ny) < 1e-9:
            nx, ny = lam - hyy, hxy
        norm = math.sqrt(nx * nx + ny * ny) + 1e-12  # not math.hypot: slower, and nothing here can overflow
        nx, ny = nx / norm, ny / norm
        curvature = hxx * nx * nx + 2 * hxy * nx * ny + hyy * ny * ny
        if not curvature < 0:
            continue
        t = -(gx * nx + gy * ny) / curvature
        if abs(t * nx) <= 0.5 and abs(t * ny) <= 0.5:
            xy[n, 0], xy[n, 1] = x + t * nx, y + t * ny
            peaks[n] = c
            n += 1
    return xy[:n], peaks[:n]


@_compiled
def sampson_px(cx: float, cy: float, a: float, b: float, angle_rad: float, xy: np.ndarray) -> np.ndarray:
    """(N, 2) pixels -> (N,) unsigned Sampson distance (first-order orthogonal distance) to the ellipse, pixels."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    ia2, ib2 = 1.0 / (a * a), 1.0 / (b * b)
    out = np.empty(len(xy))
    for i in range(len(xy)):
        dx, dy = xy[i, 0] - cx, xy[i, 1] - cy
        u, v = dx * c + dy * s, -dx * s + dy * c  # the point in the ellipse frame
        # Implicit function u^2/a^2 + v^2/b^2 - 1; its gradient is 2 (u/a^2, v/b^2).
        gu, gv = u * ia2, v * ib2
        out[i] = abs(u * gu + v * gv - 1.0) / (2.0 * math.sqrt(gu * gu + gv * gv) + 1e-300)
    return out


@_compiled
def centroid_spread(xy: np.ndarray) -> tuple[float, float, float]:
    """(N >= 1, 2) pixels -> (mean x, mean y, RMS distance to the mean); NaN spread when any point is not finite."""
    sx = sy = 0.0
    n = len(xy)
    for i in range(n):
        sx += xy[i, 0]
        sy += xy[i, 1]
    mx, my = sx / n, sy / n
    sq = 0.0
    for i in range(n):
        dx, dy = xy[i, 0] - mx, xy[i, 1] - my
        sq += dx * dx + dy * dy
    return mx, my, (math.sqrt(sq / n) if math.isfinite(sq) else math.nan)


@_compiled
def centred_f32(xy: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(N, 2) pixels, (N,) bool (or (0,) for all) -> ((M, 2) float32 kept points minus their mean, mean x, mean y).

    The input of cv2.fitEllipseDirect, centred so float32 stays precise; the mean is summed in order, as NumPy's.
    """
    every = len(keep) == 0
    sx = sy = 0.0
    m = 0
    for i in range(len(xy)):
        if every or keep[i]:
            sx += xy[i, 0]
            sy += xy[i, 1]
            m += 1
    out = np.empty((m, 2), dtype=np.float32)
    if m == 0:
        return out, math.nan, math.nan
    mx, my = sx / m, sy / m
    j = 0
    for i in range(len(xy)):
        if every or keep[i]:
            out[j, 0], out[j, 1] = xy[i, 0] - mx, xy[i, 1] - my
            j += 1
    return out, mx, my


@_compiled
def sampson_inliers(
    cx: float, cy: float, a: float, b: float, angle_rad: float, xy: np.ndarray, tol_px: float, previous: np.ndarray
) -> tuple[np.ndarray, int, bool]:
    """(N, 2) pixels -> ((N,) bool within tol_px Sampson distance, their count, whether they equal `previous`).

    `previous` is an (N,) bool inlier set of an earlier fit, or (0,) for none (never equal).
    """
    d = sampson_px(cx, cy, a, b, angle_rad, xy)
    inliers = d <= tol_px
    same = len(previous) == len(inliers)
    count = 0
    for i in range(len(inliers)):
        count += inliers[i]
        if same and inliers[i] != previous[i]:
            same = False
    return inliers, count, same


@_compiled
def _parametric_sector(c: float, s: float, a: float, b: float, dx: float, dy: float, bins: int) -> int:
    """The sector (of `bins` equal ones of the parametric angle, 0..2pi) of offset (dx, dy) from an ellipse's centre.

    (c, s) are the cosine and sine of the ellipse's angle, a and b its semi-axes (> 0).
    """
    # Parametric rather than polar angle, so equal bins are comparable pieces of a flat ellipse's perimeter.
    t = math.atan2((-s * dx + c * dy) / b, (c * dx + s * dy) / a)
    return int(math.floor((t % (2 * math.pi)) * (bins / (2 * math.pi)))) % bins


@_compiled
def inlier_summary(
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle_rad: float,
    xy: np.ndarray,
    warm_cs: np.ndarray,
    iterations: int,
    tol_px: float,
    bins: int,
) -> tuple[np.ndarray, int, float, float]:
    """(N, 2) pixels -> the points within tol_px orthogonal distance: ((N,) bool, count, RMS distance px, coverage).

    Distances as foot_points (from `warm_cs` when given); coverage as angular_coverage over those points.
    """
    uv, cs = foot_points(cx, cy, a, b, angle_rad, xy, warm_cs, iterations)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    pa, pb = max(a, 1e-9), max(b, 1e-9)  # the parametric angle's scales, as angular_coverage
    n = len(xy)
    inliers = np.empty(n, dtype=np.bool_)
    hit = np.zeros(bins, dtype=np.bool_)
    count = 0
    sq = 0.0
    for i in range(n):
        du, dv = uv[0, i] - cs[0, i] * a, uv[1, i] - cs[1, i] * b
        d = math.sqrt(du * du + dv * dv)
        inliers[i] = d <= tol_px
        if inliers[i]:
            count += 1
            sq += d * d
            hit[_parametric_sector(c, s, pa, pb, xy[i, 0] - cx, xy[i, 1] - cy, bins)] = True
    rms = math.sqrt(sq / count) if count else math.nan
    return inliers, count, rms, np.count_nonzero(hit) / bins


@_compiled
def foot_points(
    cx: float, cy: float, a: float, b: float, angle_rad: float, xy: np.ndarray, warm_cs: np.ndarray, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) pixels -> (2, N) points (u, v) in the ellipse frame and (2, N) (cos t, sin t) of their closest points.

    Chatfield's trig-free iteration on the first quadrant (the foot point lies in the point's quadrant): from
    (1/sqrt2, 1/sqrt2) it converges in 3 steps for points inside and outside alike (other starts can find a
    non-closest normal inside), and in one step from `warm_cs`, the foot points of an ellipse a step away
    ((2, N), or (2, 0) for none).
    """
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    a, b = max(a, 1e-9), max(b, 1e-9)
    k = a * a - b * b
    n = len(xy)
    uv = np.empty((2, n))
    cs = np.empty((2, n))
    warm = warm_cs.shape[1] > 0
    if warm and warm_cs.shape[1] != n:
        raise ValueError("warm_cs must hold one foot point per point")
    for i in range(n):
        dx, dy = xy[i, 0] - cx, xy[i, 1] - cy
        u, v = c * dx + s * dy, -s * dx + c * dy
        uv[0, i], uv[1, i] = u, v
        pu, pv = abs(u), abs(v)
        tu, tv = (abs(warm_cs[0, i]), abs(warm_cs[1, i])) if warm else (math.sqrt(0.5), math.sqrt(0.5))
        for _ in range(iterations):
            eu, ev = (k / a) * tu * tu * tu, (-k / b) * tv * tv * tv  # evolute point of the current estimate
            ru, rv = a * tu - eu, b * tv - ev
            qu, qv = pu - eu, pv - ev
            # sqrt, not math.hypot: its overflow care costs 2x here and pixel-scale values cannot overflow.
            scale = math.sqrt((ru * ru + rv * rv) / max(qu * qu + qv * qv, 1e-24))
            qu = min(max((qu * scale + eu) / a, 0.0), 1.0)
            qv = min(max((qv * scale + ev) / b, 0.0), 1.0)
            qn = max(math.sqrt(qu * qu + qv * qv), 1e-12)
            tu, tv = qu / qn, qv / qn
        cs[0, i], cs[1, i] = math.copysign(tu, u), math.copysign(tv, v)
    return uv, cs


@_compiled
def angular_coverage(cx: float, cy: float, a: float, b: float, angle_rad: float, xy: np.ndarray, bins: int) -> float:
    """Fraction of `bins` equal sectors of the ellipse's parametric angle (0..2pi) that hold at least one point."""
    if len(xy) == 0:
        return 0.0
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    a, b = max(a, 1e-9), max(b, 1e-9)
    hit = np.zeros(bins, dtype=np.bool_)
    for i in range(len(xy)):
        hit[_parametric_sector(c, s, a, b, xy[i, 0] - cx, xy[i, 1] - cy, bins)] = True
    return np.count_nonzero(hit) / bins


@_compiled
def inlier_support(
    xy: np.ndarray, peaks: np.ndarray, inliers: np.ndarray, cx: float, cy: float
) -> tuple[int, float, bool]:
    """(N, 2) points, (N,) peaks, (N,) inlier mask, a centre -> (inlier count, their mean peak, vertical support).

    The mean peak is 0 without inliers; vertical support: an inlier within 45 degrees of straight above or below.
    """
    count = 0
    total = 0.0
    vertical = False
    for i in range(len(xy)):
        if inliers[i]:
            count += 1
            total += peaks[i]
            vertical = vertical or abs(xy[i, 1] - cy) > abs(xy[i, 0] - cx)
    return count, (total / count if count else 0.0), vertical


@_compiled
def limbus_in_pupil_frame(
    xy: np.ndarray,
    peaks: np.ndarray,
    pcx: float,
    pcy: float,
    angle_rad: float,
    k: float,
    lo: float,
    hi: float,
    tol: float,
    min_points: int,
    max_offset: float,
    bins: int,
) -> tuple[bool, float, float, float, np.ndarray, float, float]:
    """(N, 2) pixels, (N,) peaks -> the limbus circle in the frame where the pupil is one (tracker.fit.eye).

    Points rotated by `angle_rad` about (pcx, pcy) and stretched by k across: the radius in [lo, hi] with most
    peak weight (bins of `tol`, summed over 3 neighbours), the points within 1.5 tol of it, their algebraic
    circle (its centre kept within max_offset of its radius, else the pupil's centre and their median radius),
    and its points within tol. Returns (found, centre u, centre v, radius, (N,) inliers, coverage in `bins`
    sectors, RMS distance); found is False with fewer than min_points at any step.
    """
    n = len(xy)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    u, v, r = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        dx, dy = xy[i, 0] - pcx, xy[i, 1] - pcy
        u[i], v[i] = dx * c + dy * s, (-dx * s + dy * c) * k
        r[i] = math.sqrt(u[i] * u[i] + v[i] * v[i])
    inliers = np.zeros(n, dtype=np.bool_)
    none = (False, 0.0, 0.0, 0.0, inliers, 0.0, 0.0)
    edges = np.arange(lo, hi + tol, tol)  # the radius bins, as np.histogram takes them
    counts = np.zeros(max(len(edges) - 1, 1))
    in_range = 0
    for i in range(n):
        if lo <= r[i] <= hi:
            in_range += 1
            j = np.searchsorted(edges, r[i], side="right") - 1  # edges[j] <= r < edges[j + 1]; the last bin is closed
            if j == len(edges) - 1 and r[i] == edges[-1]:
                j -= 1
            if 0 <= j < len(edges) - 1:
                counts[j] += peaks[i]
    if in_range < min_points or len(edges) < 2:
        return none
    best, best_j = -math.inf, 0
    for j in range(len(counts)):  # a limbus blurred over neighbouring radii still wins
        w = counts[j] + (counts[j - 1] if j > 0 else 0.0) + (counts[j + 1] if j + 1 < len(counts) else 0.0)
        if w > best:
            best, best_j = w, j
    radius = edges[best_j] + 0.5 * tol
    near = 0
    gram, rhs = np.zeros((3, 3)), np.zeros(3)
    for i in range(n):
        if abs(r[i] - radius) <= 1.5 * tol:
            near += 1
            row = (u[i], v[i], 1.0)
            for a in range(3):
                rhs[a] += row[a] * (u[i] * u[i] + v[i] * v[i])
                for b in range(3):
                    gram[a, b] += row[a] * row[b]
    if near < min_points:
        return none
    sol = np.empty(3)
    cu = cv = rr = 0.0
    solved = _solve(gram, rhs, sol)
    if solved:
        cu, cv = sol[0] / 2, sol[1] / 2
        r2 = sol[2] + cu * cu + cv * cv
        solved = r2 > 0 and math.isfinite(r2)
        rr = math.sqrt(r2) if solved else 0.0
    if not solved or math.sqrt(cu * cu + cv * cv) > max_offset * rr:
        near_r = np.empty(near)
        m = 0
        for i in range(n):
            if abs(r[i] - radius) <= 1.5 * tol:
                near_r[m] = r[i]
                m += 1
        cu, cv, rr = 0.0, 0.0, float(np.median(near_r))
    hit = np.zeros(bins, dtype=np.bool_)
    count, sq = 0, 0.0
    for i in range(n):
        du, dv = u[i] - cu, v[i] - cv
        d = abs(math.sqrt(du * du + dv * dv) - rr)
        if d <= tol:
            inliers[i] = True
            count += 1
            sq += d * d
            hit[int((math.atan2(dv, du) + math.pi) / (2 * math.pi) * bins) % bins] = True
    if count < min_points:
        return none
    return True, cu, cv, rr, inliers, np.count_nonzero(hit) / bins, math.sqrt(sq / count)


@_compiled
def ellipse_inside(
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle_rad: float,
    ocx: float,
    ocy: float,
    oa: float,
    ob: float,
    o_angle_rad: float,
    scale: float,
    n: int,
) -> bool:
    """Whether n points evenly spaced in one ellipse's parametric angle lie inside another grown by `scale`."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    oc, os_ = math.cos(o_angle_rad), math.sin(o_angle_rad)
    ia, ib = 1.0 / max(scale * oa, 1e-12), 1.0 / max(scale * ob, 1e-12)
    step = 2 * math.pi / n
    for k in range(n):
        t = k * step
        x, y = a * math.cos(t), b * math.sin(t)
        dx, dy = cx + c * x - s * y - ocx, cy + s * x + c * y - ocy
        u, v = (dx * oc + dy * os_) * ia, (-dx * os_ + dy * oc) * ib
        if not u * u + v * v <= 1.0:
            return False
    return True


@_compiled
def ring_step(
    gray: np.ndarray, cx: float, cy: float, a: float, b: float, angle_rad: float, band: float, n: int
) -> float:
    """Median of (gray just outside - gray just inside) an ellipse at n parametric angles; NaN if < n/4 in frame.

    The samples sit at (1 - band) and (1 + band) times the ellipse, at the nearest pixel.
    """
    h, w = gray.shape
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    steps = np.empty(n)
    m = 0
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = a * math.cos(t), b * math.sin(t)
        dx, dy = c * x - s * y, s * x + c * y
        xi, yi = int(round(cx + (1 - band) * dx)), int(round(cy + (1 - band) * dy))
        xo, yo = int(round(cx + (1 + band) * dx)), int(round(cy + (1 + band) * dy))
        if 0 <= xi < w and 0 <= yi < h and 0 <= xo < w and 0 <= yo < h:
            steps[m] = float(gray[yo, xo]) - float(gray[yi, xi])
            m += 1
    if m < n // 4:
        return math.nan
    return float(np.median(steps[:m]))


@_compiled
def image_edge_system(
    gray: np.ndarray,
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle_rad: float,
    seen: np.ndarray,
    threshold: float,
    n: int,
    reach_px: float,
    step_px: float,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The image's dark-to-bright edge along n outward normals of an ellipse, as a Gauss-Newton system.

    A normal is searched where `seen` (an (h, w) edge probability over the frame, sampled at the nearest of
    its pixels) reaches `threshold` at its foot, within +-reach_px in step_px samples (bilinear) that all lie
    in the frame. The step is the difference over +-1 px (two samples each side at 0.5 px), so sensor noise
    does not pick it; its peak is located with parabolic sub-sample precision. An edge point lies on its
    normal, so its signed distance to the ellipse is its offset along it, and its foot is the normal's: the
    robust Gauss-Newton system over (cx, cy, a, b, angle) needs no foot-point search. Steps under a quarter
    of the median step are texture and left out; the rest are Tukey-weighted to zero at reach_px.
    Returns (J^T W J (5, 5), J^T W r (5,), edge points kept, points within reach_px), J being the derivative
    of minus the distance (tracker.fit.geometry's convention).
    """
    h, w = gray.shape
    sh, sw = seen.shape
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    m = int(math.floor(reach_px / step_px))
    k_samples = 2 * m + 1
    lag = int(round(1.0 / step_px))  # samples in 1 px
    profile = np.empty(k_samples)
    jac = np.empty((n, 5))
    along = np.empty(n)
    heights = np.empty(n)
    found = 0
    for k in range(n):
        t = 2 * math.pi * k / n
        ct, st = math.cos(t), math.sin(t)
        lx, ly = a * ct, b * st
        fx, fy = c * lx - s * ly, s * lx + c * ly  # the foot relative to the centre, image frame
        # The outward normal is the gradient of the implicit form: (b cos t, a sin t) in the ellipse frame.
        nu, nv = b * ct, a * st
        norm = math.hypot(nu, nv)
        if norm == 0.0:
            continue
        nu, nv = nu / norm, nv / norm
        nx, ny = c * nu - s * nv, s * nu + c * nv
        mx = min(max(int(round((cx + fx + 0.5) * sw / w - 0.5)), 0), sw - 1)
        my = min(max(int(round((cy + fy + 0.5) * sh / h - 0.5)), 0), sh - 1)
        if not seen[my, mx] >= threshold:
            continue
        inside = True
        for i in range(k_samples):
            d = (i - m) * step_px
            x, y = cx + fx + nx * d, cy + fy + ny * d
            if not (0.0 <= x <= w - 1 and 0.0 <= y <= h - 1):
                inside = False
                break
            x0, y0 = min(int(x), w - 2), min(int(y), h - 2)
            ax, ay = x - x0, y - y0
            top = (1 - ax) * float(gray[y0, x0]) + ax * float(gray[y0, x0 + 1])
            bottom = (1 - ax) * float(gray[y0 + 1, x0]) + ax * float(gray[y0 + 1, x0 + 1])
            profile[i] = (1 - ay) * top + ay * bottom
        if not inside:
            continue
        best, best_j = -math.inf, -1
        for j in range(k_samples - 2 * lag):
            v = profile[j + 2 * lag] - profile[j]
            if v > best:
                best, best_j = v, j
        if best_j <= 0 or best_j >= k_samples - 2 * lag - 1 or not best > 0.0:
            continue
        y0v = profile[best_j - 1 + 2 * lag] - profile[best_j - 1]
        y2v = profile[best_j + 1 + 2 * lag] - profile[best_j + 1]
        denom = y0v - 2 * best + y2v
        sub = 0.5 * (y0v - y2v) / denom if denom < 0 else 0.0
        along[found] = (best_j + lag - m + sub) * step_px  # step j is centred on sample j + lag
        heights[found] = best
        jac[found, 0], jac[found, 1] = nx, ny
        jac[found, 2], jac[found, 3] = nu * ct, nv * st
        jac[found, 4] = ny * fx - nx * fy
        found += 1
    jtj = np.zeros((5, 5))
    jtr = np.zeros(5)
    kept = weighted = 0
    if found == 0:
        return jtj, jtr, kept, weighted
    floor = 0.25 * np.median(heights[:found])
    for i in range(found):
        if not heights[i] > floor:
            continue
        kept += 1
        r = along[i] / reach_px
        if abs(r) >= 1.0:
            continue
        weighted += 1
        wt = (1.0 - r * r) ** 2
        for p in range(5):
            jtr[p] += wt * jac[i, p] * along[i]
            for q in range(5):
                jtj[p, q] += wt * jac[i, p] * jac[i, q]
    return jtj, jtr, kept, weighted


# --- RANSAC over conics, in normalised coordinates (centroid at 0, unit RMS radius) ----------------------------
# A conic is (A, B, C, D, E, F): A x^2 + B xy + C y^2 + D x + E y + F = 0. Every ellipse has A + C != 0, so
# fixing A + C = 1 loses none and turns the homogeneous 6-unknown problem into a plain linear one:
# A (x^2 - y^2) + B xy + D x + E y + F = -y^2, with the unknowns (A, B, D, E, F).


@_compiled
def _design_row(x: float, y: float, row: np.ndarray) -> float:
    """Fill the 5 design coefficients of one point; return its right-hand side."""
    row[0], row[1], row[2], row[3], row[4] = x * x - y * y, x * y, x, y, 1.0
    return -(y * y)


@_compiled
def _solve(m: np.ndarray, rhs: np.ndarray, out: np.ndarray) -> bool:
    """Solve the small n x n system m z = rhs in place (Gaussian elimination, partial pivoting); False when singular."""
    n = len(m)
    for col in range(n):
        pivot = col
        for r in range(col + 1, n):
            if abs(m[r, col]) > abs(m[pivot, col]):
                pivot = r
        if not abs(m[pivot, col]) > 1e-300:
            return False
        if pivot != col:
            for k in range(n):
                m[col, k], m[pivot, k] = m[pivot, k], m[col, k]
            rhs[col], rhs[pivot] = rhs[pivot], rhs[col]
        for r in range(col + 1, n):
            f = m[r, col] / m[col, col]
            for k in range(col, n):
                m[r, k] -= f * m[col, k]
            rhs[r] -= f * rhs[col]
    for r in range(n - 1, -1, -1):
        acc = rhs[r]
        for k in range(r + 1, n):
            acc -= m[r, k] * out[k]
        out[r] = acc / m[r, r]
    return True


@_compiled
def damped_solve(jtj: np.ndarray, jtr: np.ndarray) -> np.ndarray:
    """A Gauss-Newton system (J^T W J (P, P), consumed; J^T W r (P,)) -> the damped step (P,); (0,) when singular.

    Light Levenberg damping (1e-6 of the trace): the angle of a near-circle (and short arcs) is otherwise
    unconstrained.
    """
    p = len(jtj)
    trace = 0.0
    for i in range(p):
        trace += jtj[i, i]
    for i in range(p):
        jtj[i, i] += 1e-6 * trace + 1e-12
    rhs = -jtr
    step = np.empty(p)
    if not _solve(jtj, rhs, step) or not np.isfinite(step).all():
        return np.empty(0)
    return step


@_compiled
def _to_conic(sol: np.ndarray, q: np.ndarray) -> bool:
    """(A, B, D, E, F) -> (A, B, C, D, E, F) with C = 1 - A in q; False when not finite."""
    q[0], q[1], q[2], q[3], q[4], q[5] = sol[0], sol[1], 1.0 - sol[0], sol[2], sol[3], sol[4]
    return bool(np.isfinite(q).all())


@_compiled
def plausible_conic(q: np.ndarray, min_axis_ratio: float, max_size: float) -> bool:
    """A real ellipse with semi-axes ratio >= min_axis_ratio and semi-major <= max_size (normalised units)."""
    a, b, c, d, e, f = q[0], q[1], q[2], q[3], q[4], q[5]
    det = 4 * a * c - b * b
    if not det > 0:
        return False
    f0 = f + 0.5 * (d * (b * e - 2 * c * d) + e * (b * d - 2 * a * e)) / det  # conic value at the centre
    sgn = 1.0 if a + c > 0 else -1.0
    half, root = 0.5 * (a + c) * sgn, math.hypot(0.5 * (a - c), 0.5 * b)
    lam_max, lam_min = half + root, half - root
    return f0 * sgn < 0 and lam_min >= min_axis_ratio**2 * lam_max and -f0 * sgn <= max_size**2 * lam_min


@_compiled
def _score(q: np.ndarray, p: np.ndarray, tol2: float, d2: np.ndarray) -> float:
    """Squared Sampson distances of the points (N, 2) to conic q into d2, truncated at tol2; their sum (MSAC cost)."""
    a, b, c, d, e, f = q[0], q[1], q[2], q[3], q[4], q[5]
    cost = 0.0
    for i in range(len(p)):
        x, y = p[i, 0], p[i, 1]
        val = a * x * x + b * x * y + c * y * y + d * x + e * y + f
        gx, gy = 2 * a * x + b * y + d, b * x + 2 * c * y + e
        dist2 = min(val * val / max(gx * gx + gy * gy, 1e-18), tol2)
        d2[i] = dist2
        cost += dist2
    return cost


@_compiled
def _refit_on_inliers(p: np.ndarray, d2: np.ndarray, tol2: float, q: np.ndarray) -> bool:
    """Algebraic least-squares conic on the points with d2 < tol2 into q (local optimisation); False if singular."""
    gram = np.zeros((5, 5))
    h = np.zeros(5)
    row = np.empty(5)
    for i in range(len(p)):
        if d2[i] < tol2:
            r = _design_row(p[i, 0], p[i, 1], row)
            for j in range(5):
                h[j] += row[j] * r
                for k in range(5):
                    gram[j, k] += row[j] * row[k]
    for j in range(5):
        gram[j, j] += 1e-9  # fewer than 5 inliers stays solvable (and is then rejected as a conic)
    sol = np.empty(5)
    return _solve(gram, h, sol) and _to_conic(sol, q)


@_compiled
def ransac_iterations(inlier_ratio: float, cap: int, miss_probability: float, floor: int) -> int:
    """5-point samples so that all are unclean with probability < miss_probability, in [floor, cap]."""
    clean = inlier_ratio**5
    if clean >= 1.0:
        need = 0
    elif clean <= 0.0:
        need = cap
    else:
        need = math.ceil(math.log(miss_probability) / math.log1p(-clean))
    return min(cap, max(floor, need))


@_compiled
def ransac_conic(
    p: np.ndarray,
    tol2: float,
    seed_conic: np.ndarray,
    seed_count: int,
    iterations: int,
    seed: int,
    miss_probability: float,
    min_iterations: int,
    batch: int,
    local_opt_rounds: int,
    min_axis_ratio: float,
    max_size: float,
) -> np.ndarray:
    """(N, 2) normalised points -> (N,) bool inliers of the least-MSAC-cost conic; all False when none is plausible.

    Hypotheses: `seed_conic` ((6,), or (0,) for none) and random 5-point conics, each also refitted on its own
    inliers `local_opt_rounds` times: minimal conics through noisy points are poor, so a dense lid line can
    outscore every one of them; a rough clean sample refitted becomes a good fit, a lid-hugging one stays poor.
    The sample count adapts to the best inlier ratio seen (checked every `batch` samples, at most `iterations`).
    """
    n = len(p)
    # numba's legacy generator is per thread and seeded here, so a fit is reproducible whichever thread runs it.
    np.random.seed(seed)  # noqa: NPY002
    d2 = np.empty(n)
    best = np.zeros(n, dtype=np.bool_)
    best_cost, best_count = np.inf, seed_count
    m, rhs, row, sol, q = np.empty((5, 5)), np.empty(5), np.empty(5), np.empty(5), np.empty(6)
    idx = np.empty(5, dtype=np.int64)
    found = False
    done, need = 0, ransac_iterations(seed_count / n, iterations, miss_probability, min_iterations)
    use_seed = len(seed_conic) == 6
    while done < need:
        count = min(need - done, batch) if done else min(need, batch)
        for s in range(count + (1 if use_seed else 0)):
            if use_seed and s == 0:
                q[:] = seed_conic
            else:
                for j in range(5):  # 5 distinct indices
                    while True:
                        idx[j] = np.random.randint(0, n)  # noqa: NPY002
                        if not (idx[:j] == idx[j]).any():
                            break
                for j in range(5):
                    rhs[j] = _design_row(p[idx[j], 0], p[idx[j], 1], row)
                    m[j, :] = row
                if not (_solve(m, rhs, sol) and _to_conic(sol, q)):
                    continue
            for round_ in range(local_opt_rounds + 1):
                if not plausible_conic(q, min_axis_ratio, max_size):
                    break
                cost = _score(q, p, tol2, d2)
                if cost < best_cost:
                    best_cost, found = cost, True
                    best[:] = d2 < tol2
                    best_count = max(best_count, int(np.count_nonzero(best)))
                if round_ < local_opt_rounds and not _refit_on_inliers(p, d2, tol2, q):
                    break
        use_seed = False
        done += count
        need = ransac_iterations(best_count / n, iterations, miss_probability, min_iterations)
    if not found:
        best[:] = False
    return best
