"""Fine-tuning on a user's camera: a shipped model + 20-200 labelled frames -> an engine with before/after scores.

The frames are split by subject (by image when they name fewer than MIN_SUBJECTS subjects, as the frames of
one person's recording do) into train / val / test: val stops training early, test is scored with the
runtime before (the starting model) and after (the exported engine), with the same ellipse metrics as
`iristrack eval`, so the report says whether fine-tuning helped on frames it never saw.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.data import find_records

MIN_SUBJECTS = 7  # below this a 15 % subject hold-out rounds to nothing: hold out images instead
FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning run: where it starts, what it learns from, where the run and the engine go."""

    start: str  # engine folder (model.onnx + model.weights.h5 + model.json) or run folder
    data_dir: str
    out_dir: str  # the run folder (checkpoints, curves, metrics)
    engine_dir: str  # the exported engine
    epochs: int = 30
    steps_per_epoch: int = 40
    batch_size: int = 8
    learning_rate: float = 3e-4
    patience: int = 5
    synthetic: int = 0
    seed: int = 0
    force: bool = False


def start_model_onnx(start: str | Path) -> Path:
    """The ONNX model of the starting point (scored 'before'): an engine's model.onnx or a run's export."""
    start = Path(start)
    if (start / "model.onnx").is_file():
        return start / "model.onnx"
    raise FileNotFoundError(f"{start}: no model.onnx to score the starting model with (export the run first)")


def held_out_by_image(data_dir: str | Path) -> bool:
    """True when the frames name too few subjects for a subject hold-out."""
    return len({r.subject for r in find_records(Path(data_dir))}) < MIN_SUBJECTS


def score_model(model_onnx: Path, data_dir: str | Path, test_names: set[str]) -> dict:
    """`iristrack eval`'s figures for one ONNX model on the named images of data_dir (ONNX Runtime, no smoothing)."""
    from tools.evaluation import evaluate, load_eval_set, tracker_predictor
    from tracker.pipeline import Tracker, TrackerConfig

    items = load_eval_set(data_dir)
    entries = tuple(e for e in items.entries if e.name in test_names)
    items = type(items)(items.root, items.layout, entries, items.total, items.subjects, items.original_size)
    tracker = Tracker.from_model(model_onnx, "onnxruntime", config=TrackerConfig(smooth=False))
    return evaluate(items, tracker_predictor(tracker))


def finetune(cfg: FinetuneConfig, log: Callable[[str], None] = lambda message: None) -> dict:
    """Train from cfg.start on cfg.data_dir, export cfg.engine_dir, score before/after on the held-out test frames."""
    from training.export import check_out_dir, export_run
    from training.train import TrainConfig, train

    check_out_dir(cfg.engine_dir, cfg.force)
    before_model = start_model_onnx(cfg.start)
    by_image = held_out_by_image(cfg.data_dir)
    if by_image:
        log(f"note: {cfg.data_dir} names fewer than {MIN_SUBJECTS} subjects: holding out images, not subjects "
            "(frames of one recording are alike, so the after score is optimistic)")  # fmt: skip
    command = (
        f"iristrack finetune --from {shlex.quote(cfg.start)} --data {shlex.quote(cfg.data_dir)} "
        f"--out {shlex.quote(cfg.out_dir)} --engine {shlex.quote(cfg.engine_dir)}"
    )
    summary = train(
        TrainConfig(
            out_dir=cfg.out_dir,
            data_dirs=(cfg.data_dir,),
            init_from=cfg.start,
            synthetic=cfg.synthetic,
            epochs=cfg.epochs,
            steps_per_epoch=cfg.steps_per_epoch,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            patience=cfg.patience,
            seed=cfg.seed,
            split_by="image" if by_image else "subject",
            fractions=FRACTIONS,
            command=command,
        ),
        log=log,
    )
    export_run(cfg.out_dir, cfg.engine_dir, force=cfg.force)
    split = json.loads((Path(cfg.out_dir) / "split.json").read_text())
    test = set(split["subjects"]["test"])
    names = {r.name for r in find_records(Path(cfg.data_dir)) if (r.name if by_image else r.subject) in test}
    report = {
        "images": summary["n_images"],
        "held_out_by": "image" if by_image else "subject",
        "epochs_run": summary["epochs_run"],
        "before": score_model(before_model, cfg.data_dir, names),
        "after": score_model(Path(cfg.engine_dir) / "model.onnx", cfg.data_dir, names),
    }
    (Path(cfg.out_dir) / "finetune.json").write_text(json.dumps(report, indent=1))
    return report
