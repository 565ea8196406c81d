"""Model input definition and the typed structures it feeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracker.preprocess import Preprocessor, frame_to_model_affine, model_to_frame_xy, to_gray
from tracker.structures import Ellipse


def test_preprocessor_reuses_its_buffer_and_standardises():
    pre = Preprocessor((32, 48))
    a = pre(np.random.default_rng(0).integers(0, 255, (240, 320), dtype=np.uint8))
    b = pre(np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8))
    assert a is b and a.shape == (1, 32, 48, 1) and a.dtype == np.float32
    assert abs(float(b.mean())) < 1e-4 and abs(float(b.std()) - 1) < 1e-3


def test_bit_depth_and_gain_do_not_change_the_input():
    rng = np.random.default_rng(2)
    img8 = rng.integers(10, 200, (120, 160), dtype=np.uint8)
    img16 = img8.astype(np.uint16) * 257  # the same scene from a 16-bit sensor
    brighter = np.clip(img8.astype(np.int32) * 1.2, 0, 255).astype(np.uint8)
    x8 = Preprocessor((64, 64))(img8).copy()
    # 8-bit frames are resized in 8 bits (rounding costs < 0.05 standard deviations), 16-bit ones in 16.
    assert np.abs(Preprocessor((64, 64))(img16) - x8).max() < 0.05
    assert np.abs(Preprocessor((64, 64))(brighter) - x8).max() < 0.05


def test_gray_conversions():
    assert to_gray(np.zeros((4, 5, 3), np.uint8)).shape == (4, 5)
    assert to_gray(np.zeros((4, 5, 4), np.uint16)).dtype == np.uint16
    with pytest.raises(ValueError):
        to_gray(np.zeros((4, 5, 2), np.uint8))


def test_model_and_frame_coordinates_are_inverse():
    frame_hw, input_hw = (280, 320), (128, 128)
    m = frame_to_model_affine(frame_hw, input_hw)
    xy = np.array([[0.0, 0.0], [319.0, 279.0], [100.5, 37.25]])
    model_xy = xy @ m[:, :2].T + m[:, 2]
    assert np.allclose(model_to_frame_xy(model_xy, frame_hw, input_hw), xy)


@pytest.mark.parametrize(
    "m",
    [
        [[2.0, 0.3, 5.0], [-0.1, 0.7, -3.0]],  # a general affine
        [
            [1.2 * math.cos(2.5), -1.2 * math.sin(2.5), 40.0],
            [1.2 * math.sin(2.5), 1.2 * math.cos(2.5), -7.0],
        ],  # a similarity
    ],
)
def test_ellipse_normalises_and_maps_exactly(m):
    e = Ellipse(10, 20, 3, 5, 0.2)
    assert e.semi_major == 5 and e.semi_minor == 3 and math.isclose(e.angle_rad, 0.2 + math.pi / 2)
    assert Ellipse(0, 0, 5, 3, -0.1).angle_rad == pytest.approx(math.pi - 0.1)
    m = np.array(m)
    mapped = e.affine(m)
    # Points of the mapped ellipse are the mapped points of the original (same parametrisation up to phase).
    pts = e.points(720) @ m[:, :2].T + m[:, 2]
    c, s = math.cos(mapped.angle_rad), math.sin(mapped.angle_rad)
    u = (c * (pts[:, 0] - mapped.cx) + s * (pts[:, 1] - mapped.cy)) / mapped.semi_major
    v = (-s * (pts[:, 0] - mapped.cx) + c * (pts[:, 1] - mapped.cy)) / mapped.semi_minor
    assert np.allclose(u**2 + v**2, 1.0, atol=1e-9)
    box = e.to_cv2()
    assert Ellipse.from_cv2(box) == e


def test_colour_frames_become_their_red_channel_and_gray_ones_stay():
    # The red channel shows the pupil of a brown iris best (tracker/preprocess.py); NIR stored as BGR is unchanged.
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 200
    assert (to_gray(bgr) == 200).all()
    nir = np.dstack([np.arange(20, dtype=np.uint8).reshape(4, 5)] * 3)
    assert (to_gray(nir) == nir[..., 0]).all()
    with pytest.raises(ValueError):
        to_gray(np.zeros((4, 5, 3), np.int32))
