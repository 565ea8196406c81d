"""Quality measures on rendered eyes with known truth: each moves the right way, monotonically, and the default gates
reject the degraded frames and pass the clean ones. Profiles load from TOML and JSON and refuse bad files."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from tools.synthetic import random_eye_params, render_eye
from tracker.errors import TrackerError
from tracker.quality import (
    MEASURE_NAMES,
    QualityMeasures,
    default_profile,
    load_profile,
    measure,
    profile_from_dict,
    quality_of,
)
from tracker.structures import Boundary, FrameResult, Status

SIZE_WH = (640, 480)


def clean_params(**changes):
    """A fully open, frontal, sharp, centred eye with an iris of 100 px radius: every default gate passes."""
    base = random_eye_params(np.random.default_rng(11), SIZE_WH)
    params = replace(
        base,
        iris_cx=320.0, iris_cy=240.0, iris_radius_px=100.0, tilt_x=0.15, tilt_y=0.0,
        pupil_ratio=0.4, pupil_offset_x=0.02, pupil_offset_y=0.0,
        lid_cx=320.0, lid_cy=250.0, lid_tilt_rad=0.0, lid_half_width_px=260.0,
        upper_lid_height_px=150.0, lower_lid_height_px=135.0, openness=1.0,
        n_lashes=0, glints=(), blur_sigma_px=0.0, noise_sigma=0.01,
        pupil_gray=0.05, iris_gray=0.35, sclera_gray=0.75, iris_contrast=0.25, gain=1.0, gamma=1.0,
        illum_gradient_x=0.0, illum_gradient_y=0.0, black_level=0.02,
    )  # fmt: skip
    return replace(params, **changes)


def truth_result(truth, trusted=True) -> FrameResult:
    return FrameResult("eye", 0, None, Boundary(truth.iris, 1.0, trusted), Boundary(truth.pupil, 1.0, trusted),
                       Status.OK, 0.0)  # fmt: skip


def measured(params, post=None):
    image, truth = render_eye(params, SIZE_WH)
    if post is not None:
        image = post(image)
    return measure(image, truth_result(truth)), image, truth


def motion(length):
    def blur(image):
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0 / length  # horizontal camera shake
        return cv2.filter2D(image, -1, k, borderType=cv2.BORDER_REFLECT)

    return blur


def low_contrast(scale):
    return lambda image: np.clip(128 + (image.astype(np.float32) - 128) * scale, 0, 255).astype(np.uint8)


def strictly(values, increasing):
    pairs = list(zip(values, values[1:], strict=False))
    return all((b > a) if increasing else (b < a) for a, b in pairs)


def test_a_clean_eye_passes_every_default_gate():
    m, image, truth = measured(clean_params())
    report = quality_of(image, truth_result(truth))
    assert report.passed, (report.failed, m)
    assert report.score > 0
    assert 85 <= m.usable_iris_area_pct <= 100
    assert m.iris_radius_px == pytest.approx(100.0, rel=0.01)
    assert m.pupil_dilation_pct == pytest.approx(40.0, abs=1.0)


# (degradation, the measure that must move, direction as the degradation grows, degraded frames, gate that must fail)
DEGRADATIONS = [
    ("defocus", "sharpness", False, [dict(blur_sigma_px=s) for s in (0.0, 0.8, 1.6, 2.4, 3.2)], "sharpness"),
    ("lids closing", "usable_iris_area_pct", False, [dict(openness=o) for o in (1.0, 0.75, 0.6, 0.5, 0.42)],
     "usable_iris_area_pct"),
    ("dilation", "pupil_dilation_pct", True, [dict(pupil_ratio=r) for r in (0.4, 0.5, 0.6, 0.7, 0.78)],
     "pupil_dilation_pct"),
    ("gaze", "gaze_angle_deg", True, [dict(tilt_x=t) for t in (0.15, 0.4, 0.6, 0.75, 0.85)], "gaze_angle_deg"),
    ("size", "iris_radius_px", False, [dict(iris_radius_px=r, lid_half_width_px=2.6 * r, upper_lid_height_px=1.5 * r,
     lower_lid_height_px=1.35 * r) for r in (100, 70, 45, 30, 20)], "iris_radius_px"),
    ("limbus contrast", "iris_sclera_contrast", False, [dict(sclera_gray=g) for g in (0.75, 0.6, 0.5, 0.42, 0.37)],
     "iris_sclera_contrast"),
    ("pupil contrast", "iris_pupil_contrast", False, [dict(pupil_gray=g) for g in (0.05, 0.12, 0.2, 0.26, 0.3)],
     "iris_pupil_contrast"),
    ("decentred pupil", "concentricity_pct", False, [dict(pupil_offset_x=d) for d in (0.02, 0.06, 0.1, 0.14, 0.2)],
     "concentricity_pct"),
    ("iris near the edge", "margin_adequacy_pct", False, [dict(iris_cx=x, lid_cx=x) for x in (320, 150, 140, 125, 110)],
     "margin_adequacy_pct"),
]  # fmt: skip


@pytest.mark.parametrize("name, key, increasing, steps, gate", DEGRADATIONS, ids=[d[0] for d in DEGRADATIONS])
def test_each_measure_moves_monotonically_with_its_degradation_and_its_gate_rejects_the_worst(
    name, key, increasing, steps, gate
):
    values, last = [], None
    for change in steps:
        m, image, truth = measured(clean_params(**change))
        values.append(getattr(m, key))
        last = quality_of(image, truth_result(truth))
    assert strictly(values, increasing), f"{name}: {key} = {values}"
    _, image, truth = measured(clean_params(**steps[0]))
    first = quality_of(image, truth_result(truth))
    assert first.passed, (name, first.failed)
    assert not last.passed and gate in last.failed, (name, last.failed, values)


def test_motion_blur_grows_with_the_blur_length_and_the_gate_rejects_a_long_one():
    values = [measured(clean_params(), motion(n))[0].motion_blur for n in (1, 5, 9, 15, 25)]
    assert strictly(values, increasing=True), values
    _, image, truth = measured(clean_params(), motion(25))
    report = quality_of(image, truth_result(truth))
    assert not report.passed and "motion_blur" in report.failed


def test_grey_scale_utilisation_falls_as_the_frame_loses_contrast():
    values = [measured(clean_params(), low_contrast(s))[0].grey_scale_bits for s in (1.0, 0.5, 0.25, 0.12, 0.05)]
    assert strictly(values, increasing=False), values
    _, image, truth = measured(clean_params(), low_contrast(0.05))
    assert "grey_scale_bits" in quality_of(image, truth_result(truth)).failed


def test_pupil_circularity_follows_the_pupil_shape():
    _, image, truth = measured(clean_params())
    values = []
    for ratio in (1.0, 0.8, 0.6, 0.45):
        p = truth.pupil
        flat = replace(truth, pupil=type(p)(p.cx, p.cy, p.semi_major, p.semi_major * ratio, 0.0))
        values.append(measure(image, truth_result(flat)).pupil_circularity)
    assert strictly(values, increasing=False) and values[0] == pytest.approx(100.0)
    assert "pupil_circularity" in quality_of(image, truth_result(flat)).failed


def test_missing_boundaries_and_untrusted_ones_fail_with_named_gates():
    _, image, truth = measured(clean_params())
    untrusted = quality_of(image, truth_result(truth, trusted=False))
    assert not untrusted.passed and untrusted.failed == ("trusted",)
    blink = FrameResult("eye", 0, None, None, None, Status.NO_IRIS, 0.0)
    report = quality_of(image, blink)
    assert not report.passed and "trusted" in report.failed and "iris_radius_px" in report.failed
    assert report.measures.grey_scale_bits is not None and report.measures.iris_radius_px is None
    assert not quality_of(None, blink).passed  # an unreadable frame
    assert quality_of(np.zeros((4, 4, 2), np.uint8), blink).measures == QualityMeasures()


def test_deep_and_colour_frames_measure_like_their_8_bit_gray():
    m8, image, truth = measured(clean_params())
    r16 = quality_of(image.astype(np.uint16) * 257, truth_result(truth))
    rbgr = quality_of(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), truth_result(truth))
    assert r16.measures == m8 and rbgr.measures == m8


def test_the_default_profile_cites_a_source_for_every_gate_and_gates_known_measures():
    profile = default_profile()
    assert profile.require_trusted
    assert {g.measure for g in profile.gates} == set(MEASURE_NAMES)
    assert all(g.source for g in profile.gates)


def test_profiles_load_from_toml_and_json_with_the_same_meaning(tmp_path):
    toml = tmp_path / "rig.toml"
    toml.write_text('name = "rig"\nrequire_trusted = false\n[gates.sharpness]\nmin = 40\nsource = "our lens"\n'
                    '[gates.pupil_dilation_pct]\nmin = 25\nmax = 60\n')  # fmt: skip
    js = tmp_path / "rig.json"
    js.write_text(json.dumps({"name": "rig", "require_trusted": False,
                              "gates": {"sharpness": {"min": 40, "source": "our lens"},
                                        "pupil_dilation_pct": {"min": 25, "max": 60}}}))  # fmt: skip
    a, b = load_profile(toml), load_profile(js)
    assert a.gates == b.gates and a.require_trusted is b.require_trusted is False
    _, image, truth = measured(clean_params(blur_sigma_px=1.2))
    report = quality_of(image, truth_result(truth, trusted=False), a)
    assert report.failed == ("sharpness",)
    assert load_profile(tmp_path / "rig.json").to_dict()["gates"]["sharpness"] == {"min": 40.0, "source": "our lens"}
    again = tmp_path / "again.json"
    again.write_text(json.dumps(a.to_dict()))
    assert load_profile(again).gates == a.gates


@pytest.mark.parametrize(
    "data, message",
    [
        ({"gates": {"focus": {"min": 1}}}, "is not a measure"),
        ({"gates": {"sharpness": {"min": "high"}}}, "finite number"),
        ({"gates": {"sharpness": {}}}, "neither min nor max"),
        ({"gates": {"pupil_dilation_pct": {"min": 70, "max": 20}}}, "above its max"),
        ({"gates": {"sharpness": {"min": 1, "typo": 2}}}, "min, max and/or source"),
        ({"gate": {}}, "unknown key"),
        ({"require_trusted": "yes"}, "true or false"),
    ],
)
def test_bad_profiles_are_one_clear_error(data, message):
    with pytest.raises(TrackerError, match=message):
        profile_from_dict(data, "p.json")


def test_unreadable_or_malformed_profile_files_are_one_clear_error(tmp_path):
    with pytest.raises(TrackerError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("gates = [")
    with pytest.raises(TrackerError, match="not valid TOML"):
        load_profile(bad)
    other = tmp_path / "p.yaml"
    other.write_text("gates: {}")
    with pytest.raises(TrackerError, match=".toml or .json"):
        load_profile(other)
