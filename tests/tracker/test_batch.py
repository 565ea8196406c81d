"""Batch runs: outputs equal to the run loop's, mirrored names, failures isolated, resume, and Ray with retries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import SHIPPED_MODEL
from tools.synthetic import write_clip
from tracker.batch import (
    PARTIAL_SUFFIX,
    SUMMARY_NAME,
    BatchOptions,
    default_workers,
    expand_inputs,
    plan_jobs,
    read_manifest,
    run_batch,
)
from tracker.io.sinks import CsvSink, JsonlSink, MultiSink
from tracker.io.sources import open_source
from tracker.pipeline import Tracker, TrackerConfig
from tracker.run import run

pytest.importorskip("onnxruntime")
OPTIONS = BatchOptions(model=str(SHIPPED_MODEL), backend="onnxruntime", threads=1)
CLIP_FRAMES = 24


def make_clip(path: Path, seed: int, frames: int = CLIP_FRAMES) -> Path:
    """A rendered eye clip (mp4v, 160x120) with moving eyes, so results differ from frame to frame."""
    write_clip(path, path.with_suffix(".truth.csv"), frames, (160, 120), 30.0, seed)
    return path


def make_folder(path: Path, n: int = 3) -> Path:
    """A folder of n PNG eye images cut from a rendered clip."""
    clip = make_clip(path.parent / f"{path.name}_src.mp4", 99, n)
    path.mkdir(parents=True)
    cap = cv2.VideoCapture(str(clip))
    for i in range(n):
        ok, image = cap.read()
        assert ok
        cv2.imwrite(str(path / f"{i}.png"), image)
    return path


def rows(path: Path) -> list[dict]:
    """JSONL rows without their timing field."""
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record.pop("latency_ms")
        out.append(record)
    return out


def csv_rows(path: Path) -> list[list[str]]:
    """CSV rows without the latency column."""
    lines = [line.split(",") for line in path.read_text().splitlines()]
    drop = lines[0].index("latency_ms")
    return [cells[:drop] + cells[drop + 1 :] for cells in lines]


def run_one(source: str, jsonl: Path, csv: Path) -> None:
    """What `iristrack run SOURCE --out J --csv C --backend onnxruntime` does, through the library."""
    from dataclasses import replace

    from tracker.fit.confidence import confidence_for

    with open_source(source, prefetch=False) as src:
        smooth = src.fps is not None
        config = replace(TrackerConfig(smooth=smooth), confidence=confidence_for(SHIPPED_MODEL))
        tracker = Tracker.from_model(SHIPPED_MODEL, "onnxruntime", config, threads=1)
        with tracker, MultiSink([JsonlSink(jsonl), CsvSink(csv)]) as sink:
            run(src, tracker, sink)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """root/s1/eye.mp4, root/s2/eye.mp4 (same name, other folder), root/s2/frames/ (images)."""
    root = tmp_path_factory.mktemp("archive")
    make_clip(root / "s1" / "eye.mp4", 1)
    make_clip(root / "s2" / "eye.mp4", 2)
    make_folder(root / "s2" / "frames")
    return root


def test_batch_outputs_equal_the_run_loop_and_mirror_the_input_paths(archive, tmp_path):
    inputs = [str(archive / "s1" / "eye.mp4"), str(archive / "s2" / "eye.mp4"), str(archive / "s2" / "frames")]
    out = tmp_path / "out"
    summary = run_batch(inputs, out, csv=True, workers=0, options=OPTIONS)
    assert [r.status for r in summary.inputs] == ["done"] * 3
    expected = ["s1/eye.mp4.jsonl", "s2/eye.mp4.jsonl", "s2/frames.jsonl"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jsonl")) == expected
    for source, name in zip(inputs, expected, strict=True):
        run_one(source, tmp_path / "r.jsonl", tmp_path / "r.csv")
        assert rows(out / name) == rows(tmp_path / "r.jsonl")
        assert csv_rows((out / name).with_suffix(".csv")) == csv_rows(tmp_path / "r.csv")
    assert any(r["pupil"] for r in rows(out / expected[0])), "the clips should give results to compare"
    assert not list(out.rglob(f"*{PARTIAL_SUFFIX}"))
    assert summary.frames == 2 * CLIP_FRAMES + 3
    written = json.loads((out / SUMMARY_NAME).read_text())
    assert (written["files"], written["done"], written["failed"], written["frames"]) == (3, 3, 0, summary.frames)


def test_a_corrupt_or_missing_input_is_reported_and_the_others_complete(archive, tmp_path):
    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    inputs = [str(bad), str(archive / "s1" / "eye.mp4"), str(tmp_path / "in" / "missing.mp4")]
    out = tmp_path / "out"
    summary = run_batch(inputs, out, workers=1, options=OPTIONS)  # a worker process
    status = {Path(r.source).name: r for r in summary.inputs}
    assert status["eye.mp4"].status == "done" and status["eye.mp4"].frames == CLIP_FRAMES
    assert status["broken.mp4"].status == "failed" and "not a video OpenCV can decode" in status["broken.mp4"].error
    assert status["missing.mp4"].status == "failed" and "source not found" in status["missing.mp4"].error
    assert len(summary.failed) == 2
    finals = {p.name for p in out.rglob("*.jsonl")}
    assert finals == {"eye.mp4.jsonl"}, "a failed input never gets a file under a final name"
    written = json.loads((out / SUMMARY_NAME).read_text())
    assert written["failed"] == 2 and {i["status"] for i in written["inputs"]} == {"done", "failed"}


def test_a_rerun_skips_complete_inputs_and_redoes_partial_ones(archive, tmp_path):
    inputs = [str(archive / "s1" / "eye.mp4"), str(archive / "s2" / "eye.mp4"), str(archive / "s2" / "frames")]
    out = tmp_path / "out"
    run_batch(inputs, out, workers=0, options=OPTIONS)
    first = out / "s1" / "eye.mp4.jsonl"
    reference = (out / "s2" / "eye.mp4.jsonl").read_text()
    stamp = first.stat().st_mtime_ns
    # As a kill leaves it: the second clip only as a half-written .partial, the folder's output gone.
    (out / "s2" / "eye.mp4.jsonl").rename(out / "s2" / f"eye.mp4.jsonl{PARTIAL_SUFFIX}")
    with open(out / "s2" / f"eye.mp4.jsonl{PARTIAL_SUFFIX}", "r+") as f:
        f.truncate(100)
    (out / "s2" / "frames.jsonl").unlink()
    summary = run_batch(inputs, out, workers=0, options=OPTIONS)
    assert [r.status for r in summary.inputs] == ["complete", "done", "done"]
    assert summary.inputs[0].frames == CLIP_FRAMES  # counted from the finished file
    assert first.stat().st_mtime_ns == stamp, "a complete output is not rewritten"
    assert rows(out / "s2" / "eye.mp4.jsonl") == [
        {k: v for k, v in json.loads(line).items() if k != "latency_ms"} for line in reference.splitlines()
    ]
    assert not list(out.rglob(f"*{PARTIAL_SUFFIX}"))
    # Asking for a CSV too makes the inputs incomplete again: they are redone with both files.
    summary = run_batch(inputs[:1], out, csv=True, workers=0, options=OPTIONS)
    assert summary.inputs[0].status == "done" and (out / "eye.mp4.csv").exists()


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a/x.mp4", "b/x.mp4"], ["a/x.mp4.jsonl", "b/x.mp4.jsonl"]),  # same name, other folder: both kept
        (["a/x.mp4", "a/x.avi"], ["x.mp4.jsonl", "x.avi.jsonl"]),  # same stem: the extension keeps them apart
        (["a/b/c/x.mp4"], ["x.mp4.jsonl"]),  # one input: next to nothing but itself
        (["a/frames", "a/b/y.mp4"], ["frames.jsonl", "b/y.mp4.jsonl"]),  # a folder is one input
    ],
)
def test_outputs_mirror_inputs_relative_to_their_common_parent(tmp_path, names, expected):
    jobs = plan_jobs([str(tmp_path / n) for n in names], tmp_path / "out")
    assert [str(Path(j.outputs["jsonl"]).relative_to(tmp_path / "out")) for j in jobs] == expected


def test_globs_and_manifests_expand_to_inputs_in_order(tmp_path):
    for name in ("v10.mp4", "v2.mp4", "v1.mp4"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_text("# session list\nv2.mp4\n\n/abs/v9.mp4\n")
    (tmp_path / "list.csv").write_text("subject,path\n7,v1.mp4\n")
    assert expand_inputs([str(tmp_path / "v*.mp4")]) == [str(tmp_path / n) for n in ("v1.mp4", "v2.mp4", "v10.mp4")]
    assert read_manifest(tmp_path / "list.txt") == [str(tmp_path / "v2.mp4"), "/abs/v9.mp4"]
    assert expand_inputs([str(tmp_path / "list.txt")], tmp_path / "list.csv") == [
        str(tmp_path / "v1.mp4"),
        str(tmp_path / "v2.mp4"),
        "/abs/v9.mp4",
    ]
    assert expand_inputs([str(tmp_path / "v1.mp4"), str(tmp_path / "v1.mp4")]) == [str(tmp_path / "v1.mp4")]
    (tmp_path / "bad.csv").write_text("file\nx.mp4\n")
    with pytest.raises(Exception, match="no 'path' column"):
        read_manifest(tmp_path / "bad.csv")


def test_default_workers_follow_the_measured_cores_per_worker():
    assert [default_workers(n) for n in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]


# --- Ray ---------------------------------------------------------------------------------------------


class DiesOnceBackend:
    """Loads the shipped model; the first process to reach frame 5 kills itself (a worker dying mid-task)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self):
        from tracker.backends.select import load_backend

        backend = load_backend(SHIPPED_MODEL, "onnxruntime", threads=1)[0]
        infer, calls, marker = backend.infer, [0], self.marker

        def infer_or_die(batch: np.ndarray) -> np.ndarray:
            calls[0] += 1
            if calls[0] == 5 and not os.path.exists(marker):
                Path(marker).touch()
                os._exit(1)
            return infer(batch)

        backend.infer = infer_or_die
        return backend


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    repo = str(Path(__file__).resolve().parents[2])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": repo}},
    )
    yield ray
    ray.shutdown()


@pytest.mark.timeout(300)
def test_ray_gives_the_same_outputs_and_retries_a_task_whose_worker_died(local_ray, archive, tmp_path):
    inputs = [str(archive / "s1" / "eye.mp4"), str(archive / "s2" / "eye.mp4"), str(archive / "s2" / "frames")]
    run_batch(inputs, tmp_path / "local", workers=0, options=OPTIONS)
    marker = tmp_path / "died"
    options = BatchOptions(model=str(SHIPPED_MODEL), backend_factory=DiesOnceBackend(str(marker)))
    summary = run_batch(inputs, tmp_path / "ray", options=options, ray_address="auto")
    assert marker.exists(), "one worker process died mid-task"
    assert [r.status for r in summary.inputs] == ["done"] * 3 and summary.runner == "ray"
    for local in (tmp_path / "local").rglob("*.jsonl"):
        assert rows(tmp_path / "ray" / local.relative_to(tmp_path / "local")) == rows(local)
    assert not list((tmp_path / "ray").rglob(f"*{PARTIAL_SUFFIX}"))
    again = run_batch(inputs, tmp_path / "ray", options=options, ray_address="auto")
    assert [r.status for r in again.inputs] == ["complete"] * 3
