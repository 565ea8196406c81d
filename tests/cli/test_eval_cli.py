"""`iristrack eval` as a user meets it: what it scores, which split and why, and sets written by the tools."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import IRISTRACK, REPO, SHARED_DATA, SHIPPED_MODEL
from tools.synthetic import random_eye_params, render_eye, write_image_set

CARD = SHIPPED_MODEL.with_suffix(".json")
TEST_SUBJECT = "iitd-116"  # in the shipped card's test split
TRAINED_SUBJECT = "iitd-10"  # in the shipped card's train split
DEV_DATA = SHARED_DATA / "irisseg-ep"


def iristrack(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: the CLI of this checkout, whichever one the environment has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [*IRISTRACK, *args, "--backend", "onnxruntime"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def table_n(stdout: str) -> dict[str, int]:
    """Markdown table -> {"model iris": n, ...}."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in stdout.splitlines()[2:]]
    return {f"{r[0]} {r[1]}": int(r[2]) for r in rows}


def scoring_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("scoring ", "warning: "))]


@pytest.fixture
def dev_like(tmp_path: Path) -> Path:
    """A development-set layout (index.csv) with two images of a test subject and two of a trained one."""
    root = tmp_path / "dev"
    (root / "iitd" / "images").mkdir(parents=True)
    (root / "iitd" / "masks").mkdir()
    rng = np.random.default_rng(3)
    rows = []
    for subject in (TRAINED_SUBJECT, TEST_SUBJECT):
        for eye in range(2):
            image, truth = render_eye(random_eye_params(rng, (320, 240)), (320, 240))
            name = f"{subject}_{eye}.png"
            cv2.imwrite(str(root / "iitd" / "images" / name), image)
            cv2.imwrite(str(root / "iitd" / "masks" / name), truth.mask)
            rows.append(["iitd", f"iitd/images/{name}", f"iitd/masks/{name}", subject])
    with (root / "index.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["dataset", "image", "mask", "subject"], *rows])
    return root


def test_eval_defaults_to_the_model_cards_test_split(tmp_path, dev_like):
    proc = iristrack("eval", str(dev_like), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert scoring_lines(proc.stderr) == [
        f"scoring 2 of 4 images of {dev_like} (index.csv): test split of {CARD} (1 subject)"
    ]
    assert table_n(proc.stdout) == {"model iris": 2, "model pupil": 2}


def test_eval_split_all_warns_about_training_subjects(tmp_path, dev_like):
    proc = iristrack("eval", str(dev_like), "--split", "all", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert scoring_lines(proc.stderr) == [
        f"scoring all 4 images of {dev_like} (index.csv): all images (--split all)",
        f"warning: 2 of the 4 images scored are of 1 subject the model was trained on ({CARD}); "
        "--split test scores held-out subjects only",
    ]
    assert json.loads(proc.stdout)["images"] == 4  # stdout stays one JSON object


def test_eval_uses_the_card_of_the_model_evaluated(tmp_path, dev_like):
    model = tmp_path / "other" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(SHIPPED_MODEL, model)
    no_card = iristrack("eval", str(dev_like), "--model", str(model), cwd=tmp_path)
    assert no_card.returncode == 0, no_card.stderr
    assert scoring_lines(no_card.stderr) == [
        f"scoring all 4 images of {dev_like} (index.csv): all images: model model.onnx has no card (model.json) "
        "to say which subjects it was trained on"
    ]
    refused = iristrack("eval", str(dev_like), "--model", str(model), "--split", "test", cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines() == [
        "error: --split test needs the model's test subjects, but model model.onnx has no card (model.json) to say "
        "which subjects it was trained on; give --split-from MODEL_CARD_OR_SPLIT_JSON, or --split all"
    ]
    # A card of its own, which holds out the other subject: eval follows it, not the shipped card.
    split = {"by": "subject", "test_subjects": [TRAINED_SUBJECT]}
    (model.parent / "model.json").write_text(json.dumps({"name": "other", "training": {"split": split}}))
    own = iristrack("eval", str(dev_like), "--model", str(model), cwd=tmp_path)
    assert own.returncode == 0, own.stderr
    card = model.with_suffix(".json").relative_to(tmp_path)
    assert scoring_lines(own.stderr) == [
        f"scoring 2 of 4 images of {dev_like} (index.csv): test split of {card} (1 subject)"
    ]


def test_eval_reads_a_set_written_by_write_image_set(tmp_path):
    # write_image_set names images relative to the CSV (images/0000.png): eval once read images/images/...
    write_image_set(tmp_path / "set", n=3, seed=5)
    proc = iristrack("eval", "set", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert scoring_lines(proc.stderr) == [
        "scoring all 3 images of set (ellipses.csv): all images: set lists no subjects"
    ]
    assert table_n(proc.stdout) == {"model iris": 3, "model pupil": 3}


def test_eval_split_on_data_without_subjects_is_one_error_line(tmp_path):
    write_image_set(tmp_path / "set", n=1, seed=5)
    proc = iristrack("eval", "set", "--split", "test", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "error: set lists no subjects (no index.csv, no subject column in ellipses.csv), so --split test cannot "
        "apply; use --split all"
    ]


@pytest.mark.data
@pytest.mark.skipif(not (DEV_DATA / "index.csv").is_file(), reason="development data not in ../shared/data")
def test_eval_on_the_development_set_scores_the_shipped_models_test_subjects(tmp_path):
    proc = iristrack("eval", str(DEV_DATA), "--limit", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert scoring_lines(proc.stderr) == [
        f"scoring 2 of 4,879 images of {DEV_DATA} (index.csv; --limit 2): test split of {CARD} (71 subjects)"
    ]
