"""`iristrack eval`: boundary accuracy of the model (and the classical baseline) on labelled data."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import _backend_options, _tracker_config, load_tracker


@click.command(name="eval")
@click.argument("data", type=click.Path())
@_backend_options
@click.option(
    "--split",
    "split_name",
    type=click.Choice(["test", "val", "train", "all"]),
    default=None,
    help="subjects to score [default: test on the data the model was trained on (DATA lists subjects of its "
    "split), else all]",
)
@click.option(
    "--split-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="model card or run split.json that names the split's subjects [default: the evaluated model's card, "
    "its file name with .json (engines/default/model.json)]",
)
@click.option("--stored-size", is_flag=True, help="score at the stored size, not the original aspect ratio")
@click.option("--baseline", is_flag=True, help="also score the classical OpenCV baseline")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--shape", type=click.Choice(["ellipse", "circle"]), default="ellipse", show_default=True)
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.35, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def eval_command(
    data, model, backend, split_name, split_from, stored_size, baseline, limit, shape, threshold, as_json
) -> None:
    """Score boundaries on DATA: images/ + masks/ (or labels/), images/ + ellipses.csv, or a folder with index.csv.

    Says on stderr what it scores (images, split and where the split came from) and warns when the images
    include subjects the model was trained on.
    """
    from tools.evaluation import (
        choose_split,
        evaluate,
        format_table,
        load_eval_set,
        model_split_for,
        scoring_line,
        split_warning,
        tracker_predictor,
    )
    from tracker.paths import default_model_path

    model_path = Path(model) if model else default_model_path()
    split, no_split_reason = model_split_for(model_path, split_from)
    whole = load_eval_set(data, original_size=not stored_size)
    choice = choose_split(split_name, whole.subjects, split, no_split_reason, data_name=str(data))
    items = load_eval_set(data, split_subjects=choice.subjects, original_size=not stored_size, limit=limit)
    tracker = load_tracker(model, backend, _tracker_config(shape, threshold, smooth=False), quiet=as_json)
    click.echo(scoring_line(data, items, choice, limit), err=True)
    warning = split_warning(items, split)
    if warning:
        click.echo(warning, err=True)

    results = {"model": evaluate(items, tracker_predictor(tracker))}
    if baseline:
        from tools.baseline import ClassicalDetector

        results["classical"] = evaluate(items, ClassicalDetector())
    if as_json:
        click.echo(json.dumps(results["model"] if not baseline else results))
    else:
        click.echo(format_table(results))


def _named(values: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    pairs = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{v!r}: expected NAME=PATH", param_hint=what)
        pairs.append((name, path))
    return pairs


@click.command(name="cross-eval")
@click.option("--model", "models", multiple=True, required=True, help="NAME=PATH/model.onnx; repeat")
@click.option("--source", "sources", multiple=True, required=True, help="NAME=DATA folder; repeat")
@click.option(
    "--split-from",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="model card or split.json whose test subjects every model is scored on (one test set for all)",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnxruntime", "openvino"]),
    default="auto",
    show_default=True,
    help="as `run` and `eval` choose it (auto: OpenVINO where installed, bf16 where the CPU has it)",
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="also write the results here")
def cross_eval(models, sources, split_from, backend, json_out) -> None:
    """Cross-dataset protocol: every model on every source's test subjects; says which sources each trained on.

    A leave-one-out model (trained with --leave-out SOURCE) scored on SOURCE measures generalisation to a
    camera it never saw; the same test subjects for every model make the rows comparable.
    """
    from tools.evaluation import (
        CrossCell,
        evaluate,
        format_cross_table,
        load_eval_set,
        read_model_split,
        tracker_predictor,
        trained_on,
    )
    from tracker.pipeline import Tracker, TrackerConfig

    models, sources = _named(models, "--model"), _named(sources, "--source")
    test = read_model_split(split_from).test
    if test is None:
        raise click.BadParameter(f"{split_from} records no test subjects", param_hint="--split-from")
    cells = []
    for model_name, model_path in models:
        predict = tracker_predictor(Tracker.from_model(model_path, backend, config=TrackerConfig(smooth=False)))
        for source_name, data in sources:
            items = load_eval_set(data, split_subjects=test)
            click.echo(f"{model_name} on {source_name}: {len(items):,} test images", err=True)
            card = Path(model_path).with_suffix(".json")
            cells.append(CrossCell(model_name, source_name, trained_on(card, items), evaluate(items, predict)))
    click.echo(format_cross_table(cells))
    if json_out:
        from dataclasses import asdict

        Path(json_out).write_text(json.dumps([asdict(c) for c in cells], indent=1))
