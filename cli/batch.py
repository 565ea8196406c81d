"""`iristrack batch`: track many recordings into one output each, resumably, on worker processes or a Ray cluster."""

from __future__ import annotations

import signal
import sys

import click

from cli.common import PROBABILITY, _backend_options, _quiet_native_logs, _tracker_config


@click.command()
@click.argument("inputs", nargs=-1)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="folder for the outputs and summary"
)
@_backend_options
@click.option("--manifest", type=click.Path(dir_okay=False, exists=True), help="CSV with a 'path' column, or a list")
@click.option("--csv", "csv_out", is_flag=True, help="also write NAME.csv")
@click.option("--video-out", is_flag=True, help="also write the overlay video NAME.overlay.mp4")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="worker processes (0: this process)  [default: one per 2 cores, measured]",
)
@click.option(
    "--ray", "ray_address", default=None, help="run one Ray task per input on this cluster: auto, ray://HOST:10001"
)
@click.option("--shape", type=click.Choice(["ellipse", "circle"]), default="ellipse", show_default=True)
@click.option("--threshold", type=PROBABILITY, default=0.35, show_default=True)
@click.option("--no-smooth", is_flag=True, help="no frame-to-frame smoothing (always off for image folders)")
@click.option("--quiet", is_flag=True, help="no progress bar or summary table")
def batch(
    inputs,
    out_dir,
    model,
    backend,
    manifest,
    csv_out,
    video_out,
    workers,
    ray_address,
    shape,
    threshold,
    no_smooth,
    quiet,
) -> None:
    """Track INPUTS (videos, image folders, globs, manifests .csv/.txt) into one output each under --out.

    Outputs mirror the inputs' paths relative to their common parent folder: a/s1/eye.mp4 and a/s2/eye.mp4
    give OUT/s1/eye.mp4.jsonl and OUT/s2/eye.mp4.jsonl (with --csv .csv, with --video-out .overlay.mp4),
    each written as NAME.partial and renamed when its input was read to the end. A rerun skips inputs
    whose outputs all exist and redoes the others. OUT/batch_summary.json lists every input's result.
    Exit 0 when every input is complete, 1 when any failed (the others still finish), 128+N on signal N.
    """
    from tracker.batch import BatchOptions, format_table, run_batch

    if not inputs and not manifest:
        raise click.UsageError("give INPUTS or --manifest")
    _quiet_native_logs()
    ctx = click.get_current_context()
    options = BatchOptions(
        model=model,
        backend=backend,
        threads=ctx.meta.get("iristrack.threads", 0),
        rebuild=not ctx.meta.get("iristrack.no_rebuild", False),
        config=_tracker_config(shape, threshold, not no_smooth),
    )

    def report(result) -> None:
        if result.status == "failed" and not quiet:
            click.echo(f"failed: {result.source}: {result.error}", err=True)

    summary = run_batch(
        inputs,
        out_dir,
        csv=csv_out,
        video=video_out,
        workers=workers,
        manifest=manifest,
        options=options,
        ray_address=ray_address,
        progress=not quiet,
        on_result=report,
    )
    if not quiet:
        click.echo(format_table(summary))
        click.echo(f"wrote {out_dir}/batch_summary.json")
    if summary.interrupted:
        signum = summary.stop_signal or signal.SIGINT
        click.echo(
            f"interrupted by {signal.Signals(signum).name}: inputs in progress keep their .partial files; "
            "run the same command again to finish",
            err=True,
        )
        sys.exit(128 + signum)
    if summary.failed:
        click.echo(f"error: {len(summary.failed)} of {len(summary.inputs)} inputs failed (see the summary)", err=True)
        sys.exit(1)
