import csv
import time

import cv2
import numpy as np
import pytest

from tests.paths import SHARED_DATA
from tools.baseline import ClassicalDetector
from tools.evaluation import boundary_error_px, center_error_px, evaluate, format_table, load_eval_set
from tracker.structures import Ellipse

CENTER_TOL_PX = 1.0
BOUNDARY_TOL_PX = 1.0
DATA_DIR = SHARED_DATA / "irisseg-ep"

IRIS = Ellipse.circle(165, 118, 62)
PUPIL = Ellipse(160, 121, 24, 22, 0.3)


def synthetic_eye(noise: float = 4.0, seed: int = 0) -> np.ndarray:
    """320x240 gray: light skin/sclera, mid-gray iris, dark pupil with a bright glint on its rim, noise."""
    img = np.full((240, 320), 200, np.uint8)
    cv2.ellipse(img, IRIS.to_cv2(), 115, -1, cv2.LINE_AA)
    cv2.ellipse(img, PUPIL.to_cv2(), 25, -1, cv2.LINE_AA)
    cv2.circle(img, (170, 112), 5, 255, -1, cv2.LINE_AA)  # glint inside the pupil
    cv2.circle(img, (183, 121), 4, 255, -1, cv2.LINE_AA)  # glint on the pupil edge
    img = cv2.GaussianBlur(img, (5, 5), 1.2)
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)


def _check(iris, pupil, scale: float = 1.0):
    assert pupil is not None and iris is not None
    s_iris, s_pupil = IRIS.scaled(scale, scale), PUPIL.scaled(scale, scale)
    assert center_error_px(s_pupil, pupil) < CENTER_TOL_PX * scale
    assert boundary_error_px(s_pupil, pupil) < BOUNDARY_TOL_PX * scale
    assert center_error_px(s_iris, iris) < 2 * CENTER_TOL_PX * scale
    assert boundary_error_px(s_iris, iris) < BOUNDARY_TOL_PX * scale


def test_finds_pupil_and_iris_on_a_synthetic_eye():
    _check(*ClassicalDetector()(synthetic_eye()))


def test_accepts_bgr_and_uint16():
    image = synthetic_eye()
    detector = ClassicalDetector()
    _check(*detector(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)))
    _check(*detector(image.astype(np.uint16) * 16))  # a 12-bit sensor


def test_large_frames_are_reported_in_frame_pixels():
    big = cv2.resize(synthetic_eye(), (640, 480), interpolation=cv2.INTER_LINEAR)
    _check(*ClassicalDetector()(big), scale=2.0)


def test_working_image_maps_back_with_the_preprocess_resize_mapping(monkeypatch):
    # One definition of the resize mapping: working image -> frame is tracker.preprocess's map of a resize.
    import tools.baseline
    from tracker.preprocess import frame_to_model_affine

    calls = []
    monkeypatch.setattr(
        tools.baseline, "frame_to_model_affine", lambda a, b: calls.append((a, b)) or frame_to_model_affine(a, b)
    )
    big = cv2.resize(synthetic_eye(), (640, 480), interpolation=cv2.INTER_LINEAR)
    _check(*ClassicalDetector()(big), scale=2.0)
    assert set(calls) == {((180, 240), (480, 640))}  # WORK_SIDE 240 on the longest side
    calls.clear()
    small = cv2.resize(synthetic_eye(), (240, 180), interpolation=cv2.INTER_AREA)  # already the working size
    _check(*ClassicalDetector()(small), scale=0.75)
    assert calls == []


def test_blank_frame_finds_nothing():
    iris, pupil = ClassicalDetector()(np.full((240, 320), 180, np.uint8))
    assert pupil is None


def test_same_frame_same_answer():
    detector, image = ClassicalDetector(), synthetic_eye()
    assert detector(image) == detector(image)


def test_rejects_non_image_shapes():
    with pytest.raises(ValueError, match="expected"):
        ClassicalDetector()(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.data
@pytest.mark.skipif(not (DATA_DIR / "index.csv").is_file(), reason="development data not in ../shared/data")
def test_baseline_on_the_development_set():
    # Every 48th subject: ~100 images of ~10 subjects from both datasets, at the original resolution.
    with (DATA_DIR / "index.csv").open(newline="") as f:
        subjects = sorted({row["subject"] for row in csv.DictReader(f)})
    items = list(load_eval_set(DATA_DIR, split_subjects=set(subjects[::48])))
    detector = ClassicalDetector()
    times = []

    def timed(image):
        t0 = time.perf_counter()
        out = detector(image)
        times.append(time.perf_counter() - t0)
        return out

    result = evaluate(items, timed)
    print()
    print(format_table({"classical": result}))
    print(f"{result['images']} images, {1e3 * float(np.median(times)):.2f} ms/frame median")
    assert result["images"] >= 50
    assert result["pupil"]["detected"] > 0 and result["iris"]["detected"] > 0
