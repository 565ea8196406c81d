"""Boundaries from segmentation masks: synthetic masks of known ellipses, and the real development set."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import REPO
from tools.masks import (
    MaskBoundaries,
    boundaries_from_mask,
    detect_convention,
    rgb_class_labels,
    split_mask,
    visible_arcs,
)
from tracker.fit.geometry import ellipse_distance_px
from tracker.preprocess import frame_to_model_affine
from tracker.structures import Ellipse

CENTER_TOL_PX = 0.5  # fit to the edge midpoints of a rasterised ellipse
AXIS_TOL_PX = 0.5
ON_CURVE_TOL_PX = 1.0  # every reported boundary point lies this close to the true ellipse (none on a lid)
ARC_TOL_PX = 1.5  # visible_arcs tolerance used in the tests
SIDE_ARCS_AXIS_TOL_PX = 1.0  # axes from only the two side arcs left between both lids
SIDE_ARCS_ON_CURVE_TOL_PX = 1.5  # inlier band (1 px) around a fit that may be off by up to the axis budget
RGB_CIRCLE_TOL_PX = 1.0  # centre and radius of a circle fitted to a rasterised colour-class mask
PINNED_TOL = 1e-6  # a 2-D mask reads exactly as before the colour convention was added

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


TRUE_HW = (280, 320)  # a CASIA-Interval frame, stored squashed to 224x224 in the development set


def squashed_eye_under_flat_lids() -> np.ndarray:
    """224x224 "hole" mask of a round 110 px iris cut by lids along one flat ellipse, as stored from 320x280.

    The lid ellipse (125 x 85 px, axis ratio 0.68) is concentric with the pupil and longer in the mask than
    the two side arcs of the limbus left between the lids, so it has more edge points than the limbus.
    """
    iris, lids, pupil = (Ellipse(160.0, 140.0, r1, r2, 0.0) for r1, r2 in ((110.0, 110.0), (125.0, 85.0), (38.0, 38.0)))
    squash = frame_to_model_affine(TRUE_HW, (H, W))
    iris, lids, pupil = (e.affine(squash) for e in (iris, lids, pupil))
    return np.where(inside(iris) & inside(lids) & ~inside(pupil), 255, 0).astype(np.uint8)


def test_a_squashed_mask_is_checked_in_its_true_shape_so_flat_lid_lines_do_not_win_the_limbus():
    # Squashed to a square, the lid ellipse's axis ratio (0.78) is within 0.2 of the pupil's (0.875); in
    # the true 320x280 frame it is 0.68 against a round pupil: the lids, not the limbus (the development
    # set had 108 of 4,879 limbus truths on the lid lines this way).
    mask = squashed_eye_under_flat_lids()
    lid_fit = boundaries_from_mask(mask).iris
    true_fit = boundaries_from_mask(mask, true_hw=TRUE_HW).iris
    sx = TRUE_HW[1] / W
    to_true = frame_to_model_affine((H, W), TRUE_HW)
    lid_fit, true_fit = lid_fit.affine(to_true), true_fit.affine(to_true)
    assert lid_fit.axis_ratio < 0.75  # the old reading: the lid lines
    assert math.hypot(true_fit.cx - 160.0, true_fit.cy - 140.0) < CENTER_TOL_PX * sx
    assert abs(true_fit.semi_major - 110.0) < SIDE_ARCS_AXIS_TOL_PX * sx
    assert abs(true_fit.semi_minor - 110.0) < 2 * SIDE_ARCS_AXIS_TOL_PX * sx


# --- colour-class masks (MOBIUS: RGB red sclera, green iris, blue pupil; arrays in OpenCV's BGR order) --------

BGR = {"sclera": (0, 0, 255), "iris": (0, 255, 0), "pupil": (255, 0, 0)}  # RGB red, green, blue as BGR


def rgb_class_mask(iris: Ellipse, pupil: Ellipse, shape=(H, W), top_y: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 BGR mask: sclera around the iris, iris, pupil; black above the lid and outside the eye."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    visible = ys >= lid_y(xs, top_y)
    mask = np.zeros((*shape, 3), np.uint8)
    sclera = Ellipse(iris.cx, iris.cy, 2.0 * iris.semi_major, 1.2 * iris.semi_minor, 0.0)
    mask[inside(sclera, shape) & visible] = BGR["sclera"]
    mask[inside(iris, shape) & visible] = BGR["iris"]
    mask[inside(pupil, shape) & visible] = BGR["pupil"]
    return mask


@pytest.mark.parametrize(
    ("bgr", "label"),
    [
        ((0, 0, 255), 1),  # RGB red: sclera
        ((0, 255, 0), 2),  # RGB green: iris
        ((255, 0, 0), 3),  # RGB blue: pupil (would be sclera if the channels were read as RGB)
        ((0, 0, 0), 0),
        ((255, 255, 255), 0),  # not a class colour
        ((0, 255, 255), 0),  # RGB yellow: not a class colour
        ((10, 20, 200), 1),  # anti-aliased red still reads as red
    ],
)
def test_rgb_class_labels(bgr, label):
    mask = np.zeros((2, 3, 3), np.uint8)
    mask[1, 2] = bgr
    labels = rgb_class_labels(mask)
    assert labels.shape == (2, 3) and labels.dtype == np.uint8
    assert labels[1, 2] == label and not labels[0].any()


@pytest.mark.parametrize("top_y", [None, 85.0])
def test_rgb_class_mask_recovers_iris_and_pupil_circles(top_y):
    iris, pupil = Ellipse.circle(110.4, 117.6, 50.3), Ellipse.circle(113.7, 120.2, 19.6)
    mask = rgb_class_mask(iris, pupil, top_y=top_y)
    assert detect_convention(mask) == "rgb_classes"
    for found in (boundaries_from_mask(mask), boundaries_from_mask(mask, "rgb_classes")):
        for fit, truth in ((found.iris, iris), (found.pupil, pupil)):
            assert math.hypot(fit.cx - truth.cx, fit.cy - truth.cy) < RGB_CIRCLE_TOL_PX
            assert abs(fit.semi_major - truth.semi_major) < RGB_CIRCLE_TOL_PX
            assert abs(fit.semi_minor - truth.semi_minor) < RGB_CIRCLE_TOL_PX
        # Limbus points only against the sclera: none on the lid line, none on the black outside.
        assert ellipse_distance_px(iris, found.iris_xy).max() < ON_CURVE_TOL_PX


def test_rgb_class_mask_splits_into_iris_ring_and_pupil():
    iris, pupil = Ellipse.circle(110.4, 117.6, 50.3), Ellipse.circle(113.7, 120.2, 19.6)
    iris_region, pupil_region = split_mask(rgb_class_mask(iris, pupil))
    assert np.array_equal(pupil_region, inside(pupil))
    assert np.array_equal(iris_region, inside(iris) & ~inside(pupil))


def test_rgb_classes_needs_a_colour_mask():
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        split_mask(np.zeros((8, 8), np.uint8), "rgb_classes")


@pytest.mark.parametrize("convention", ["hole", "labels", "openeds"])
def test_gray_mask_stored_as_three_channels_reads_as_its_2d_mask(convention):
    mask = synthetic_mask(convention, 112.0)
    as_colour = np.repeat(mask[..., None], 3, axis=2)
    assert detect_convention(as_colour) == convention
    a, b = boundaries_from_mask(mask), boundaries_from_mask(as_colour)
    assert a.iris == b.iris and a.pupil == b.pupil
    assert np.array_equal(a.iris_xy, b.iris_xy) and np.array_equal(a.pupil_xy, b.pupil_xy)


# Results of boundaries_from_mask / split_mask on the 2-D synthetic masks, recorded before the "rgb_classes"
# convention was added: (iris cx, cy, semi_major, semi_minor, angle_rad), pupil the same, iris and pupil
# inlier counts, iris and pupil region pixels.
PINNED_2D = {
    ("hole", None): (
        (110.317804, 118.721505, 52.426746, 47.069045, 0.304274),
        (113.146011, 121.428092, 20.658352, 18.235487, 1.114957),
        (398, 154, 6570, 1183),
    ),
    ("hole", 112.0): (
        (110.348961, 118.46164, 52.439101, 47.369925, 0.314781),
        (113.13042, 121.418233, 20.687811, 18.215846, 1.113785),
        (195, 97, 3285, 897),
    ),
    ("labels", 112.0): (
        (110.348961, 118.46164, 52.439101, 47.369925, 0.314781),
        (113.13042, 121.418233, 20.687811, 18.215846, 1.113785),
        (195, 97, 3285, 910),
    ),
    ("openeds", 85.0): (
        (110.342857, 118.64021, 52.419817, 47.169081, 0.304351),
        (113.146011, 121.428092, 20.658352, 18.235487, 1.114957),
        (180, 154, 5696, 1183),
    ),
}


@pytest.mark.parametrize(("convention", "top_y"), list(PINNED_2D))
def test_2d_masks_read_as_before_the_colour_convention(convention, top_y):
    iris, pupil, counts = PINNED_2D[(convention, top_y)]
    mask = synthetic_mask(convention, top_y)
    for given in ("auto", convention):
        b = boundaries_from_mask(mask, given)
        iris_region, pupil_region = split_mask(mask, given)
        for fit, pinned in ((b.iris, iris), (b.pupil, pupil)):
            got = (fit.cx, fit.cy, fit.semi_major, fit.semi_minor, fit.angle_rad)
            assert got == pytest.approx(pinned, abs=PINNED_TOL)
        assert (len(b.iris_xy), len(b.pupil_xy), int(iris_region.sum()), int(pupil_region.sum())) == counts
