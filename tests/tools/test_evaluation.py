import csv
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import tools.baseline
import tools.evaluation
from tests.paths import SHARED_DATA
from tools.evaluation import (
    EvalItem,
    ModelSplit,
    boundary_error_px,
    center_error_px,
    choose_split,
    ellipse_iou,
    evaluate,
    format_table,
    is_hit,
    load_eval_set,
    model_split_for,
    read_model_split,
    scoring_line,
    split_warning,
)
from tracker.errors import ModelError, SourceError, TrackerError
from tracker.fit.geometry import EXACT_FOOT_ITERATIONS, ellipse_distance_px
from tracker.preprocess import frame_to_model_affine
from tracker.structures import Ellipse

DISTANCE_TOL_PX = 0.01
IOU_TOL = 0.005  # relative
FIT_TOL_PX = 0.5  # ellipse fitted to a rasterised mask vs the drawn ellipse
DATA_DIR = SHARED_DATA / "irisseg-ep"


# ---------------------------------------------------------------------------------------------- metrics


def test_identical_ellipses_have_zero_error_and_unit_iou():
    e = Ellipse(40.0, 30.0, 20.0, 12.0, 0.7)
    assert center_error_px(e, e) == 0.0
    assert boundary_error_px(e, e) < 1e-6
    assert ellipse_iou(e, e) == pytest.approx(1.0, rel=IOU_TOL)


def test_concentric_circles():
    small, big = Ellipse.circle(0, 0, 10), Ellipse.circle(0, 0, 12)
    assert boundary_error_px(small, big) == pytest.approx(2.0, abs=DISTANCE_TOL_PX)
    assert boundary_error_px(big, small) == pytest.approx(2.0, abs=DISTANCE_TOL_PX)
    assert ellipse_iou(small, big) == pytest.approx(100 / 144, rel=IOU_TOL)


def test_shifted_circle():
    gt, pred = Ellipse.circle(50, 50, 20), Ellipse.circle(53, 54, 20)
    assert center_error_px(gt, pred) == pytest.approx(5.0)
    # Two r=20 circles 5 px apart overlap by the lens area.
    d, r = 5.0, 20.0
    lens = 2 * r * r * math.acos(d / (2 * r)) - 0.5 * d * math.sqrt(4 * r * r - d * d)
    assert ellipse_iou(gt, pred) == pytest.approx(lens / (2 * math.pi * r * r - lens), rel=IOU_TOL)


def test_disjoint_ellipses_have_zero_iou():
    assert ellipse_iou(Ellipse.circle(0, 0, 5), Ellipse.circle(100, 0, 5)) == 0.0


def test_rotated_ellipse_against_its_axis_swapped_twin():
    # The same ellipse rotated by 90 degrees: the centre agrees, the boundary does not.
    gt = Ellipse(0, 0, 20, 10, 0.3)
    pred = Ellipse(0, 0, 20, 10, 0.3 + math.pi / 2)
    assert center_error_px(gt, pred) == 0.0
    # The overlap is the intersection of two congruent crossed ellipses: check it by dense rasterisation.
    scale = 50
    canvas = np.zeros((60 * scale, 60 * scale), np.uint8)
    a, b = canvas.copy(), canvas.copy()
    for img, e in ((a, gt), (b, pred)):
        centre = (30 * scale, 30 * scale)
        cv2.ellipse(img, (centre, (2 * e.semi_major * scale, 2 * e.semi_minor * scale), e.angle_deg), 1, -1)
    expected = np.count_nonzero(a & b) / np.count_nonzero(a | b)
    assert ellipse_iou(gt, pred) == pytest.approx(expected, rel=IOU_TOL)
    # Boundary error: the major-axis ends of gt are 10 px outside pred; the mean is large but below 10.
    err = boundary_error_px(gt, pred)
    assert 3.0 < err < 10.0


def test_exact_point_to_ellipse_distance_matches_brute_force():
    # The distance the metrics use: the fitting kernel's foot points, iterated to convergence, also for flat
    # ellipses and points near the centre (where 3 iterations are off by up to 0.07 px).
    rng = np.random.default_rng(0)
    for _ in range(20):
        e = Ellipse(rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(5, 40), rng.uniform(1, 40), rng.uniform(0, 3))
        xy = rng.uniform(-60, 60, (50, 2))
        xy[:5] = [e.cx, e.cy] + rng.normal(0, 0.3, (5, 2))  # near the centre, where naive methods fail
        dense = e.points(100_000)
        brute = np.array([np.hypot(*(dense - p).T).min() for p in xy])
        np.testing.assert_allclose(ellipse_distance_px(e, xy, EXACT_FOOT_ITERATIONS), brute, atol=DISTANCE_TOL_PX)


def test_boundary_error_uses_the_kernel_distance(monkeypatch):
    # One definition of the point-to-ellipse distance: the metric calls tracker.fit's, converged.
    calls = []

    def spy(e, xy, iterations=3):
        calls.append(iterations)
        return ellipse_distance_px(e, xy, iterations)

    monkeypatch.setattr(tools.evaluation, "ellipse_distance_px", spy)
    gt, pred = Ellipse(0, 0, 20, 10, 0.3), Ellipse(1, 0, 19, 11, 0.5)
    err = boundary_error_px(gt, pred)
    assert calls == [EXACT_FOOT_ITERATIONS]
    assert err == pytest.approx(ellipse_distance_px(pred, gt.points(360), EXACT_FOOT_ITERATIONS).mean(), abs=1e-12)


def test_boundary_error_of_a_rotated_ellipse_against_a_circle():
    # Points of gt at parametric angle t are (a cos t, b sin t) rotated; a circle of radius r at the same
    # centre is |r - radius| away from each, whatever the rotation.
    gt = Ellipse(10, 20, 15, 9, 1.1)
    circle = Ellipse.circle(10, 20, 12)
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    expected = np.abs(12 - np.hypot(15 * np.cos(t), 9 * np.sin(t))).mean()
    assert boundary_error_px(gt, circle) == pytest.approx(expected, abs=DISTANCE_TOL_PX)


@pytest.mark.parametrize(
    ("shift_px", "hit"),
    [(0.0, True), (0.99, True), (1.0, True), (1.01, False), (3.0, False)],
)
def test_hit_threshold_is_five_percent_of_gt_semi_major(shift_px, hit):
    gt = Ellipse(100, 100, 20, 15, 0.2)  # 5% of 20 px = 1 px
    assert is_hit(gt, Ellipse(100 + shift_px, 100, 20, 15, 0.2)) is hit


def test_none_prediction_is_not_a_hit():
    assert not is_hit(Ellipse.circle(0, 0, 10), None)


# ------------------------------------------------------------------------------------------ aggregation

STAT_KEYS = {"median", "mean", "p95"}


def _items():
    iris, pupil = Ellipse.circle(50, 50, 30), Ellipse.circle(50, 50, 10)
    img = np.zeros((100, 100), np.uint8)
    return [
        EvalItem("a", img, iris, pupil),
        EvalItem("b", img, iris, pupil),
        EvalItem("c", img, iris, None),  # no pupil ground truth: not scored for the pupil
    ]


def test_evaluate_schema_and_counts():
    preds = iter(
        [
            (Ellipse.circle(50, 50, 30), Ellipse.circle(50.2, 50, 10)),  # both hits
            (Ellipse.circle(60, 50, 30), None),  # iris a miss (10 px off), pupil not detected
            (None, Ellipse.circle(0, 0, 3)),  # iris not detected; pupil without gt is ignored
        ]
    )
    result = evaluate(_items(), lambda image: next(preds))
    assert set(result) == {"images", "iris", "pupil"}
    assert result["images"] == 3
    for b in ("iris", "pupil"):
        assert set(result[b]) == {
            "n",
            "detected",
            "center_err_px",
            "boundary_err_px",
            "iou",
            "hit_rate",
            "within_2px_rate",
            "missed_rate",
        }
        for k in ("center_err_px", "boundary_err_px", "iou"):
            assert set(result[b][k]) == STAT_KEYS
    iris, pupil = result["iris"], result["pupil"]
    assert (iris["n"], iris["detected"]) == (3, 2)
    assert iris["hit_rate"] == pytest.approx(1 / 3)
    assert iris["center_err_px"]["median"] == pytest.approx(5.0)
    assert iris["center_err_px"]["mean"] == pytest.approx(5.0)
    assert (pupil["n"], pupil["detected"]) == (2, 1)
    assert pupil["hit_rate"] == pytest.approx(0.5)
    assert pupil["center_err_px"]["median"] == pytest.approx(0.2)
    assert pupil["iou"]["median"] < 1.0
    json.dumps(result)  # plain types only: the CLI prints it with --json


def test_evaluate_with_no_detections_gives_null_stats():
    result = evaluate(_items(), lambda image: (None, None))
    assert result["iris"]["detected"] == 0
    assert result["iris"]["hit_rate"] == 0.0
    assert result["iris"]["center_err_px"] == {"median": None, "mean": None, "p95": None}


def test_within_2px_and_missed_rates_count_every_scored_image():
    img = np.zeros((100, 100), np.uint8)
    gt = Ellipse.circle(50, 50, 30)
    items = [EvalItem(str(i), img, gt, None) for i in range(4)]
    preds = iter(
        [
            (Ellipse.circle(51, 50, 30), None),  # 1 px: within 2 px and a hit (5 % of 30 is 1.5 px)
            (Ellipse.circle(50, 52, 30), None),  # exactly 2 px: within 2 px, not a hit
            (Ellipse.circle(53, 50, 30), None),  # 3 px: neither
            (None, None),  # missed: counts in n, neither within 2 px nor a hit
        ]
    )
    result = evaluate(items, lambda image: next(preds))
    iris, pupil = result["iris"], result["pupil"]
    assert (iris["n"], iris["detected"]) == (4, 3)
    assert iris["within_2px_rate"] == pytest.approx(0.5)
    assert iris["missed_rate"] == pytest.approx(0.25)
    assert iris["hit_rate"] == pytest.approx(0.25)
    assert pupil["n"] == 0 and pupil["within_2px_rate"] is None and pupil["missed_rate"] is None
    table = format_table({"m": result})
    assert table.splitlines()[0].endswith("| hit rate % | centre <= 2 px % | missed % |")
    assert "| m | iris | 4 | 75.0 |" in table
    assert table.splitlines()[2].endswith("| 25.0 | 50.0 | 25.0 |")


def test_format_table_has_a_row_per_method_and_boundary():
    perfect = evaluate(_items(), lambda image: (Ellipse.circle(50, 50, 30), Ellipse.circle(50, 50, 10)))
    nothing = evaluate(_items(), lambda image: (None, None))
    table = format_table({"neural": perfect, "classical": nothing})
    lines = table.splitlines()
    assert lines[0].startswith("| method | boundary |")
    assert len(lines) == 2 + 4
    assert "| neural | iris | 3 | 100.0 |" in table
    assert "| classical | pupil | 2 | 0.0 | - |" in table
    assert "| neural | pupil | 2 | 100.0 |" in table and table.splitlines()[3].endswith("| 100.0 | 100.0 | 0.0 |")
    assert lines[-1].endswith("| 0.0 | 0.0 | 100.0 |")  # classical pupil: hit rate, within 2 px, missed


# --------------------------------------------------------------------------------------------- datasets


def _draw_hole_mask(shape_hw, iris: Ellipse, pupil: Ellipse) -> np.ndarray:
    mask = np.zeros(shape_hw, np.uint8)
    cv2.ellipse(mask, iris.to_cv2(), 255, -1)
    cv2.ellipse(mask, pupil.to_cv2(), 0, -1)
    return mask


IRIS = Ellipse(60, 50, 30, 27, 0.4)
PUPIL = Ellipse(62, 51, 11, 10, 1.0)


def _mask_layout(root: Path, n: int = 3, labels: bool = False) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"eye{i}.png"), np.full((100, 120), 128 + i, np.uint8))
        mask = _draw_hole_mask((100, 120), IRIS, PUPIL)
        if labels:
            mask = (mask > 0).astype(np.uint8)  # 1 = iris
            cv2.ellipse(mask, PUPIL.to_cv2(), 2, -1)  # 2 = pupil
        cv2.imwrite(str(root / "masks" / f"eye{i}.png"), mask)
    return root


def _close(a: Ellipse, b: Ellipse, tol: float = FIT_TOL_PX) -> bool:
    return center_error_px(a, b) < tol and boundary_error_px(a, b) < tol


@pytest.mark.parametrize("labels", [False, True])
def test_mask_layout(tmp_path, labels):
    items = list(load_eval_set(_mask_layout(tmp_path / "set", labels=labels)))
    assert [i.name for i in items] == ["eye0.png", "eye1.png", "eye2.png"]
    assert items[1].image.shape == (100, 120) and items[1].image[0, 0] == 129
    for item in items:
        assert _close(item.iris_gt, IRIS) and _close(item.pupil_gt, PUPIL)


def _class_maps(shape_hw=(100, 120)) -> tuple[np.ndarray, np.ndarray]:
    """OpenEDS-style (0 other, 1 sclera, 2 iris, 3 pupil) uint8 map and its (H, W, 3) BGR colour-class mask."""
    labels = np.zeros(shape_hw, np.uint8)
    cv2.ellipse(labels, Ellipse(IRIS.cx, IRIS.cy, 55, 32, 0.0).to_cv2(), 1, -1)  # sclera
    cv2.ellipse(labels, IRIS.to_cv2(), 2, -1)
    cv2.ellipse(labels, PUPIL.to_cv2(), 3, -1)
    bgr = np.zeros((*shape_hw, 3), np.uint8)
    bgr[labels == 1], bgr[labels == 2], bgr[labels == 3] = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # RGB r, g, b
    return labels, bgr


def test_labels_npy_layout_is_preferred_over_masks(tmp_path):
    # OpenEDS: labels/*.npy class maps beside masks/ holding a binary eye mask (iris and pupil as one region).
    root = tmp_path / "openeds"
    for folder in ("images", "labels", "masks"):
        (root / folder).mkdir(parents=True)
    labels, _ = _class_maps()
    for i in range(2):
        cv2.imwrite(str(root / "images" / f"{i:06d}.png"), np.full((100, 120), 90, np.uint8))
        np.save(root / "labels" / f"{i:06d}.npy", labels)
        cv2.imwrite(str(root / "masks" / f"{i:06d}.png"), (labels >= 2).astype(np.uint8))
    items = load_eval_set(root)
    assert items.layout == "labels/" and len(items) == 2
    for item in items:
        assert _close(item.iris_gt, IRIS) and _close(item.pupil_gt, PUPIL)


def test_empty_labels_folder_falls_back_to_masks(tmp_path):
    root = _mask_layout(tmp_path / "set")
    (root / "labels").mkdir()
    assert load_eval_set(root).layout == "masks/"


def test_colour_class_masks_keep_their_classes(tmp_path):
    # MOBIUS: PNG masks in RGB class colours; a gray conversion would merge iris, pupil and sclera.
    root = tmp_path / "mobius"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    _, bgr = _class_maps()
    cv2.imwrite(str(root / "images" / "1_1i_Ls_1.jpg"), np.full((100, 120, 3), 60, np.uint8))
    cv2.imwrite(str(root / "masks" / "1_1i_Ls_1.png"), bgr)
    items = load_eval_set(root)
    assert items.layout == "masks/"
    (item,) = list(items)
    assert _close(item.iris_gt, IRIS) and _close(item.pupil_gt, PUPIL)


def test_gray_mask_saved_as_colour_reads_as_gray(tmp_path):
    root = _mask_layout(tmp_path / "set", n=1)
    gray = cv2.imread(str(root / "masks" / "eye0.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "masks" / "eye0.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    (item,) = list(load_eval_set(root))
    assert _close(item.iris_gt, IRIS) and _close(item.pupil_gt, PUPIL)


SMOKE = SHARED_DATA / "smoke"


@pytest.mark.data
@pytest.mark.skipif(not (SMOKE / "openeds" / "labels").is_dir(), reason="smoke data not in ../shared/data")
def test_openeds_smoke_sample_scores_iris_and_pupil_from_labels():
    items = load_eval_set(SMOKE / "openeds")
    assert items.layout == "labels/"
    for item in items:
        assert item.iris_gt is not None and item.pupil_gt is not None
        assert item.pupil_gt.semi_major < item.iris_gt.semi_major


def test_mask_layout_limit(tmp_path):
    assert len(list(load_eval_set(_mask_layout(tmp_path / "set"), limit=2))) == 2


def test_mask_layout_missing_mask_is_a_source_error(tmp_path):
    root = _mask_layout(tmp_path / "set")
    (root / "masks" / "eye1.png").unlink()
    with pytest.raises(SourceError, match="no mask"):
        load_eval_set(root)


def test_mask_layout_size_mismatch_is_a_source_error(tmp_path):
    root = _mask_layout(tmp_path / "set")
    cv2.imwrite(str(root / "masks" / "eye0.png"), np.zeros((50, 60), np.uint8))
    with pytest.raises(SourceError, match="must match"):
        load_eval_set(root)


def test_ellipse_csv_layout_with_blank_cells(tmp_path):
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(root / "images" / name), np.zeros((80, 90, 3), np.uint8))
    columns = ["image"] + [f"{b}_{c}" for b in ("iris", "pupil") for c in ("cx", "cy", "semi_major", "semi_minor")]
    columns += ["iris_angle_deg", "pupil_angle_deg", "note"]
    with (root / "ellipses.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerow(
            {
                "image": "a.png",
                **{"iris_cx": 40, "iris_cy": 35, "iris_semi_major": 20, "iris_semi_minor": 18, "iris_angle_deg": 90},
                **{"pupil_cx": 41, "pupil_cy": 36, "pupil_semi_major": 6, "pupil_semi_minor": 6},
                "pupil_angle_deg": 0,
                "note": "extra columns are ignored",
            }
        )
        w.writerow({"image": "b.png", "iris_cx": 40, "iris_cy": 35, "iris_semi_major": 20, "iris_semi_minor": 18,
                    "iris_angle_deg": 10})  # fmt: skip
    a, b = load_eval_set(root)
    assert a.iris_gt == Ellipse(40, 35, 20, 18, math.pi / 2)
    assert a.pupil_gt == Ellipse.circle(41, 36, 6)
    assert a.image.shape == (80, 90, 3)
    assert b.pupil_gt is None and b.iris_gt.angle_deg == pytest.approx(10)


def test_ellipse_csv_partial_row_is_a_source_error(tmp_path):
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((8, 8), np.uint8))
    header = "image,iris_cx,iris_cy,iris_semi_major,iris_semi_minor,iris_angle_deg,"
    header += "pupil_cx,pupil_cy,pupil_semi_major,pupil_semi_minor,pupil_angle_deg\n"
    (root / "ellipses.csv").write_text(header + "a.png,4,4,3,,0,,,,,\n")
    with pytest.raises(SourceError, match="all blank"):
        list(load_eval_set(root))


def _index_layout(root: Path) -> Path:
    """Two squashed datasets: stored 100x100, original 160x120 (W x H) like the development set."""
    rows = []
    for dataset, subjects in (("alpha", ("s1", "s2")), ("beta", ("s3",))):
        (root / dataset / "images").mkdir(parents=True)
        (root / dataset / "masks").mkdir()
        for subject in subjects:
            image = np.full((100, 100, 3), 200, np.uint8)
            cv2.imwrite(str(root / dataset / "images" / f"{subject}.jpg"), image)
            cv2.imwrite(str(root / dataset / "masks" / f"{subject}.png"), _draw_hole_mask((100, 100), IRIS, PUPIL))
            rows.append([dataset, f"{dataset}/images/{subject}.jpg", f"{dataset}/masks/{subject}.png", subject,
                         "L", "train", 100, 100, 120, 160])  # fmt: skip
    with (root / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "image", "mask", "subject", "eye", "source_split", "height", "width",
                    "original_height", "original_width"])  # fmt: skip
        w.writerows(rows)
    return root


def _mapped(e: Ellipse, sx: float, sy: float) -> Ellipse:
    return e.affine(np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]]))


def test_index_layout_original_size(tmp_path):
    root = _index_layout(tmp_path / "ep")
    items = list(load_eval_set(root))
    assert [i.name for i in items] == ["alpha/images/s1.jpg", "alpha/images/s2.jpg", "beta/images/s3.jpg"]
    for item in items:
        assert item.image.shape == (120, 160, 3)
        # Ground truth follows the image back to its original size (x * 1.6, y * 1.2).
        assert _close(item.iris_gt, _mapped(IRIS, 1.6, 1.2), 0.8)
        assert _close(item.pupil_gt, _mapped(PUPIL, 1.6, 1.2), 0.8)


def test_index_layout_stored_size_and_subject_split(tmp_path):
    root = _index_layout(tmp_path / "ep")
    items = list(load_eval_set(root, split_subjects={"s2", "s3"}, original_size=False))
    assert [i.name for i in items] == ["alpha/images/s2.jpg", "beta/images/s3.jpg"]
    assert items[0].image.shape == (100, 100, 3)
    assert _close(items[0].iris_gt, IRIS)


def test_index_layout_dataset_subfolder(tmp_path):
    root = _index_layout(tmp_path / "ep")
    items = list(load_eval_set(root / "alpha"))
    assert [i.name for i in items] == ["alpha/images/s1.jpg", "alpha/images/s2.jpg"]
    assert items[0].image.shape == (120, 160, 3)


def test_index_layout_unknown_subjects_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        load_eval_set(_index_layout(tmp_path / "ep"), split_subjects={"nobody"})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "no images/ folder"),
        (lambda root: (root / "images").mkdir(parents=True), "neither labels/, masks/ nor ellipses.csv"),
        (lambda root: ((root / "images").mkdir(parents=True), (root / "masks").mkdir()), "no images in"),
    ],
)
def test_bad_data_dir_is_a_source_error(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(SourceError, match=message):
        load_eval_set(root)


def test_mask_layout_lists_images_with_the_image_reader_rules(tmp_path):
    # One image-extension list and listing (tracker.io.images): .webp counts, hidden files do not, natural order.
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, ext in (("eye10", ".png"), ("eye2", ".png"), ("eye1", ".webp")):
        cv2.imwrite(str(root / "images" / f"{stem}{ext}"), np.full((100, 120), 128, np.uint8))
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), _draw_hole_mask((100, 120), IRIS, PUPIL))
    (root / "images" / "._eye2.png").write_bytes(b"macOS resource fork, not an image")
    assert [i.name for i in load_eval_set(root)] == ["eye1.webp", "eye2.png", "eye10.png"]


def test_images_and_masks_are_read_by_the_one_image_reader(tmp_path, monkeypatch):
    root = _mask_layout(tmp_path / "set", n=2)
    read = []
    real = tools.evaluation.read_image
    monkeypatch.setattr(tools.evaluation, "read_image", lambda path: read.append(Path(path).name) or real(path))
    list(load_eval_set(root))
    assert sorted(read) == ["eye0.png"] * 4 + ["eye1.png"] * 2  # image + mask; eye0 also when checked at the call


def test_unreadable_image_says_so_in_the_image_readers_words(tmp_path):
    root = _mask_layout(tmp_path / "set", n=2)
    (root / "images" / "eye0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(SourceError, match="not a decodable image"):
        load_eval_set(root)


def test_original_size_uses_the_preprocess_resize_mapping(tmp_path, monkeypatch):
    # One definition of the resize mapping: stored -> original size is tracker.preprocess's map of a resize.
    calls = []
    monkeypatch.setattr(
        tools.evaluation, "frame_to_model_affine", lambda a, b: calls.append((a, b)) or frame_to_model_affine(a, b)
    )
    items = list(load_eval_set(_index_layout(tmp_path / "ep")))
    assert calls and set(calls) == {((100, 100), (120, 160))}
    assert _close(items[0].iris_gt, _mapped(IRIS, 1.6, 1.2), 0.8)


def _ellipse_csv(root: Path, names: list[str], subjects: list[str] | None = None) -> Path:
    columns = ["image"] + [f"{b}_{c}" for b in ("iris", "pupil") for c in tools.evaluation.ELLIPSE_COLUMNS]
    with (root / "ellipses.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns + (["subject"] if subjects else []))
        for i, name in enumerate(names):
            w.writerow([name, 40, 35, 20, 18, 0, 41, 36, 6, 6, 0] + ([subjects[i]] if subjects else []))
    return root


def test_ellipse_csv_image_is_a_name_in_images_or_a_path_relative_to_the_csv(tmp_path):
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(root / "images" / name), np.zeros((80, 90), np.uint8))
    items = list(load_eval_set(_ellipse_csv(root, ["a.png", "images/b.png"])))
    assert [i.name for i in items] == ["a.png", "images/b.png"]
    assert all(i.image.shape == (80, 90) and i.iris_gt == Ellipse(40, 35, 20, 18, 0) for i in items)


def test_ellipse_csv_needs_no_images_folder_when_paths_are_relative_to_it(tmp_path):
    root = tmp_path / "set"
    (root / "frames").mkdir(parents=True)
    cv2.imwrite(str(root / "frames" / "a.png"), np.zeros((80, 90), np.uint8))
    assert [i.name for i in load_eval_set(_ellipse_csv(root, ["frames/a.png"]))] == ["frames/a.png"]


def test_ellipse_csv_missing_image_names_both_places(tmp_path):
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"row 2: image 'x.png' is neither in .*images nor at .*x.png"):
        load_eval_set(_ellipse_csv(root, ["x.png"]))


def test_ellipse_csv_subject_column_is_a_split(tmp_path):
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(root / "images" / name), np.zeros((80, 90), np.uint8))
    _ellipse_csv(root, ["a.png", "b.png", "c.png"], ["f1", "f2", "f1"])
    items = load_eval_set(root, split_subjects={"f1"})
    assert [i.name for i in items] == ["a.png", "c.png"]
    assert (len(items), items.total, items.subjects) == (2, 3, {"f1", "f2"})


def test_subject_split_on_a_layout_without_subjects_is_a_source_error(tmp_path):
    # It used to be ignored silently: every image was scored as if it were the requested split.
    with pytest.raises(SourceError, match="lists no subjects"):
        load_eval_set(_mask_layout(tmp_path / "set"), split_subjects={"s1"})


def test_eval_set_counts_and_can_be_read_twice(tmp_path):
    items = load_eval_set(_index_layout(tmp_path / "ep"), split_subjects={"s1", "s3"}, limit=1)
    assert (len(items), items.total, items.subjects, items.layout) == (1, 3, {"s1", "s2", "s3"}, "index.csv")
    assert [i.name for i in items] == [i.name for i in items] == ["alpha/images/s1.jpg"]


# ----------------------------------------------------------------------------------------------- splits


def _card(path: Path, test: list[str], **other: list[str]) -> Path:
    split = {"by": "subject", "test_subjects": test, **{f"{k}_subjects": v for k, v in other.items()}}
    path.write_text(json.dumps({"name": "m", "training": {"split": split}}))
    return path


def test_read_model_split_from_a_card_and_a_split_json(tmp_path):
    card = read_model_split(_card(tmp_path / "model.json", ["s3"]))
    assert (card.train, card.val, card.test) == (None, None, {"s3"})
    split_json = tmp_path / "split.json"
    split_json.write_text(json.dumps({"data": "x", "subjects": {"train": ["s1"], "val": ["s2"], "test": ["s3"]}}))
    run = read_model_split(split_json)
    assert (run.train, run.val, run.test, run.listed) == ({"s1"}, {"s2"}, {"s3"}, {"s1", "s2", "s3"})


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '{"engine": "x.engine", "precision": "fp16"}', '{"training": {"split": null}}'],
    ids=["garbage", "list", "engine card", "trained without a split"],
)
def test_read_model_split_rejects_what_is_not_a_split(tmp_path, text):
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(ModelError):
        read_model_split(tmp_path / "x.json")


def test_model_split_for_reads_the_card_beside_the_model(tmp_path):
    _card(tmp_path / "m.json", ["s3"])
    split, why = model_split_for(tmp_path / "m.onnx")
    assert split.test == {"s3"} and why == ""
    none, why = model_split_for(tmp_path / "other.onnx")
    assert none is None and "has no card (other.json)" in why
    (tmp_path / "engine.json").write_text('{"precision": "fp16"}')  # an engine card is not a model card
    none, why = model_split_for(tmp_path / "engine.engine")
    assert none is None and "records no subject split" in why


DEV = frozenset({"s1", "s2", "s3", "s4"})
CARD = ModelSplit(Path("model.json"), None, None, frozenset({"s3", "s4"}))
RUN = ModelSplit(Path("split.json"), frozenset({"s1"}), frozenset({"s2"}), frozenset({"s3", "s4"}))


@pytest.mark.parametrize(
    ("requested", "data", "split", "name", "subjects", "reason"),
    [
        (None, DEV, CARD, "test", {"s3", "s4"}, "test split of model.json (2 subjects)"),
        (None, frozenset({"s3", "x"}), CARD, "test", {"s3", "s4"}, "(1 subject)"),
        (None, frozenset({"f1"}), CARD, "all", None, "DATA has none of the subjects of model.json"),
        (None, None, CARD, "all", None, "DATA lists no subjects"),
        (None, DEV, None, "all", None, "no card here"),
        ("all", DEV, CARD, "all", None, "all images (--split all)"),
        ("val", DEV, RUN, "val", {"s2"}, "val split of split.json (1 subject)"),
        ("train", DEV, RUN, "train", {"s1"}, "train split of split.json"),
    ],
)
def test_choose_split(requested, data, split, name, subjects, reason):
    choice = choose_split(requested, data, split, "no card here")
    assert (choice.name, choice.subjects) == (name, subjects)
    assert reason in choice.reason


@pytest.mark.parametrize(
    ("requested", "data", "split", "error", "message"),
    [
        ("test", DEV, None, ModelError, "--split test needs the model's test subjects, but no card here"),
        ("val", DEV, CARD, ModelError, "model.json records no val subjects"),
        ("test", None, CARD, SourceError, "DATA lists no subjects"),
        ("test", frozenset({"f1"}), CARD, SourceError, "DATA has none of the 2 test subjects of model.json"),
        ("dev", DEV, CARD, TrackerError, "unknown split"),
    ],
)
def test_choose_split_refuses_what_cannot_apply(requested, data, split, error, message):
    with pytest.raises(error, match=re.escape(message)):
        choose_split(requested, data, split, "no card here")


def test_split_warning_names_the_training_subjects_scored(tmp_path):
    root = _index_layout(tmp_path / "ep")  # s1, s2 (alpha), s3 (beta)
    card = ModelSplit(Path("model.json"), None, None, frozenset({"s3"}))
    everything = load_eval_set(root)
    assert split_warning(everything, card) == (
        "warning: 2 of the 3 images scored are of 2 subjects the model was trained or validated on (model.json); "
        "--split test scores held-out subjects only"
    )
    assert split_warning(load_eval_set(root, split_subjects={"s3"}), card) is None
    run = ModelSplit(Path("split.json"), frozenset({"s1"}), frozenset({"s2"}), frozenset({"s3"}))
    assert "1 of the 3 images scored are of 1 subject the model was trained on" in split_warning(everything, run)
    assert split_warning(everything, None) is None
    assert split_warning(everything, ModelSplit(Path("x.json"), None, None, frozenset({"other"}))) is None


def test_scoring_line_says_what_is_scored(tmp_path):
    root = _index_layout(tmp_path / "ep")
    choice = choose_split(None, frozenset({"s1", "s2", "s3"}), CARD, "")
    items = load_eval_set(root, split_subjects=choice.subjects)
    assert (
        scoring_line("ep", items, choice)
        == "scoring 1 of 3 images of ep (index.csv): test split of model.json (1 subject)"
    )
    everything = load_eval_set(root, limit=2)
    line = scoring_line("ep", everything, choose_split("all", None, None), limit=2)
    assert line == "scoring 2 of 3 images of ep (index.csv; --limit 2): all images (--split all)"


# -------------------------------------------------------------------------------------------- real data


@pytest.mark.data
@pytest.mark.skipif(not (DATA_DIR / "index.csv").is_file(), reason="development data not in ../shared/data")
def test_index_layout_reads_the_development_set():
    items = list(load_eval_set(DATA_DIR / "iitd", limit=3))
    assert len(items) == 3
    assert items[0].image.shape[:2] == (240, 320)
    assert all(i.iris_gt is not None and 40 < i.iris_gt.semi_major < 200 for i in items)


@pytest.mark.data
@pytest.mark.skipif(not (DATA_DIR / "index.csv").is_file(), reason="development data not in ../shared/data")
def test_the_shipped_card_selects_the_test_subjects_of_the_development_set():
    from tracker.paths import default_model_path

    split, _ = model_split_for(default_model_path())
    whole = load_eval_set(DATA_DIR)
    choice = choose_split(None, whole.subjects, split)
    items = load_eval_set(DATA_DIR, split_subjects=choice.subjects)
    # The card lists the test subjects of every source it trained on; 71 of them are the development set's.
    assert (choice.name, len(items), items.total, len(choice.subjects & whole.subjects)) == ("test", 737, 4879, 71)
    assert split_warning(items, split) is None
    assert "3,434 of the 4,879 images scored are of 331 subjects the model was trained on" in str(
        split_warning(whole, split)
    )
