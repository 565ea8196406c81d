"""`iristrack run` and `bench` as a user meets them: bad inputs give one `error:` line and exit 1, no traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import IRISTRACK, SHIPPED_MODEL


def iristrack(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # A subprocess, not click's CliRunner: native libraries (FFmpeg, OpenVINO) write to the real stderr.
    return subprocess.run([*IRISTRACK, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_one_error_line(proc: subprocess.CompletedProcess, expected: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]


def bad_sources(tmp: Path) -> dict[str, str]:
    """Source argument -> what its error line must say."""
    (tmp / "x.mp4").write_text("this is not a video\n")
    (tmp / "empty").mkdir()
    (tmp / "notes").mkdir()
    (tmp / "notes" / "a.txt").write_text("hello")
    (tmp / "notes" / "b.csv").write_text("1,2")
    return {
        "missing.mp4": "source not found: missing.mp4",
        "x.mp4": "x.mp4 is not a video OpenCV can decode",
        "empty": "folder empty is empty",
        "notes": "folder notes has no images",
    }


@pytest.mark.parametrize("which", ["missing.mp4", "x.mp4", "empty", "notes"])
def test_run_bad_source_is_one_error_line(tmp_path, which):
    expected = bad_sources(tmp_path)[which]
    assert_one_error_line(iristrack("run", which, "--model", "model.onnx", cwd=tmp_path), expected)


def corrupt_model(tmp: Path) -> Path:
    (tmp / "clip").mkdir()
    cv2.imwrite(str(tmp / "clip" / "a.png"), np.zeros((32, 32), np.uint8))
    path = tmp / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def test_run_corrupt_model_is_one_error_line(tmp_path):
    model = corrupt_model(tmp_path)
    proc = iristrack("run", "clip", "--model", str(model), "--backend", "onnxruntime", cwd=tmp_path)
    assert_one_error_line(proc, "cannot load ONNX model")


def test_run_corrupt_model_default_backend_fails_cleanly(tmp_path):
    # The default CPU backend may be OpenVINO, whose model reader lets native log lines through to stderr;
    # whatever else appears, the run must end with the error line, exit 1, and no Python traceback.
    model = corrupt_model(tmp_path)
    proc = iristrack("run", "clip", "--model", str(model), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: cannot load ONNX model")


def test_run_image_folder_with_a_corrupt_image_reports_it_and_gives_it_a_bad_frame_row(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((48, 64), 40 * i, np.uint8))
    (folder / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "r.jsonl"
    proc = iristrack(
        "run", "frames", "--model", str(SHIPPED_MODEL), "--backend", "onnxruntime", "--out", str(out), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    reports = [line for line in proc.stderr.splitlines() if "f2.png" in line]
    assert len(reports) == 1 and reports[0].startswith("skipped ") and "not a decodable image" in reports[0]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # One row per file, at its position in the folder: the unreadable one is a bad_frame row, with no clock.
    assert [r["frame"] for r in rows] == [0, 1, 2, 3]
    assert [Path(r["source"]).name for r in rows] == ["f0.png", "f1.png", "f2.png", "f3.png"]
    assert [r["status"] == "bad_frame" for r in rows] == [False, False, True, False]
    assert all(r["timestamp_s"] is None for r in rows)


@pytest.mark.parametrize("mode", ["--pipelined", "--sequential"])
def test_run_modes_write_every_frame(tmp_path, mode):
    video = tmp_path / "c.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for i in range(25):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    writer.release()
    out = tmp_path / "r.jsonl"
    proc = iristrack(
        "run", "c.mp4", "--model", str(SHIPPED_MODEL), "--backend", "onnxruntime", "--out", str(out), mode, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert mode.strip("-") in proc.stdout
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == list(range(25))


def test_bench_bad_resize_is_one_error_line(tmp_path):
    proc = iristrack("bench", "clip.mp4", "--resize", "640by480", cwd=tmp_path)
    assert_one_error_line(proc, "--resize expects WIDTHxHEIGHT")


def test_export_bad_input_size_is_one_error_line(tmp_path):
    (tmp_path / "run").mkdir()
    proc = iristrack("export", "run", "--out", "engine", "--input", "96by96", cwd=tmp_path)
    assert_one_error_line(proc, "--input expects WIDTHxHEIGHT")


def _ramp_clip(path, frames: int, fps: float) -> None:
    """A 64x48 mp4 of `frames` flat frames getting brighter, at `fps`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    writer.release()


@pytest.mark.slow
def test_bench_resize_and_soak_report(tmp_path):
    _ramp_clip(tmp_path / "c.mp4", 20, 30.0)
    proc = iristrack(
        "bench",
        "c.mp4",
        "--model",
        str(SHIPPED_MODEL),
        "--backend",
        "onnxruntime",
        "--resize",
        "96x80",
        "--soak",
        "50",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["frame_wh"] == [96, 80] and r["resized_to_wh"] == [96, 80]
    assert set(r["end_to_end"]) == {"sequential", "pipelined"}
    assert all(m["frames"] == 20 for m in r["end_to_end"].values())
    assert r["soak"]["frames"] == 50 and set(r["soak"]["rss_mb"]) == {"start", "after_warmup", "end"}


@pytest.mark.slow
def test_bench_realtime_replays_with_the_live_tracker_and_reports_latency_and_drops(tmp_path):
    _ramp_clip(tmp_path / "c.mp4", 24, 60.0)
    args = ("bench", "c.mp4", "--model", str(SHIPPED_MODEL), "--backend", "onnxruntime", "--realtime", "--json")
    proc = iristrack(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rt = json.loads(proc.stdout)["realtime"]
    assert set(rt) == {"sequential", "pipelined"}
    for mode in rt.values():
        assert mode["input_fps"] == pytest.approx(60.0)
        assert mode["frames_processed"] + mode["dropped_frames"] == 24
        assert mode["frame_to_result_latency"]["median_ms"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]  # the resized copy went to a temporary folder
