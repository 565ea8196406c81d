"""`iristrack run`: track files, folders, cameras or the bundled demo clip into JSONL, CSV, video and a window."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import click

from cli.common import _backend_options, _demo_clip, _quiet_native_logs, _tracker_config, load_tracker
from tracker.run import PIPELINED_BY_DEFAULT


@click.command()
@click.argument("source", required=False)
@_backend_options
@click.option("--out", "jsonl", type=click.Path(dir_okay=False), help="write one JSON object per frame")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="write one CSV row per frame")
@click.option("--video-out", type=click.Path(dir_okay=False), help="write an overlay video (.mp4)")
@click.option("--show", is_flag=True, help="live window (q quit, space pause, r record, s snapshot)")
@click.option("--shape", type=click.Choice(["ellipse", "circle"]), default="ellipse", show_default=True)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.35,
    show_default=True,
    help="edge probability a boundary point must reach",
)
@click.option("--no-smooth", is_flag=True, help="no frame-to-frame smoothing (always off for image folders)")
@click.option("--realtime", is_flag=True, help="replay a file at its own frame rate, as if it were a camera")
@click.option("--max-frames", type=click.IntRange(min=1), default=None)
@click.option("--width", type=int, default=None, help="camera resolution (where OpenCV supports it)")
@click.option("--height", type=int, default=None)
@click.option("--fps", "camera_fps", type=float, default=None, help="camera frame rate")
@click.option("--exposure", type=float, default=None, help="camera exposure (driver units)")
@click.option(
    "--pipelined/--sequential",
    default=None,
    help="overlap decoding, inference and fitting, or one frame at a time  [default: pipelined]",
)
@click.option("--quiet", is_flag=True, help="no progress bar or summary")
def run(
    source,
    model,
    backend,
    jsonl,
    csv_path,
    video_out,
    show,
    shape,
    threshold,
    no_smooth,
    realtime,
    max_frames,
    width,
    height,
    camera_fps,
    exposure,
    pipelined,
    quiet,
) -> None:
    """Track SOURCE: a video, an image, a folder or glob of images, a camera index (0) or an OpenCV/GStreamer URL.

    With no SOURCE, tracks the bundled synthetic demo clip and compares with its ground truth.
    """
    import tracker.run as runner
    from tools import truth as clip_truth
    from tracker.io import sinks
    from tracker.io.sources import CameraOptions, open_source
    from tracker.io.video import VideoSink
    from tracker.io.window import WindowSink

    _quiet_native_logs()
    truth_path = None
    if source is None:
        video, truth_path = _demo_clip(Path("out"))
        source = str(video)
    skipped: list[str] = []

    def on_skip(message: str) -> None:
        # Called from the source's consumer (the inference thread for live sources); tqdm.write keeps the
        # message on its own line above the progress bar instead of glued to its end.
        from tqdm import tqdm

        skipped.append(message)
        tqdm.write(message if message.startswith("skipped") else f"skipped: {message}", file=sys.stderr)

    camera = CameraOptions(width=width, height=height, fps=camera_fps, exposure=exposure)
    with ExitStack() as stack:
        # Pipelined runs decode recorded media on the calling thread: a third busy thread slows a 2-core machine.
        inline = PIPELINED_BY_DEFAULT if pipelined is None else pipelined
        src = stack.enter_context(
            open_source(source, realtime=realtime, camera=camera, on_skip=on_skip, prefetch=not inline)
        )
        folder_like = not src.is_live and src.fps is None
        tracker = stack.enter_context(
            load_tracker(model, backend, _tracker_config(shape, threshold, not no_smooth and not folder_like), quiet)
        )
        outputs = []
        if jsonl:
            outputs.append(sinks.JsonlSink(jsonl))
        if csv_path:
            outputs.append(sinks.CsvSink(csv_path))
        if video_out:
            outputs.append(VideoSink(video_out, fps=src.fps or 30.0))
        window = None
        if show:
            window = WindowSink("iristrack")
            outputs.append(window)
        sink = stack.enter_context(sinks.MultiSink(outputs))
        truth = clip_truth.read_truth_csv(truth_path) if truth_path else None
        events = clip_truth.read_truth_events(truth_path) if truth_path else {}
        iris_cmp, pupil_cmp = clip_truth.TruthComparison(), clip_truth.TruthComparison()
        # Jitter: frame-to-frame centre change; against a truth, of the centre *error* during fixations.
        jitter = {"iris": clip_truth.Jitter(), "pupil": clip_truth.Jitter()}

        def compare(result):
            truths = truth.get(result.frame_index, (None, None)) if truth is not None else (None, None)
            for name, found, gt in (("iris", result.iris, truths[0]), ("pupil", result.pupil, truths[1])):
                unscored = truth is not None and (gt is None or events.get(result.frame_index) != "fixation")
                if found is None or unscored:
                    jitter[name].add(result.frame_index, None)
                elif truth is not None:
                    jitter[name].add(result.frame_index, found.ellipse.cx - gt.cx, found.ellipse.cy - gt.cy)
                else:
                    jitter[name].add(result.frame_index, found.ellipse.cx, found.ellipse.cy)
            if truth is not None and result.frame_index in truth:
                iris_cmp.add(truths[0], result.iris.ellipse if result.iris else None)
                pupil_cmp.add(truths[1], result.pupil.ellipse if result.pupil else None)

        # The loop also stops when the window asks (q/Esc or closed): MultiSink passes on wants_quit.
        summary = runner.run(
            src,
            tracker,
            sink,
            pipelined=pipelined,
            progress=not quiet,
            max_frames=max_frames,
            on_result=compare,
            should_stop=(lambda: window.wants_quit) if window else None,
        )
    if quiet:
        return
    n = max(summary.frames, 1)
    mode = "pipelined" if summary.pipelined else "sequential"
    click.echo(
        f"{summary.frames} frames from {source} in {summary.elapsed_s:.2f} s: {summary.fps:.0f} frames/s end "
        f"to end ({tracker.backend.name}, {mode})"
    )
    click.echo(
        f"iris detected in {100 * summary.iris_detected / n:.1f}% of frames, pupil in "
        f"{100 * summary.pupil_detected / n:.1f}%"
    )
    if truth is not None:
        click.echo("against the clip's ground truth: " + iris_cmp.line("iris"))
        click.echo("against the clip's ground truth: " + pupil_cmp.line("pupil"))
    what = "centre error change during fixations" if truth is not None else "centre change between frames"
    for name, meter in jitter.items():
        click.echo(f"{name} jitter ({what}): {meter.summary()}")
    if summary.dropped_frames:
        click.echo(f"dropped {summary.dropped_frames} stale frames (live source)")
    if summary.interrupted:
        click.echo("interrupted: outputs hold every frame processed so far")
    for path in (jsonl, csv_path, video_out):
        if path:
            click.echo(f"wrote {path}")
