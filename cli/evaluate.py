"""`iristrack eval`: boundary accuracy of the model (and the classical baseline) on labelled data."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import _backend_options, _tracker_config, load_tracker
from tracker.errors import TrackerError


@click.command(name="eval")
@click.argument("data", type=click.Path())
@_backend_options
@click.option(
    "--split-from",
    type=click.Path(exists=True, dir_okay=False),
    help="model card or split.json whose subjects to use (with --split)",
)
@click.option("--split", "split_name", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--stored-size", is_flag=True, help="score at the stored size, not the original aspect ratio")
@click.option("--baseline", is_flag=True, help="also score the classical OpenCV baseline")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--shape", type=click.Choice(["ellipse", "circle"]), default="ellipse", show_default=True)
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.35, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def eval_command(
    data, model, backend, split_from, split_name, stored_size, baseline, limit, shape, threshold, as_json
) -> None:
    """Score boundaries on DATA: images/ + masks/, images/ + ellipses.csv, or a folder with index.csv."""
    from tools.evaluation import evaluate, format_table, load_eval_set

    subjects = _split_subjects(split_from, split_name) if split_from else None
    tracker = load_tracker(model, backend, _tracker_config(shape, threshold, smooth=False), quiet=as_json)

    def predict(image):
        result = tracker(image)
        return (result.iris.ellipse if result.iris else None, result.pupil.ellipse if result.pupil else None)

    def items():
        return load_eval_set(data, split_subjects=subjects, original_size=not stored_size, limit=limit)

    results = {"model": evaluate(items(), predict)}
    if baseline:
        from tools.baseline import ClassicalDetector

        results["classical"] = evaluate(items(), ClassicalDetector())
    if as_json:
        click.echo(json.dumps(results["model"] if not baseline else results))
    else:
        click.echo(format_table(results))


def _split_subjects(path: str, split_name: str) -> set[str]:
    """Subjects of one split from a model card (training.split.test_subjects) or a run's split.json."""
    try:
        doc = json.loads(Path(path).read_text())
        if isinstance(doc.get("subjects"), dict):
            return set(doc["subjects"][split_name])
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        raise TrackerError(f"{path}: not a model card or split.json with a {split_name} split") from None
    split = (doc.get("training") or {}).get("split") or {}
    if split_name == "test" and split.get("test_subjects"):
        return set(split["test_subjects"])
    raise TrackerError(f"{path}: no {split_name} subjects recorded (use the run's split.json)")
