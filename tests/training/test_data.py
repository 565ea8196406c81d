"""Training data folders are listed and read with the runtime's one image reader (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import training.data
from training.data import Record, find_records, load_samples


def _eye_mask(shape_hw: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape_hw, np.uint8)
    cv2.ellipse(mask, ((60, 50), (56, 50), 0), 255, -1)  # iris texture; the pupil is the hole
    cv2.ellipse(mask, ((61, 51), (20, 18), 0), 0, -1)
    return mask


def _folder(root: Path, stems_exts: list[tuple[str, str]]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, ext in stems_exts:
        cv2.imwrite(str(root / "images" / f"{stem}{ext}"), np.full((100, 120), 128, np.uint8))
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), _eye_mask((100, 120)))
    return root


def test_find_records_lists_images_like_the_image_reader(tmp_path):
    # One image-extension list and listing (tracker.io.images): .pgm and .webp count, hidden files do not,
    # natural order (s2 before s10).
    root = _folder(tmp_path / "set", [("s10_a", ".png"), ("s2_a", ".pgm"), ("s3_a", ".webp")])
    (root / "images" / "._s2_a.png").write_bytes(b"macOS resource fork")
    (root / "masks" / "._s2_a.png").write_bytes(b"macOS resource fork")
    records = find_records(root)
    assert [r.name for r in records] == ["s2_a.pgm", "s3_a.webp", "s10_a.png"]
    assert [r.subject for r in records] == ["s2", "s3", "s10"]


def test_samples_are_read_by_the_one_image_reader(tmp_path, monkeypatch):
    root = _folder(tmp_path / "set", [("s1", ".png")])
    (root / "images" / "s2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # unreadable: dropped
    cv2.imwrite(str(root / "masks" / "s2.png"), _eye_mask((100, 120)))
    read = []
    real = training.data.read_image
    monkeypatch.setattr(training.data, "read_image", lambda path: read.append(Path(path).parent.name) or real(path))
    records = find_records(root)
    samples = [training.data._load_one(r, (64, 64)) for r in records]
    assert read == ["images", "masks", "images"]  # s1 image + mask; s2's image fails to decode
    assert samples[1] is None and samples[0].image.shape == (64, 64)
    assert len(samples[0].arcs[0]) >= 1 and len(samples[0].arcs[1]) >= 1


def test_load_samples_drops_unreadable_pairs(tmp_path):
    root = _folder(tmp_path / "set", [("s1", ".png"), ("s2", ".png")])
    (root / "images" / "s2.png").write_bytes(b"not an image")
    records = find_records(root) + [Record(root / "images" / "gone.png", root / "masks" / "s1.png", "s9", "gone")]
    assert [s.name for s in load_samples(records, (64, 64), workers=1)] == ["s1.png"]


def _ellipse_set(root: Path, rows: list[tuple[str, str]]) -> Path:
    """images/ + ellipses.csv with a visible iris (and pupil) drawn in each image; rows = (stem, subject)."""
    (root / "images").mkdir(parents=True)
    lines = ["image,iris_cx,iris_cy,iris_semi_major,iris_semi_minor,iris_angle_deg,"
             "pupil_cx,pupil_cy,pupil_semi_major,pupil_semi_minor,pupil_angle_deg,subject,eye"]  # fmt: skip
    for stem, subject in rows:
        img = np.full((100, 140, 3), 210, np.uint8)
        cv2.circle(img, (70, 50), 25, (60, 90, 120), -1)  # BGR iris; its red channel is what the model sees
        cv2.circle(img, (70, 50), 9, (10, 10, 10), -1)
        cv2.imwrite(str(root / "images" / f"{stem}.png"), img)
        lines.append(f"{stem}.png,70,50,25,25,0,70,50,9,9,0,{subject},left")
    (root / "ellipses.csv").write_text("\n".join(lines) + "\n")
    return root


def test_an_ellipse_set_loads_with_subjects_and_labels_the_arcs_it_shows(tmp_path):
    root = _ellipse_set(tmp_path / "visible", [("a_left", "a"), ("a_right", "a"), ("b_left", "b")])
    records = find_records(root)
    assert [(r.name, r.subject, r.source) for r in records] == [
        ("a_left.png", "a", "visible"),
        ("a_right.png", "a", "visible"),
        ("b_left.png", "b", "visible"),
    ]
    assert records[0].mask_path is None and records[0].iris.semi_major == 25
    samples = load_samples(records, (64, 64), workers=1)
    iris_arcs, pupil_arcs = samples[0].arcs
    # Both boundaries fully visible: one closed arc each, on the true circle mapped to model pixels (x 64/140).
    assert len(iris_arcs) == 1 and len(pupil_arcs) == 1
    centre = np.array([(70 + 0.5) * 64 / 140 - 0.5, (50 + 0.5) * 64 / 100 - 0.5])
    radii = np.abs(iris_arcs[0] - centre) / np.array([25 * 64 / 140, 25 * 64 / 100])
    assert np.allclose(np.hypot(*radii.T), 1.0, atol=0.02)


def test_adding_a_data_folder_moves_no_subject_of_another(tmp_path):
    from training.train import split_records

    first = [Record(Path(f"x/{i}.png"), None, f"s{i}", f"{i}.png") for i in range(40)]
    second = [Record(Path(f"y/{i}.png"), None, f"t{i}", f"{i}.png") for i in range(25)]
    alone, together = split_records([first], (0.7, 0.15, 0.15), 0), split_records([first, second], (0.7, 0.15, 0.15), 0)
    for part in ("train", "val", "test"):
        assert [s for s in together[part] if s.startswith("s")] == alone[part]
    assert all(together[part] for part in ("train", "val", "test"))


def test_training_negatives_have_no_edges_and_no_lone_dark_discs():
    from training.data import negative_samples

    samples = negative_samples(30, (64, 64))
    assert len(samples) == 30 and all(s.image.shape == (64, 64) and s.arcs == ([], []) for s in samples)
    assert not any("dark_disc" in s.name for s in samples)  # a lone dark disc may be a real pupil close-up
    assert len({s.name for s in samples}) == 30


def test_an_index_of_squashed_masks_labels_the_limbus_not_the_lid_lines(tmp_path):
    # The development set's layout: 224x224 copies of 320x280 frames, index.csv giving the original size.
    # Checked in the squashed mask, the flat lid ellipse passes for the limbus and its lines get labelled.
    from tests.tools.test_masks import TRUE_HW, squashed_eye_under_flat_lids

    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = squashed_eye_under_flat_lids()
    cv2.imwrite(str(root / "images" / "a.png"), np.full(mask.shape, 128, np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    (root / "index.csv").write_text(
        f"image,mask,subject,original_height,original_width\nimages/a.png,masks/a.png,s1,{TRUE_HW[0]},{TRUE_HW[1]}\n"
    )
    (record,) = find_records(root)
    assert record.original_hw == TRUE_HW
    sample = training.data._load_one(record, (128, 128))
    points = np.concatenate(sample.arcs[0])
    # The limbus is round in the true frame: in model pixels centred at (63.5, 63.5), semi-axes 44 x 50 px.
    u, v = (points[:, 0] - 63.5) / (110 * 128 / 320), (points[:, 1] - 63.5) / (110 * 128 / 280)
    assert np.abs(np.hypot(u, v) - 1).max() < 0.05  # every labelled point on the limbus, none on a lid line
