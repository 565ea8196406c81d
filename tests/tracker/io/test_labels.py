"""Label sets (tracker.io.labels): which frames a run keeps, the CSV layout eval reads, never overwriting."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools.evaluation import load_eval_set
from tracker.errors import TrackerError
from tracker.io.labels import LABEL_COLUMNS, LabelSetWriter, LabelSink, check_labels_folder, safe_stem
from tracker.structures import Boundary, Ellipse, Frame, FrameResult, Status

IRIS = Ellipse(40.1234, 30.5678, 20.0, 18.0, math.radians(30.0))
PUPIL = Ellipse(41.0, 31.0, 7.0, 6.5, math.radians(100.0))


def result(i: int, iris_trusted: bool | None, pupil_trusted: bool | None, source: str = "cam/eye.mp4") -> FrameResult:
    """A result whose boundaries are present (trusted or not) or absent (None)."""
    iris = None if iris_trusted is None else Boundary(IRIS, 0.95, iris_trusted)
    pupil = None if pupil_trusted is None else Boundary(PUPIL, 0.95, pupil_trusted)
    return FrameResult(source, i, i / 30.0, iris, pupil, Status.OK, 1.0)


def frame(i: int, image: np.ndarray | None = None) -> Frame:
    image = np.full((60, 80, 3), i % 256, np.uint8) if image is None else image
    return Frame(image, i, i / 30.0, "cam/eye.mp4")


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "ellipses.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == LABEL_COLUMNS
        return list(reader)


def test_by_default_only_frames_with_both_boundaries_trusted_are_kept(tmp_path):
    with LabelSink(tmp_path / "set") as sink:
        for i, (iris, pupil) in enumerate([(True, True), (True, False), (None, True), (False, False), (True, True)]):
            sink.write(frame(i), result(i, iris, pupil))
    assert [r["image"] for r in rows(tmp_path / "set")] == ["images/eye_000000.png", "images/eye_000004.png"]
    assert sink.rows == 2 and sink.trusted_frames == 2


def test_partial_keeps_one_trusted_boundary_and_leaves_the_other_blank(tmp_path):
    with LabelSink(tmp_path / "set", partial=True) as sink:
        sink.write(frame(0), result(0, True, True))
        sink.write(frame(1), result(1, True, False))  # untrusted pupil: blank pupil cells
        sink.write(frame(2), result(2, None, True))  # no iris
        sink.write(frame(3), result(3, False, False))  # nothing trusted: no row
        sink.write(frame(4), result(4, None, None))
        sink.write(Frame(None, 5, None, "cam/eye.mp4"), result(5, True, True))  # an unreadable frame: no row
    got = rows(tmp_path / "set")
    assert [r["image"] for r in got] == ["images/eye_000000.png", "images/eye_000001.png", "images/eye_000002.png"]
    assert [bool(r["iris_cx"]) for r in got] == [True, True, False]
    assert [bool(r["pupil_cx"]) for r in got] == [True, False, True]
    assert all(r["pupil_semi_major"] == "" for r in got[1:2]) and all(r["iris_angle_deg"] == "" for r in got[2:])
    assert got[0]["iris_cx"] == "40.123" and got[0]["iris_angle_deg"] == "30.0" and got[0]["pupil_angle_deg"] == "100.0"
    assert {r["subject"] for r in got} == {"eye"} and {r["eye"] for r in got} == {""}
    assert sink.rows == 3 and sink.trusted_frames == 3


def test_every_n_frames_keeps_at_most_one_frame_per_n_indices(tmp_path):
    # Frame indices with a gap (a live source dropped frames) and untrusted stretches.
    trusted = [0, 1, 2, 5, 6, 9, 10, 11, 30, 31, 39, 40]
    with LabelSink(tmp_path / "set", every_frames=10, partial=True) as sink:
        for i in range(45):
            sink.write(frame(i), result(i, i in trusted, None))
    kept = [int(r["image"][-10:-4]) for r in rows(tmp_path / "set")]
    assert kept == [0, 10, 30, 40]
    assert all(b - a >= 10 for a, b in zip(kept, kept[1:], strict=False))


@pytest.mark.parametrize(
    "image",
    [np.arange(60 * 80, dtype=np.uint16).reshape(60, 80) * 13, np.random.default_rng(0).integers(0, 256, (60, 80, 3))],
    ids=["gray16", "bgr8"],
)
def test_images_are_the_original_frames_losslessly_and_load_back_through_eval(tmp_path, image):
    image = image.astype(np.uint16 if image.dtype == np.uint16 else np.uint8)
    with LabelSink(tmp_path / "set") as sink:
        sink.write(frame(7, image), result(7, True, True))
    back = cv2.imread(str(tmp_path / "set" / "images" / "eye_000007.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == image.dtype and np.array_equal(back, image)
    items = load_eval_set(tmp_path / "set")
    assert items.layout == "ellipses.csv" and len(items) == 1 and items.subjects == frozenset({"eye"})
    item = next(iter(items))
    assert np.array_equal(item.image, image)
    for got, want in ((item.iris_gt, IRIS), (item.pupil_gt, PUPIL)):
        assert abs(got.cx - want.cx) < 1e-3 and abs(got.semi_minor - want.semi_minor) < 1e-3
        assert abs(got.angle_deg - want.angle_deg) < 0.01


def test_an_existing_label_set_is_never_overwritten(tmp_path):
    folder = tmp_path / "set"
    with LabelSink(folder) as sink:
        sink.write(frame(0), result(0, True, True))
    before = (folder / "ellipses.csv").read_bytes()
    with pytest.raises(TrackerError, match="already holds ellipses.csv"):
        check_labels_folder(folder)
    with pytest.raises(TrackerError, match="already holds images"):
        LabelSink(folder)  # the sink itself refuses too (a folder filled between the check and the open)
    (folder / "images" / "eye_000000.png").unlink()
    with pytest.raises(TrackerError, match="File exists"):
        LabelSetWriter(folder)  # ellipses.csv is created exclusively
    assert (folder / "ellipses.csv").read_bytes() == before


def test_label_folder_must_be_new_or_empty_and_outside_the_source(tmp_path):
    (tmp_path / "empty").mkdir()
    check_labels_folder(tmp_path / "empty")
    check_labels_folder(tmp_path / "new" / "deeper")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(TrackerError, match="already holds files"):
        check_labels_folder(tmp_path / "busy")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrackerError, match="is a file"):
        check_labels_folder(tmp_path / "file")
    frames = tmp_path / "frames"
    frames.mkdir()
    os.symlink(frames, tmp_path / "alias")
    for inside in (frames, frames / "labels", tmp_path / "alias" / "labels", frames / ".." / "frames" / "x"):
        with pytest.raises(TrackerError, match="inside the source folder"):
            check_labels_folder(inside, [frames])
    check_labels_folder(tmp_path / "frames2", [frames])  # a sibling whose name starts alike is outside


def test_a_failed_image_write_leaves_no_half_file_and_no_row(tmp_path, monkeypatch):
    writer = LabelSetWriter(tmp_path / "set")
    writer.add("a.png", cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes(), IRIS, None)

    class Full:
        def __init__(self, real):
            self._real = real

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._real.close()

        def write(self, data):
            self._real.write(data[:3])
            raise OSError(28, "No space left on device")

    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, mode="r", *a, **k: Full(real_open(path, mode, *a, **k)))
    with pytest.raises(TrackerError, match=r"cannot write labels to .*b\.png: No space left on device"):
        writer.add("b.png", b"x" * 100, IRIS, None)
    monkeypatch.undo()
    writer.close()
    assert sorted(p.name for p in (tmp_path / "set" / "images").iterdir()) == ["a.png"]
    assert [r["image"] for r in rows(tmp_path / "set")] == ["images/a.png"]


@pytest.mark.parametrize(
    ("source", "stem"),
    [("clip.mp4", "clip"), ("frames/f 1.png", "f_1"), ("rtsp://cam/live", "live"), ("0", "0"), ("", "frame")],
)
def test_image_names_come_from_the_source_stem(source, stem):
    assert safe_stem(source) == stem
