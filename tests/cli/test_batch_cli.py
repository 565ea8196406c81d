"""`iristrack batch` as a user runs it: the same results as `run`, exit codes, a kill mid-batch and its resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.paths import IRISTRACK, REPO, SHIPPED_MODEL
from tests.tracker.test_batch import csv_rows
from tools.synthetic import write_clip

pytest.importorskip("onnxruntime")
BACKEND = ("--backend", "onnxruntime", "--model", str(SHIPPED_MODEL))
SHORT, LONG = 20, 400  # frames: a quick clip, and one long enough to be killed in the middle of


def iristrack(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*IRISTRACK, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def clip(path: Path, seed: int, frames: int = SHORT) -> str:
    write_clip(path, path.with_suffix(".truth.csv"), frames, (160, 120), 30.0, seed)
    return str(path)


def rows(path: Path) -> list[dict]:
    """JSONL rows without the timing field (the only one allowed to differ)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in records]


def test_batch_writes_what_run_writes_for_each_input_and_exits_0(tmp_path):
    inputs = [clip(tmp_path / "in" / "a" / "eye.mp4", 1), clip(tmp_path / "in" / "b" / "eye.mp4", 2)]
    proc = iristrack("batch", *inputs, "--out", str(tmp_path / "out"), "--csv", "--workers", "1", *BACKEND)
    assert proc.returncode == 0, proc.stderr
    assert "frames/s" in proc.stdout and "batch_summary.json" in proc.stdout
    for source, name in zip(inputs, ("a/eye.mp4", "b/eye.mp4"), strict=True):
        ran = iristrack("run", source, "--out", str(tmp_path / "r.jsonl"), "--csv", str(tmp_path / "r.csv"), *BACKEND)
        assert ran.returncode == 0, ran.stderr
        assert rows(tmp_path / "out" / f"{name}.jsonl") == rows(tmp_path / "r.jsonl")
        assert csv_rows(tmp_path / "out" / f"{name}.csv") == csv_rows(tmp_path / "r.csv")
    again = iristrack("batch", *inputs, "--out", str(tmp_path / "out"), "--csv", "--workers", "1", *BACKEND)
    assert again.returncode == 0
    assert json.loads((tmp_path / "out" / "batch_summary.json").read_text())["complete_before"] == 2


def test_a_corrupt_input_among_good_ones_is_reported_and_exits_1(tmp_path):
    good = clip(tmp_path / "in" / "good.mp4", 3)
    bad = tmp_path / "in" / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{bad}\n{good}\n")
    proc = iristrack("batch", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--workers", "1", *BACKEND)
    assert proc.returncode == 1
    assert f"failed: {bad}:" in proc.stderr and "1 of 2 inputs failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(rows(tmp_path / "out" / "good.mp4.jsonl")) == SHORT
    assert not (tmp_path / "out" / "bad.mp4.jsonl").exists()


def _start_batch(inputs: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*IRISTRACK, "batch", *inputs, "--out", str(out), "--workers", "1", "--quiet", *BACKEND],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_partial(out: Path, proc: subprocess.Popen, min_bytes: int = 2000) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in out.rglob("*.partial") if p.stat().st_size >= min_bytes]
        if partial:
            return partial[0]
        time.sleep(0.05)
    raise AssertionError(f"no .partial output appeared (exit {proc.poll()})")


@pytest.mark.timeout(300)
def test_a_batch_killed_mid_input_leaves_no_partial_output_under_a_final_name_and_a_rerun_finishes(tmp_path):
    inputs = [clip(tmp_path / "in" / f"v{i}.mp4", i, LONG) for i in range(3)]
    out = tmp_path / "out"
    proc = _start_batch(inputs, out)
    try:
        partial = _wait_for_partial(out, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    time.sleep(1.0)  # the orphaned worker sees its driver gone after the frame it is on, and stops
    assert partial.exists() and not Path(str(partial).removesuffix(".partial")).exists()
    for final in out.rglob("*.jsonl"):
        assert len(rows(final)) == LONG, f"{final} is under its final name but incomplete"
    done = iristrack("batch", *inputs, "--out", str(out), "--workers", "1", *BACKEND, timeout=240)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.rglob("*.jsonl")) == ["v0.mp4.jsonl", "v1.mp4.jsonl", "v2.mp4.jsonl"]
    assert all(len(rows(p)) == LONG for p in out.rglob("*.jsonl"))
    assert not list(out.rglob("*.partial"))


@pytest.mark.timeout(300)
def test_sigterm_stops_the_batch_with_143_and_keeps_the_input_in_progress_partial(tmp_path):
    inputs = [clip(tmp_path / "in" / f"v{i}.mp4", i, LONG) for i in range(2)]
    out = tmp_path / "out"
    proc = _start_batch(inputs, out)
    try:
        partial = _wait_for_partial(out, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    assert partial.exists() and not Path(str(partial).removesuffix(".partial")).exists()
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["interrupted"] and summary["stop_signal"] == "SIGTERM"
    assert summary["done"] < 2
