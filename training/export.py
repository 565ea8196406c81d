"""Export a run's best Keras checkpoint to ONNX (opset 17, static (N, H, W, 1) `image` -> `edges`) plus a model card."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np

from tracker.errors import ModelError
from tracker.fit.confidence import calibration_path
from tracker.preprocess import CHANNELS, LAYOUT, STD_FLOOR
from training.data import WEIGHTS_FILE

OPSET = 17
PARITY_TOL = 1e-4
MODEL_FILES = ("model.onnx", "model.json")  # what an export writes; either one marks a folder as holding a model


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def keras_to_onnx(model, path: Path, batch: int = 1) -> None:
    """Write `model` as ONNX with a static batch of `batch`, input `image`, output `edges`."""
    import tensorflow as tf
    import tf2onnx

    h, w = model.input_shape[1:3]
    spec = (tf.TensorSpec((batch, h, w, 1), tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def forward(image):
        return {"edges": model(image, training=False)}

    tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET, output_path=str(path))


def parity_max_abs_diff(model, onnx_path: Path, x: np.ndarray, batch: int = 1) -> float:
    """Max |Keras - ONNX Runtime| over the (N, H, W, 1) inputs `x` (N a multiple of `batch`), `batch` at a time."""
    from tracker.backends.telemetry import import_onnxruntime

    ort = import_onnxruntime()  # with its telemetry off, as everywhere in the project

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    diff = 0.0
    for i in range(0, len(x) - batch + 1, batch):
        ref = model(x[i : i + batch], training=False).numpy()
        got = session.run(["edges"], {"image": x[i : i + batch]})[0]
        diff = max(diff, float(np.abs(ref - got).max()))
    return diff


def _versions() -> dict:
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    from tracker.backends.telemetry import import_onnxruntime

    onnxruntime = import_onnxruntime()

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def parity_inputs(run: Path, input_hw: tuple[int, int], n: int = 8) -> np.ndarray:
    """Real-looking inputs for the parity check: synthetic eyes, preprocessed like the runtime does."""
    from tools.synthetic import random_eye_params, render_eye
    from tracker.preprocess import Preprocessor

    rng = np.random.default_rng(1234)
    pre = Preprocessor(input_hw)
    return np.concatenate([pre(render_eye(random_eye_params(rng, (320, 240)), (320, 240))[0]).copy() for _ in range(n)])


def check_out_dir(out_dir: str | Path, force: bool = False) -> None:
    """Raise ModelError when `out_dir` already holds a model (model.onnx or model.json) and `force` is not set.

    Needs no TensorFlow, so the CLI refuses before loading it; the shipped engines/default is such a folder.
    """
    out = Path(out_dir)
    held = [name for name in MODEL_FILES if (out / name).exists()]
    if held and not force:
        what = "the shipped model" if _is_shipped(out) else "a model"
        raise ModelError(
            f"{out} already holds {what} ({', '.join(held)}); export to a new folder (--out engines/NAME), "
            "or pass --force to overwrite it"
        )


def _is_shipped(out: Path) -> bool:
    from tracker.paths import ENGINES_DIR, default_model_dir

    try:
        return out.resolve() in (default_model_dir().resolve(), (ENGINES_DIR / "face").resolve())
    except OSError:
        return False


def at_input_size(model, input_hw: tuple[int, int], base_filters: int, depth: int):
    """The same U-Net and weights at another (H, W) input: fully convolutional, any size divisible by 2**depth."""
    from training.model import ModelConfig, build_unet

    if any(d <= 0 or d % 2**depth for d in input_hw):
        raise ModelError(f"an input of {input_hw[1]}x{input_hw[0]} is not divisible by {2**depth} (2 ** model depth)")
    resized = build_unet(ModelConfig(tuple(input_hw), base_filters, depth))
    resized.set_weights(model.get_weights())
    return resized


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    input_hw: tuple[int, int] | None = None,
    batch: int = 1,
) -> dict:
    """Export run_dir/checkpoints/best.keras -> out_dir/model.onnx + model.json; raises ModelError on parity failure.

    An existing model in `out_dir` is kept unless `force` (check_out_dir); with `force` it is replaced only once
    the new one has passed the parity check, so a failed export leaves it as it was. `input_hw` exports the same
    weights at another input size (e.g. a cheaper model for small eye crops); the card records both sizes.
    `batch` is the model's static batch: 2 for the eye crops of face frames, both eyes in one call.
    """
    if batch < 1:
        raise ModelError(f"a batch of {batch}: the model's static batch must be at least 1")
    check_out_dir(out_dir, force)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    run, out = Path(run_dir), Path(out_dir)
    best = run / "checkpoints" / "best.keras"
    if not best.exists():
        raise ModelError(f"{run}: no checkpoints/best.keras; train first with: iristrack train ... --out {run}")
    model = keras.models.load_model(best, compile=False)
    trained_hw = tuple(int(d) for d in model.input_shape[1:3])
    if input_hw is not None and tuple(input_hw) != trained_hw:
        config = json.loads((run / "config.json").read_text())
        model = at_input_size(model, input_hw, int(config["base_filters"]), int(config["depth"]))
    h, w = (int(d) for d in model.input_shape[1:3])
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, new_onnx, new_card = out / "model.onnx", out / "model.onnx.partial", out / "model.json.partial"
    new_weights = out / ("partial." + WEIGHTS_FILE)  # Keras insists on the .weights.h5 suffix
    try:
        keras_to_onnx(model, new_onnx, batch)
        diff = parity_max_abs_diff(model, new_onnx, parity_inputs(run, (h, w), 8 * batch), batch)
        if not diff <= PARITY_TOL:
            raise ModelError(
                f"Keras vs ONNX Runtime differ by {diff:.2e} (> {PARITY_TOL:.0e}); nothing written to {out}"
            )
        card = _model_card(run, out.name, model, (h, w), diff, new_onnx, batch)
        card["export"]["trained_input_hw"] = list(trained_hw)
        new_card.write_text(json.dumps(card, indent=1))
        # The Keras weights travel with the model so `iristrack finetune --from` can start from it.
        model.save_weights(new_weights)
        # A calibration beside the model calibrated the one being replaced: its trust thresholds would mean
        # nothing for the new one (an export of the same weights may differ too: tf2onnx names nodes per
        # process). Removed before the new model lands, so no moment pairs the new model with it.
        calibration_path(onnx_path).unlink(missing_ok=True)
        new_onnx.replace(onnx_path)  # the model first: a card never describes a model that is not there
        new_weights.replace(out / WEIGHTS_FILE)
        new_card.replace(out / "model.json")
    finally:
        for partial in (new_onnx, new_card, new_weights):
            partial.unlink(missing_ok=True)
    return card


def _model_card(
    run: Path, name: str, model, input_hw: tuple[int, int], diff: float, onnx_path: Path, batch: int = 1
) -> dict:
    """The model card (model.json) of an export: contract, architecture, training record, parity, versions."""
    h, w = input_hw
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    split = json.loads((run / "split.json").read_text()) if (run / "split.json").exists() else None
    return {
        "name": name,
        "input": {
            "name": "image",
            "shape": [batch, h, w, 1],
            "dtype": "float32",
            "layout": LAYOUT,
            "normalisation": "gray frame (the red channel of a colour frame) resized to (H, W) with INTER_AREA "
            "(aspect not kept), scaled to [0, 1], "
            f"then (x - mean) / max(std, {STD_FLOOR:.6f}) per image (tracker/preprocess.py)",
        },
        "output": {
            "name": "edges",
            "shape": [batch, h, w, len(CHANNELS)],
            "dtype": "float32",
            "channels": list(CHANNELS),
            "meaning": "edge probability per pixel: limbus (iris/sclera), pupil "
            "(iris/pupil); eyelid cut lines are not edges",
        },
        "architecture": {
            "type": "U-Net",
            "base_filters": config["base_filters"],
            "depth": config["depth"],
            "parameters": int(model.count_params()),
        },
        "training": {
            "command": config.get("command", ""),
            "commands": config.get("commands") or [config.get("command", "")],
            "data": config.get("data_dirs") or config.get("data_dir"),
            "leave_out": config.get("leave_out") or [],
            "init_from": config.get("init_from"),
            "synthetic_images": config.get("synthetic", 0),
            "loss": config["loss"],
            "epochs_run": metrics.get("epochs_run"),
            "images": metrics.get("n_images"),
            "split": (
                {
                    "by": "subject",
                    "subjects": {k: len(v) for k, v in split["subjects"].items()},
                    # eval reads these: the test split to score, the others to warn about biased figures
                    **{f"{k}_subjects": split["subjects"][k] for k in ("test", "val", "train")},
                }
                if split
                else None
            ),
        },
        "metrics": {"edge_f_ods_2px": {"val": metrics.get("val"), "test": metrics.get("test")}},
        "export": {
            "opset": OPSET,
            "parity_max_abs_diff": diff,
            "parity_tolerance": PARITY_TOL,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "versions": _versions(),
        "onnx": {"file": "model.onnx", "sha256": sha256_of(onnx_path), "bytes": onnx_path.stat().st_size},
    }
