"""`iristrack run` under hostile conditions: inputs never overwritten, full disks, signals, bad numbers.

Each test runs the CLI as a user would (a subprocess of the interpreter under test) on files it makes in
tmp_path, and checks what the user sees: one `error:` line, the exit code, and outputs that hold only
complete lines.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.cli.test_cli import assert_one_error_line, iristrack
from tests.paths import IRISTRACK, SHIPPED_MODEL
from tracker.run import RunSummary


def write_clip(path: Path, n: int, size_wh=(64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size_wh)
    for i in range(n):
        writer.write(np.full((size_wh[1], size_wh[0], 3), (i * 8) % 256, np.uint8))
    writer.release()
    return path


def run_args(*args: str) -> list[str]:
    return ["run", *args, "--model", str(SHIPPED_MODEL), "--backend", "onnxruntime"]


# --- inputs are never overwritten -----------------------------------------------------------------


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink", "relative"])
@pytest.mark.parametrize("option", ["--out", "--csv", "--video-out"])
def test_an_output_that_is_the_source_is_refused_before_anything_is_opened(tmp_path, option, alias):
    clip = write_clip(tmp_path / "clip.mp4", 5)
    before = clip.read_bytes()
    target = {"same": clip, "symlink": tmp_path / "link.mp4", "hardlink": tmp_path / "hard.mp4"}.get(alias)
    if alias == "symlink":
        target.symlink_to(clip)
    elif alias == "hardlink":
        os.link(clip, target)
    elif alias == "relative":
        (tmp_path / "sub").mkdir()
        target = Path("sub") / ".." / "clip.mp4"
    proc = iristrack(*run_args(str(clip), option, str(target)), cwd=tmp_path)
    assert_one_error_line(proc, "would be overwritten")
    assert clip.read_bytes() == before


@pytest.mark.parametrize("name", ["model.confidence.json", "model.json"])
@pytest.mark.parametrize("engine", ["default", "face"])
def test_an_output_on_a_shipped_models_files_is_refused(tmp_path, engine, name):
    clip = write_clip(tmp_path / "clip.mp4", 5)
    target = SHIPPED_MODEL.parent.parent / engine / name  # a face run reads engines/face too
    before = target.read_bytes()
    try:
        proc = iristrack("run", str(clip), "--backend", "onnxruntime", "--out", str(target), cwd=tmp_path)
        assert_one_error_line(proc, "would be overwritten")
        assert target.read_bytes() == before
    finally:  # a regression must not leave the shipped model broken for the tests after it
        if target.read_bytes() != before:
            target.write_bytes(before)


def test_two_outputs_on_one_path_are_refused(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 5)
    proc = iristrack(*run_args(str(clip), "--out", "r.txt", "--csv", "r.txt"), cwd=tmp_path)
    assert_one_error_line(proc, "are the same file")
    assert not (tmp_path / "r.txt").exists()


def test_an_output_that_is_an_image_of_the_source_folder_is_refused(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((32, 32), np.uint8))
    before = (folder / "a.png").read_bytes()
    proc = iristrack(*run_args(str(folder), "--video-out", str(folder / "a.png")), cwd=tmp_path)
    assert_one_error_line(proc, "would be overwritten")
    assert (folder / "a.png").read_bytes() == before


# --- write errors ---------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("option", ["--out", "--csv"])
def test_a_full_disk_is_one_error_line_and_exit_1(tmp_path, option):
    clip = write_clip(tmp_path / "clip.mp4", 5)
    proc = iristrack(*run_args(str(clip), option, "/dev/full", "--quiet"), cwd=tmp_path)
    assert_one_error_line(proc, "cannot write results to /dev/full: No space left on device")


def _limit_file_size(limit_bytes: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


@pytest.mark.parametrize(("option", "name"), [("--out", "r.jsonl"), ("--csv", "r.csv")])
def test_a_disk_that_fills_mid_run_leaves_only_complete_lines(tmp_path, option, name):
    # The compiled kernels' cache is written by this process first, so the limited child only reads it.
    from tracker.fit.eye import warm_up

    warm_up()
    clip = write_clip(tmp_path / "clip.mp4", 200)
    limit = 9_000  # room for a few dozen lines, not for 200
    proc = subprocess.run(
        [*IRISTRACK, *run_args(str(clip), option, name, "--quiet")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size(limit),
    )
    assert_one_error_line(proc, f"cannot write results to {name}: File too large")
    data = (tmp_path / name).read_bytes()
    assert 0 < len(data) <= limit and data.endswith(b"\n")
    lines = data.decode().splitlines()
    if option == "--out":
        frames = [json.loads(line)["frame"] for line in lines]
        assert frames == list(range(len(frames)))
    else:
        assert lines[0].startswith("source,frame,") and all(line.count(",") == lines[0].count(",") for line in lines)


def test_a_full_disk_on_the_first_run_runs_uncached_and_fails_only_on_its_results(tmp_path):
    # No compiled-kernel cache yet (the first run after an install) and no room to write one: caching is an
    # optimisation, so the run compiles, goes on, and fails where the results cannot be written, in one line.
    clip = write_clip(tmp_path / "clip.mp4", 200)
    proc = subprocess.run(
        [*IRISTRACK, *run_args(str(clip), "--out", "r.jsonl", "--quiet")],
        cwd=tmp_path,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cold-cache")},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(9_000),
    )
    assert_one_error_line(proc, "cannot write results to r.jsonl: File too large")


# --- signals --------------------------------------------------------------------------------------


def _signals_as_in_a_terminal() -> None:
    # A test runner started with nohup or in the background ignores SIGHUP/SIGINT, and children inherit that;
    # the run rightly leaves ignored signals alone, so give the child the dispositions of a terminal session.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["INT", "TERM", "HUP"]
)
def test_a_signal_ends_the_run_with_its_exit_code_a_summary_and_complete_outputs(tmp_path, sig, code):
    clip = write_clip(tmp_path / "long.mp4", 3000)
    jsonl, mp4 = tmp_path / "x.jsonl", tmp_path / "x.mp4"
    proc = subprocess.Popen(
        [*IRISTRACK, *run_args(str(clip), "--out", str(jsonl), "--video-out", str(mp4))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_signals_as_in_a_terminal,
    )
    try:
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline and proc.poll() is None:
            if jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 20:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the signal could land mid-run"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"interrupted by {signal.Signals(sig).name}" in stderr and "frames from" in stdout
    frames = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
    assert 20 <= len(frames) < 3000 and frames == list(range(len(frames)))
    assert jsonl.read_bytes().endswith(b"\n")
    cap = cv2.VideoCapture(str(mp4))  # playable
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    assert decoded >= len(frames) - 30  # a crash-safe writer may hold back the frames since its last fragment


# --- numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--threshold", "nan"),
        ("--threshold", "inf"),
        ("--threshold", "-0.5"),
        ("--fps", "nan"),
        ("--exposure", "inf"),
        ("--max-frames", "0"),
    ],
)
def test_a_non_finite_or_out_of_range_number_is_one_error_line(tmp_path, args):
    clip = write_clip(tmp_path / "clip.mp4", 3)
    proc = iristrack(*run_args(str(clip), *args), cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert args[0] in lines[0]


# --- how a run ends -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("summary", "code", "line"),
    [
        (RunSummary(frames=7), None, None),
        (RunSummary(frames=7, interrupted=True, stop_signal=signal.SIGTERM), 143, "interrupted by SIGTERM"),
        (RunSummary(frames=7, interrupted=True), 130, "interrupted by SIGINT"),  # Ctrl-C outside the handler
        (RunSummary(frames=7, source_failure="camera 0 lost; gave up after 10.0 s"), 1, "error: camera 0 lost"),
    ],
)
def test_the_exit_code_says_how_the_run_ended(capsys, summary, code, line):
    from cli.run import _exit_for

    if code is None:
        _exit_for(summary)
        assert capsys.readouterr().err == ""
        return
    with pytest.raises(SystemExit) as exit_info:
        _exit_for(summary)
    assert exit_info.value.code == code
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(line) and "7 frames" in err[0]
