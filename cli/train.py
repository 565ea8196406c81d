"""CLI commands of the trainer (train, export); TensorFlow is imported only when one of them runs."""

from __future__ import annotations

import shlex
import sys

import click

from tracker.errors import TrackerError


def _need_tensorflow() -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise TrackerError('training needs the [train] extra: pip install -e ".[train]"') from None


@click.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False),
    help="images/ + masks/ or a folder with index.csv",
)
@click.option("--synthetic", default=0, show_default=True, help="number of synthetic eyes to add to the training set")
@click.option("--epochs", default=40, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--lr", "learning_rate", default=3e-3, show_default=True)
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
def train(resume: bool, **options) -> None:
    """Train the edge U-Net; writes checkpoints, TensorBoard logs, history, curves.png and metrics.json to --out."""
    _need_tensorflow()
    from training.train import TrainConfig
    from training.train import train as run_training

    if not options["data_dir"] and not options["synthetic"]:
        raise TrackerError("give --data DIR, --synthetic N, or both")
    cfg = TrainConfig(command="iristrack " + shlex.join(sys.argv[1:]), **options)
    try:
        summary = run_training(cfg, resume=resume, log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise TrackerError(str(exc)) from None
    click.echo(f"best validation mean F {summary['best_val_mean_f']:.4f}; test: {summary['test']}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="overwrite a model already in --out (such as the shipped engines/default)")
def export(run_dir: str, out_dir: str, force: bool) -> None:
    """Export a run's best checkpoint to OUT/model.onnx + OUT/model.json, checking Keras vs ONNX Runtime parity.

    Refuses an --out that already holds a model unless --force.
    """
    from training.export import check_out_dir, export_run

    check_out_dir(out_dir, force)  # before TensorFlow loads: the refusal is instant
    _need_tensorflow()
    card = export_run(run_dir, out_dir, force=force)
    click.echo(
        f"wrote {out_dir}/model.onnx ({card['onnx']['bytes'] / 1e6:.2f} MB), parity max abs diff "
        f"{card['export']['parity_max_abs_diff']:.2e}"
    )


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
