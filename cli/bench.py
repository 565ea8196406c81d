"""`iristrack bench`: stage latency, end-to-end speed, live latency and memory, against the classical baseline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import _backend_options, _demo_clip, _quiet_native_logs, _tracker_config, load_tracker, parse_wh
from tracker.errors import TrackerError


@click.command()
@click.argument("source", required=False)
@_backend_options
@click.option("--max-frames", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--realtime", is_flag=True, help="also replay at the source's frame rate: latency and drops")
@click.option(
    "--pipelined/--sequential",
    default=None,
    help="mode for the headline figure and the soak (both are always measured)  [default: pipelined]",
)
@click.option(
    "--resize",
    "resize",
    default=None,
    metavar="WxH",
    help="bench a resized copy of SOURCE (e.g. 640x480), written to a temporary folder",
)
@click.option(
    "--soak",
    "soak_frames",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="also process N frames (looping SOURCE) and report resident memory growth",
)
@click.option(
    "--view",
    is_flag=True,
    help="instead: end-to-end frames/s with and without a --view server held by a stalled page (README Live view)",
)
@click.option(
    "--eyes",
    type=click.Choice(["one", "face"]),
    default="one",
    show_default=True,
    help="face: SOURCE shows a face; bench both eyes per frame, as `run --eyes face` (README Webcam)",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench(source, model, backend, max_frames, realtime, pipelined, resize, soak_frames, view, eyes, as_json) -> None:
    """Measure stage latency, end-to-end frames per second and the classical baseline on SOURCE (default: demo clip)."""
    from tools.bench import format_bench, run_bench

    resize_wh = parse_wh(resize, "--resize") if resize else None
    _quiet_native_logs()
    if source is None:
        source = str(_demo_clip(Path("out"))[0])
    config = _tracker_config("ellipse", 0.35, True)
    tracker = load_tracker(model, backend, config, quiet=as_json, eyes=eyes)
    if view:
        _bench_view(tracker, source, max_frames, as_json)
        return
    live = None
    try:
        # The replay is timed as `iristrack run --realtime` runs: loaded for a live source (every core to the model).
        live = load_tracker(model, backend, config, quiet=True, eyes=eyes, live=True) if realtime else None
        result = run_bench(
            tracker,
            source,
            max_frames=max_frames,
            realtime=realtime,
            pipelined=pipelined,
            resize_wh=resize_wh,
            soak_frames=soak_frames,
            live_tracker=live,
        )
    except ValueError as exc:
        raise TrackerError(str(exc)) from None
    finally:
        tracker.close()
        if live is not None:
            live.close()
    click.echo(json.dumps(result) if as_json else format_bench(result))


def _bench_view(tracker, source: str, max_frames: int, as_json: bool) -> None:
    from tools.view_bench import bench_view, format_view_bench

    try:
        result = bench_view(tracker, source, max_frames=max_frames)
    finally:
        tracker.close()
    click.echo(json.dumps(result) if as_json else format_view_bench(result))
