"""All result output: JSONL and CSV files, overlay video, a preview window, and a fan-out to several.

Every sink is a context manager with `write(frame, result)` and an idempotent `close()`. File sinks
write each frame's line in one call and flush it, so a crash or Ctrl-C loses nothing already processed.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from tracker.errors import TrackerError
from tracker.structures import Boundary, Frame, FrameResult, Status

IRIS_BGR = (0, 255, 0)
PUPIL_BGR = (255, 0, 255)
TEXT_BGR = (255, 255, 255)
VIDEO_FOURCC = "mp4v"
DEFAULT_VIDEO_FPS = 30.0
_SHIFT = 4  # cv2 drawing with 4 fractional bits: 1/16 px precision
_BOUNDARY_KEYS = ("cx", "cy", "semi_major", "semi_minor", "angle_deg", "confidence")
CSV_COLUMNS = (
    "source",
    "frame",
    "timestamp_s",
    *(f"iris_{k}" for k in _BOUNDARY_KEYS),
    *(f"pupil_{k}" for k in _BOUNDARY_KEYS),
    "status",
    "latency_ms",
)


class Sink(Protocol):
    """Anything that takes (frame, result) pairs and must be closed."""

    def write(self, frame: Frame, result: FrameResult) -> None: ...  # noqa: D102
    def close(self) -> None: ...  # noqa: D102


# --- results as records ----------------------------------------------------------------------------


def _num(x: float, ndigits: int) -> float | None:
    """Rounded float; None for NaN/inf, which JSON cannot carry."""
    x = float(x)
    return round(x, ndigits) if math.isfinite(x) else None


def _boundary_dict(b: Boundary | None) -> dict | None:
    if b is None:
        return None
    e = b.ellipse
    return {
        "cx": _num(e.cx, 3),
        "cy": _num(e.cy, 3),
        "semi_major": _num(e.semi_major, 3),
        "semi_minor": _num(e.semi_minor, 3),
        "angle_deg": _num(e.angle_deg, 2),
        "confidence": _num(b.confidence, 4),
    }


def result_to_dict(r: FrameResult) -> dict:
    """FrameResult -> JSON-ready dict; pixels to 1/1000 px, angles 0.01 deg, timestamps 1 us, latency 1 us."""
    return {
        "source": r.source,
        "frame": int(r.frame_index),
        "timestamp_s": _num(r.timestamp_s, 6),
        "iris": _boundary_dict(r.iris),
        "pupil": _boundary_dict(r.pupil),
        "status": Status(r.status).value,
        "latency_ms": _num(r.latency_ms, 3),
    }


def result_to_row(r: FrameResult) -> list:
    """FrameResult -> values in CSV_COLUMNS order; None where a boundary is absent."""
    d = result_to_dict(r)
    row = [d["source"], d["frame"], d["timestamp_s"]]
    for part in ("iris", "pupil"):
        row.extend(d[part][k] if d[part] else None for k in _BOUNDARY_KEYS)
    row.extend([d["status"], d["latency_ms"]])
    return row


def _open_for_writing(path: str | Path, mode: str, **kwargs):
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, **kwargs)  # noqa: SIM115 (the sink owns the handle until close)
    except OSError as exc:
        raise TrackerError(f"cannot write results to {path}: {exc.strerror or exc}") from exc


class _Closing:
    """Context-manager plumbing shared by the sinks."""

    def close(self) -> None:  # noqa: D102
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JsonlSink(_Closing):
    """One JSON object per frame and line (see `result_to_dict`), each written in one call and flushed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Unbuffered binary: each line is exactly one write() to the OS, never half in a Python buffer.
        self._file = _open_for_writing(self.path, "wb", buffering=0)

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        """Append `result` as one line."""
        line = (json.dumps(result_to_dict(result), allow_nan=False) + "\n").encode()
        view = memoryview(line)
        while view:  # a raw write may be partial in principle; lines are short, so in practice it is one call
            view = view[self._file.write(view) :]

    def close(self) -> None:
        """Close the file; safe to call twice."""
        self._file.close()


class CsvSink(_Closing):
    """Flat CSV with CSV_COLUMNS, blank cells for absent boundaries, flushed after every frame."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = _open_for_writing(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_COLUMNS)
        self._file.flush()

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        """Append `result` as one row."""
        self._writer.writerow(result_to_row(result))  # csv writes None as an empty cell
        self._file.flush()

    def close(self) -> None:
        """Close the file; safe to call twice."""
        self._file.close()


# --- overlay ---------------------------------------------------------------------------------------


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) uint8/uint16/float -> new (H, W, 3) uint8 BGR; deeper images min-max stretched."""
    if image.dtype != np.uint8:
        # Per-frame stretch: 10/12-bit sensors in 16-bit containers would otherwise look black.
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX, dtype=cv2.CV_8U)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def _fixed(x: float) -> int:
    return int(round(x * (1 << _SHIFT)))


def _draw_boundary(img: np.ndarray, b: Boundary, color: tuple[int, int, int], thickness: int) -> None:
    e = b.ellipse
    if not (math.isfinite(e.cx) and math.isfinite(e.cy) and math.isfinite(e.semi_major)):
        return
    centre = (_fixed(e.cx), _fixed(e.cy))
    axes = (_fixed(e.semi_major), _fixed(e.semi_minor))
    cv2.ellipse(img, centre, axes, e.angle_deg, 0, 360, color, thickness, cv2.LINE_AA, _SHIFT)
    arm = _fixed(max(2.0, 1.5 * thickness + 1))
    cx, cy = centre
    cv2.line(img, (cx - arm, cy), (cx + arm, cy), color, thickness, cv2.LINE_AA, _SHIFT)
    cv2.line(img, (cx, cy - arm), (cx, cy + arm), color, thickness, cv2.LINE_AA, _SHIFT)


def _put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    thickness = max(1, int(round(scale * 1.5)))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, result: FrameResult, *, fps: float | None = None, text: bool = True) -> np.ndarray:
    """(H, W[, 3|4]) uint8/uint16 frame -> new (H, W, 3) uint8 BGR with iris (green) and pupil (magenta) drawn."""
    img = to_bgr8(image)
    h, w = img.shape[:2]
    thickness = max(1, round(min(h, w) / 240))
    if result.iris is not None:
        _draw_boundary(img, result.iris, IRIS_BGR, thickness)
    if result.pupil is not None:
        _draw_boundary(img, result.pupil, PUPIL_BGR, thickness)
    if text:
        scale = max(0.3, min(h, w) / 600)
        line_h = int(30 * scale) + 4
        status = Status(result.status)
        lines = [
            (f"iris {result.iris.confidence:.2f}" if result.iris else "iris -", IRIS_BGR),
            (f"pupil {result.pupil.confidence:.2f}" if result.pupil else "pupil -", PUPIL_BGR),
            (status.value, TEXT_BGR if status is Status.OK else (0, 165, 255)),
        ]
        perf = f"{result.latency_ms:.1f} ms"
        if fps is not None:
            perf += f"  {fps:.1f} fps"
        lines.append((perf, TEXT_BGR))
        for i, (line, color) in enumerate(lines):
            _put_text(img, line, (4, line_h * (i + 1)), scale, color)
    return img


# --- video and window ------------------------------------------------------------------------------


class _Mp4Writer:
    """cv2.VideoWriter opened lazily at the size of the first BGR uint8 image; later sizes are resized to it."""

    def __init__(self, path: str | Path, fps: float | None, size_wh: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_VIDEO_FPS
        self.size_wh = size_wh
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, bgr: np.ndarray) -> None:
        if self._writer is None:
            self._open(bgr)
        w, h = self.size_wh
        if bgr.shape[1] != w or bgr.shape[0] != h:
            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames_written += 1

    def _open(self, bgr: np.ndarray) -> None:
        if self.size_wh is None:
            self.size_wh = (bgr.shape[1], bgr.shape[0])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackerError(f"cannot create the folder for {self.path}: {exc.strerror or exc}") from exc
        w, h = self.size_wh
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.fps, (w, h))
        if not writer.isOpened():
            writer.release()
            raise TrackerError(
                f"cannot open a video writer for {self.path} ({w}x{h} at {self.fps:g} fps, {VIDEO_FOURCC}); "
                "expected a writable path ending in .mp4"
            )
        self._writer = writer

    def close(self) -> None:
        # Releasing writes the MP4 index; without it the file does not play.
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class VideoSink(_Closing):
    """Overlay video (MP4, mp4v): opened on the first frame, finalised (playable) on close."""

    def __init__(self, path: str | Path, fps: float | None, size_wh: tuple[int, int] | None = None) -> None:
        self._mp4 = _Mp4Writer(path, fps, size_wh)
        self.path = self._mp4.path

    @property
    def frames_written(self) -> int:
        """Frames written so far."""
        return self._mp4.frames_written

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Draw `result` on `frame` and append it to the video."""
        self._mp4.write(draw_overlay(frame.image, result))

    def close(self) -> None:
        """Release the writer so the file is complete; safe to call twice."""
        self._mp4.close()


KEY_QUIT = (ord("q"), ord("Q"), 27)  # q or Esc
KEY_PAUSE = (ord(" "),)
KEY_RECORD = (ord("r"), ord("R"))
KEY_SNAPSHOT = (ord("s"), ord("S"))


@dataclass
class WindowControls:
    """Keyboard state of the preview window; pure, so it is testable without a GUI."""

    wants_quit: bool = False
    paused: bool = False
    recording: bool = False
    snapshot_requested: bool = False

    def handle_key(self, key: int) -> None:
        """Apply one cv2.waitKey code (-1 for none): q/Esc quit, space pause, r record on/off, s snapshot."""
        if key < 0:
            return
        key &= 0xFF
        if key in KEY_QUIT:
            self.wants_quit = True
        elif key in KEY_PAUSE:
            self.paused = not self.paused
        elif key in KEY_RECORD:
            self.recording = not self.recording
        elif key in KEY_SNAPSHOT:
            self.snapshot_requested = True


def has_gui() -> bool:
    """True when this OpenCV build has a HighGUI backend (opencv-python-headless has none)."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip() == "GUI":
            return value.strip().upper() not in ("", "NONE")
    return False


class _RateMeter:
    """Smoothed events per second (exponential moving average of the interval)."""

    def __init__(self, alpha: float = 0.1) -> None:
        self._alpha = alpha
        self._last: float | None = None
        self._interval_s: float | None = None

    def tick(self) -> float | None:
        now = time.perf_counter()
        if self._last is not None:
            dt = now - self._last
            self._interval_s = (
                dt if self._interval_s is None else self._interval_s + self._alpha * (dt - self._interval_s)
            )
        self._last = now
        return 1.0 / self._interval_s if self._interval_s else None


class WindowSink(_Closing):
    """Live preview with cv2.imshow; q quits (`wants_quit`), space pauses, r records an mp4, s saves a PNG."""

    def __init__(self, title: str = "iristrack", *, out_dir: str | Path = ".", record_fps: float | None = None) -> None:
        if not has_gui():
            raise TrackerError(
                "--show needs a GUI build of OpenCV: pip uninstall opencv-python-headless && pip install opencv-python"
            )
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise TrackerError("--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set")
        self.title = title
        self.out_dir = Path(out_dir)
        self.controls = WindowControls()
        self._record_fps = record_fps
        self._recorder: _Mp4Writer | None = None
        self._rate = _RateMeter()
        self._closed = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise TrackerError(f"--show could not open a window: {exc.err or exc}") from exc

    @property
    def wants_quit(self) -> bool:
        """True once the user pressed q/Esc or closed the window; the run loop stops on it."""
        return self.controls.wants_quit

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Show the overlay, handle keys; blocks here while paused."""
        overlay = draw_overlay(frame.image, result, fps=self._rate.tick())
        self._record(overlay)
        if self.controls.snapshot_requested:
            self.controls.snapshot_requested = False
            path = self.out_dir / f"snapshot_{_stamp()}.png"
            if not cv2.imwrite(str(path), overlay):
                raise TrackerError(f"cannot write snapshot {path}")
        cv2.imshow(self.title, overlay)
        self._poll(1)
        while self.controls.paused and not self.controls.wants_quit:
            self._poll(50)

    def _poll(self, wait_ms: int) -> None:
        self.controls.handle_key(cv2.waitKey(wait_ms))
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.controls.wants_quit = True  # the user closed the window

    def _record(self, overlay: np.ndarray) -> None:
        if self.controls.recording and self._recorder is None:
            self._recorder = _Mp4Writer(self.out_dir / f"recording_{_stamp()}.mp4", self._record_fps)
        elif not self.controls.recording and self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        if self._recorder is not None:
            self._recorder.write(overlay)

    def close(self) -> None:
        """Finish a recording and close the window; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # lets HighGUI process the destroy event
        except cv2.error:
            pass


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")[:-3]


# --- fan-out ---------------------------------------------------------------------------------------


class MultiSink(_Closing):
    """Writes each (frame, result) to every sink; closes them all (even if one fails), once."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)
        self._closed = False

    @property
    def wants_quit(self) -> bool:
        """True when any sink (a window) asks the run loop to stop."""
        return any(getattr(s, "wants_quit", False) for s in self.sinks)

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Pass the pair to every sink in order."""
        for sink in self.sinks:
            sink.write(frame, result)

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise
            # The error that ended the run matters more than a close failure it may have caused.

    def close(self) -> None:
        """Close every sink; re-raise the first error after all were tried."""
        if self._closed:
            return
        self._closed = True
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:  # close the rest, then report
                first = first or exc
        if first is not None:
            raise first
