"""`iristrack run`: track files, folders, cameras or the bundled demo clip into JSONL, CSV, video and a window."""

from __future__ import annotations

import glob
import signal
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import click

import tracker.run as runner
from cli.annotations import labels_import  # noqa: F401 (registered from here: cli/__init__.py lists run.labels_import)
from cli.common import (
    FINITE,
    POSITIVE,
    PROBABILITY,
    _backend_options,
    _demo_clip,
    _quiet_native_logs,
    _tracker_config,
    load_tracker,
)
from cli.view import open_view, view_options, with_view
from tracker.eyes import EYE_MODES, FaceTracker
from tracker.io.labels import LABELS_CSV, LabelSink, check_labels_folder
from tracker.io.sinks import check_output_paths
from tracker.io.window import open_window
from tracker.run import PIPELINED_BY_DEFAULT

LABELS_EVERY_VIDEO = 10  # --save-labels-every default for videos and cameras: 6 frames/s of a 60 fps clip


@click.command()
@click.argument("source", required=False)
@_backend_options
@click.option("--out", "jsonl", type=click.Path(dir_okay=False), help="write one JSON object per frame")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="write one CSV row per frame")
@click.option("--video-out", type=click.Path(dir_okay=False), help="write an overlay video (.mp4)")
@click.option("--show", is_flag=True, help="live window (q quit, space pause, r record, s snapshot)")
@view_options
@click.option("--shape", type=click.Choice(["ellipse", "circle"]), default="ellipse", show_default=True)
@click.option(
    "--threshold",
    type=PROBABILITY,
    default=0.35,
    show_default=True,
    help="edge probability a boundary point must reach",
)
@click.option("--no-smooth", is_flag=True, help="no frame-to-frame smoothing (always off for image folders)")
@click.option("--realtime", is_flag=True, help="replay a file at its own frame rate, as if it were a camera")
@click.option("--max-frames", type=click.IntRange(min=1), default=None)
@click.option("--width", type=click.IntRange(min=1), default=None, help="camera resolution (where OpenCV supports it)")
@click.option("--height", type=click.IntRange(min=1), default=None)
@click.option("--fps", "camera_fps", type=POSITIVE, default=None, help="camera frame rate")
@click.option("--exposure", type=FINITE, default=None, help="camera exposure (driver units; may be negative)")
@click.option(
    "--pipelined/--sequential",
    default=None,
    help="overlap decoding, inference and fitting, or one frame at a time  [default: pipelined]",
)
@click.option(
    "--save-labels",
    "labels_dir",
    type=click.Path(file_okay=False),
    help="write the frames whose boundaries are both trusted as a label set (DIR/images/*.png + DIR/ellipses.csv)",
)
@click.option(
    "--save-labels-partial",
    "labels_partial",
    is_flag=True,
    help="also keep frames with one trusted boundary (the other one's cells left blank)",
)
@click.option(
    "--save-labels-every",
    "labels_every",
    type=click.IntRange(min=1),
    default=None,
    help="keep at most one labelled frame per N frames  [default: 10; 1 for images]",
)
@click.option(
    "--quality",
    is_flag=True,
    help="add each frame's ISO/IEC 29794-6 quality measures and gate verdict to --out and --csv (README Capture)",
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="quality gates from a .toml or .json profile (with --quality; default: the shipped profile)",
)
@click.option(
    "--eyes",
    type=click.Choice(EYE_MODES),
    default=None,
    help="one: the frame is an eye close-up; face: find both eyes of a face (webcam); auto: decide on the first "
    "frame  [default: auto; one with --quality or --save-labels]",
)
@click.option(
    "--focal-px",
    type=POSITIVE,
    default=None,
    help="the camera's focal length in pixels: adds each eye's distance to the camera (README Webcam)",
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
    labels_dir,
    labels_every,
    labels_partial,
    quality,
    profile_path,
    eyes,
    focal_px,
    quiet,
) -> None:
    """Track SOURCE: a video, an image, a folder or glob of images, a camera index (0) or an OpenCV/GStreamer URL.

    With no SOURCE, tracks the bundled synthetic demo clip and compares with its ground truth.
    """
    from tools.truth import ClipReport
    from tracker.io.sources import CameraOptions, open_source

    _quiet_native_logs()
    truth_csv = None
    if source is None:
        video, truth_csv = _demo_clip(Path("out"))
        source = str(video)
    outputs = {"--out": jsonl, "--csv": csv_path, "--video-out": video_out}
    labels_csv = Path(labels_dir) / LABELS_CSV if labels_dir else None
    inputs = [*_input_files(source, model), *([truth_csv] if truth_csv else [])]
    check_output_paths({**outputs, "--save-labels": labels_csv}, inputs)
    if labels_dir:
        check_labels_folder(labels_dir, _source_folders(source))
    assessor = _quality_assessor(quality, profile_path)
    eyes = _eye_mode(eyes, quality, labels_dir)
    camera = CameraOptions(width=width, height=height, fps=camera_fps, exposure=exposure)
    inline = PIPELINED_BY_DEFAULT if pipelined is None else pipelined
    report = ClipReport(truth_csv)
    with ExitStack() as stack:
        # The window first: a display that cannot be used fails before any output file is created.
        window = stack.enter_context(open_window()) if show else None
        view = stack.enter_context(open_view(assessor))  # bound now: a port in use fails before any output
        # Pipelined runs decode recorded media on the calling thread: a third busy thread slows a 2-core machine.
        src = stack.enter_context(
            open_source(source, realtime=realtime, camera=camera, on_skip=_print_skip, prefetch=not inline)
        )
        # Images are unrelated frames (no smoothing, no session), also when replayed at a pace (--realtime).
        folder_like = _is_image_source(source)
        config = replace(_tracker_config(shape, threshold, not no_smooth and not folder_like), focal_px=focal_px)
        tracker = stack.enter_context(load_tracker(model, backend, config, quiet, eyes=eyes, live=src.is_live))
        # Unrelated images are all worth keeping; a video's neighbouring frames are near-duplicates.
        every = labels_every or (1 if folder_like else LABELS_EVERY_VIDEO)
        labels = stack.enter_context(LabelSink(labels_dir, every, labels_partial)) if labels_dir else None
        faces = {"one": False, "face": True}.get(eyes) if isinstance(tracker, FaceTracker) else False
        sink = stack.enter_context(_open_sinks(jsonl, csv_path, video_out, window, src.fps, labels, assessor, faces))
        # The loop also stops when the window asks (q/Esc or closed): MultiSink passes on wants_quit.
        summary = runner.run(
            src,
            tracker,
            with_view(sink, view),
            pipelined=pipelined,
            progress=not quiet,
            max_frames=max_frames,
            on_result=report.add,
        )
    if not quiet:
        _print_summary(summary, source, tracker.backend.name, report, [p for p in outputs.values() if p], labels)
    _exit_for(summary)


def _input_files(source: str, model: str | None) -> list[Path]:
    """The files a run reads (the source file, the images of a folder or glob, the model): never outputs."""
    from tracker.fit.confidence import calibration_path
    from tracker.io.images import list_images
    from tracker.paths import default_model_path, face_eye_model_path

    models = [Path(model)] if model else [default_model_path(), face_eye_model_path()]
    files = [f for m in models if m is not None for f in (m, m.with_suffix(".json"), calibration_path(m))]
    path = Path(source).expanduser()
    if path.is_file():
        files.append(path)
    elif path.is_dir():
        files += list_images(path)
    elif set("*?[") & set(source):
        files += [Path(p) for p in glob.glob(str(path), recursive=True)]
    return files


def _source_folders(source: str) -> list[Path]:
    """The folders a folder or glob source reads images from: a label set must not land inside them."""
    path = Path(source).expanduser()
    if path.is_dir():
        return [path]
    if set("*?[") & set(source):
        return sorted({Path(p).parent for p in glob.glob(str(path), recursive=True)})
    return []


def _is_image_source(source: str) -> bool:
    """A folder, a glob or a single image: frames without a clock."""
    from tracker.io.images import is_image_name

    path = Path(source).expanduser()
    return path.is_dir() or bool(set("*?[") & set(source)) or (path.is_file() and is_image_name(path))


def _print_skip(message: str) -> None:
    # Called from the source's consumer (the inference thread for live sources); tqdm.write keeps the
    # message on its own line above the progress bar instead of glued to its end.
    from tqdm import tqdm

    tqdm.write(message if message.startswith("skipped") else f"skipped: {message}", file=sys.stderr)


def _quality_assessor(quality: bool, profile_path: str | None):
    """The QualityAssessor of --quality (its profile read now: a bad file fails before anything opens), or None."""
    if profile_path and not quality:
        raise click.UsageError("--profile sets the gates of --quality: add --quality")
    if not quality:
        return None
    from tracker.io.sinks import QualityAssessor
    from tracker.quality import load_profile

    return QualityAssessor(load_profile(profile_path) if profile_path else None)


def _eye_mode(eyes: str | None, quality: bool, labels_dir: str | None) -> str:
    """--eyes, with its default: auto, except one for --quality and --save-labels (they measure close-ups)."""
    close_up_only = [name for name, given in (("--quality", quality), ("--save-labels", labels_dir)) if given]
    if close_up_only and eyes in ("auto", "face"):
        raise click.UsageError(f"{' and '.join(close_up_only)} work on eye close-ups: use --eyes one")
    return eyes or ("one" if close_up_only else "auto")


def _open_sinks(jsonl, csv_path, video_out, window, fps: float | None, labels=None, quality=None, faces=False):
    """MultiSink over the requested outputs, each created now (folders too), then the label set, the window last.

    `faces`: the CSV's kind (True: a face run, False: close-ups, None: decided by the run's first frame).
    """
    from tracker.io.sinks import CsvSink, JsonlSink, MultiSink
    from tracker.io.video import VideoSink

    outputs = []
    with ExitStack() as opened:  # a sink that fails to open closes the ones opened before it
        if jsonl:
            outputs.append(opened.enter_context(JsonlSink(jsonl, quality)))
        if csv_path:
            outputs.append(opened.enter_context(CsvSink(csv_path, quality, faces)))
        if video_out:
            outputs.append(opened.enter_context(VideoSink(video_out, fps=fps or 30.0)))
        opened.pop_all()
    # The label set comes open from the caller, whose summary reports its rows (a second close is harmless).
    return MultiSink([*outputs, *([labels] if labels else []), *([window] if window else [])])


def _print_summary(summary, source: str, backend: str, report, written: list[str], labels=None) -> None:
    n = max(summary.eyes, 1)
    mode = "pipelined" if summary.pipelined else "sequential"
    click.echo(
        f"{summary.frames} frames from {source} in {summary.elapsed_s:.2f} s: {summary.fps:.0f} frames/s end "
        f"to end ({backend}, {mode})"
    )
    of = "of frames"
    if summary.face_frames:
        of = f"of the {summary.eyes} eyes found in {summary.face_frames} face frames"
    click.echo(
        f"iris detected in {100 * summary.iris_detected / n:.1f}% {of}, pupil in "
        f"{100 * summary.pupil_detected / n:.1f}%; trusted (right 99 % of the time at this confidence on held-out "
        f"data, where the model has a calibration): iris {100 * summary.iris_trusted / n:.1f}%, pupil "
        f"{100 * summary.pupil_trusted / n:.1f}%"
    )
    for line in report.lines():
        click.echo(line)
    if summary.dropped_frames:
        click.echo(f"dropped {summary.dropped_frames} stale frames (live source)")
    for path in written:
        click.echo(f"wrote {path}")
    if labels is not None:
        which = "a boundary" if labels.partial else "both boundaries"
        click.echo(
            f"wrote {labels.rows} labelled frames to {labels.path} (of {labels.trusted_frames} frames with {which} "
            f"trusted, at most one per {labels.every_frames} frames)"
        )


def _exit_for(summary) -> None:
    """Exit non-zero for a run that did not reach the end of its source: 128 + signal, or 1 for a lost source."""
    if summary.interrupted:
        signum = summary.stop_signal or signal.SIGINT
        click.echo(
            f"interrupted by {signal.Signals(signum).name}: outputs hold the {summary.frames} frames processed",
            err=True,
        )
        sys.exit(128 + signum)
    if summary.source_failure:
        click.echo(f"error: {summary.source_failure}; outputs hold the {summary.frames} frames processed", err=True)
        sys.exit(1)
