"""`iristrack calibrate`: fit a model's confidence on held-out labelled eyes and eye-free images; report reliability."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import _backend_options, _quiet_native_logs, _tracker_config, load_tracker

SYNTHETIC_SEED = 2026  # the trainer renders its synthetic eyes from other seeds
SYNTHETIC_SIZES_WH = ((320, 240), (640, 480), (224, 160), (400, 300))


@click.command()
@click.option(
    "--dev",
    "dev_data",
    type=click.Path(exists=True, file_okay=False),
    required=True,
    help="the model's development set (index.csv); its card's val subjects fit, its test subjects report",
)
@click.option(
    "--extra",
    "extra_data",
    type=click.Path(exists=True, file_okay=False),
    multiple=True,
    help="another labelled set (ellipses.csv with subjects): its val/test subjects of the model's card when the "
    "model trained on it, else halves by subject",
)
@click.option(
    "--negatives",
    "n_negatives",
    type=click.IntRange(min=0),
    default=720,
    show_default=True,
    help="synthetic eye-free images per half (tools.negatives), plus the bundled sample photos",
)
@click.option(
    "--synthetic",
    "n_synthetic",
    type=click.IntRange(min=0),
    default=600,
    show_default=True,
    help="rendered eyes with exact truth (tools.synthetic, seeds the trainer does not use), split in halves",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="calibration file (default: beside the model, MODEL.confidence.json)",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False),
    default="out/calibration",
    show_default=True,
    help="reliability table (JSON, Markdown) and plot (PNG)",
)
@_backend_options
def calibrate(dev_data, extra_data, n_negatives, n_synthetic, out_path, report_dir, model, backend) -> None:
    """Calibrate the confidence of MODEL: the share of boundaries within 5 % of the true radius, per confidence."""
    from tools import calibration as cal
    from tools.evaluation import load_eval_set, model_split_for
    from tools.negatives import negative_images
    from tracker.errors import TrackerError
    from tracker.fit.confidence import calibration_path
    from tracker.paths import default_model_path

    _quiet_native_logs()
    model_path = Path(model) if model else default_model_path()
    split, why = model_split_for(model_path)
    if split is None or split.val is None or split.test is None:
        raise TrackerError(
            f"{model_path}: its card lists no val and test subjects to calibrate on ({why or 'no split'})"
        )
    # The model's current calibration (perhaps of older features) plays no part: every boundary is collected.
    tracker = load_tracker(model, backend, _tracker_config("ellipse", 0.35, smooth=False), confidence=cal.REPORT_ALL)

    def eyes(root, subjects):
        for item in load_eval_set(root, split_subjects=subjects):
            yield item.name, item.image, (item.iris_gt, item.pupil_gt)

    def eye_free(seed, photos):
        for i, n in enumerate(negative_images(n_negatives, seed=seed)):
            if i < n_negatives or (i - n_negatives) % 2 == photos:
                yield n.name, n.image, None

    def rendered(half):
        import numpy as np

        from tools.synthetic import MIN_VISIBLE_FRACTION, random_eye_params, render_eye

        rng = np.random.default_rng([SYNTHETIC_SEED, half])
        for i in range(n_synthetic // 2):
            size_wh = SYNTHETIC_SIZES_WH[i % len(SYNTHETIC_SIZES_WH)]
            image, truth = render_eye(random_eye_params(rng, size_wh), size_wh)
            seen = (truth.iris_visible_fraction, truth.pupil_visible_fraction)
            gt = tuple(
                e if f >= MIN_VISIBLE_FRACTION else None for e, f in zip((truth.iris, truth.pupil), seen, strict=True)
            )
            yield f"synthetic/{half}-{i:04d}", image, gt

    sets, counts = {}, {}
    plan = [("dev_val", eyes(dev_data, split.val)), ("dev_test", eyes(dev_data, split.test))]
    for root in extra_data:
        cal_half, test_half = cal.extra_set_halves(load_eval_set(root).subjects or (), split)
        name = Path(root).name
        plan += [(f"{name}_cal", eyes(root, cal_half)), (f"{name}_test", eyes(root, test_half))]
    plan += [("synthetic_cal", rendered(0)), ("synthetic_test", rendered(1))]
    plan += [("negative_cal", eye_free(0, 0)), ("negative_test", eye_free(1, 1))]
    for name, items in plan:
        sets[name], counts[name] = cal.collect(tracker, name, items)
        click.echo(f"{name}: {counts[name]} images, {len(sets[name])} boundaries found", err=True)
    fit_sets = {k: v for k, v in sets.items() if k.endswith("_cal") or k == "dev_val"}
    settings = tracker.config.fit
    fit = {"threshold": settings.threshold, "shape": settings.shape, "refine": list(settings.refine)}
    fitted, chosen = cal.calibrate(fit_sets, counts["negative_cal"], cal.AMBIGUOUS_KINDS, fit)
    report = cal.report(fitted, sets, counts, cal.AMBIGUOUS_KINDS)
    target = Path(out_path) if out_path else calibration_path(model_path)
    if not target.name.endswith(".json") or target.resolve() == model_path.with_suffix(".json").resolve():
        raise TrackerError(
            f"--out {target}: expected a .confidence.json file beside the model, not the model or its card"
        )
    try:
        target.write_text(fitted.to_json() + "\n")
    except OSError as exc:
        raise TrackerError(f"cannot write the calibration {target}: {exc.strerror or exc}") from None
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps({"chosen": chosen, **report}, indent=1) + "\n")
    (folder / "report.md").write_text(cal.report_markdown(fitted, report) + "\n")
    cal.plot_reliability(
        {k: v for k, v in report["reliability"].items() if not k.startswith("negative")},
        fitted.trust_from,
        folder / "reliability.png",
    )
    click.echo(cal.report_markdown(fitted, report))
    click.echo(f"wrote {target}, {folder}/report.json, report.md, reliability.png")
