"""`iristrack capture` and `run --quality`: best passing frames as PNG + JSON, refusals, cut-short captures.

Runs the CLI as a subprocess on a rendered clip (tools.synthetic seed 0, where the shipped model trusts most
frames at 320x240) with the shipped model on ONNX Runtime; the capture sink's own safety is tested in-process.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.cli.test_cli import assert_one_error_line, iristrack
from tests.cli.test_run_faults import run_args
from tests.paths import SHIPPED_MODEL
from tools.synthetic import write_clip
from tracker.errors import TrackerError
from tracker.io.capture import CAPTURE_RECORD, CaptureSink, capture_view
from tracker.io.sinks import QUALITY_COLUMNS
from tracker.quality import MEASURE_NAMES
from tracker.structures import Boundary, Frame, FrameResult, Status


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    # Seed 4: a clip on which the shipped model trusts both boundaries in most frames (most seeds' small
    # pupils are reported untrusted, and the default gates require trusted boundaries).
    write_clip(folder / "eye4.mp4", folder / "eye4_truth.csv", 60, (320, 240), 60.0, 4)
    return folder / "eye4.mp4"


def capture_args(*args: str) -> list[str]:
    return ["capture", *args, "--model", str(SHIPPED_MODEL), "--backend", "onnxruntime"]


def test_capture_keeps_the_best_passing_frames_as_lossless_pngs_with_their_record(clip, tmp_path):
    out = tmp_path / "cap"
    proc = iristrack(*capture_args(str(clip), "--out", str(out), "--best", "3"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / CAPTURE_RECORD).read_text())
    frames = record["frames"]
    assert len(frames) == 3 and record["frames_seen"] == 60 and record["frames_passed"] >= 3
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f["image"] for f in frames)
    scores = [f["quality"]["quality_score"] for f in frames]
    assert scores == sorted(scores, reverse=True)
    assert record["profile"]["name"] == "default" and "sharpness" in record["profile"]["gates"]
    video = cv2.VideoCapture(str(clip))
    decoded = [f for ok, f in iter(video.read, (False, None)) if ok]
    for f in frames:
        assert f["quality"]["quality_pass"] and f["status"] == "ok" and f["eye"] == 0
        assert set(MEASURE_NAMES) <= set(f["quality"]) and f["captured_unix_s"] > 0
        png = cv2.imread(str(out / f["image"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(png, decoded[f["frame"]])  # lossless: the frame as the tracker saw it


def test_capture_says_which_gate_failed_when_it_keeps_too_few(clip, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text('name = "strict"\n[gates.iris_radius_px]\nmin = 500\nsource = "test"\n')
    out = tmp_path / "cap"
    proc = iristrack(*capture_args(str(clip), "--out", str(out), "--profile", str(strict)), cwd=tmp_path)
    assert proc.returncode == 1
    assert "error: kept 0 of 3 frames; the gate failed most:" in proc.stderr
    record = json.loads((out / CAPTURE_RECORD).read_text())
    assert record["frames"] == [] and record["failed_gates"]["iris_radius_px"] == 60
    assert record["profile"]["name"] == "strict"


@pytest.mark.parametrize("case", ["not empty", "is the source folder", "bad profile", "missing profile"])
def test_capture_refuses_bad_input_in_one_line_before_anything_is_written(clip, tmp_path, case):
    out = tmp_path / "cap"
    args = [str(clip), "--out", str(out)]
    expected = {
        "not empty": "is not empty",
        "is the source folder": "inside the source",
        "bad profile": "gate 'focus' is not a measure",
        "missing profile": "cannot read quality profile",
    }[case]
    if case == "not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if case == "is the source folder":
        images = tmp_path / "frames"
        images.mkdir()
        cv2.imwrite(str(images / "a.png"), np.zeros((240, 320), np.uint8))
        args = [str(images), "--out", str(images / "cap")]
    if case == "bad profile":
        (tmp_path / "p.json").write_text('{"gates": {"focus": {"min": 1}}}')
        args += ["--profile", str(tmp_path / "p.json")]
    if case == "missing profile":
        args += ["--profile", str(tmp_path / "nope.toml")]
    proc = iristrack(*capture_args(*args), cwd=tmp_path)
    assert_one_error_line(proc, expected)
    if case == "not empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    elif case != "is the source folder":
        assert not out.exists()


def test_run_quality_adds_the_measures_to_jsonl_and_csv_and_only_when_asked(clip, tmp_path):
    proc = iristrack(*run_args(str(clip), "--out", "q.jsonl", "--csv", "q.csv", "--quality", "--quiet"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and all(set(MEASURE_NAMES) <= set(r["quality"]) for r in rows)
    assert any(r["quality"]["quality_pass"] for r in rows)
    failing = [r for r in rows if not r["quality"]["quality_pass"]]
    assert failing and all(r["quality"]["quality_failed"] for r in failing)
    with (tmp_path / "q.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert set(QUALITY_COLUMNS) <= set(table[0]) and len(table) == 60
    assert [t["quality_pass"] == "True" for t in table] == [r["quality"]["quality_pass"] for r in rows]
    plain = iristrack(*run_args(str(clip), "--out", "p.jsonl", "--csv", "p.csv", "--quiet"), cwd=tmp_path)
    assert plain.returncode == 0
    assert "quality" not in json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert "quality_pass" not in (tmp_path / "p.csv").read_text().splitlines()[0]
    bare = iristrack(*run_args(str(clip), "--out", "x.jsonl", "--profile", "p.toml"), cwd=tmp_path)
    assert bare.returncode == 2 and "add --quality" in bare.stderr


# --- the sink in-process: ranking, replacement, interrupted captures ---------------------------------------


def eye_frame(index: int, blur: float) -> tuple[Frame, FrameResult]:
    from tests.tracker.test_quality import clean_params, measured

    _, image, truth = measured(clean_params(blur_sigma_px=blur))
    result = FrameResult("rig", index, index / 30.0, Boundary(truth.iris, 1.0, True), Boundary(truth.pupil, 1.0, True),
                         Status.OK, 1.0)  # fmt: skip
    return Frame(image, index, index / 30.0, "rig"), result


def test_the_sink_keeps_the_sharpest_and_deletes_an_image_only_after_the_record_drops_it(tmp_path):
    out = tmp_path / "cap"
    with CaptureSink(out, best=2, source="rig", stop_when_full=False) as sink:
        for i, blur in enumerate((1.2, 0.9, 0.0, 0.6, 3.5)):
            sink.write(*eye_frame(i, blur))
            record = json.loads((out / CAPTURE_RECORD).read_text())
            listed = {f["image"] for f in record["frames"]}
            assert listed <= {p.name for p in out.glob("*.png")}  # the record never names a missing image
    kept = [f["frame"] for f in json.loads((out / CAPTURE_RECORD).read_text())["frames"]]
    assert kept == [2, 3]  # sharpest first; the blurred last frame failed the sharpness gate
    assert sorted(p.name for p in out.glob("*.png")) == ["rig_000002.png", "rig_000003.png"]
    assert sink.frames_passed >= 3 and sink.failed_gates["sharpness"] == 5 - sink.frames_passed


def test_a_capture_cut_short_leaves_a_record_of_complete_images_only(tmp_path, monkeypatch):
    out = tmp_path / "cap"
    sink = CaptureSink(out, best=3, stop_when_full=True)
    sink.write(*eye_frame(0, 0.0))
    real = cv2.imencode

    def full_disk(ext, image, *a):
        raise TrackerError("cannot write the capture image: No space left on device")

    monkeypatch.setattr(cv2, "imencode", full_disk)
    with pytest.raises(TrackerError, match="No space left"):
        sink.write(*eye_frame(1, 0.3))
    monkeypatch.setattr(cv2, "imencode", real)
    (out / "rig_000009.png").write_bytes(b"half")  # an image written just before a kill, not yet in the record
    sink.close()
    record = json.loads((out / CAPTURE_RECORD).read_text())
    assert [f["image"] for f in record["frames"]] == ["rig_000000.png"]
    assert sorted(p.name for p in out.iterdir()) == [CAPTURE_RECORD, "rig_000000.png"]
    assert not sink.full and not sink.wants_quit


def test_a_full_live_capture_asks_the_run_to_stop_and_the_view_names_the_failing_gate(tmp_path):
    with CaptureSink(tmp_path / "cap", best=1, stop_when_full=True) as sink:
        frame, result = eye_frame(0, 3.5)
        report = sink.write(frame, result)
        assert not report.passed and not sink.wants_quit
        view = capture_view(frame, result, report, len(sink.kept), sink.best)
        assert view.shape == (*frame.image.shape, 3)
        sink.write(*eye_frame(1, 0.0))
        assert sink.wants_quit
