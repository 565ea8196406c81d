"""A classical OpenCV iris/pupil detector, the reference the neural tracker is compared and timed against.

Pupil: glints removed by a grey opening, then the darkest compact blob over a ladder of thresholds above the
darkest level (eyelashes cut off by a binary opening), scored by darkness, fill and roundness; then the
innermost strong dark-to-bright step on 72 rays, robustly fitted. Iris: a Daugman integro-differential search
for the limbus circle around the pupil centre (mean intensity on arcs that avoid the upper lid, pupil
blanked, steepest outward jump over radius), refined by a per-ray edge search and a robust ellipse fit.
Works on a copy downscaled to at most WORK_SIDE px; results are in frame pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tracker.fit.geometry import fit_ellipse_robust
from tracker.preprocess import frame_to_model_affine
from tracker.structures import Ellipse

WORK_SIDE = 240  # longest side of the working image: keeps a frame at a few ms whatever the camera
PUPIL_THRESHOLD_STEPS = (6, 10, 15, 21, 28, 36, 45)  # grey levels above the darkest blurred level
PUPIL_MIN_RADIUS_FRAC = 0.02  # of the working image's shorter side
PUPIL_MAX_RADIUS_FRAC = 0.30
IRIS_TO_PUPIL = (1.35, 6.0)  # limbus radius / pupil radius search range
IRIS_MAX_RADIUS_FRAC = 0.75  # of the working image's shorter side
N_ANGLES = 72
RANSAC_ITERATIONS = 64
N_CENTRE = 5  # candidate limbus centres per axis around the pupil centre
# Limbus arcs: left and right sectors, plus the lower one; the upper lid hides the top of most irises.
_ARC_DEG = np.concatenate([np.arange(-40, 45, 5), np.arange(140, 225, 5), np.arange(60, 125, 5)])


class ClassicalDetector:
    """Image -> (iris, pupil) ellipses in frame pixels, None when not found; not thread-safe (reuses buffers)."""

    def __init__(self) -> None:
        self._kernels: dict[int, np.ndarray] = {}
        theta = np.deg2rad(_ARC_DEG.astype(np.float64))
        self._cos = np.cos(theta).astype(np.float32)
        self._sin = np.sin(theta).astype(np.float32)
        theta_all = np.linspace(0.0, 2 * np.pi, N_ANGLES, endpoint=False)
        self._cos_all = np.cos(theta_all).astype(np.float32)
        self._sin_all = np.sin(theta_all).astype(np.float32)

    def __call__(self, image: np.ndarray) -> tuple[Ellipse | None, Ellipse | None]:
        """(H, W) or (H, W, 3|4) uint8/uint16/float image -> (iris, pupil) in frame pixels."""
        gray = _to_gray_u8(image)
        h, w = gray.shape
        scale = min(1.0, WORK_SIDE / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        work = cv2.GaussianBlur(gray, (5, 5), 0)
        pupil = self._pupil(work)
        iris = self._iris(work, pupil)
        return _to_frame(iris, work.shape, (h, w)), _to_frame(pupil, work.shape, (h, w))

    # ----------------------------------------------------------------------------------------------- pupil

    def _kernel(self, size: int) -> np.ndarray:
        if size not in self._kernels:
            self._kernels[size] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        return self._kernels[size]

    def _pupil(self, work: np.ndarray) -> Ellipse | None:
        h, w = work.shape
        side = min(h, w)
        # Grey opening removes bright spots smaller than the kernel (corneal glints) without moving edges.
        glint = max(3, int(side * 0.06) | 1)
        opened = cv2.morphologyEx(work, cv2.MORPH_OPEN, self._kernel(glint))
        lash = max(3, int(side * 0.035) | 1)
        darkest = float(np.percentile(opened, 0.5))
        r_min, r_max = PUPIL_MIN_RADIUS_FRAC * side, PUPIL_MAX_RADIUS_FRAC * side
        best, best_score = None, -math.inf
        for step in PUPIL_THRESHOLD_STEPS:
            _, binary = cv2.threshold(opened, darkest + step, 255, cv2.THRESH_BINARY_INV)
            # Cut eyelashes and thin shadows that touch the pupil off the blob.
            binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, self._kernel(lash))
            contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            for contour in contours:
                area = cv2.contourArea(contour)
                if area < math.pi * r_min**2 or area > math.pi * r_max**2 or len(contour) < 6:
                    continue
                hull = cv2.convexHull(contour)
                if len(hull) < 5:
                    continue
                hull_area = cv2.contourArea(hull)
                (cx, cy), (a2, b2), ang = cv2.fitEllipse(hull)
                if min(a2, b2) < 2 * r_min or max(a2, b2) > 2 * r_max:
                    continue
                fill = area / max(hull_area, 1e-6)  # eyelashes and shadows are ragged
                roundness = min(a2, b2) / max(a2, b2)
                if fill < 0.6 or roundness < 0.4:
                    continue
                x, y, bw, bh = cv2.boundingRect(contour)
                if x <= 0 or y <= 0 or x + bw >= w or y + bh >= h:
                    fill *= 0.7  # a blob cut by the frame edge is more often a shadow than the pupil
                mean_level = cv2.mean(opened[y : y + bh, x : x + bw], binary[y : y + bh, x : x + bw])[0]
                score = fill * roundness - (mean_level - darkest) / 40.0 + 0.15 * math.log(area)
                if score > best_score:
                    best, best_score = hull, score
        if best is None:
            return None
        return self._refine_pupil(opened, best)

    def _refine_pupil(self, opened: np.ndarray, hull: np.ndarray) -> Ellipse:
        # The threshold blob sits inside the blurred edge; move each ray to the steepest dark-to-bright step.
        blob = Ellipse.from_cv2(cv2.fitEllipse(hull))
        xy, _ = _ray_edges(opened.astype(np.float32), blob, self._cos_all, self._sin_all, (0.5, 1.3), first=True)
        if len(xy) < 0.5 * len(self._cos_all):
            return blob
        return _robust_fit(xy, blob)

    # ------------------------------------------------------------------------------------------------ iris

    def _iris(self, work: np.ndarray, pupil: Ellipse | None) -> Ellipse | None:
        h, w = work.shape
        side = min(h, w)
        img = work.astype(np.float32)
        if pupil is not None:
            cx0, cy0 = pupil.cx, pupil.cy
            rp = math.sqrt(pupil.semi_major * pupil.semi_minor)
            r_lo, r_hi = IRIS_TO_PUPIL[0] * rp, min(IRIS_TO_PUPIL[1] * rp, IRIS_MAX_RADIUS_FRAC * side)
            reach = 0.25 * rp + 2
            # Blank the pupil so arcs from off-centre candidates do not lock onto the pupil edge.
            grown = Ellipse(
                pupil.cx, pupil.cy, pupil.semi_major * 1.15 + 2, pupil.semi_minor * 1.15 + 2, pupil.angle_rad
            )
            cv2.ellipse(img, grown.to_cv2(), float("nan"), -1)
        else:
            cx0, cy0 = w / 2, h / 2
            r_lo, r_hi = 0.15 * side, IRIS_MAX_RADIUS_FRAC * side
            reach = 0.15 * side
        if r_hi <= r_lo + 4:
            return None
        circle = self._daugman(img, cx0, cy0, r_lo, r_hi, reach)
        if circle is None:
            return None
        cx, cy, r = circle
        xy, _ = _ray_edges(img, Ellipse.circle(cx, cy, r), self._cos, self._sin, (0.88, 1.12))
        if len(xy) < 0.6 * len(self._cos):
            return Ellipse.circle(cx, cy, r)
        fitted = _robust_fit(xy, Ellipse.circle(cx, cy, r))
        # Only the sides and bottom are sampled, so an ellipse fit is loosely constrained: keep it only when it
        # stays near-circular and near the circle.
        if fitted.axis_ratio < 0.75 or math.hypot(fitted.cx - cx, fitted.cy - cy) > 0.1 * r:
            return Ellipse.circle(cx, cy, r)
        return fitted

    def _daugman(
        self, img: np.ndarray, cx0: float, cy0: float, r_lo: float, r_hi: float, reach: float
    ) -> tuple[float, float, float] | None:
        """Integro-differential search: (cx, cy, r) maximising the outward jump of the mean arc intensity."""
        radii = np.arange(r_lo, r_hi, 1.0, dtype=np.float32)
        offsets = np.linspace(-reach, reach, N_CENTRE, dtype=np.float32)
        ox, oy = (a.ravel() for a in np.meshgrid(offsets, offsets))
        # One remap for every candidate centre: rows = centre x angle, columns = radius.
        cos, sin = self._cos, self._sin
        map_x = (cx0 + ox[:, None, None] + radii[None, None, :] * cos[None, :, None]).reshape(-1, len(radii))
        map_y = (cy0 + oy[:, None, None] + radii[None, None, :] * sin[None, :, None]).reshape(-1, len(radii))
        polar = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
        polar = polar.reshape(len(ox), len(cos), len(radii))
        valid = ~np.isnan(polar)
        counts = valid.sum(axis=1)
        profile = np.where(valid, polar, 0.0).sum(axis=1) / np.maximum(counts, 1)
        profile = cv2.GaussianBlur(profile.astype(np.float32), (9, 1), 0)
        jump = np.full_like(profile, -np.inf)
        jump[:, 3:-3] = profile[:, 6:] - profile[:, :-6]
        # Arcs mostly outside the frame (or inside the pupil) say little; need half the samples.
        ok = (counts[:, 6:] >= len(cos) / 2) & (counts[:, :-6] >= len(cos) / 2)
        jump[:, 3:-3][~ok] = -np.inf
        i, j = np.unravel_index(int(np.argmax(jump)), jump.shape)
        if not np.isfinite(jump[i, j]) or jump[i, j] <= 2.0:
            return None
        return cx0 + float(ox[i]), cy0 + float(oy[i]), float(radii[j])


def _ray_edges(
    img: np.ndarray,
    guess: Ellipse,
    cos: np.ndarray,
    sin: np.ndarray,
    band: tuple[float, float],
    first: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Outward dark-to-bright step on rays from `guess`'s centre, from band[0] to band[1] times its radius.

    The strongest step on each ray, or with `first` the innermost one at least half as strong as the typical
    strongest (so a pupil blob merged with eyelashes still snaps to the pupil edge, not the lash line).

    Returns (M, 2) float32 edge points (frame of `img`) for the rays with a clear step, and the (len(cos),)
    boolean mask of those rays. NaN pixels in `img` (blanked regions) never produce an edge.
    """
    ca, sa = math.cos(guess.angle_rad), math.sin(guess.angle_rad)
    u, v = cos * ca + sin * sa, -cos * sa + sin * ca
    r0 = 1.0 / np.sqrt((u / guess.semi_major) ** 2 + (v / max(guess.semi_minor, 1e-6)) ** 2)
    n = max(8, int(math.ceil((band[1] - band[0]) * float(r0.max()))) + 1)
    rad = (r0[:, None] * np.linspace(band[0], band[1], n)[None, :]).astype(np.float32)
    map_x = (guess.cx + rad * cos[:, None]).astype(np.float32)
    map_y = (guess.cy + rad * sin[:, None]).astype(np.float32)
    polar = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
    polar = cv2.GaussianBlur(polar, (5, 1), 0)
    step = np.full_like(polar, -np.inf)
    step[:, 2:-2] = polar[:, 4:] - polar[:, :-4]
    step[np.isnan(step)] = -np.inf
    j = np.argmax(step, axis=1)
    rows = np.arange(len(j))
    best = step[rows, j]
    finite = np.isfinite(best)
    if not finite.any():
        return np.empty((0, 2), np.float32), finite
    typical = float(np.median(best[finite]))
    if first:
        # Innermost local maximum of the step that is strong enough.
        peak = (step[:, 1:-1] >= step[:, :-2]) & (step[:, 1:-1] >= step[:, 2:]) & (step[:, 1:-1] >= 0.5 * typical)
        has = peak.any(axis=1)
        j = np.where(has, np.argmax(peak, axis=1) + 1, j)
        best = step[rows, j]
    ok = finite & (best > max(3.0, 0.4 * typical))
    # Sub-pixel peak: parabola through the step at j-1, j, j+1.
    jl, jr = np.clip(j - 1, 0, step.shape[1] - 1), np.clip(j + 1, 0, step.shape[1] - 1)
    left, right = step[rows, jl], step[rows, jr]
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = left - 2 * best + right
        shift = np.where(np.isfinite(denom) & (denom < 0), 0.5 * (left - right) / denom, 0.0)
    r = rad[rows, j] + np.clip(shift, -0.5, 0.5)
    xy = np.stack([guess.cx + r * cos, guess.cy + r * sin], axis=1).astype(np.float32)
    return xy[ok], ok


def _robust_fit(xy: np.ndarray, fallback: Ellipse) -> Ellipse:
    """(N, 2) edge points -> ellipse from the same robust fitter (MSAC + geometric refit) the tracker uses.

    Eyelashes and lids that cover part of a boundary give a run of rays with wrong edges; a least-squares fit
    would be pulled towards them. `fallback` is returned when no plausible ellipse fits.
    """
    fit = fit_ellipse_robust(xy, inlier_tol_px=1.5, iterations=RANSAC_ITERATIONS)
    return fallback if fit is None else fit.ellipse


def _to_gray_u8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) array of any numeric dtype -> (H, W) uint8."""
    if image.ndim == 3:
        code = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2], -1)
        if code == -1:
            raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
        image = image[:, :, 0] if code is None else cv2.cvtColor(image, code)
    elif image.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    # 10/12/16-bit sensors and floats: stretch the used range to 8 bits.
    return cv2.normalize(image.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)


def _to_frame(e: Ellipse | None, work_hw: tuple[int, int], frame_hw: tuple[int, int]) -> Ellipse | None:
    """Working-image ellipse -> frame pixels, undoing the cv2.resize from `frame_hw` to `work_hw`."""
    if e is None or tuple(work_hw) == tuple(frame_hw):
        return e
    # Working image -> frame is a resize from work_hw to frame_hw: the map preprocess defines for frame -> model.
    return e.affine(frame_to_model_affine(work_hw, frame_hw))
