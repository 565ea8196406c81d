"""The overlay video: result drawings appended to a video file as the run goes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tracker.errors import TrackerError
from tracker.io.overlay import draw_overlay
from tracker.io.sinks import ClosingSink
from tracker.structures import Frame, FrameResult

VIDEO_FOURCC = "mp4v"
DEFAULT_VIDEO_FPS = 30.0


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


class VideoSink(ClosingSink):
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
