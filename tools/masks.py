"""Ground-truth limbus and pupil boundaries from segmentation masks, without the eyelid cut lines."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tracker.fit.geometry import EllipseFit, ellipse_distance_px, fit_ellipse_robust
from tracker.preprocess import frame_to_model_affine
from tracker.structures import Ellipse

CONVENTIONS = ("auto", "hole", "labels", "openeds", "rgb_classes")
OPENEDS_SCLERA = 1
OPENEDS_IRIS = 2
OPENEDS_PUPIL = 3
# "rgb_classes" (MOBIUS): the file's colours are RGB red sclera, green iris, blue pupil, black the rest.
# OpenCV decodes to BGR, so in the array the channel of each class is: sclera 2, iris 1, pupil 0.
RGB_CLASS_CHANNELS_BGR = ((OPENEDS_SCLERA, 2), (OPENEDS_IRIS, 1), (OPENEDS_PUPIL, 0))
RGB_CLASS_ON = 127  # a class colour has its channel above this and the other two at or below it
MASK_INLIER_TOL_PX = 1.0  # edge midpoints of a rasterised ellipse lie within 0.5 px of it; lid lines do not
MASK_RANSAC_ITERATIONS = 256  # labels are built offline: buy robustness with iterations
MIN_REGION_PX = 20  # an iris or pupil region smaller than this is annotation debris, not a boundary
MIN_BOUNDARY_POINTS = 12
# Pupil centre to limbus centre, in limbus semi-minor axes: 0.05 (median), 0.07 (90th percentile) and 0.12
# (99th) on IRISSEG-EP; fits beyond this hug lid lines instead of the limbus.
MAX_PUPIL_OFFSET = 0.25
# Pupil and limbus are near-circles on one plane, so their axis ratios agree: |gap| is 0.02 (median), 0.05
# (90th percentile) and 0.10 (99th) on IRISSEG-EP in the images' true shape (in the squashed 224x224 copies
# 0.03 / 0.08 / 0.13, which is why the check is made in the true shape); a limbus much flatter than the
# pupil hugs the lid lines.
MAX_AXIS_RATIO_GAP = 0.2
IRIS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class MaskBoundaries:
    """Limbus and pupil ellipses fitted to the visible boundaries of a mask, and the boundary points used."""

    iris: Ellipse | None  # limbus ellipse fitted to the visible limbus boundary only
    pupil: Ellipse | None
    iris_xy: np.ndarray  # (N, 2) float64 points on the visible limbus (fit inliers), pixel-centre coordinates
    pupil_xy: np.ndarray  # (M, 2) float64 points on the visible pupil boundary (fit inliers)


def detect_convention(mask: np.ndarray) -> str:
    """(H, W) integer mask -> "hole" (0/255 iris texture), "labels" (0/1/2) or "openeds" (0..3).

    An (H, W, 3) mask whose channels differ somewhere is "rgb_classes"; one with equal channels is read as
    its first channel, as before.
    """
    if _is_colour(mask):
        return "rgb_classes"
    mask = _as_2d(mask)
    top = int(mask.max()) if mask.size else 0
    if top > 3:
        return "hole"
    if top == 3:
        return "openeds"
    return "labels"


def split_mask(mask: np.ndarray, convention: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(H, W) mask, or (H, W, 3) BGR for "rgb_classes" -> (iris, pupil) (H, W) bool regions; iris excludes the pupil."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    mask, convention = _class_map(mask, convention)
    if convention == "labels":
        return mask == 1, mask == 2
    if convention == "openeds":
        return mask == OPENEDS_IRIS, mask == OPENEDS_PUPIL
    iris = mask > 127
    return iris, _pupil_from_hole(iris)


def boundaries_from_mask(
    mask: np.ndarray, convention: str = "auto", true_hw: tuple[int, int] | None = None
) -> MaskBoundaries:
    """(H, W) mask (or (H, W, 3) BGR colour classes) -> limbus and pupil ellipses fitted to boundary edge midpoints.

    Limbus candidates: edges of iris-or-pupil against everything else (against the sclera only, for
    "openeds" and "rgb_classes"); pupil candidates: edges of pupil against iris only. The robust fit drops
    the lid cuts. `true_hw`: the (H, W) the image really has when the mask was squashed to another size
    (the development set's 224x224 copies); the shape checks are made there, where a pupil is round.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    mask, convention = _class_map(mask, convention)
    iris, pupil = split_mask(mask, convention)
    # Holes that are not the pupil (glints, eyelash gaps) would put false limbus and pupil edges inside.
    eye = _fill_holes(iris | pupil)
    pupil = _fill_holes(pupil) & eye
    # With a sclera class the limbus is exactly the eye-vs-sclera edge: lids (eye vs skin) never enter.
    # That matters where lids cut the iris top and bottom: two curved lid lines plus one side of the
    # limbus fit an ellipse better than the two short visible sides do.
    outside = (mask == OPENEDS_SCLERA) & ~eye if convention == "openeds" else ~eye
    # Pupil edges only where the pupil meets iris: never against a lid, the outside or the image border.
    pupil_fit = _fit(edge_midpoints(pupil, iris & ~pupil)) if pupil.sum() >= MIN_REGION_PX else None
    # The resize the squash undoes (the runtime's one frame-to-model map); without a true size, the mask's own.
    to_true = frame_to_model_affine(mask.shape[:2], true_hw or mask.shape[:2])
    iris_fit = _fit_iris(edge_midpoints(eye, outside), pupil_fit, to_true) if eye.sum() >= MIN_REGION_PX else None
    return MaskBoundaries(
        iris=iris_fit[0] if iris_fit else None,
        pupil=pupil_fit[0] if pupil_fit else None,
        iris_xy=iris_fit[1] if iris_fit else np.empty((0, 2)),
        pupil_xy=pupil_fit[1] if pupil_fit else np.empty((0, 2)),
    )


def edge_midpoints(inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """(H, W) bool regions -> (N, 2) float64 midpoints (x, y) of 4-neighbour pixel pairs from inside to outside."""
    pts = []
    # Horizontal pairs (x, x+1) and vertical pairs (y, y+1), in both orders; the midpoint of two pixel
    # centres is where a boundary between them lies to within half a pixel.
    for a, b, dx, dy in (
        (inside[:, :-1], outside[:, 1:], 0.5, 0.0),
        (outside[:, :-1], inside[:, 1:], 0.5, 0.0),
        (inside[:-1, :], outside[1:, :], 0.0, 0.5),
        (outside[:-1, :], inside[1:, :], 0.0, 0.5),
    ):
        ys, xs = np.nonzero(a & b)
        pts.append(np.column_stack([xs + dx, ys + dy]))
    return np.concatenate(pts).astype(np.float64)


def visible_arcs(e: Ellipse, boundary_xy: np.ndarray, n: int = 360, tol_px: float = 1.5) -> list[np.ndarray]:
    """Runs of consecutive points of e.points(n) within tol_px of a boundary point: (k, 2) arrays; wraps around."""
    boundary_xy = np.asarray(boundary_xy, dtype=np.float64).reshape(-1, 2)
    samples = e.points(n)
    if len(boundary_xy) == 0:
        return []
    near = _nearest_distance_px(samples, boundary_xy) <= tol_px
    if near.all():
        return [samples]
    if not near.any():
        return []
    # Start just after a gap so that a run through index 0 stays one run.
    shift = int(np.argmin(near))
    near, samples = np.roll(near, -shift), np.roll(samples, -shift, axis=0)
    edges = np.diff(np.concatenate([[0], near.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [samples[a:b] for a, b in zip(starts, stops, strict=True)]


def rgb_class_labels(mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR colour-class mask (RGB red sclera, green iris, blue pupil) -> (H, W) uint8 0..3 map.

    Values as "openeds": 0 other, 1 sclera, 2 iris, 3 pupil; a pixel of any other colour is 0.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.shape[2] != 3:
        raise ValueError(f"convention 'rgb_classes' needs an (H, W, 3) colour mask, got shape {mask.shape}")
    on = mask > RGB_CLASS_ON
    pure = on.sum(axis=2) == 1  # white, yellow, ... are not a class
    labels = np.zeros(mask.shape[:2], np.uint8)
    for value, channel in RGB_CLASS_CHANNELS_BGR:
        labels[on[..., channel] & pure] = value
    return labels


# --- internals ---------------------------------------------------------------------------------------------


def _fit(xy: np.ndarray) -> tuple[Ellipse, np.ndarray] | None:
    """(N, 2) boundary candidates -> (ellipse, inlier points), None when too few or no plausible ellipse."""
    fit = _robust(xy)
    return (fit.ellipse, xy[fit.inlier_mask]) if fit else None


def _robust(xy: np.ndarray) -> EllipseFit | None:
    """fit_ellipse_robust with the settings for mask edges."""
    if len(xy) < MIN_BOUNDARY_POINTS:
        return None
    return fit_ellipse_robust(
        xy,
        inlier_tol_px=MASK_INLIER_TOL_PX,
        iterations=MASK_RANSAC_ITERATIONS,
        min_points=MIN_BOUNDARY_POINTS,
    )


def _fit_iris(
    xy: np.ndarray, pupil: tuple[Ellipse, np.ndarray] | None, to_true: np.ndarray
) -> tuple[Ellipse, np.ndarray] | None:
    """(N, 2) limbus candidates -> (ellipse, inlier points) consistent with the pupil, None if none is.

    When both lids cut the iris, the two curved lid lines and one side of the limbus can fit an ellipse
    better than the two short visible sides of the limbus do. Such a fit sits far off the pupil centre or
    is much flatter than the pupil; drop its inliers (mostly lid) and fit the rest again. `to_true`: 2x3
    map from mask pixels to the image's true geometry, where the checks are made.
    """
    remaining = xy
    true_pupil = pupil[0].affine(to_true) if pupil is not None else None
    for _ in range(IRIS_ATTEMPTS):
        fit = _robust(remaining)
        if fit is None:
            return None
        e = fit.ellipse
        if true_pupil is None or _pupil_consistent(e.affine(to_true), true_pupil):
            return e, xy[ellipse_distance_px(e, xy) <= MASK_INLIER_TOL_PX]
        remaining = remaining[~fit.inlier_mask]
    return None


def _pupil_consistent(iris: Ellipse, pupil: Ellipse) -> bool:
    """Whether the pupil is smaller, centred near the limbus centre and of a similar shape (same eye plane)."""
    offset_px = math.hypot(pupil.cx - iris.cx, pupil.cy - iris.cy)
    return (
        offset_px <= MAX_PUPIL_OFFSET * iris.semi_minor
        and pupil.semi_major < iris.semi_major
        and abs(pupil.axis_ratio - iris.axis_ratio) <= MAX_AXIS_RATIO_GAP
    )


def _class_map(mask: np.ndarray, convention: str) -> tuple[np.ndarray, str]:
    """Mask and convention (possibly "auto") -> (H, W) mask and the convention to read it by.

    A colour-class mask becomes its "openeds" label map (same classes, same limbus rule against the sclera).
    """
    if convention == "auto":
        convention = detect_convention(mask)
    if convention == "rgb_classes":
        return rgb_class_labels(mask), "openeds"
    return _as_2d(mask), convention


def _is_colour(mask: np.ndarray) -> bool:
    """Whether `mask` is (H, W, 3) with channels that differ somewhere (so not gray stored as colour)."""
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.shape[2] != 3:
        return False
    return bool(np.any(mask[..., 0] != mask[..., 1]) or np.any(mask[..., 0] != mask[..., 2]))


def _as_2d(mask: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) with equal channels -> (H, W)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    return mask


def _fill_holes(region: np.ndarray) -> np.ndarray:
    """(H, W) bool -> the region with every background component that does not reach the border filled."""
    padded = np.pad(region, 1).astype(np.uint8)
    flood = padded.copy()
    # Flood the outside from the padded corner; whatever background it cannot reach is a hole.
    cv2.floodFill(flood, None, (0, 0), 2)
    return (flood != 2)[1:-1, 1:-1]


def _largest_component(region: np.ndarray) -> np.ndarray:
    """(H, W) bool -> the largest 8-connected component (empty when the region is empty)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(region, dtype=bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _pupil_from_hole(iris: np.ndarray) -> np.ndarray:
    """(H, W) iris-texture mask -> the pupil: the largest gap inside the convex hull of the iris.

    A closed pupil hole is such a gap; when a lid crosses the pupil the hole opens to the outside, and
    the hull closes it again (together with the lid gap above it, whose edges are not pupil-vs-iris).
    """
    main = _largest_component(iris)
    if main.sum() < MIN_REGION_PX:
        return np.zeros_like(iris)
    ys, xs = np.nonzero(main)
    hull = cv2.convexHull(np.column_stack([xs, ys]).astype(np.int32))
    hull_mask = np.zeros(iris.shape, dtype=np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 1)
    gap = (hull_mask > 0) & ~iris
    # 4-connectivity keeps a gap from leaking through diagonal pixel corners of the iris ring.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(gap.astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros_like(iris)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < MIN_REGION_PX:
        return np.zeros_like(iris)
    return labels == best


def _nearest_distance_px(a: np.ndarray, b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(N, 2), (M, 2) -> (N,) distance from each point of `a` to its nearest point of `b`."""
    out = np.empty(len(a))
    for i in range(0, len(a), chunk):
        d = a[i : i + chunk, None, :] - b[None, :, :]
        out[i : i + chunk] = np.sqrt((d * d).sum(axis=-1).min(axis=1))
    return out
