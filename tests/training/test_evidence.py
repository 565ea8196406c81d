"""Ellipse-only ground truth becomes edge labels only where the image shows the boundary (no TensorFlow)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from tracker.structures import Ellipse
from training.evidence import clean_evidence, evidenced_arcs

IRIS = Ellipse(80.0, 60.0, 30.0, 28.0, math.radians(10))


def _eye(lid_y: float | None = None, iris_gray: int = 90, sclera_gray: int = 200) -> np.ndarray:
    """(120, 160) uint8: sclera, a darker iris disc, and optionally skin (as bright as the sclera) above lid_y."""
    img = np.full((120, 160), sclera_gray, np.uint8)
    cv2.ellipse(img, ((IRIS.cx, IRIS.cy), (2 * IRIS.semi_major, 2 * IRIS.semi_minor), 10.0), iris_gray, -1)
    if lid_y is not None:
        img[: int(lid_y)] = 170  # lid skin hides the top of the iris
    return cv2.GaussianBlur(img, (0, 0), 0.7)


def _arc_share(arcs: list[np.ndarray], n: int = 360) -> float:
    return sum(len(a) for a in arcs) / n


def test_a_fully_visible_boundary_is_labelled_all_round():
    arcs = evidenced_arcs(_eye(), IRIS)
    assert len(arcs) == 1 and _arc_share(arcs) == 1.0


def test_the_part_under_a_lid_is_not_labelled_and_the_rest_is():
    lid_y = IRIS.cy - 15  # hides the top ~third of the limbus
    arcs = evidenced_arcs(_eye(lid_y), IRIS)
    points = np.concatenate(arcs)
    assert 0.55 < _arc_share(arcs) < 0.9
    # Nothing labelled on the skin above the lid, but for the step offset (~2 px) where the lid crosses the limbus.
    assert points[:, 1].min() >= lid_y - 3.5


def test_no_step_no_label():
    # A pupil as dark as its iris (a dark-brown iris in visible light) gets no label rather than a guess.
    assert evidenced_arcs(_eye(iris_gray=200), IRIS) == []


def test_the_wrong_polarity_is_not_evidence():
    # A bright disc on a dark background steps the other way: not an iris or pupil boundary.
    assert evidenced_arcs(_eye(iris_gray=200, sclera_gray=60), IRIS) == []


def test_cleaning_closes_short_gaps_and_drops_short_runs():
    flags = np.zeros(100, bool)
    flags[10:60] = True
    flags[30:32] = False  # a glint: closed
    flags[80:83] = True  # a lid edge crossing: dropped
    out = clean_evidence(flags)
    assert out[10:60].all() and not out[80:83].any() and not out[:10].any()
    wrap = np.zeros(100, bool)
    wrap[:20] = wrap[90:] = True  # a run through index 0 is one run of 30
    assert clean_evidence(wrap).sum() == 30
