"""The overlay video: result drawings appended to a fragmented MP4 that plays at every moment of the run.

A classic MP4 is unplayable until its index (the `moov` box) is written at the end, so a SIGKILL, a SIGHUP
or a full disk used to leave "moov atom not found". Here every frame is its own fragment (`moof` + `mdat`)
after an empty index written at open, and each fragment goes to the OS as the next frame arrives: whatever
ends the process, the file plays and holds every frame but the last one. H.264 (libx264, ultrafast,
zero latency) in MP4 plays in Chrome, Firefox and Safari; the MPEG-4 Part 2 fallback plays in VLC and ffmpeg.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from tracker.errors import TrackerError
from tracker.io.overlay import draw_overlay
from tracker.io.sinks import ClosingSink
from tracker.structures import Frame, FrameResult

_log = logging.getLogger(__name__)

DEFAULT_VIDEO_FPS = 30.0
# First one this PyAV build can encode wins. H.264 plays in browsers; MPEG-4 Part 2 (mpeg4) does not.
VIDEO_CODECS = ("libx264", "libopenh264", "mpeg4")
BROWSER_PLAYABLE_CODECS = ("libx264", "libopenh264")
# A fragment per frame, handed to the OS at once (flush_packets): a killed process loses only the frame the
# muxer still holds to learn its duration. Costs 118 bytes a frame (3 % at 320x240) over a fragment per key frame.
_CONTAINER_OPTIONS = {"movflags": "frag_every_frame+empty_moov+default_base_moof", "flush_packets": "1"}
# Seek granularity in a player; every 2 s instead would make the file 4 % smaller.
KEYFRAME_INTERVAL_S = 1.0
# zerolatency: no look-ahead and no B-frames, so each frame leaves the encoder as soon as it enters; ultrafast
# encodes 320x240 in about the time cv2's mp4v took (the overlay is written on the run loop's thread).
_ENCODER_OPTIONS = {"libx264": {"preset": "ultrafast", "tune": "zerolatency"}}
# Bit budget for the encoders run without a quality mode here (libopenh264, mpeg4): at 0.5 bit/pixel mpeg4
# matches libx264's default quality on an eye video with an overlay (28.8 vs 28.6 dB PSNR, 1.26x the size).
_BITS_PER_PIXEL = 0.5
# cv2's BGR -> I420 conversion is BT.601, limited range; tag the stream so players do not guess.
_BT601, _LIMITED_RANGE = 6, 1
# Errors PyAV raises for a failed open, encode or write (its OSError subclasses carry errno and strerror).
_AV_ERRORS = (OSError, av.FFmpegError)


def _pick_codec(names: tuple[str, ...]) -> str:
    """The first encoder in `names` that this PyAV build has."""
    for name in names:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        return name
    raise TrackerError(f"PyAV {av.__version__} has none of the video encoders {', '.join(names)}")


class _Mp4Writer:
    """Crash-safe fragmented MP4 of BGR uint8 (H, W, 3) images, opened at the first image's size (or `size_wh`).

    Later images of another size are resized to it; an odd width or height is padded by one pixel (4:2:0
    needs even sizes). Write errors raise TrackerError naming the path; the file keeps what came before.
    """

    def __init__(self, path: str | Path, fps: float | None, size_wh: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else DEFAULT_VIDEO_FPS
        self.size_wh = size_wh
        self.frames_written = 0
        self.codec: str | None = None  # the encoder in use, once open
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._error: TrackerError | None = None  # the first write error, raised again on a later write

    def write(self, bgr: np.ndarray) -> None:
        """Append one BGR uint8 (H, W, 3) image; it is in the file (playable) once the next one is written."""
        if self._error is not None:
            raise self._error
        if self._container is None:
            self._open(bgr)
        w, h = self.size_wh
        if bgr.shape[1] != w or bgr.shape[0] != h:
            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        if w % 2 or h % 2:
            bgr = cv2.copyMakeBorder(bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        frame.pts = self.frames_written
        try:
            self._container.mux(self._stream.encode(frame))
        except _AV_ERRORS as exc:
            raise self._failure(exc) from exc
        self.frames_written += 1

    def _open(self, bgr: np.ndarray) -> None:
        if self.size_wh is None:
            self.size_wh = (bgr.shape[1], bgr.shape[0])
        w, h = self.size_wh
        codec = _pick_codec(VIDEO_CODECS)
        if codec != VIDEO_CODECS[0]:
            plays = "plays in browsers" if codec in BROWSER_PLAYABLE_CODECS else "plays in VLC/ffmpeg, not in browsers"
            _log.warning(
                "overlay video %s: PyAV has no %s encoder, writing %s (%s)", self.path, VIDEO_CODECS[0], codec, plays
            )
        try:
            if not self.path.parent.exists():  # an existing non-folder is left for open() to name
                self.path.parent.mkdir(parents=True)
            container = av.open(str(self.path), "w", format="mp4", options=_CONTAINER_OPTIONS)
        except _AV_ERRORS as exc:
            raise self._failure(exc) from exc
        try:
            rate = Fraction(self.fps).limit_denominator(1001)  # 29.97 -> 2997/100, 30000/1001 stays exact
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = w + w % 2, h + h % 2
            stream.pix_fmt = "yuv420p"
            cc = stream.codec_context
            cc.time_base = 1 / rate
            cc.gop_size = max(1, round(self.fps * KEYFRAME_INTERVAL_S))
            cc.max_b_frames = 0
            cc.thread_count = 1  # the run loop's other threads need the cores more than the encoder does
            cc.colorspace = cc.color_primaries = cc.color_trc = _BT601
            cc.color_range = _LIMITED_RANGE
            if codec in _ENCODER_OPTIONS:
                cc.options = _ENCODER_OPTIONS[codec]
            else:
                cc.bit_rate = round(_BITS_PER_PIXEL * stream.width * stream.height * self.fps)
            cc.open()  # here, so that an encoder that refuses the settings fails at open
        except _AV_ERRORS as exc:
            container.close()
            raise TrackerError(
                f"cannot encode overlay video {self.path} with {codec} at {w}x{h}: {_reason(exc)}"
            ) from exc
        self._container, self._stream, self.codec = container, stream, codec

    def _failure(self, exc: BaseException) -> TrackerError:
        self._error = TrackerError(f"cannot write overlay video {self.path}: {_reason(exc)}")
        return self._error

    def close(self) -> None:
        """Flush the encoder and close the file; raises a write error not reported yet; safe to call twice."""
        container, self._container = self._container, None
        if container is None:
            return
        error: BaseException | None = None
        if self._error is None:
            try:
                container.mux(self._stream.encode(None))
            except _AV_ERRORS as exc:
                error = exc
        try:
            container.close()
        except _AV_ERRORS as exc:
            error = error or exc
        if error is not None and self._error is None:
            raise self._failure(error) from error


def _reason(exc: BaseException) -> str:
    """'No space left on device' rather than "[Errno 28] No space left on device: 'out.mp4'"."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class VideoSink(ClosingSink):
    """Overlay video (fragmented MP4, H.264): opened on the first frame, playable after every frame but the last."""

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
        """Write the last frame and close the file; safe to call twice."""
        self._mp4.close()
