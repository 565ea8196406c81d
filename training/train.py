"""Training run: data -> split by subject -> U-Net fit with per-epoch edge F -> checkpoints, logs, curves, metrics."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from tracker.preprocess import CHANNELS, INPUT_HW, standardise
from training.augment import AugmentConfig, augment
from training.data import (
    WEIGHTS_FILE,
    EdgeSample,
    Record,
    find_records,
    load_samples,
    negative_samples,
    split_subjects,
    synthetic_samples,
    write_split,
)
from training.labels import soft_edge_labels, thin_edge_labels
from training.metrics import edge_counts, f_at, ods_score, score_edges


@dataclass
class TrainConfig:
    """Everything a run needs; saved as config.json in the run folder."""

    out_dir: str
    data_dirs: tuple[str, ...] = ()
    synthetic: int = 0
    synthetic_randomised: bool = True  # domain-randomised synthetic eyes (tools.synthetic.random_domain_eye)
    negatives: int = 0  # eye-free images (tools.negatives) added to train with no edge labels
    leave_out: tuple[str, ...] = ()  # sources (casia-interval, iitd, visible-eyes) kept out of train and val
    init_from: str | None = None  # start from this model's weights: an engine folder, a run folder or a .keras file
    lr_schedule: str = "constant"  # "cosine": decays to 0 over epochs x steps (one command, no second phase)
    val_limit: int | None = 480  # validation images scored per epoch (evenly spaced): ODS scoring is slow
    split_by: str = "subject"  # "image": hold out single images (a fine-tuning set of one or two people)
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 3e-3
    loss: str = "balanced"
    labels: str = "soft"  # "soft": 3-px ridges; "thin": 1-px curves as Canny on a mask gives (the naive setup)
    base_filters: int = 8
    depth: int = 4
    input_hw: tuple[int, int] = INPUT_HW
    seed: int = 0
    patience: int = 8
    limit: int | None = None  # use at most this many real images (quick experiments and tests)
    steps_per_epoch: int | None = None
    verbose: int = 1
    command: str = ""
    fractions: tuple[float, float, float] = field(default=(0.7, 0.15, 0.15))


class _Batches:
    """Augmented training batches, reshuffled every epoch; a keras PyDataset is built around it."""

    def __init__(self, samples: list[EdgeSample], cfg: TrainConfig) -> None:
        self.samples, self.cfg = samples, cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.order = self.rng.permutation(len(samples))
        self.aug = AugmentConfig()
        self.label_fn = soft_edge_labels if cfg.labels == "soft" else _thin_float_labels

    def __len__(self) -> int:
        return self.cfg.steps_per_epoch or max(1, len(self.samples) // self.cfg.batch_size)

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.cfg.input_hw
        x = np.empty((self.cfg.batch_size, h, w, 1), np.float32)
        y = np.empty((self.cfg.batch_size, h, w, len(CHANNELS)), np.float32)
        for i in range(self.cfg.batch_size):
            s = self.samples[self.order[(index * self.cfg.batch_size + i) % len(self.samples)]]
            img, y[i] = augment(s.image, s.arcs, self.rng, self.aug, self.label_fn)
            standardise(img, out=x[i, :, :, 0])
        return x, y

    def reshuffle(self) -> None:
        self.order = self.rng.permutation(len(self.samples))


def _thin_float_labels(arcs, hw: tuple[int, int]) -> np.ndarray:
    return thin_edge_labels(arcs, hw).astype(np.float32)


def model_inputs(samples: list[EdgeSample]) -> np.ndarray:
    """Samples -> (N, h, w, 1) float32 exactly as the runtime feeds the model."""
    x = np.empty((len(samples), *samples[0].image.shape, 1), np.float32)
    for i, s in enumerate(samples):
        standardise(s.image.astype(np.float32) * (1 / 255), out=x[i, :, :, 0])
    return x


def edge_ground_truth(samples: list[EdgeSample]) -> np.ndarray:
    """Samples -> (N, h, w, 2) bool 1-px ground-truth edges."""
    return np.stack([thin_edge_labels(s.arcs, s.image.shape) for s in samples])


def evaluate_edges(model, samples: list[EdgeSample]) -> dict[str, dict]:
    """Per channel of `model` on `samples` (no augmentation): ODS scores, F at 0.5, median peak probability."""
    probs = model.predict(model_inputs(samples), batch_size=32, verbose=0)
    gts = edge_ground_truth(samples)
    out = {}
    for c, name in enumerate(CHANNELS):
        counts = sum(edge_counts(probs[i, :, :, c], gts[i, :, :, c]) for i in range(len(samples)))
        out[name] = {
            **ods_score(counts).to_dict(),
            "f_at_0.5": round(f_at(counts, 0.5), 4),
            "median_peak_probability": round(float(np.median(probs[..., c].max(axis=(1, 2)))), 4),
        }
    return out


def evaluate_run(run_dir: str | Path, split: str = "test") -> dict:
    """Score a run's best checkpoint on one split of its recorded subject split (real images only)."""
    import keras

    run = Path(run_dir)
    cfg = json.loads((run / "config.json").read_text())
    subjects = set(json.loads((run / "split.json").read_text())["subjects"][split])
    records = [r for d in config_data_dirs(cfg) for r in find_records(Path(d)) if r.subject in subjects]
    samples = load_samples(records, tuple(cfg["input_hw"]), cache_dir=label_cache_dir())
    model = keras.models.load_model(run / "checkpoints" / "best.keras", compile=False)
    return {
        "run": str(run),
        "loss": cfg["loss"],
        "labels": cfg.get("labels", "soft"),
        "split": split,
        "images": len(samples),
        "channels": evaluate_edges(model, samples),
    }


def label_cache_dir() -> Path:
    """Where labelled data sets are cached between runs: $IRISTRACK_CACHE/labels or ~/.cache/iristrack/labels."""
    from tracker.paths import engine_cache_dir

    return engine_cache_dir().parent / "labels"


def config_data_dirs(cfg: dict) -> list[str]:
    """The data folders of a saved run config (older runs name one `data_dir`)."""
    return list(cfg.get("data_dirs") or ([cfg["data_dir"]] if cfg.get("data_dir") else []))


def split_records(records_by_folder: list[list[Record]], fractions, seed: int) -> dict[str, list[str]]:
    """Subject split of several data folders: each folder is split on its own, so adding one moves no subject."""
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for records in records_by_folder:
        for part, chosen in split_subjects([r.subject for r in records], fractions, seed).items():
            split[part] += chosen
    return {part: sorted(set(subjects)) for part, subjects in split.items()}


def _split_samples(cfg: TrainConfig, run: Path) -> dict[str, list[EdgeSample]]:
    """Load real data split by subject (recorded in run/split.json) and add synthetic eyes to train.

    A left-out source contributes no train or val images; its test subjects stay in the split (the run is
    scored on them as on every other source), so a leave-one-out run and the default share one test set.
    """
    parts: dict[str, list[EdgeSample]] = {"train": [], "val": [], "test": []}
    if cfg.data_dirs:
        by_folder = [find_records(Path(d)) for d in cfg.data_dirs]
        if cfg.split_by == "image":
            by_folder = [[replace(r, subject=r.name) for r in folder] for folder in by_folder]
        records = [r for folder in by_folder for r in folder]
        split_file = run / "split.json"
        if split_file.exists():  # a resumed run keeps its split
            split = json.loads(split_file.read_text())["subjects"]
        else:
            split = split_records(by_folder, cfg.fractions, cfg.seed)
            write_split(split_file, split, [str(d) for d in cfg.data_dirs], cfg.leave_out)
        subject_part = {s: part for part, subjects in split.items() for s in subjects}
        records = [r for r in records if r.source not in cfg.leave_out or subject_part.get(r.subject) == "test"]
        if cfg.limit:
            rng = np.random.default_rng(cfg.seed)
            records = [records[i] for i in sorted(rng.permutation(len(records))[: cfg.limit])]
        for sample in load_samples(records, cfg.input_hw, cache_dir=label_cache_dir()):
            parts[subject_part.get(sample.subject, "train")].append(sample)
    if cfg.synthetic:
        synth = synthetic_samples(cfg.synthetic, cfg.input_hw, seed=cfg.seed, randomised=cfg.synthetic_randomised)
        if cfg.data_dirs:
            parts["train"] += synth
        else:  # synthetic only: hold out a slice for validation and test
            n_hold = max(1, len(synth) // 10)
            parts["val"], parts["test"], parts["train"] = (
                synth[:n_hold],
                synth[n_hold : 2 * n_hold],
                synth[2 * n_hold :],
            )
    if cfg.negatives:
        parts["train"] += negative_samples(cfg.negatives, cfg.input_hw)
    if not parts["train"] or not parts["val"]:
        raise ValueError("no training or validation samples: give --data with labelled images, or --synthetic N")
    return parts


def init_shape(init_from: str | Path) -> dict:
    """Input size and width of the model `init_from` names: a run continues with its shape, not the defaults."""
    source = Path(init_from)
    if source.is_dir() and (source / "config.json").is_file() and not (source / "model.json").is_file():
        run = json.loads((source / "config.json").read_text())
        return {"input_hw": tuple(run["input_hw"]), "base_filters": run["base_filters"], "depth": run["depth"]}
    if (source / "model.json").is_file():
        card = json.loads((source / "model.json").read_text())
        shape, arch = card["input"]["shape"], card["architecture"]
        return {"input_hw": (shape[1], shape[2]), "base_filters": arch["base_filters"], "depth": arch["depth"]}
    return {}


def _initial_model(cfg: TrainConfig):
    """A new U-Net of cfg's shape, or the model cfg.init_from names (an engine's weights, a run's best checkpoint)."""
    import keras

    from training.model import ModelConfig, build_unet

    if not cfg.init_from:
        return build_unet(ModelConfig(tuple(cfg.input_hw), cfg.base_filters, cfg.depth))
    source = Path(cfg.init_from)
    if source.suffix == ".keras":
        return keras.models.load_model(source, compile=False)
    if (source / "checkpoints" / "best.keras").is_file():
        return keras.models.load_model(source / "checkpoints" / "best.keras", compile=False)
    weights, card = source / WEIGHTS_FILE, source / "model.json"
    if not weights.is_file() or not card.is_file():
        raise FileNotFoundError(
            f"{source}: not a run folder (checkpoints/best.keras) nor an engine folder with {WEIGHTS_FILE} and "
            "model.json (engines exported by `iristrack export` carry their weights)"
        )
    arch = json.loads(card.read_text())
    shape = arch["input"]["shape"]
    model = build_unet(
        ModelConfig((shape[1], shape[2]), arch["architecture"]["base_filters"], arch["architecture"]["depth"])
    )
    model.load_weights(weights)
    return model


def _plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["loss"] for h in history], label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    for name in CHANNELS:
        ax2.plot(epochs, [h[f"val_{name}_f"] for h in history], label=f"val {name} F (ODS)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("edge F, 2 px tolerance")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = lambda message: None) -> dict:
    """Run (or resume) training into cfg.out_dir; returns the final summary (also written to metrics.json)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from training.losses import LOSSES

    if cfg.init_from:
        cfg = replace(cfg, **init_shape(cfg.init_from))
    run = Path(cfg.out_dir)
    run.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in ("history.json", "checkpoints"):
            p = run / stale
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    (run / "checkpoints").mkdir(exist_ok=True)
    previous = json.loads((run / "config.json").read_text()) if resume and (run / "config.json").exists() else {}
    saved = asdict(cfg)
    # A resumed run keeps the commands that made it, in order, so its model card can say how it was trained.
    saved["commands"] = [
        *previous.get("commands", [previous["command"]] if previous.get("command") else []),
        cfg.command,
    ]
    (run / "config.json").write_text(json.dumps(saved, indent=1))
    keras.utils.set_random_seed(cfg.seed)
    # TensorFlow already initialised in this process (tests, notebooks) refuses the change: keep its setting.
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_inter_op_parallelism_threads(2)

    parts = _split_samples(cfg, run)
    batches = _Batches(parts["train"], cfg)
    val = parts["val"]
    if cfg.val_limit and len(val) > cfg.val_limit:  # evenly spaced: every source keeps its share
        val = [val[i] for i in np.linspace(0, len(val) - 1, cfg.val_limit).round().astype(int)]
    x_val, gt_val = model_inputs(val), edge_ground_truth(val)

    last, best_path = run / "checkpoints" / "last.keras", run / "checkpoints" / "best.keras"
    history: list[dict] = json.loads((run / "history.json").read_text()) if resume and last.exists() else []
    if resume and last.exists():
        model = keras.models.load_model(last, custom_objects={f.__name__: f for f in LOSSES.values()})
        if cfg.lr_schedule == "constant":  # --lr applies to the continued run; a schedule continues where it was
            model.optimizer.learning_rate.assign(cfg.learning_rate)
    else:
        model = _initial_model(cfg)
        lr = cfg.learning_rate
        if cfg.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=cfg.epochs * len(batches))
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=LOSSES[cfg.loss])
    start_epoch = len(history)
    best_f = max((h["val_mean_f"] for h in history), default=-1.0)
    best_epoch = max(range(len(history)), key=lambda i: history[i]["val_mean_f"]) if history else 0
    since_best = start_epoch - 1 - best_epoch if history else 0

    class Dataset(keras.utils.PyDataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            return batches.batch(i)

        def on_epoch_end(self):
            batches.reshuffle()

    writer = tf.summary.create_file_writer(str(run / "tensorboard"))
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if cfg.verbose:
            log(f"epoch {epoch + 1}/{cfg.epochs}")
        fit = model.fit(Dataset(), epochs=1, verbose=cfg.verbose)
        probs = model.predict(x_val, batch_size=32, verbose=0)
        scores = score_edges(probs, gt_val)
        entry = {"epoch": epoch + 1, "loss": float(fit.history["loss"][-1]), "seconds": time.perf_counter() - t0}
        for name, s in zip(CHANNELS, scores, strict=True):
            entry.update({f"val_{name}_f": s.f, f"val_{name}_precision": s.precision, f"val_{name}_recall": s.recall})
        entry["val_mean_f"] = float(np.mean([s.f for s in scores]))
        history.append(entry)
        with writer.as_default(step=epoch + 1):
            for k, v in entry.items():
                if k != "epoch":
                    tf.summary.scalar(k, v)
        writer.flush()
        model.save(last)
        if entry["val_mean_f"] > best_f:
            best_f, since_best = entry["val_mean_f"], 0
            model.save(best_path)
        else:
            since_best += 1
        (run / "history.json").write_text(json.dumps(history, indent=1))
        _plot_curves(history, run / "curves.png")
        if cfg.verbose:
            scores = (f"{k} {v:.4f}" for k, v in entry.items() if k.startswith("val_") and k.endswith("_f"))
            log("  " + "  ".join(scores) + f"  ({entry['seconds']:.0f} s)")
        if since_best >= cfg.patience:
            if cfg.verbose:
                log(f"early stop: no better validation F for {cfg.patience} epochs")
            break

    model = keras.models.load_model(best_path, compile=False)
    summary = {
        "best_val_mean_f": best_f,
        "epochs_run": len(history),
        "val": evaluate_edges(model, parts["val"]),
        "test": evaluate_edges(model, parts["test"]) if parts["test"] else None,
        "n_images": {k: len(v) for k, v in parts.items()},
    }
    (run / "metrics.json").write_text(json.dumps(summary, indent=1))
    return summary
