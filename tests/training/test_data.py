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
