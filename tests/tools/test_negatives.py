"""The negative set: deterministic, right sizes and dtypes, every kind what it says, bundled photos offline."""

from __future__ import annotations

import csv
import socket

import cv2
import numpy as np
import pytest

from tools.negatives import (
    FACE_KINDS,
    SAMPLE_PHOTOS,
    SIZES_WH,
    SYNTHETIC_KINDS,
    NegativeImage,
    negative_images,
    sample_photos,
    synthetic_negative,
    write_negatives,
)

N_KINDS = len(SYNTHETIC_KINDS)
TWO_ROUNDS = 2 * N_KINDS  # every kind twice: enough to see gray and colour, small and large


@pytest.fixture(scope="module")
def synthetic() -> list[NegativeImage]:
    return list(negative_images(TWO_ROUNDS, seed=0, include_samples=False))


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def test_same_seed_same_pixels_and_a_shorter_set_is_a_prefix(synthetic):
    again = [synthetic_negative(i, seed=0) for i in range(TWO_ROUNDS)]
    assert [a.name for a in again] == [s.name for s in synthetic]
    assert all(np.array_equal(a.image, s.image) for a, s in zip(again, synthetic, strict=True))
    short = list(negative_images(5, seed=0, include_samples=False))
    assert all(np.array_equal(a.image, s.image) for a, s in zip(short, synthetic[:5], strict=True))
    other = [synthetic_negative(i, seed=1) for i in range(N_KINDS)]
    assert sum(np.array_equal(o.image, s.image) for o, s in zip(other, synthetic[:N_KINDS], strict=True)) == 0


def test_kinds_in_turn_sizes_dtypes_gray_and_colour(synthetic):
    assert [s.kind for s in synthetic] == list(SYNTHETIC_KINDS) * 2
    assert len({s.name for s in synthetic}) == len(synthetic)
    sizes = set()
    for item in synthetic:
        image = item.image
        assert image.dtype == np.uint8 and image.flags.c_contiguous
        assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3), item.name
        sizes.add((image.shape[1], image.shape[0]))
        assert item.kind in item.name
    assert sizes <= set(SIZES_WH) and len(sizes) >= 4
    assert {item.image.ndim for item in synthetic} == {2, 3}


def _of(synthetic: list[NegativeImage], kind: str) -> list[np.ndarray]:
    return [_gray(s.image).astype(np.float32) for s in synthetic if s.kind == kind]


def test_each_kind_looks_like_its_name(synthetic):
    for img in _of(synthetic, "flat"):
        assert img.std() < 0.04 * 255
    for img in _of(synthetic, "dark_glints"):  # nearly black, with a saturated spot
        assert np.median(img) < 0.1 * 255 and img.max() > 150
    for img in _of(synthetic, "bright_disc"):  # a bright disc on black: dark corners, bright inside
        corners = np.r_[img[:3, :3].ravel(), img[-3:, -3:].ravel()]
        assert corners.mean() < 0.1 * 255 and np.percentile(img, 99) > 0.4 * 255
    for img in _of(synthetic, "dark_disc"):  # one dark region on a lighter surface
        assert img.min() < 0.5 * np.median(img)
    for kind in ("noise", "multiscale_noise", "stripes", "checkerboard", "text", "cells"):
        for img in _of(synthetic, kind):
            assert img.std() > 0.02 * 255, kind


def test_face_kinds_are_named_and_known():
    kinds = set(SYNTHETIC_KINDS) | {kind for _, _, kind in SAMPLE_PHOTOS}
    assert FACE_KINDS.issubset(kinds)
    assert "face_far" in FACE_KINDS and "dark_disc" not in FACE_KINDS
    assert all(kind.startswith("photo_") for _, _, kind in SAMPLE_PHOTOS)
    assert not any(kind.startswith("photo_") for kind in SYNTHETIC_KINDS)


def test_bundled_photos_load_without_the_network(monkeypatch):
    pytest.importorskip("skimage")

    def no_network(*args, **kwargs):
        raise OSError("test: no network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    photos = list(sample_photos())
    names = {p.name for p in photos}
    assert {"skimage/coins", "skimage/moon", "skimage/camera", "skimage/astronaut", "skimage/text"} <= names
    assert len(names) == len(photos) >= 15
    for photo in photos:
        assert photo.kind.startswith("photo_") and photo.image.dtype == np.uint8
        assert photo.image.ndim == 2 or photo.image.shape[2] == 3
        assert photo.image.shape[1] <= 1280 and photo.image.shape[0] <= 720
    faces = {p.name for p in photos if p.kind == "photo_face_far"}
    assert {"skimage/astronaut", "skimage/camera"} <= faces
    # skimage's RGB became BGR: the astronaut's orange suit has more red (channel 2) than blue (channel 0).
    astronaut = next(p.image for p in photos if p.name == "skimage/astronaut").astype(np.float32)
    assert astronaut[..., 2].mean() > astronaut[..., 0].mean()


def test_full_set_counts():
    photos = list(sample_photos())
    items = list(negative_images(n_synthetic=3, seed=2))
    assert [i.kind for i in items[:3]] == list(SYNTHETIC_KINDS[:3])
    assert [i.name for i in items[3:]] == [p.name for p in photos]
    assert list(negative_images(n_synthetic=0, include_samples=False)) == []


def test_write_negatives_round_trips(tmp_path, synthetic):
    n = write_negatives(tmp_path, synthetic[:4])
    assert n == 4
    with (tmp_path / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [s.name for s in synthetic[:4]]
    for row, item in zip(rows, synthetic[:4], strict=True):
        assert row["kind"] == item.kind
        back = cv2.imread(str(tmp_path / row["file"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(back, item.image)
