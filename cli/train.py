"""CLI commands of the trainer (train, export); TensorFlow is imported only when one of them runs."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from cli.common import parse_wh
from tracker.errors import TrackerError


def _need_tensorflow() -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise TrackerError('training needs the [train] extra: pip install -e ".[train]"') from None


@click.command()
@click.option(
    "--data",
    "data_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="labelled images: a folder with index.csv, images/ + masks/, or images/ + ellipses.csv; repeat for more",
)
@click.option(
    "--leave-out",
    multiple=True,
    help="a source to keep out of train and val (casia-interval, iitd, visible-eyes): a leave-one-out run",
)
@click.option(
    "--init-from",
    type=click.Path(exists=True),
    default=None,
    help="start from this model: an engine folder (model.weights.h5 + model.json) or a run folder",
)
@click.option("--synthetic", default=0, show_default=True, help="number of synthetic eyes to add to the training set")
@click.option(
    "--negatives",
    default=0,
    show_default=True,
    help="eye-free images (textures, text, rings; tools.negatives) added to training with no edges",
)
@click.option(
    "--synthetic-kind",
    type=click.Choice(["randomised", "nir"]),
    default="randomised",
    show_default=True,
    help="randomised = NIR iris camera, NIR eye tracker and visible-light eyes with glasses, blur and JPEG; "
    "nir = the NIR renderer alone (the first default model)",
)
@click.option("--epochs", default=40, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--lr", "learning_rate", default=3e-3, show_default=True)
@click.option(
    "--lr-schedule",
    type=click.Choice(["constant", "cosine"]),
    default="constant",
    show_default=True,
    help="cosine: decay --lr to 0 over --epochs x --steps-per-epoch",
)
@click.option(
    "--loss",
    type=click.Choice(["balanced", "bce", "hed", "dice"]),
    default="balanced",
    show_default=True,
    help="balanced = class-balanced BCE + Dice; bce = the naive setup",
)
@click.option(
    "--labels",
    type=click.Choice(["soft", "thin"]),
    default="soft",
    show_default=True,
    help="soft = 3-px ridges; thin = 1-px curves, as Canny on a mask gives (the naive setup)",
)
@click.option("--base-filters", default=8, show_default=True)
@click.option("--depth", default=4, show_default=True)
@click.option(
    "--patience",
    default=8,
    show_default=True,
    help="early stopping after this many epochs without a better validation F",
)
@click.option("--limit", type=int, default=None, help="use at most this many real images")
@click.option("--steps-per-epoch", type=int, default=None)
@click.option("--seed", default=0, show_default=True)
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def train(resume: bool, synthetic_kind: str, **options) -> None:
    """Train the edge U-Net; writes checkpoints, TensorBoard logs, history, curves.png and metrics.json to --out."""
    _need_tensorflow()
    from training.train import TrainConfig
    from training.train import train as run_training

    if not options["data_dirs"] and not options["synthetic"]:
        raise TrackerError("give --data DIR, --synthetic N, or both")
    cfg = TrainConfig(
        command="iristrack " + shlex.join(sys.argv[1:]),
        synthetic_randomised=synthetic_kind == "randomised",
        **options,
    )
    try:
        summary = run_training(cfg, resume=resume, log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise TrackerError(str(exc)) from None
    click.echo(f"best validation mean F {summary['best_val_mean_f']:.4f}; test: {summary['test']}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="overwrite a model already in --out (such as the shipped engines/default)")
@click.option(
    "--input",
    "input_wh",
    default=None,
    metavar="WxH",
    help="export the same weights at this input size (e.g. 96x96: a cheaper model for small eye crops) "
    "[default: the trained size]",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="the model's static batch: 2 for the eye crops of face frames (both eyes in one call)",
)
def export(run_dir: str, out_dir: str, force: bool, input_wh: str | None, batch: int) -> None:
    """Export a run's best checkpoint to OUT/model.onnx + OUT/model.json, checking Keras vs ONNX Runtime parity.

    Refuses an --out that already holds a model unless --force.
    """
    from tracker.fit.confidence import calibration_path
    from training.export import check_out_dir, export_run

    input_hw = parse_wh(input_wh, "--input")[::-1] if input_wh else None
    check_out_dir(out_dir, force)  # before TensorFlow loads: the refusal is instant
    _need_tensorflow()
    calibration = calibration_path(Path(out_dir) / "model.onnx")
    calibrated = calibration.is_file()
    card = export_run(run_dir, out_dir, force=force, input_hw=input_hw, batch=batch)
    click.echo(
        f"wrote {out_dir}/model.onnx ({card['onnx']['bytes'] / 1e6:.2f} MB), parity max abs diff "
        f"{card['export']['parity_max_abs_diff']:.2e}"
    )
    if calibrated and not calibration.is_file():
        click.echo(f"removed {calibration}: it calibrated the replaced model; calibrate the new one with: "
                   f"iristrack calibrate --model {out_dir}/model.onnx --dev DEV_SET", err=True)  # fmt: skip


@click.command(name="edge-eval")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def edge_eval(run_dirs, split, as_json) -> None:
    """Edge F (ODS, 2 px tolerance), F at threshold 0.5 and peak probability of runs' best checkpoints on a split."""
    _need_tensorflow()
    import json

    from training.train import evaluate_run

    results = [evaluate_run(r, split) for r in run_dirs]
    if as_json:
        click.echo(json.dumps(results))
        return
    click.echo("| run | loss | labels | channel | ODS F | precision | recall | threshold | F at 0.5 | median peak p |")
    click.echo("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for name, s in r["channels"].items():
            click.echo(
                f"| {r['run']} | {r['loss']} | {r['labels']} | {name} | {s['f']:.3f} | {s['precision']:.3f} | "
                f"{s['recall']:.3f} | {s['threshold']:.2f} | {s['f_at_0.5']:.3f} | "
                f"{s['median_peak_probability']:.2f} |"
            )


@click.command()
@click.option(
    "--from",
    "start",
    default="engines/default",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="the model to start from: an engine folder (model.onnx, model.weights.h5, model.json) or a run folder",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="20-200 labelled frames of your camera: images/ + ellipses.csv (iristrack run --save-labels) or + masks/",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="the run folder")
@click.option(
    "--engine",
    "engine_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="where the fine-tuned model goes [default: engines/<name of --out>]",
)
@click.option("--epochs", default=30, show_default=True)
@click.option("--steps-per-epoch", default=40, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", "learning_rate", default=3e-4, show_default=True)
@click.option("--patience", default=5, show_default=True, help="stop after this many epochs without a better val F")
@click.option("--synthetic", default=0, show_default=True, help="synthetic eyes mixed in (guards against forgetting)")
@click.option("--force", is_flag=True, help="replace a model already in --engine")
def finetune(engine_dir, **options) -> None:
    """Fine-tune a shipped model on your camera's labelled frames; prints accuracy before and after on held-out ones.

    Holds out 15 % of the frames (by subject, or by image when they name few subjects) for early stopping
    and 15 % for the before/after report; exports the engine with its card and weights.
    """
    from pathlib import Path

    from training.export import check_out_dir

    engine_dir = engine_dir or str(Path("engines") / Path(options["out_dir"]).name)
    check_out_dir(engine_dir, options["force"])  # before TensorFlow loads: the refusal is instant
    _need_tensorflow()
    from tools.evaluation import format_table
    from training.finetune import FinetuneConfig
    from training.finetune import finetune as run_finetune

    try:
        report = run_finetune(FinetuneConfig(engine_dir=engine_dir, **options), log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise TrackerError(str(exc)) from None
    click.echo(f"held-out frames (by {report['held_out_by']}), before and after fine-tuning:")
    click.echo(format_table({"before": report["before"], "after": report["after"]}))
    click.echo(f"use it: iristrack run SOURCE --model {engine_dir}/model.onnx")
