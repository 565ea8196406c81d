"""CLI commands that track: run (files, folders, cameras, the bundled demo) and eval (accuracy on labelled data)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from tracker.errors import TrackerError
from tracker.run import PIPELINED_BY_DEFAULT

DEMO_FRAMES, DEMO_SIZE_WH, DEMO_FPS, DEMO_SEED = 600, (320, 240), 60.0, 7


def _demo_clip(folder: Path) -> tuple[Path, Path]:
    """Render the bundled synthetic demo clip once (deterministic) and return (video, truth csv)."""
    from tools.synthetic import write_clip

    folder.mkdir(parents=True, exist_ok=True)
    video, truth = folder / f"demo_clip_{DEMO_SEED}.mp4", folder / f"demo_clip_{DEMO_SEED}_truth.csv"
    if not (video.exists() and truth.exists()):
        write_clip(video, truth, DEMO_FRAMES, DEMO_SIZE_WH, DEMO_FPS, DEMO_SEED)
    return video, truth


REFINE_CHOICES = {"pupil": ("pupil",), "both": ("limbus", "pupil"), "none": ()}


def _tracker_config(shape: str, threshold: float, smooth: bool):
    from tracker.fit.eye import FitConfig
    from tracker.pipeline import TrackerConfig

    refine = REFINE_CHOICES[click.get_current_context().meta.get("iristrack.refine") or "none"]
    return TrackerConfig(fit=FitConfig(threshold=threshold, shape=shape, refine=refine), smooth=smooth)


def _remember(ctx: click.Context, param: click.Parameter, value):
    ctx.meta[f"iristrack.{param.name}"] = value
    return value


def _backend_options(f):
    f = click.option(
        "--threads",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="CPU inference threads (0: cpu_count - 1 when pipelined, so fitting keeps a core; else the engine's)",
    )(f)
    f = click.option(
        "--refine",
        type=click.Choice(list(REFINE_CHOICES)),
        default="none",
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="boundaries moved onto the full-resolution image edge after the fit (none: measured best on real data)",
    )(f)
    f = click.option(
        "--no-rebuild",
        is_flag=True,
        expose_value=False,
        callback=_remember,
        help="TensorRT: fail (and say how to rebuild) instead of rebuilding a stale engine",
    )(f)
    f = click.option(
        "--backend",
        type=click.Choice(["auto", "cpu", "openvino", "onnxruntime", "tensorrt"]),
        default="auto",
        show_default=True,
        help="inference engine; auto prefers TensorRT, then OpenVINO, then ONNX Runtime",
    )(f)
    f = click.option(
        "--model",
        type=click.Path(dir_okay=False),
        default=None,
        help="ONNX model (default: the shipped engines/default/model.onnx)",
    )(f)
    return f


def load_tracker(model: str | None, backend: str, config, quiet: bool = False):
    """Load the backend (one notice line on stderr) and wrap it in a Tracker."""
    from tracker.backends.select import load_backend
    from tracker.pipeline import Tracker

    rebuild = not click.get_current_context().meta.get("iristrack.no_rebuild", False)
    ctx = click.get_current_context()
    threads = ctx.meta.get("iristrack.threads", 0)
    # Commands without --pipelined (eval) run one frame at a time and keep every core for inference.
    pipelined = ctx.params.get("pipelined", False)
    if not threads and (PIPELINED_BY_DEFAULT if pipelined is None else pipelined) and (os.cpu_count() or 1) > 1:
        threads = (os.cpu_count() or 2) - 1
    loaded, notice = load_backend(Path(model) if model else None, backend, rebuild=rebuild, threads=threads)
    if not quiet:
        click.echo(notice, err=True)
    return Tracker(loaded, config)


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
            outputs.append(sinks.VideoSink(video_out, fps=src.fps or 30.0))
        window = None
        if show:
            window = sinks.WindowSink("iristrack")
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
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench(source, model, backend, max_frames, realtime, pipelined, resize, soak_frames, as_json) -> None:
    """Measure stage latency, end-to-end frames per second and the classical baseline on SOURCE (default: demo clip)."""
    from tools.bench import format_bench, run_bench

    resize_wh = _parse_wh(resize) if resize else None
    _quiet_native_logs()
    if source is None:
        source = str(_demo_clip(Path("out"))[0])
    tracker = load_tracker(model, backend, _tracker_config("ellipse", 0.35, True), quiet=as_json)
    try:
        result = run_bench(
            tracker,
            source,
            max_frames=max_frames,
            realtime=realtime,
            pipelined=pipelined,
            resize_wh=resize_wh,
            soak_frames=soak_frames,
        )
    except ValueError as exc:
        raise TrackerError(str(exc)) from None
    finally:
        tracker.close()
    click.echo(json.dumps(result) if as_json else format_bench(result))


def _parse_wh(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); TrackerError for anything else."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise TrackerError(f"--resize expects WIDTHxHEIGHT in pixels such as 640x480, got {text!r}")
    return int(w), int(h)


def _quiet_native_logs() -> None:
    """Keep FFmpeg's and OpenCV's own log lines ("moov atom not found") off stderr: sources report in one line.

    OpenCV reads OPENCV_FFMPEG_LOGLEVEL when its FFmpeg backend first starts, so this runs before the first
    video is opened. A user who set either variable keeps their setting.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
