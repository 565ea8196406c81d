"""Result sinks: JSONL/CSV records, crash safety, overlay drawing, fan-out, window keys (video: test_video.py)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.paths import REPO
from tracker.errors import TrackerError
from tracker.io.overlay import IRIS_BGR, PUPIL_BGR, draw_overlay
from tracker.io.sinks import CSV_COLUMNS, FACE_CSV_COLUMNS, CsvSink, JsonlSink, MultiSink, result_to_dict
from tracker.io.window import WindowControls
from tracker.structures import Boundary, Ellipse, EyeBox, EyeResult, Frame, FrameResult, SizeMm, Status


def make_result(i: int = 0, *, pupil: bool = True, source: str = "clip.mp4") -> FrameResult:
    iris = Boundary(Ellipse(32.123456, 24.5, 15.0, 14.0, math.radians(30.0)), 0.912345)
    pup = Boundary(Ellipse.circle(31.0, 25.0, 5.5), 0.8) if pupil else None
    status = Status.OK if pupil else Status.NO_PUPIL
    return FrameResult(source, i, i / 30.0, iris, pup, status, 3.14159)


def make_frame(i: int = 0, image: np.ndarray | None = None) -> Frame:
    return Frame(np.zeros((48, 64), np.uint8) if image is None else image, i, i / 30.0, "clip.mp4")


def test_result_to_dict_shape_and_rounding():
    d = result_to_dict(make_result(3, pupil=False))
    assert d == {
        "source": "clip.mp4",
        "frame": 3,
        "timestamp_s": 0.1,
        "iris": {
            "cx": 32.123,
            "cy": 24.5,
            "semi_major": 15.0,
            "semi_minor": 14.0,
            "angle_deg": 30.0,
            "confidence": 0.9123,
            "trusted": True,
        },
        "pupil": None,
        "status": "no_pupil",
        "latency_ms": 3.142,
        "pupil_diameter_mm": None,
        "pupil_diameter_sd_mm": None,
        "distance_mm": None,
        "distance_sd_mm": None,
    }
    assert "eyes" not in d  # a close-up's record has no eye list


def make_face_result(i: int = 0, *, sides: tuple[str, ...] = ("right", "left")) -> FrameResult:
    eyes = []
    for k, side in enumerate(sides):
        box = EyeBox(side, 100.0 + 80 * k, 90.0, 64.0, 48.0, 0.05)
        iris = Boundary(Ellipse.circle(box.cx, box.cy, 8.0), 0.95)
        pupil = Boundary(Ellipse.circle(box.cx, box.cy, 3.0), 0.9)
        eyes.append(EyeResult(side, box, iris, pupil, Status.OK, SizeMm(4.3875, 0.2), None))
    return FrameResult("cam", i, i / 30.0, None, None, Status.OK if eyes else Status.NO_IRIS, 2.0, eyes=tuple(eyes))


def test_a_face_frame_record_lists_each_eye_with_its_side_box_and_mm():
    d = result_to_dict(make_face_result(4))
    assert d["iris"] is None and d["pupil"] is None and [e["side"] for e in d["eyes"]] == ["right", "left"]
    right = d["eyes"][0]
    assert right["iris"]["cx"] == 100.0 and right["status"] == "ok"
    assert right["pupil_diameter_mm"] == 4.388 and right["pupil_diameter_sd_mm"] == 0.2
    assert right["distance_mm"] is None
    assert right["box"] == {"cx": 100.0, "cy": 90.0, "width_px": 64.0, "height_px": 48.0, "angle_deg": 2.86}
    assert result_to_dict(make_face_result(5, sides=()))["eyes"] == []  # no face: an empty list, not a missing key


def test_face_csv_is_one_row_per_frame_with_each_eye_under_its_side(tmp_path):
    path = tmp_path / "r.csv"
    with CsvSink(path, faces=True) as sink:
        sink.write(None, make_face_result(0))
        sink.write(None, make_face_result(1, sides=("left",)))
        sink.write(None, FrameResult("cam", 2, None, None, None, Status.BAD_FRAME, 0.0))  # unreadable: no eye
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == list(FACE_CSV_COLUMNS) and len(rows) == 3
    assert rows[0]["right_iris_cx"] == "100.0" and rows[0]["left_iris_cx"] == "180.0"
    assert rows[0]["right_pupil_diameter_mm"] == "4.388"
    assert rows[1]["right_status"] == "" and rows[1]["left_status"] == "ok" and rows[1]["left_iris_cx"] == "100.0"
    assert rows[2]["status"] == "bad_frame" and rows[2]["right_status"] == rows[2]["left_status"] == ""


def test_an_auto_csv_takes_its_header_from_the_first_readable_frame(tmp_path):
    bad = FrameResult("cam", 0, None, None, None, Status.BAD_FRAME, 0.0)
    faces, closeups, empty = tmp_path / "f.csv", tmp_path / "c.csv", tmp_path / "e.csv"
    with CsvSink(faces, faces=None) as sink:
        sink.write(None, bad)  # before the run knows its kind: held, then written under the face header
        sink.write(None, make_face_result(1))
        with pytest.raises(TrackerError, match="close-ups"):
            CsvSink(tmp_path / "x.csv").write(None, make_face_result(2))
    rows = list(csv.DictReader(faces.open()))
    assert list(rows[0]) == list(FACE_CSV_COLUMNS) and [r["frame"] for r in rows] == ["0", "1"]
    with CsvSink(closeups, faces=None) as sink:
        sink.write(None, bad)
        sink.write(None, make_result(1))
    rows = list(csv.DictReader(closeups.open()))
    assert list(rows[0]) == list(CSV_COLUMNS) and [r["frame"] for r in rows] == ["0", "1"]
    with CsvSink(empty, faces=None):
        pass
    assert empty.read_text().strip().split(",") == list(CSV_COLUMNS)  # a run with no frame still has its header


def test_result_to_dict_is_valid_json_for_nan():
    r = FrameResult("x", 0, float("nan"), None, None, Status.NO_IRIS, float("inf"))
    d = json.loads(json.dumps(result_to_dict(r), allow_nan=False))
    assert d["timestamp_s"] is None and d["latency_ms"] is None and d["iris"] is None


def test_jsonl_lines_match_result_to_dict(tmp_path):
    results = [make_result(i, pupil=i % 2 == 0) for i in range(5)]
    with JsonlSink(tmp_path / "out" / "r.jsonl") as sink:
        for r in results:
            sink.write(make_frame(r.frame_index), r)
            # flushed per frame: readable from outside before close
            assert len((tmp_path / "out" / "r.jsonl").read_text().splitlines()) == r.frame_index + 1
    lines = (tmp_path / "out" / "r.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [result_to_dict(r) for r in results]


def test_csv_columns_and_blank_cells(tmp_path):
    path = tmp_path / "r.csv"
    with CsvSink(path) as sink:
        sink.write(make_frame(0), make_result(0))
        sink.write(make_frame(1), make_result(1, pupil=False))
        assert len(path.read_text().splitlines()) == 3  # flushed before close
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert CSV_COLUMNS[:5] == ("source", "frame", "timestamp_s", "iris_cx", "iris_cy")
    assert CSV_COLUMNS[-6:] == (
        "status",
        "latency_ms",
        "pupil_diameter_mm",
        "pupil_diameter_sd_mm",
        "distance_mm",
        "distance_sd_mm",
    )  # the mm columns came last, after the first release's columns: readers by position keep working
    assert rows[0]["iris_cx"] == "32.123" and rows[0]["pupil_semi_major"] == "5.5" and rows[0]["status"] == "ok"
    assert all(rows[1][c] == "" for c in CSV_COLUMNS if c.startswith("pupil_"))
    assert rows[1]["iris_confidence"] == "0.9123" and rows[1]["status"] == "no_pupil"


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.tracker.test_sinks import make_frame, make_result
from tracker.io.sinks import JsonlSink
sink = JsonlSink({path!r})
for i in range({k}):
    sink.write(make_frame(i), make_result(i))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_loses_no_written_frame(tmp_path):
    path, k = tmp_path / "r.jsonl", 7
    script = KILL_SCRIPT.format(repo=str(REPO), path=str(path), k=k)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    text = path.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == k
    assert [json.loads(line)["frame"] for line in lines] == list(range(k))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((48, 64), np.uint8),
        np.zeros((48, 64), np.uint16) + 1000,
        np.zeros((48, 64, 3), np.uint8),
        np.zeros((48, 64, 4), np.uint8),
        np.zeros((47, 63, 3), np.uint16),
    ],
    ids=["gray8", "gray16", "bgr8", "bgra8", "bgr16-odd"],
)
def test_draw_overlay_returns_bgr8_copy(image):
    before = image.copy()
    out = draw_overlay(image, make_result(), fps=29.97)
    assert out.dtype == np.uint8 and out.shape == (*image.shape[:2], 3)
    np.testing.assert_array_equal(image, before)  # the frame itself is never drawn on
    assert out.any()


def test_draw_overlay_puts_ellipses_where_they_are():
    r = FrameResult("x", 0, 0.0, Boundary(Ellipse.circle(40.25, 30.5, 20.0), 0.9), None, Status.NO_PUPIL, 1.0)
    out = draw_overlay(np.zeros((64, 96), np.uint8), r, text=False)
    on_curve = out[30, 60].astype(int)  # (40.25 + 20, 30.5) rounds to column 60, row 30
    assert on_curve[1] > 100 and on_curve[0] < 60 and on_curve[2] < 60  # green
    assert not out[5, 5].any() and not out[30, 50].any()  # background and interior untouched
    r2 = FrameResult("x", 0, 0.0, None, Boundary(Ellipse.circle(40.0, 30.0, 6.0), 0.9), Status.NO_IRIS, 1.0)
    out2 = draw_overlay(np.zeros((64, 96), np.uint8), r2, text=False)
    px = out2[30, 46].astype(int)
    assert px[0] > 100 and px[2] > 100 and px[1] < 60  # magenta
    assert IRIS_BGR != PUPIL_BGR


def test_results_sink_unwritable_path_is_a_tracker_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrackerError, match="cannot write results"):
        JsonlSink(tmp_path / "file" / "r.jsonl")


class RecordingSink:
    def __init__(self, fail_on_close: bool = False) -> None:
        self.written: list[int] = []
        self.closed = 0
        self.fail_on_close = fail_on_close

    def write(self, frame, result):
        self.written.append(result.frame_index)

    def close(self):
        self.closed += 1
        if self.fail_on_close:
            raise OSError("disk full")


def test_multisink_fans_out_and_closes_once():
    a, b = RecordingSink(), RecordingSink()
    with MultiSink([a, b]) as sink:
        for i in range(3):
            sink.write(make_frame(i), make_result(i))
        assert not sink.wants_quit
    sink.close()
    assert a.written == b.written == [0, 1, 2]
    assert a.closed == b.closed == 1


def test_multisink_closes_all_on_exception_and_on_failing_close():
    a, b = RecordingSink(fail_on_close=True), RecordingSink()
    with pytest.raises(KeyError), MultiSink([a, b]):
        raise KeyError("boom")
    assert a.closed == b.closed == 1
    c, d = RecordingSink(fail_on_close=True), RecordingSink()
    with pytest.raises(OSError, match="disk full"):
        MultiSink([c, d]).close()
    assert d.closed == 1


def test_multisink_wants_quit_from_any_sink():
    quitting = RecordingSink()
    quitting.wants_quit = True
    assert MultiSink([RecordingSink(), quitting]).wants_quit


def test_window_keys():
    c = WindowControls()
    c.handle_key(-1)
    assert c == WindowControls()
    c.handle_key(ord(" "))
    assert c.paused
    c.handle_key(ord(" "))
    assert not c.paused
    c.handle_key(ord("r"))
    assert c.recording
    c.handle_key(ord("r"))
    assert not c.recording
    c.handle_key(ord("s"))
    assert c.snapshot_requested
    c.handle_key(0x100000 | ord("q"))  # waitKey may set modifier bits above the low byte
    assert c.wants_quit


@pytest.mark.parametrize("image", [None, np.zeros((16, 16, 2), np.uint8), np.zeros((16, 16), np.int32)])
def test_an_unreadable_frame_draws_a_black_canvas_with_its_status(image):
    result = FrameResult("x", 0, None, None, None, Status.BAD_FRAME, 0.0)
    out = draw_overlay(image, result)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


def test_a_failed_line_write_leaves_no_hole_for_the_next(tmp_path):
    from tracker.io.sinks import LineFile

    path = tmp_path / "r.txt"
    f = LineFile(path)
    f.write_line(b"one\n")

    class Full:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def write(self, view):
            self.calls += 1
            if self.calls == 1:
                return self.inner.write(view[:2])  # half a line reaches the disk, then the disk is full
            raise OSError(28, "No space left on device")

        def fileno(self):
            return self.inner.fileno()

        def seek(self, pos):
            return self.inner.seek(pos)

        def close(self):
            self.inner.close()

    f._file = Full(f._file)
    with pytest.raises(TrackerError, match="No space left"):
        f.write_line(b"two\n")
    f._file = f._file.inner
    f.write_line(b"three\n")
    f.close()
    assert path.read_bytes() == b"one\nthree\n"
