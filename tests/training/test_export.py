"""`iristrack export` never overwrites a model without --force; the refusal needs no TensorFlow."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.paths import IRISTRACK, REPO, SHIPPED_MODEL
from tracker.errors import ModelError
from training.export import check_out_dir, export_run


def iristrack(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: the CLI of this checkout, whichever one the environment has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([*IRISTRACK, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()  # no checkpoint: an export that went past the refusal would fail on that instead
    return run


@pytest.mark.parametrize("held", [("model.onnx",), ("model.json",), ("model.onnx", "model.json")])
def test_export_refuses_a_folder_that_holds_a_model(tmp_path, run_dir, held):
    out = tmp_path / "engines" / "mine"
    out.mkdir(parents=True)
    for name in held:
        (out / name).write_text("an earlier export\n")
    before = _digest(out)
    proc = iristrack("export", str(run_dir), "--out", str(out), cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0] == (
        f"error: {out} already holds a model ({', '.join(held)}); export to a new folder (--out engines/NAME), "
        "or pass --force to overwrite it"
    )
    assert _digest(out) == before


def test_export_refuses_the_shipped_model(tmp_path, run_dir):
    shipped = SHIPPED_MODEL.parent
    before = _digest(shipped)
    proc = iristrack("export", str(run_dir), "--out", str(shipped) + "/", cwd=tmp_path)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {shipped} already holds the shipped model (model.onnx, model.json)")
    assert "--force" in proc.stderr
    assert _digest(shipped) == before


def test_export_library_refuses_before_loading_anything(tmp_path, run_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"earlier")
    with pytest.raises(ModelError, match="pass --force"):
        export_run(run_dir, out)
    assert (out / "model.onnx").read_bytes() == b"earlier"


def test_force_and_new_folders_pass_the_check(tmp_path):
    out = tmp_path / "out"
    check_out_dir(out)  # does not exist yet
    out.mkdir()
    (out / "notes.txt").write_text("not a model")
    check_out_dir(out)
    (out / "model.onnx").write_bytes(b"earlier")
    check_out_dir(out, force=True)
