"""What the tracking commands share: backend options, loading a tracker, the demo clip, quiet native logs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from tracker.errors import TrackerError
from tracker.run import PIPELINED_BY_DEFAULT


class FiniteFloat(click.FloatRange):
    """A float option that rejects NaN and infinity (click's FloatRange lets NaN through every bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        """Parse, reject non-finite values, then apply the range."""
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


PROBABILITY = FiniteFloat(0.0, 1.0, min_open=True)  # an edge probability threshold
POSITIVE = FiniteFloat(0.0, min_open=True)
FINITE = FiniteFloat()

DEMO_FRAMES, DEMO_SIZE_WH, DEMO_FPS, DEMO_SEED = 600, (320, 240), 60.0, 7


def _demo_clip(folder: Path) -> tuple[Path, Path]:
    """Render the bundled synthetic demo clip once (deterministic) and return (video, truth csv)."""
    from tools.synthetic import write_clip

    folder.mkdir(parents=True, exist_ok=True)
    video, truth = folder / f"demo_clip_{DEMO_SEED}.mp4", folder / f"demo_clip_{DEMO_SEED}_truth.csv"
    if not (video.exists() and truth.exists()):
        write_clip(video, truth, DEMO_FRAMES, DEMO_SIZE_WH, DEMO_FPS, DEMO_SEED)
    return video, truth


REFINE_CHOICES = {"pupil": ("pupil",), "both": ("iris", "pupil"), "none": ()}


def _tracker_config(shape: str, threshold: float, smooth: bool):
    from tracker.fit.eye import FitConfig
    from tracker.pipeline import TrackerConfig

    refine = REFINE_CHOICES[click.get_current_context().meta.get("iristrack.refine") or "pupil"]
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
        help=(
            "CPU inference threads (0: every core for a camera or --realtime; cpu_count - 1 for pipelined files, "
            "so fitting keeps a core; else the engine's)"
        ),
    )(f)
    f = click.option(
        "--refine",
        type=click.Choice(list(REFINE_CHOICES)),
        default="pupil",
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="boundaries whose centre moves most of the way to the full-resolution image edge's after the fit "
        "(pupil: measured best on real data; the limbus is a soft step)",
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
        help="ONNX model (default: the shipped engines/default/model.onnx, and engines/face/model.onnx for the "
        "eyes of face frames; a given model tracks both)",
    )(f)
    return f


def load_tracker(
    model: str | None, backend: str, config, quiet: bool = False, confidence=None, eyes: str = "one", live: bool = False
):
    """Load the backend (one notice line on stderr) and wrap it in a Tracker with the model's calibration.

    `eyes` "face" or "auto" wraps it in a FaceTracker (README "Webcam"); "auto" without the face models
    installed says so in one line and tracks close-ups. `live` (a camera, or --realtime): latency first.
    """
    from tracker.backends.select import load_backend
    from tracker.pipeline import Tracker

    rebuild = not click.get_current_context().meta.get("iristrack.no_rebuild", False)
    ctx = click.get_current_context()
    threads = ctx.meta.get("iristrack.threads", 0)
    # Commands without --pipelined (eval) run one frame at a time and keep every core for inference.
    pipelined = ctx.params.get("pipelined", False)
    if not threads and live:
        # A live frame is taken only when the last one is nearly done (tracker/run.py), so its model call has
        # the cores to itself: measured on 2 cores, a face run at 60 fps, latency median 12.3-13.6 -> 10.5-11.5
        # ms (3 runs each).
        threads = os.cpu_count() or 1
    elif not threads and (PIPELINED_BY_DEFAULT if pipelined is None else pipelined) and (os.cpu_count() or 1) > 1:
        threads = (os.cpu_count() or 2) - 1
    from dataclasses import replace

    from tracker.fit.confidence import confidence_for
    from tracker.paths import default_model_path, face_eye_model_path

    # The calibrations first: a broken one is an error before any backend is open. A face run without --model
    # tracks its eye crops with the shipped face-eye model, under that model's own calibration.
    confidence = confidence or confidence_for(model or default_model_path())
    eye_model = face_eye_model_path() if eyes != "one" and not model else None
    eye_config = replace(config, confidence=confidence_for(eye_model)) if eye_model is not None else None
    loaded, notice = load_backend(
        Path(model) if model else None, backend, rebuild=rebuild, threads=threads, pin_threads=eyes == "one"
    )
    if not quiet:
        precision = getattr(loaded, "precision", None)  # OpenVINO: bf16 or fp32, chosen by measurement (docs/GPU.md)
        click.echo(f"{notice}, {precision}" if precision else notice, err=True)
        measured = confidence.measured.get("fit") or {}
        used = {"threshold": config.fit.threshold, "shape": config.fit.shape, "refine": list(config.fit.refine)}
        if measured and any(measured.get(k) != v for k, v in used.items()):
            click.echo(f"note: the confidence was calibrated with {measured}, this run uses {used}: its 'trusted' "
                       "flags are not calibrated for these settings", err=True)  # fmt: skip
        if not confidence.weights:
            click.echo("this model has no confidence calibration: nothing it reports is 'trusted' in the calibrated "
                       "sense (run iristrack calibrate)", err=True)  # fmt: skip
    config = replace(config, confidence=confidence)
    if eyes == "one":
        return Tracker(loaded, config)

    def load_eyes():
        """The face-eye model's backend, of the close-up one's kind (the CPU where TensorRT cannot build it)."""
        from tracker.errors import ModelError

        try:
            eye_backend, eye_notice = load_backend(
                eye_model, loaded.name, rebuild=rebuild, threads=threads, pin_threads=False
            )
        except ModelError as exc:
            if backend != "auto" or loaded.name != "tensorrt":
                raise
            eye_backend, eye_notice = load_backend(eye_model, "cpu", threads=threads, pin_threads=False)
            eye_notice = f"{eye_notice}; tensorrt failed on it: {exc}"
        if not quiet and (eye_backend.name != loaded.name or eye_backend.name == "tensorrt"):
            click.echo(f"face-eye model {eye_model}: {eye_notice}", err=True)
        return eye_backend

    try:
        return _face_tracker(loaded, config, eyes, quiet, load_eyes if eye_model is not None else None, eye_config)
    except BaseException:
        loaded.close()
        raise


def _face_tracker(backend, config, eyes: str, quiet: bool, load_eyes, eye_config):
    """A FaceTracker over `backend`; for --eyes auto without the face models, a Tracker and a notice.

    `load_eyes()`: the backend that tracks the eye crops (the shipped face-eye model, with `eye_config`, on
    its 1.3x boxes); None (a model was chosen): `backend` tracks them too.
    """
    from tracker.errors import ModelError
    from tracker.eyes import FACE_EYE_BOX_WIDTH_PER_SPAN, FaceEyeFinder, FaceTracker
    from tracker.pipeline import Tracker

    try:
        finder = FaceEyeFinder()
    except ModelError as exc:
        if eyes == "face":
            raise
        if not quiet:
            click.echo(f"--eyes auto: {exc}; tracking eye close-ups only", err=True)
        return Tracker(backend, config)
    eye_backend = None
    try:
        if load_eyes is None:
            return FaceTracker(backend, config, mode=eyes, finder=finder)
        eye_backend = load_eyes()
        return FaceTracker(backend, config, eyes, finder, eye_backend, eye_config, FACE_EYE_BOX_WIDTH_PER_SPAN)
    except BaseException:
        finder.close()
        if eye_backend is not None:
            eye_backend.close()
        raise


def _quiet_native_logs() -> None:
    """Keep FFmpeg's and OpenCV's own log lines ("moov atom not found") off stderr: sources report in one line.

    OpenCV reads OPENCV_FFMPEG_LOGLEVEL when its FFmpeg backend first starts, so this runs before the first
    video is opened. A user who set either variable keeps their setting.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def parse_wh(text: str, option: str) -> tuple[int, int]:
    """'640x480' -> (640, 480) as (W, H); one TrackerError line naming `option` for anything else."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise TrackerError(f"{option} expects WIDTHxHEIGHT in pixels such as 640x480, got {text!r}")
    return int(w), int(h)
