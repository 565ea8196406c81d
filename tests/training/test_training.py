"""Trainer: labels, losses, edge metrics, a tiny run that learns, export parity. Needs the [train] extra."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracker.structures import Ellipse
from training.labels import soft_edge_labels, thin_edge_labels
from training.metrics import edge_counts, ods_score

LABEL_TOL_PX = 1.0


def _ellipse_mask(shape, e: Ellipse, lid_y: float | None = None) -> np.ndarray:
    """0/1/2 label mask rasterised by pixel centres: iris ellipse, pupil hole filled with 2 later."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    c, s = np.cos(e.angle_rad), np.sin(e.angle_rad)
    u, v = c * (xx - e.cx) + s * (yy - e.cy), -s * (xx - e.cx) + c * (yy - e.cy)
    inside = (u / e.semi_major) ** 2 + (v / e.semi_minor) ** 2 <= 1
    if lid_y is not None:
        inside &= yy >= lid_y
    return inside


def _mask_with_pupil(shape, iris: Ellipse, pupil: Ellipse, lid_y: float | None) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[_ellipse_mask(shape, iris, lid_y)] = 1
    mask[_ellipse_mask(shape, pupil, lid_y)] = 2
    return mask


def test_labels_land_on_the_true_boundary_and_skip_the_lid_line():
    from training.data import sample_from_mask

    shape = (224, 224)
    iris, pupil = Ellipse(110.3, 118.7, 62.0, 55.0, 0.3), Ellipse(114.1, 121.2, 24.0, 21.0, 0.2)
    lid_y = 75.0  # cuts the top of the iris, not the pupil
    mask = _mask_with_pupil(shape, iris, pupil, lid_y)
    image = np.full(shape, 128, np.uint8)
    sample = sample_from_mask("x", "s", image, mask, input_hw=(224, 224))
    gt = thin_edge_labels(sample.arcs, shape)
    soft = soft_edge_labels(sample.arcs, shape)
    for channel, e in ((0, iris), (1, pupil)):
        ys, xs = np.nonzero(gt[:, :, channel])
        assert len(xs) > 50
        # Every labelled pixel lies on the true ellipse within the budget (drawn from exact points).
        true_pts = e.points(3600)
        d = np.min(np.hypot(xs[:, None] - true_pts[None, :, 0], ys[:, None] - true_pts[None, :, 1]), axis=1)
        assert d.max() <= LABEL_TOL_PX + 0.5, (channel, d.max())
        assert soft[:, :, channel].max() > 0.8
    # The lid cut line (y = lid_y, inside the iris) is not labelled as limbus.
    cut = gt[int(lid_y) - 1 : int(lid_y) + 2, int(iris.cx) - 30 : int(iris.cx) + 30, 0]
    assert not cut.any()
    # But the visible limbus below the lid is.
    assert gt[:, :, 0][int(iris.cy) + 40 :, :].any()


def test_edge_score_perfect_and_empty():
    gt = np.zeros((64, 64), bool)
    gt[20, 10:50] = True
    prob = np.zeros((64, 64), np.float32)
    prob[19:22, 10:50] = [[0.4], [0.9], [0.4]]
    perfect = ods_score(edge_counts(prob, gt))
    assert perfect.f > 0.95
    empty = ods_score(edge_counts(np.zeros_like(prob), gt))
    assert empty.f == 0.0
    shifted = np.roll(prob, 5, axis=0)  # 5 px off: outside the 2 px tolerance
    assert ods_score(edge_counts(shifted, gt)).f < 0.05


tf = pytest.importorskip("tensorflow", reason="needs the [train] extra")


@pytest.mark.train
def test_loss_ranks_all_background_clearly_worse_than_correct():
    from training.losses import balanced_bce_dice, plain_bce

    y = np.zeros((2, 64, 64, 2), np.float32)
    y[:, 30:33, 8:56, :] = np.array([0.5, 1.0, 0.5])[None, :, None, None]
    correct = np.clip(y, 0.02, 0.98)
    background = np.full_like(y, 0.02)
    good, bad = float(balanced_bce_dice(y, correct)), float(balanced_bce_dice(y, background))
    assert bad > 2 * good and bad - good > 0.5
    # Plain BCE barely separates them: the failure this project's loss exists to avoid.
    naive_gap = float(plain_bce(y, background)) - float(plain_bce(y, correct))
    assert naive_gap < 0.2 * (bad - good)


@pytest.mark.train
@pytest.mark.slow
def test_tiny_training_run_learns_and_exports(tmp_path):
    from training.export import export_run
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"),
        synthetic=240,
        epochs=6,
        batch_size=8,
        base_filters=4,
        depth=3,
        input_hw=(64, 64),
        steps_per_epoch=25,
        patience=10,
        verbose=0,
        learning_rate=5e-3,
        synthetic_randomised=False,  # the NIR renderer alone: a fixed, fast learnability check
    )
    summary = train(cfg)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    first, best = history[0]["val_mean_f"], max(h["val_mean_f"] for h in history)
    assert best > first + 0.2 and best > 0.5, (first, best)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    # An untrained net scores ~0.07; 150 steps under the full augmentation (down to half scale, blur, JPEG) reach ~0.37.
    assert summary["test"]["iris"]["f"] > 0.3

    cfg.epochs += 1  # --resume continues from the last checkpoint with the same split
    train(cfg, resume=True)
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == list(range(1, 8))

    card = export_run(tmp_path / "run", tmp_path / "engine")
    assert card["export"]["parity_max_abs_diff"] <= 1e-4
    # No partials; the Keras weights travel with the engine so fine-tuning can start from it.
    assert sorted(p.name for p in (tmp_path / "engine").iterdir()) == ["model.json", "model.onnx", "model.weights.h5"]
    from tracker.errors import ModelError

    with pytest.raises(ModelError, match="pass --force"):  # a second export never overwrites the first silently
        export_run(tmp_path / "run", tmp_path / "engine")
    calibration = tmp_path / "engine" / "model.confidence.json"
    calibration.write_text("{}")  # the replaced model's calibration: it must not calibrate the new one
    again = export_run(tmp_path / "run", tmp_path / "engine", force=True)
    assert again["onnx"]["sha256"] == json.loads((tmp_path / "engine" / "model.json").read_text())["onnx"]["sha256"]
    assert not calibration.exists()
    assert card["input"]["shape"] == [1, 64, 64, 1]
    import onnx

    model = onnx.load(str(tmp_path / "engine" / "model.onnx"))
    assert model.graph.input[0].name == "image" and model.graph.output[0].name == "edges"
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {17}


def test_finetune_starts_from_an_engine_and_reports_before_and_after(tmp_path):
    from tools.synthetic import write_image_set
    from training.export import export_run
    from training.finetune import FinetuneConfig, finetune
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), synthetic=120, epochs=2, batch_size=8, base_filters=4, depth=3,
        input_hw=(64, 64), steps_per_epoch=10, verbose=0, synthetic_randomised=False,
    )  # fmt: skip
    train(cfg)
    export_run(tmp_path / "run", tmp_path / "start")
    # The same weights at a smaller input (a cheaper model for small eye crops), parity-checked at that size.
    small = export_run(tmp_path / "run", tmp_path / "small", input_hw=(48, 40))
    assert small["input"]["shape"] == [1, 48, 40, 1] and small["export"]["trained_input_hw"] == [64, 64]
    assert small["export"]["parity_max_abs_diff"] <= 1e-4
    # A static batch of 2 (the eye model of face frames: both eyes in one call): per item, the batch-1 model's edges.
    pair = export_run(tmp_path / "run", tmp_path / "pair", input_hw=(48, 40), batch=2)
    assert pair["input"]["shape"] == [2, 48, 40, 1] and pair["output"]["shape"] == [2, 48, 40, 2]
    from tracker.backends.onnxruntime import OnnxRuntimeBackend

    x = np.random.default_rng(3).normal(size=(2, 48, 40, 1)).astype(np.float32)
    one = OnnxRuntimeBackend(tmp_path / "small" / "model.onnx")
    two = OnnxRuntimeBackend(tmp_path / "pair" / "model.onnx")
    each = np.concatenate([one.infer(x[i : i + 1]).copy() for i in range(2)])
    assert np.abs(two.infer(x) - each).max() <= 1e-5
    from tracker.errors import ModelError

    with pytest.raises(ModelError, match="not divisible by 8"):
        export_run(tmp_path / "run", tmp_path / "odd", input_hw=(50, 40))
    write_image_set(tmp_path / "mine", 30, size_wh=(120, 90), seed=4)  # no subject column: one subject per image
    report = finetune(
        FinetuneConfig(
            start=str(tmp_path / "start"),
            data_dir=str(tmp_path / "mine"),
            out_dir=str(tmp_path / "ft"),
            engine_dir=str(tmp_path / "mine_engine"),
            epochs=2,
            steps_per_epoch=5,
        )  # fmt: skip
    )
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init_from"] == str(tmp_path / "start") and config["data_dirs"] == [str(tmp_path / "mine")]
    card = json.loads((tmp_path / "mine_engine" / "model.json").read_text())
    assert card["training"]["init_from"] == str(tmp_path / "start")
    held_out = set(json.loads((tmp_path / "ft" / "split.json").read_text())["subjects"]["test"])
    assert report["held_out_by"] == "subject" and 0 < len(held_out) < 30
    assert report["before"]["images"] == report["after"]["images"] == len(held_out)
    assert {"hit_rate", "center_err_px"} <= set(report["after"]["iris"])
