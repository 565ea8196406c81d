"""Boundaries from segmentation masks: synthetic masks of known ellipses, and the real development set."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import REPO
from tools.masks import MaskBoundaries, boundaries_from_mask, detect_convention, split_mask, visible_arcs
from tracker.fit.geometry import ellipse_distance_px
from tracker.structures import Ellipse

CENTER_TOL_PX = 0.5  # fit to the edge midpoints of a rasterised ellipse
AXIS_TOL_PX = 0.5
ON_CURVE_TOL_PX = 1.0  # every reported boundary point lies this close to the true ellipse (none on a lid)
ARC_TOL_PX = 1.5  # visible_arcs tolerance used in the tests
SIDE_ARCS_AXIS_TOL_PX = 1.0  # axes from only the two side arcs left between both lids
SIDE_ARCS_ON_CURVE_TOL_PX = 1.5  # inlier band (1 px) around a fit that may be off by up to the axis budget

H, W = 224, 224
IRIS = Ellipse(110.3, 118.7, 52.4, 47.1, 0.3)
PUPIL = Ellipse(113.2, 121.4, 20.6, 18.3, 1.1)


def inside(e: Ellipse, shape=(H, W)) -> np.ndarray:
    """(H, W) bool: pixel centres inside the ellipse."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
    u, v = c * (xs - e.cx) + s * (ys - e.cy), -s * (xs - e.cx) + c * (ys - e.cy)
    return (u / e.semi_major) ** 2 + (v / e.semi_minor) ** 2 <= 1


def lid_y(x: np.ndarray, top_y: float | None) -> np.ndarray:
    """Upper lid: a parabola through (110, top_y) opening downwards in the image; everything above is lid."""
    if top_y is None:
        return np.full(np.shape(x), -np.inf)
    return top_y + 0.004 * (np.asarray(x) - 110.0) ** 2


def synthetic_mask(convention: str, top_y: float | None) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W]
    visible = ys >= lid_y(xs, top_y)
    iris, pupil = inside(IRIS) & visible, inside(PUPIL) & visible
    if convention == "hole":
        return np.where(iris & ~pupil, 255, 0).astype(np.uint8)
    mask = np.zeros((H, W), np.uint8)
    if convention == "openeds":
        mask[inside(Ellipse(110, 118, 100, 40, 0.0)) & visible] = 1  # sclera
        mask[iris], mask[pupil] = 2, 3
    else:
        mask[iris], mask[pupil] = 1, 2
    return mask


# lid top y: None = no lid; 85 cuts the iris above the pupil; 112 crosses the pupil (open hole).
LID_CASES = {"no-lid": None, "lid": 85.0, "lid-over-pupil": 112.0}


@pytest.mark.parametrize("convention", ["hole", "labels", "openeds"])
@pytest.mark.parametrize("lid", list(LID_CASES))
def test_boundaries_of_known_ellipses(convention, lid):
    top_y = LID_CASES[lid]
    mask = synthetic_mask(convention, top_y)
    b = boundaries_from_mask(mask)
    assert isinstance(b, MaskBoundaries)
    for fit, truth, xy in ((b.iris, IRIS, b.iris_xy), (b.pupil, PUPIL, b.pupil_xy)):
        assert fit is not None
        assert math.hypot(fit.cx - truth.cx, fit.cy - truth.cy) < CENTER_TOL_PX
        assert abs(fit.semi_major - truth.semi_major) < AXIS_TOL_PX
        assert abs(fit.semi_minor - truth.semi_minor) < AXIS_TOL_PX
        assert xy.ndim == 2 and xy.shape[1] == 2 and len(xy) > 50
        # No lid-line point survives: all boundary points are on the true ellipse, below the lid.
        assert ellipse_distance_px(truth, xy).max() < ON_CURVE_TOL_PX
        assert (xy[:, 1] >= lid_y(xy[:, 0], top_y) - 1.0).all()


def test_lid_points_are_candidates_but_rejected():
    # The lid cuts the iris along a parabola; its edge points exist in the mask and must all be dropped.
    b = boundaries_from_mask(synthetic_mask("hole", 85.0))
    on_lid = np.abs(b.iris_xy[:, 1] - lid_y(b.iris_xy[:, 0], 85.0)) < 0.6
    off_ellipse = ellipse_distance_px(IRIS, b.iris_xy) > ON_CURVE_TOL_PX
    assert not (on_lid & off_ellipse).any()


def test_visible_arcs_cover_the_unoccluded_part_only():
    top_y = 85.0
    b = boundaries_from_mask(synthetic_mask("hole", top_y))
    arcs = visible_arcs(b.iris, b.iris_xy, n=360, tol_px=ARC_TOL_PX)
    assert len(arcs) == 1  # the lid hides one stretch: one visible arc, joined across the wrap
    pts = np.concatenate(arcs)
    assert (pts[:, 1] >= lid_y(pts[:, 0], top_y) - ARC_TOL_PX).all()
    # Every sample well below the lid is covered.
    samples = b.iris.points(360)
    clear = samples[:, 1] > lid_y(samples[:, 0], top_y) + 2.0
    covered = {tuple(np.round(p, 6)) for p in pts}
    assert all(tuple(np.round(p, 6)) in covered for p in samples[clear])


def test_visible_arcs_full_none_and_wrap():
    e = Ellipse(50, 50, 30, 20, 0.2)
    assert [len(a) for a in visible_arcs(e, e.points(720))] == [360]
    assert visible_arcs(e, np.empty((0, 2))) == []
    assert visible_arcs(e, np.array([[500.0, 500.0]])) == []
    # Boundary only around parametric angle 0: one arc that wraps through sample 0, in order.
    t = np.linspace(-0.5, 0.5, 200)
    arcs = visible_arcs(e, e.points_at(t), n=360)
    assert len(arcs) == 1
    assert np.allclose(arcs[0][len(arcs[0]) // 2], e.points_at(np.array([0.0]))[0], atol=1.0)
    # Two separate stretches give two arcs.
    two = np.concatenate([e.points_at(np.linspace(0.2, 1.0, 100)), e.points_at(np.linspace(3.0, 4.0, 100))])
    assert len(visible_arcs(e, two)) == 2


@pytest.mark.parametrize(
    ("convention", "values"),
    [("hole", {0, 255}), ("labels", {0, 1, 2}), ("openeds", {0, 1, 2, 3})],
)
def test_detect_convention(convention, values):
    mask = synthetic_mask(convention, None)
    assert set(np.unique(mask).tolist()) == values
    assert detect_convention(mask) == convention


def test_split_mask_open_pupil_hole():
    iris, pupil = split_mask(synthetic_mask("hole", 112.0))
    true_pupil = inside(PUPIL) & (np.mgrid[0:H, 0:W][0] >= lid_y(np.mgrid[0:H, 0:W][1], 112.0))
    assert not (iris & pupil).any()
    # The hull recovers the visible pupil except a sliver under the curved lid that lies outside the hull
    # (there, "pupil" and "outside" look the same in a hole mask); nothing outside the pupil is taken.
    assert (pupil & true_pupil).sum() >= 0.97 * true_pupil.sum()
    assert (pupil & ~inside(PUPIL)).sum() <= 0.01 * true_pupil.sum()


def test_empty_and_bad_masks():
    b = boundaries_from_mask(np.zeros((64, 64), np.uint8))
    assert b.iris is None and b.pupil is None and b.iris_xy.shape == (0, 2) and b.pupil_xy.shape == (0, 2)
    with pytest.raises(ValueError, match="convention"):
        split_mask(np.zeros((8, 8), np.uint8), "nope")
    with pytest.raises(ValueError, match="mask"):
        split_mask(np.zeros((2, 8, 8, 1), np.uint8))


# --- real masks (skipped without the development data) --------------------------------------------------

DATA_DIRS = [Path("/work/shared/data/irisseg-ep"), REPO.parent / "shared" / "data" / "irisseg-ep"]
DATA = next((d for d in DATA_DIRS if (d / "index.csv").is_file()), None)
REAL_SAMPLES = 100
IRIS_FOUND_RATE = 0.98
PUPIL_FOUND_RATE = 0.95


@pytest.mark.data
@pytest.mark.skipif(DATA is None, reason="development data ../shared/data/irisseg-ep not present")
def test_real_masks():
    with open(DATA / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = rows[:: max(1, len(rows) // REAL_SAMPLES)][:REAL_SAMPLES]
    iris_found = pupil_found = pupil_inside = 0
    for row in rows:
        mask = cv2.imread(str(DATA / row["mask"]), cv2.IMREAD_GRAYSCALE)
        assert mask is not None, row["mask"]
        b = boundaries_from_mask(mask)
        iris_found += b.iris is not None
        pupil_found += b.pupil is not None
        if b.iris is not None and b.pupil is not None:
            e = b.iris
            c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
            dx, dy = b.pupil.cx - e.cx, b.pupil.cy - e.cy
            u, v = (c * dx + s * dy) / e.semi_major, (-s * dx + c * dy) / e.semi_minor
            pupil_inside += u * u + v * v < 1
            # The pupil lies inside the iris, and the fits keep most of their visible boundary.
            assert len(b.iris_xy) > 100 and len(b.pupil_xy) > 50
    assert iris_found / len(rows) >= IRIS_FOUND_RATE
    assert pupil_found / len(rows) >= PUPIL_FOUND_RATE
    assert pupil_inside == min(iris_found, pupil_found) or pupil_inside / len(rows) >= PUPIL_FOUND_RATE


@pytest.mark.parametrize("convention", ["hole", "labels", "openeds"])
def test_limbus_when_both_lids_cut_the_iris(convention):
    # Both lids cut the iris, leaving two short side arcs of limbus; two curved lid lines plus one side fit
    # an ellipse better than the two sides. With a sclera class only iris-vs-sclera edges are candidates;
    # without one, a fit far off the pupil centre is rejected and its (lid) inliers dropped.
    ys, xs = np.mgrid[0:H, 0:W]
    opening = (ys >= 84 + 0.006 * (xs - 110.0) ** 2) & (ys <= 154 - 0.005 * (xs - 110.0) ** 2)
    iris, pupil = inside(IRIS) & opening, inside(PUPIL) & opening
    mask = np.zeros((H, W), np.uint8)
    if convention == "hole":
        mask[iris & ~pupil] = 255
    elif convention == "labels":
        mask[iris], mask[pupil] = 1, 2
    else:
        mask[opening], mask[iris], mask[pupil] = 1, 2, 3
    b = boundaries_from_mask(mask)
    assert math.hypot(b.iris.cx - IRIS.cx, b.iris.cy - IRIS.cy) < CENTER_TOL_PX
    # Two short side arcs pin the centre and the horizontal extent; the vertical axis less so.
    assert abs(b.iris.semi_major - IRIS.semi_major) < SIDE_ARCS_AXIS_TOL_PX
    assert abs(b.iris.semi_minor - IRIS.semi_minor) < SIDE_ARCS_AXIS_TOL_PX
    assert ellipse_distance_px(IRIS, b.iris_xy).max() < SIDE_ARCS_ON_CURVE_TOL_PX
