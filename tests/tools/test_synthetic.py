"""Synthetic eyes: determinism, exact labels, sub-pixel boundaries, clip events and file writers."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from tools.synthetic import (
    CLIP_COLUMNS,
    DOMAIN_PROBABILITIES,
    IMAGE_SET_COLUMNS,
    MIN_VISIBLE_FRACTION,
    DomainEffects,
    EyeParams,
    blink_openness,
    half_closed_eye_params,
    lid_signed_distances,
    random_domain_eye,
    random_eye_params,
    render_blink_clip,
    render_clip,
    render_domain_eye,
    render_eye,
    write_clip,
    write_contact_sheet,
    write_image_set,
)
from tracker.structures import Ellipse

SIZE_WH = (320, 240)
BOUNDARY_TOL_PX = 0.5  # 50 % crossing of the intensity profile vs the truth ellipse, clean frame
BOUNDARY_MEDIAN_TOL_PX = 0.2


def _no_lids(p: EyeParams) -> EyeParams:
    """The same eye with the lids pushed far outside the frame."""
    return replace(p, lid_half_width_px=1e5, upper_lid_height_px=1e5, lower_lid_height_px=1e5, openness=1.0)


def _clean(p: EyeParams) -> EyeParams:
    """The same eye with no lashes, glints, blur, noise, gradient or tone curve."""
    return replace(
        p,
        n_lashes=0,
        glints=(),
        blur_sigma_px=0.0,
        noise_sigma=0.0,
        illum_gradient_x=0.0,
        illum_gradient_y=0.0,
        gain=1.0,
        gamma=1.0,
        black_level=0.0,
        lid_shadow=0.0,
    )


def _inside(ellipse: Ellipse, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Implicit value (x'/a)^2 + (y'/b)^2 of pixel centres (< 1 inside), computed from the Ellipse fields."""
    c, s = math.cos(ellipse.angle_rad), math.sin(ellipse.angle_rad)
    dx, dy = x - ellipse.cx, y - ellipse.cy
    f = ((c * dx + s * dy) / ellipse.semi_major) ** 2 + ((-s * dx + c * dy) / ellipse.semi_minor) ** 2
    return f < 1.0, np.abs(f - 1.0) < 1e-9


def _eye(seed: int, **changes) -> EyeParams:
    return replace(random_eye_params(np.random.default_rng(seed), SIZE_WH), **changes)


def test_same_seed_same_pixels_different_seed_different():
    a = random_eye_params(np.random.default_rng(7), SIZE_WH)
    b = random_eye_params(np.random.default_rng(7), SIZE_WH)
    assert a == b
    img_a, truth_a = render_eye(a, SIZE_WH)
    img_b, truth_b = render_eye(b, SIZE_WH)
    assert img_a.shape == (240, 320) and img_a.dtype == np.uint8
    assert np.array_equal(img_a, img_b) and np.array_equal(truth_a.mask, truth_b.mask)
    img_c, _ = render_eye(random_eye_params(np.random.default_rng(8), SIZE_WH), SIZE_WH)
    assert not np.array_equal(img_a, img_c)

    clip_1 = [f for f, _ in render_clip(12, SIZE_WH, seed=3)]
    clip_2 = [f for f, _ in render_clip(12, SIZE_WH, seed=3)]
    clip_3 = [f for f, _ in render_clip(12, SIZE_WH, seed=4)]
    assert all(np.array_equal(f1, f2) for f1, f2 in zip(clip_1, clip_2, strict=True))
    assert not np.array_equal(clip_1[0], clip_3[0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_mask_is_exact_without_lids(seed):
    params = _no_lids(_eye(seed))
    _, truth = render_eye(params, SIZE_WH)
    y, x = np.mgrid[0 : SIZE_WH[1], 0 : SIZE_WH[0]].astype(np.float64)
    in_pupil, pupil_edge = _inside(truth.pupil, x, y)
    in_iris, iris_edge = _inside(truth.iris, x, y)
    expected = np.where(in_pupil, 2, np.where(in_iris, 1, 0))
    decidable = ~(pupil_edge | iris_edge)  # centres on the curve to 1e-9 may go either way
    assert np.array_equal(truth.mask[decidable], expected[decidable])
    assert truth.iris_visible_fraction == 1.0 and truth.pupil_visible_fraction == 1.0


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_mask_excludes_lids(seed):
    params = _eye(seed, openness=0.6)
    _, truth = render_eye(params, SIZE_WH)
    y, x = np.mgrid[0 : SIZE_WH[1], 0 : SIZE_WH[0]].astype(np.float64)
    d_up, d_lo = lid_signed_distances(params, x, y)
    in_pupil, _ = _inside(truth.pupil, x, y)
    in_iris, _ = _inside(truth.iris, x, y)
    open_ = (d_up > 0) & (d_lo > 0)
    assert not truth.mask[~open_].any()
    assert np.array_equal(truth.mask == 2, in_pupil & open_)
    assert np.array_equal(truth.mask == 1, in_iris & ~in_pupil & open_)


def test_closed_eye_hides_both_boundaries():
    _, truth = render_eye(_eye(3, openness=0.0), SIZE_WH)
    assert truth.openness == 0.0
    assert truth.iris_visible_fraction < 0.02 and truth.pupil_visible_fraction < 0.02
    assert not truth.mask.any()


def _ray_crossings(image: np.ndarray, ellipse: Ellipse, n_rays: int = 24) -> np.ndarray:
    """Signed offsets (px, + outward) of the 50 % intensity crossing from the ellipse along radial rays."""
    img = image.astype(np.float32)
    errors = []
    for t in np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False):
        edge = ellipse.points_at(np.array([t]))[0]
        direction = edge - np.array(ellipse.center_xy)
        direction /= np.linalg.norm(direction)
        steps = np.arange(-3.0, 3.0001, 0.02)
        pts = edge[None, :] + steps[:, None] * direction[None, :]
        if pts.min() < 1 or pts[:, 0].max() > image.shape[1] - 2 or pts[:, 1].max() > image.shape[0] - 2:
            continue
        profile = cv2.remap(
            img, pts[:, 0].astype(np.float32)[None], pts[:, 1].astype(np.float32)[None], cv2.INTER_LINEAR
        )[0]
        inner = profile[np.abs(steps + 1.25) <= 0.25].mean()
        outer = profile[np.abs(steps - 1.25) <= 0.25].mean()
        above = (profile - 0.5 * (inner + outer)) * np.sign(outer - inner) > 0
        # The crossing closest to the truth: the edge between the inner and outer plateaus.
        flips = np.flatnonzero(above[1:] != above[:-1])
        errors.append(steps[flips[np.argmin(np.abs(steps[flips]))]] + 0.01 if len(flips) else np.inf)
    return np.array(errors)


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_intensity_profile_crosses_at_the_truth_ellipse(seed):
    params = _clean(_no_lids(_eye(seed, iris_cx=160.0, iris_cy=120.0, iris_radius_px=60.0)))
    image, truth = render_eye(params, SIZE_WH)
    for ellipse in (truth.iris, truth.pupil):
        errors = _ray_crossings(image, ellipse)
        assert len(errors) >= 20
        assert np.max(np.abs(errors)) < BOUNDARY_TOL_PX
        assert np.median(np.abs(errors)) < BOUNDARY_MEDIAN_TOL_PX


def test_random_eyes_span_the_required_range():
    rng = np.random.default_rng(0)
    eyes = [random_eye_params(rng, SIZE_WH) for _ in range(400)]
    radius_frac = np.array([p.iris_radius_px for p in eyes]) / min(SIZE_WH)
    assert radius_frac.min() >= 0.12 and radius_frac.max() <= 0.40
    assert radius_frac.min() < 0.14 and radius_frac.max() > 0.37
    ratio = np.array([p.pupil_ratio for p in eyes])
    assert ratio.min() >= 0.2 and ratio.max() <= 0.7
    axis = np.array([math.sqrt(1 - p.tilt_x**2 - p.tilt_y**2) for p in eyes])
    assert axis.min() >= 0.6 - 1e-9 and axis.min() < 0.65
    assert {len(p.glints) for p in eyes} == {1, 2, 3, 4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_has_fixations_saccades_and_a_closing_blink(seed):
    truths = [t for _, t in render_clip(120, SIZE_WH, fps=60.0, seed=seed)]
    events = [t.event for t in truths]
    assert {"fixation", "saccade", "blink"} <= set(events)
    runs = []  # (event, start, length)
    for i, e in enumerate(events):
        if runs and runs[-1][0] == e and runs[-1][1] + runs[-1][2] == i:
            runs[-1] = (e, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((e, i, 1))
    assert all(2 <= n <= 5 for e, _, n in runs if e == "saccade")
    blink = next((s, n) for e, s, n in runs if e == "blink" and s + n < len(truths))
    middle = truths[blink[0] + blink[1] // 2]
    assert middle.openness == 0.0 and middle.iris_visible_fraction < 0.05
    assert all(t.openness == 1.0 for t in truths if t.event != "blink")
    # The demo eye is in view: open frames show most of the pupil and a good part of the limbus.
    open_ = [t for t in truths if t.event != "blink"]
    assert min(t.pupil_visible_fraction for t in open_) > 0.9
    assert min(t.iris_visible_fraction for t in open_) > 0.4
    assert all((t.mask == 2).any() for t in open_)
    # Saccades move the iris fast; fixations barely move it.
    centres = np.array([t.iris.center_xy for t in truths])
    speed = np.r_[0.0, np.linalg.norm(np.diff(centres, axis=0), axis=1)]
    is_sacc = np.array([e == "saccade" for e in events])
    is_fix = np.array([e == "fixation" for e in events]) & np.r_[False, ~is_sacc[:-1]]
    assert np.median(speed[is_sacc]) > 5 * np.median(speed[is_fix])


def test_write_clip_round_trips(tmp_path):
    video, truth_csv = tmp_path / "clip.mp4", tmp_path / "clip.csv"
    write_clip(video, truth_csv, n_frames=60, seed=1)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 60 and frames[0].shape == (240, 320, 3)
    with truth_csv.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CLIP_COLUMNS
    assert [int(r["frame"]) for r in rows] == list(range(60))
    assert float(rows[1]["timestamp_s"]) == pytest.approx(1 / 60.0, abs=1e-6)
    closed = [r for r in rows if float(r["openness"]) == 0.0]
    assert closed and all(r["iris_cx"] == "" and r["pupil_cx"] == "" for r in closed)
    assert all(float(r["iris_semi_major"]) > 0 for r in rows if r["event"] == "fixation")


def test_write_image_set_round_trips(tmp_path):
    write_image_set(tmp_path, n=3, seed=5)
    with (tmp_path / "ellipses.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == IMAGE_SET_COLUMNS
    assert [r["image"] for r in rows] == ["images/0000.png", "images/0001.png", "images/0002.png"]
    rng = np.random.default_rng(5)
    for row in rows:
        image = cv2.imread(str(tmp_path / row["image"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(tmp_path / row["image"].replace("images/", "masks/")), cv2.IMREAD_UNCHANGED)
        expected_image, truth = render_eye(random_eye_params(rng, SIZE_WH), SIZE_WH)
        assert np.array_equal(image, expected_image) and np.array_equal(mask, truth.mask)
        assert set(np.unique(mask)) <= {0, 1, 2}
        assert float(row["pupil_cx"]) == pytest.approx(truth.pupil.cx, abs=1e-3)


def test_write_image_set_is_read_and_scored_by_evaluation(tmp_path):
    # Write a set, load it the way `iristrack eval` does, and score the exact truth: zero error everywhere.
    from tools.evaluation import evaluate, load_eval_set

    write_image_set(tmp_path, n=8, seed=5)
    rng = np.random.default_rng(5)
    truths = [render_eye(random_eye_params(rng, SIZE_WH), SIZE_WH) for _ in range(8)]
    items = load_eval_set(tmp_path)
    assert items.layout == "ellipses.csv" and len(items) == 8
    truth_of = {}
    for item, (image, truth) in zip(items, truths, strict=True):
        assert np.array_equal(item.image, image)
        assert item.iris_gt.cx == pytest.approx(truth.iris.cx, abs=1e-4)
        truth_of[item.image.tobytes()] = (item.iris_gt, item.pupil_gt)
    hidden = [t.pupil_visible_fraction < MIN_VISIBLE_FRACTION for _, t in truths]
    assert any(hidden) and not all(hidden)  # seed 5 has pupils under a lid: they are blank, not scored
    assert [item.pupil_gt is None for item in items] == hidden
    result = evaluate(items, lambda image: truth_of[image.tobytes()])
    assert result["images"] == 8
    assert (result["iris"]["n"], result["pupil"]["n"]) == (8, 8 - sum(hidden))
    for boundary in ("iris", "pupil"):
        assert result[boundary]["hit_rate"] == 1.0
        assert result[boundary]["center_err_px"]["median"] == 0.0


# ----------------------------------------------------------------------------- closing lids, half-closed eyes

PUPIL_ON_SLIT_BELOW = 0.2  # a pupil with less of its outline visible than this must not be reported (issue 10)


def test_blink_openness_closes_to_a_slit_shuts_and_reopens():
    o = blink_openness(48, slit_openness=0.06)
    assert o.shape == (48,) and o[0] == 1.0 and o[-1] == 1.0
    shut = np.flatnonzero(o == 0.0)
    assert len(shut) >= 3 and np.all(np.diff(shut) == 1)  # one run of fully shut frames
    bottom = np.flatnonzero(o <= 0.06)
    assert np.all(np.diff(bottom) == 1) and len(bottom) > len(shut)  # the slit before and after
    assert np.all(np.diff(o[: bottom[0] + 1]) <= 0) and np.all(np.diff(o[bottom[-1] :]) >= 0)
    with pytest.raises(ValueError, match="12 frames"):
        blink_openness(8)
    with pytest.raises(ValueError, match="slit_openness"):
        blink_openness(48, slit_openness=0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blink_clip_truth_hides_the_pupil_on_the_slit(seed):
    clip = list(render_blink_clip(48, SIZE_WH, seed=seed))
    again = list(render_blink_clip(48, SIZE_WH, seed=seed))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(clip, again, strict=True))
    assert all(f.shape == (240, 320) and f.dtype == np.uint8 for f, _ in clip)
    truths = [t for _, t in clip]
    openness = blink_openness(48)
    assert [t.openness for t in truths] == pytest.approx(openness.tolist())
    # A still eye: the ellipses are the same in every frame; only the lid moves.
    assert len({t.iris for t in truths}) == 1 and len({t.pupil for t in truths}) == 1
    for name in ("iris_visible_fraction", "pupil_visible_fraction"):
        v = np.array([getattr(t, name) for t in truths])
        low = int(np.argmin(openness))
        assert np.all(np.diff(v[: low + 1]) <= 1e-12) and np.all(np.diff(v[low:]) >= -1e-12), name
        assert v[0] > v[low] and v[-1] > v[low]
    for t, o in zip(truths, openness, strict=True):
        if o <= 0.06:  # slit or shut: the pupil is under the lid, no pupil pixel is labelled
            assert t.pupil_visible_fraction < 0.02 and not (t.mask == 2).any()
            assert t.iris_visible_fraction < 1 / 3 and t.event == "blink"
        if o == 0.0:
            assert t.iris_visible_fraction < 0.02 and not t.mask.any()
        if o == 1.0:
            assert t.pupil_visible_fraction > 0.9 and (t.mask == 2).any() and t.event == "fixation"
    # The lid passes through the pupil: some frames show part of it.
    assert any(0.05 < t.pupil_visible_fraction < 0.95 for t in truths)
    assert any(t.pupil_visible_fraction < PUPIL_ON_SLIT_BELOW and t.openness > 0 for t in truths)


def _extreme_points(ellipse: Ellipse) -> dict[str, np.ndarray]:
    xy = ellipse.points(720)
    return {
        "top": xy[np.argmin(xy[:, 1])],
        "bottom": xy[np.argmax(xy[:, 1])],
        "left": xy[np.argmin(xy[:, 0])],
        "right": xy[np.argmax(xy[:, 0])],
    }


@pytest.mark.parametrize("seed", range(8))
def test_half_closed_eye_shows_only_the_side_arcs_of_the_limbus(seed):
    rng = np.random.default_rng(seed)
    params = half_closed_eye_params(rng, SIZE_WH)
    assert params == half_closed_eye_params(np.random.default_rng(seed), SIZE_WH)
    image, truth = render_eye(params, SIZE_WH)
    assert image.shape == (240, 320) and image.dtype == np.uint8
    points = _extreme_points(truth.iris)
    d_up, d_lo = (
        np.array(d) for d in lid_signed_distances(params, *np.array(list(points.values())).T.astype(np.float64))
    )
    top, bottom, left, right = range(4)
    assert d_up[top] < 0 and d_lo[bottom] < 0  # the lids hide the top and the bottom of the limbus
    assert min(d_up[left], d_lo[left], d_up[right], d_lo[right]) > 0  # both side arcs show
    assert 0.15 < truth.iris_visible_fraction < 0.8
    # The whole limbus is in the frame, so its size is knowable from the image.
    xy = truth.iris.points(360)
    assert xy.min() >= 0 and xy[:, 0].max() <= SIZE_WH[0] - 1 and xy[:, 1].max() <= SIZE_WH[1] - 1
    assert (truth.mask == 1).any()


def test_half_closed_opening_sets_the_visible_share():
    narrow = [half_closed_eye_params(np.random.default_rng(s), SIZE_WH, opening=0.35) for s in range(6)]
    wide = [half_closed_eye_params(np.random.default_rng(s), SIZE_WH, opening=0.85) for s in range(6)]
    vis_narrow = [render_eye(p, SIZE_WH)[1].iris_visible_fraction for p in narrow]
    vis_wide = [render_eye(p, SIZE_WH)[1].iris_visible_fraction for p in wide]
    assert all(n < w for n, w in zip(vis_narrow, vis_wide, strict=True))
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="opening"):
            half_closed_eye_params(np.random.default_rng(0), SIZE_WH, opening=bad)


# ----------------------------------------------------------------------------- domain randomisation

CROP_WH = (224, 160)
NO_EFFECTS = DomainEffects()
DARK_BROWN_CONTRAST_BELOW = 16  # gray levels between the iris and pupil medians of a dark-brown eye
LIGHT_IRIS_CONTRAST_ABOVE = 40


def _mask_agrees_with_ellipses(truth) -> None:
    y, x = np.mgrid[0 : truth.mask.shape[0], 0 : truth.mask.shape[1]].astype(np.float64)
    in_pupil, _ = _inside(truth.pupil, x, y)
    in_iris, _ = _inside(truth.iris, x, y)
    assert not (truth.mask == 2)[~in_pupil].any()
    assert not (truth.mask == 1)[~in_iris | in_pupil].any()


@pytest.mark.parametrize("domain", sorted(DOMAIN_PROBABILITIES))
def test_each_domain_renders_its_image_type_with_labels_inside_the_ellipses(domain):
    rng = np.random.default_rng(1)
    labelled = 0
    for _ in range(6):
        image, truth = render_domain_eye(rng, CROP_WH, domain)  # random effects included
        expected = (160, 224, 3) if domain == "visible" else (160, 224)
        assert image.shape == expected and image.dtype == np.uint8
        assert truth.mask.shape == (160, 224) and set(np.unique(truth.mask)) <= {0, 1, 2}
        _mask_agrees_with_ellipses(truth)
        labelled += (truth.mask == 2).any()
    assert labelled >= 3  # the eyes are mostly in view, not all closed or out of frame


def test_visible_domain_is_colour():
    rng = np.random.default_rng(2)
    for _ in range(4):
        image, _ = render_domain_eye(rng, CROP_WH, "visible", NO_EFFECTS)
        b, g, r = (image[..., c].astype(np.int16) for c in range(3))
        assert np.median(r - b) > 8  # skin is redder than blue at every tone


def test_random_domain_eye_is_deterministic_and_mixes_gray_and_colour():
    a = [random_domain_eye(np.random.default_rng(7), CROP_WH) for _ in range(2)]
    assert np.array_equal(a[0][0], a[1][0]) and np.array_equal(a[0][1].mask, a[1][1].mask)
    assert a[0][1].iris == a[1][1].iris
    other, _ = random_domain_eye(np.random.default_rng(8), CROP_WH)
    assert other.shape != a[0][0].shape or not np.array_equal(other, a[0][0])
    rng = np.random.default_rng(0)
    colour = [random_domain_eye(rng, (96, 64))[0].ndim == 3 for _ in range(120)]
    assert abs(np.mean(colour) - DOMAIN_PROBABILITIES["visible"]) < 0.12


@pytest.mark.parametrize("domain", sorted(DOMAIN_PROBABILITIES))
def test_glasses_frame_removes_the_pixels_it_hides_from_the_mask(domain):
    removed_any = False
    for seed in range(12):
        plain_img, plain = render_domain_eye(np.random.default_rng(seed), CROP_WH, domain, NO_EFFECTS)
        glasses_img, framed = render_domain_eye(
            np.random.default_rng(seed), CROP_WH, domain, DomainEffects(glasses=True)
        )
        # The same eye: the frame changes neither the geometry nor any label it does not cover.
        assert framed.iris == plain.iris and framed.pupil == plain.pupil
        kept = framed.mask > 0
        assert np.array_equal(framed.mask[kept], plain.mask[kept])
        removed = (plain.mask > 0) & ~kept
        if removed.any():
            removed_any = True
            assert framed.iris_visible_fraction <= plain.iris_visible_fraction
            # Removed pixels are where the image changed: under the drawn frame.
            diff = np.abs(glasses_img.astype(np.int16) - plain_img.astype(np.int16))
            diff = diff.max(axis=2) if diff.ndim == 3 else diff
            assert np.median(diff[removed]) > 10
    assert removed_any


def test_image_degradations_keep_the_labels():
    effects = DomainEffects(motion_blur_px=7, jpeg_quality=20, downscale=3.0, lens_reflection=True)
    for domain in ("nir_tracker", "visible"):
        clean, truth = render_domain_eye(np.random.default_rng(3), CROP_WH, domain, NO_EFFECTS)
        degraded, truth_d = render_domain_eye(np.random.default_rng(3), CROP_WH, domain, effects)
        assert degraded.shape == clean.shape and np.array_equal(truth.mask, truth_d.mask)
        # Blur, down-scaling and JPEG remove fine detail: less high-frequency energy.
        lap = [np.abs(cv2.Laplacian(im.astype(np.float32), cv2.CV_32F)).mean() for im in (clean, degraded)]
        assert lap[1] < 0.7 * lap[0]


def test_heavy_lids_and_out_of_frame_hide_part_of_the_iris():
    for seed in range(4):
        _, open_ = render_domain_eye(np.random.default_rng(seed), CROP_WH, "visible", NO_EFFECTS)
        _, heavy = render_domain_eye(np.random.default_rng(seed), CROP_WH, "visible", DomainEffects(heavy_lids=True))
        assert heavy.openness <= 0.5 < open_.openness
        assert (heavy.mask > 0).sum() < (open_.mask > 0).sum()
        _, cut = render_domain_eye(np.random.default_rng(seed), CROP_WH, "nir_iris", DomainEffects(out_of_frame=True))
        xy = cut.iris.points(360)
        outside = (xy[:, 0] < 0) | (xy[:, 0] > CROP_WH[0] - 1) | (xy[:, 1] < 0) | (xy[:, 1] > CROP_WH[1] - 1)
        assert outside.any() and not outside.all()


def test_tracker_domain_sees_a_flattened_limbus_under_the_lids():
    rng = np.random.default_rng(4)
    truths = [render_domain_eye(rng, CROP_WH, "nir_tracker", NO_EFFECTS)[1] for _ in range(8)]
    ratios = np.array([t.iris.semi_minor / t.iris.semi_major for t in truths])
    assert ratios.max() < 0.9 and ratios.min() < 0.7
    assert all(t.iris_visible_fraction < 0.98 for t in truths)  # the lids cover its top and bottom


def test_visible_domain_includes_dark_brown_irises_with_a_barely_visible_pupil():
    rng = np.random.default_rng(0)
    contrast = []
    for _ in range(40):
        image, truth = render_domain_eye(rng, CROP_WH, "visible", NO_EFFECTS)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
        if (truth.mask == 2).sum() >= 10 and (truth.mask == 1).sum() >= 10:
            contrast.append(np.median(gray[truth.mask == 1]) - np.median(gray[truth.mask == 2]))
    contrast = np.array(contrast)
    assert (np.abs(contrast) < DARK_BROWN_CONTRAST_BELOW).sum() >= 5
    assert (contrast > LIGHT_IRIS_CONTRAST_ABOVE).sum() >= 10


def test_contact_sheet_shows_tiles_with_truth_overlays(tmp_path):
    path = tmp_path / "sheet.png"
    write_contact_sheet(path, n=6, seed=1, size_wh=(96, 64), columns=3)
    sheet = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert sheet.shape == (128, 288, 3)
    b, g, r = (sheet[..., c].astype(np.int16) for c in range(3))
    assert ((g > 200) & (r < 80) & (b < 80)).sum() > 50  # iris ellipses in green
    assert ((r > 200) & (g < 80) & (b < 80)).sum() > 20  # pupil ellipses in red
