"""The live preview window (OpenCV HighGUI): overlay, keys, recording and snapshots."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import TrackerError
from tracker.io.overlay import draw_overlay
from tracker.io.sinks import ClosingSink
from tracker.io.video import _Mp4Writer
from tracker.structures import Frame, FrameResult

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


class WindowSink(ClosingSink):
    """Live preview with cv2.imshow; q quits (`wants_quit`), space pauses, r records an mp4, s saves a PNG."""

    def __init__(self, title: str = "iristrack", *, out_dir: str | Path = ".", record_fps: float | None = None) -> None:
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

    def request_quit(self) -> None:
        """End a pause and make the run stop (a stop signal arrived): called from the signal handler."""
        self.controls.wants_quit = True

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


GUI_HINT = "make gui (or: pip uninstall -y opencv-python-headless && pip install opencv-python; see README)"
# Opening a window in a child first: with a stale DISPLAY, Qt/GTK abort the whole process (exit 134), which
# no exception handler can catch; in a child that costs ~0.3 s once and leaves this process untouched.
DISPLAY_PROBE = (
    sys.executable,
    "-c",
    "import cv2; cv2.namedWindow('iristrack'); cv2.waitKey(1); cv2.destroyAllWindows()",
)
DISPLAY_PROBE_TIMEOUT_S = 15.0


def display_problem(probe: tuple[str, ...] | None = None) -> str | None:
    """None when a preview window can open here, else one line saying why not (no GUI build, no display)."""
    if not has_gui():
        return f"--show needs a GUI build of OpenCV, and this one is headless: {GUI_HINT}"
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        return "--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set"
    try:
        proc = subprocess.run(probe or DISPLAY_PROBE, capture_output=True, timeout=DISPLAY_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"--show could not test the display {display!r}: {exc}"
    if proc.returncode != 0:
        return (
            f"--show cannot open a window on display {display!r} (a test window exited with code "
            f"{proc.returncode}): the display is gone or refuses connections; run without --show or fix DISPLAY"
        )
    return None


def open_window(title: str = "iristrack", **options) -> WindowSink:
    """A WindowSink after checking, in a child process, that a window can open; TrackerError in one line if not."""
    problem = display_problem()
    if problem:
        raise TrackerError(problem)
    return WindowSink(title, **options)
