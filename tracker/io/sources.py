"""All frame input: video files, images, image folders and globs, cameras and stream URLs.

`open_source(spec)` is the one place that parses a source string. Every source is a context manager and
an iterator of `Frame`. Recorded media never drops a frame: a bounded prefetch thread decodes ahead, or,
with `prefetch=False`, the consumer's own thread decodes (for a consumer that keeps every core busy itself).
Live media (a camera, a URL, or a file replayed with `realtime=True`) keeps only the newest frame in a
`LatestFrameBuffer`, so a slow consumer skips frames instead of building lag, and a lost camera is
reopened with exponential backoff; a live source that gives up says why in `Source.failure`.
A damaged video is read past the damage to its end, and each damaged stretch is reported in one line.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import math
import queue
import re
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from tracker.errors import SourceError
from tracker.io.images import IMAGE_EXTS, ext_list, is_image_name, list_images, natural_key, read_image
from tracker.structures import Frame

VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp", ".ogv"}
)
# Image sequences have no clock of their own: fps is None (the images may be unrelated, so no temporal
# smoothing) and timestamp_s is None. A realtime replay shows them at this rate; videos without a frame rate
# are timed at it.
IMAGE_SEQUENCE_FPS = 30.0
PREFETCH_FRAMES = 4
RECONNECT_FIRST_DELAY_S = 0.1
RECONNECT_MAX_DELAY_S = 2.0
# A live capture whose read() blocks this long past the reconnect budget is treated as hung.
STALL_GRACE_S = 10.0
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = frozenset("*?[")
_JOIN_TIMEOUT_S = 2.0
# Reading past damage in a video (measured with OpenCV's FFmpeg backend on H.264 and MPEG-4 files whose
# index is intact): a read fails on a corrupt packet but consumes it, and reads succeed again at the next
# decodable frame, so a damaged stretch costs about one failed read per damaged frame. At the true end reads
# fail at once, in 0.03-0.06 ms each. So failed reads go on while the container says frames remain, plus a
# margin for counts that are estimates. Seeking (CAP_PROP_POS_FRAMES) is no help: a seek into the group of
# pictures that holds the damage fails, and one past it loses the decodable frames before it.
_FAILED_READS_MARGIN = 16
_FAILED_READS_UNKNOWN_LENGTH = 1_000  # no frame count: at most ~40 s of damage at 25 fps, ~50 ms at the end
_FAILED_READS_MAX = 100_000  # a frame count that is wrong (a broken header) costs at most a few seconds
# After damage, a decoder that reorders frames (H.264, HEVC) may still release up to 16 it held back: a
# damaged stretch is over, and reported, once this many frames in a row followed each other without a gap.
_DAMAGE_SETTLE_FRAMES = 16


class Capture(Protocol):
    """The part of cv2.VideoCapture the sources use; tests inject fakes with the same methods."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...  # noqa: D102
    def isOpened(self) -> bool: ...  # noqa: D102
    def release(self) -> None: ...  # noqa: D102
    def set(self, prop_id: int, value: float) -> bool: ...  # noqa: D102
    def get(self, prop_id: int) -> float: ...  # noqa: D102


OpenCapture = Callable[[int | str, int], Capture]
"""(camera index or URL/pipeline, OpenCV API preference) -> an opened or unopened capture."""


@dataclass(frozen=True, slots=True)
class CameraOptions:
    """Capture settings for cameras and streams; None leaves the device's own setting alone."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    exposure: float | None = None  # backend units (V4L2: 100 us steps; DirectShow: log2 seconds)
    api_preference: int = cv2.CAP_ANY  # e.g. cv2.CAP_V4L2, cv2.CAP_DSHOW, cv2.CAP_GSTREAMER
    reconnect_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class _Skip:
    """A message for `on_skip`, passed from a worker thread to the consumer in frame order.

    `gave_up`: the message is why a live source ended (it becomes `Source.failure`).
    """

    message: str
    gave_up: bool = False


@dataclass(frozen=True, slots=True)
class _Failed:
    """An exception raised in a worker thread, re-raised on the consumer's thread."""

    error: BaseException


_END = object()
_Items = Iterator["Frame | _Skip | None"]  # None is a heartbeat: the worker is alive but has no frame yet
_EXHAUSTED = object()  # what next() gives at the end of an _Items (None is a heartbeat)


class LatestFrameBuffer:
    """One-slot frame buffer: `put` overwrites, `get` blocks for the newest unseen frame.

    A frame overwritten before anyone read it counts in `dropped`. Thread-safe; one producer, one consumer.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._unseen = False
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        """Store `frame` as the newest, replacing (and counting as dropped) an unread one."""
        with self._cond:
            if self._closed:
                return
            if self._unseen:
                self.dropped += 1
            self._frame, self._unseen = frame, True
            self._cond.notify_all()

    def get(self, timeout_s: float | None = None) -> Frame | None:
        """The newest frame not yet returned; None on timeout or once closed and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._unseen or self._closed, timeout_s)
            if not self._unseen:
                return None
            self._unseen = False
            return self._frame

    def close(self) -> None:
        """Wake the consumer; an unread frame is still returned by the next `get`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed


class Source:
    """Iterator of `Frame` from one source string; a context manager whose exit stops its thread.

    Attributes: `name` (the spec, credentials removed), `fps` (None if unknown), `frame_count` (None for
    live or unknown), `is_live`, `dropped_frames` (frames a live source skipped because the consumer was
    slower than the source; always 0 for recorded media), `failure` (why a live source gave up, else None).
    """

    def __init__(
        self,
        items: _Items,
        *,
        name: str,
        fps: float | None,
        frame_count: int | None,
        is_live: bool,
        on_skip: Callable[[str], None] | None,
        pace: bool = False,
        stall_timeout_s: float | None = None,
        stop: threading.Event | None = None,
        prefetch: bool = True,
    ) -> None:
        self.name = name
        self.fps = fps
        self.frame_count = frame_count
        self.is_live = is_live
        self._on_skip = on_skip
        self._stop = stop or threading.Event()  # shared with `items` when it must stop mid-wait
        self._done = False
        self._failure: str | None = None
        if is_live:
            self._buffer: LatestFrameBuffer | None = LatestFrameBuffer()
            self._messages: collections.deque = collections.deque()
            self._alive_at = [time.perf_counter()]
            self._stall_timeout_s = stall_timeout_s
            # A replay (pace) starts its clock at the consumer's first read, as a camera started with the run
            # would: frames due while the models load would otherwise count as dropped before the first one.
            self._go = threading.Event()
            if not pace:
                self._go.set()
            target = _pump_latest
            args = (items, self._buffer, self._messages, self._alive_at, self._stop, pace, self._go)
        elif prefetch:
            self._buffer = None
            self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_FRAMES)
            target, args = _pump_queue, (items, self._queue, self._stop)
        else:
            self._buffer, self._items, self._thread = None, items, None
            return
        self._items = None
        # The worker holds no reference to self, so an abandoned Source is collected and its worker told to stop.
        self._thread = threading.Thread(target=target, args=args, name=f"source {name}", daemon=True)
        self._thread.start()
        weakref.finalize(self, self._stop.set)

    @property
    def dropped_frames(self) -> int:
        """Frames a live source overwrote before the consumer read them."""
        return self._buffer.dropped if self._buffer is not None else 0

    @property
    def failure(self) -> str | None:
        """One line on why a live source ended by giving up (camera lost, stream stalled); None otherwise.

        None after a normal end, an early stop by the consumer, and for recorded media (a truncated or
        damaged file is reported through `on_skip`, not as a failure).
        """
        return self._failure

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> Frame:
        if self._done:
            self._close_items()  # closed from another thread while this one was decoding
            raise StopIteration
        try:
            frame = self._next_live() if self._buffer is not None else self._next_recorded()
        except BaseException:
            self.close()
            raise
        if frame is None:
            self.close()
            raise StopIteration
        return frame

    def _next_recorded(self) -> Frame | None:
        if self._items is not None:
            return self._next_inline()
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._thread.is_alive():
                    continue
                return None  # the worker stopped without a final item (it was told to stop)
            if item is _END:
                return None
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _Skip):
                self._take(item)
                continue
            return item

    def _next_inline(self) -> Frame | None:
        for item in self._items:  # decoded here, on the consumer's thread
            if self._done:
                return None
            if isinstance(item, _Skip):
                self._take(item)
            elif item is not None:
                return item
        return None

    def _close_items(self) -> None:
        if self._items is not None:
            with contextlib.suppress(ValueError):  # decoding on another thread: its next call closes it
                self._items.close()  # releases the capture

    def _next_live(self) -> Frame | None:
        self._go.set()
        while True:
            self._report_pending()
            frame = self._buffer.get(timeout_s=0.1)
            if frame is not None:
                return frame
            if self._buffer.closed:
                self._report_pending()
                return None
            stalled_s = time.perf_counter() - self._alive_at[0]
            if self._stall_timeout_s is not None and stalled_s > self._stall_timeout_s:
                reason = f"{self.name} stopped responding (no frame for {stalled_s:.1f} s); gave up"
                self._take(_Skip(reason, gave_up=True))
                return None

    def _report_pending(self) -> None:
        while self._messages:
            item = self._messages.popleft()
            if isinstance(item, _Failed):
                raise item.error
            self._take(item)

    def _take(self, skip: _Skip) -> None:
        if skip.gave_up and self._failure is None:
            self._failure = skip.message
        if self._on_skip is not None:
            self._on_skip(skip.message)

    def close(self) -> None:
        """Stop the worker thread and release the capture; safe to call twice."""
        self._done = True
        self._stop.set()
        if self._items is not None:
            self._close_items()
        elif self._buffer is not None:
            self._buffer.close()
        else:
            drain(self._queue)  # unblock a worker waiting on a full queue
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=_JOIN_TIMEOUT_S)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "live" if self.is_live else "recorded"
        return f"Source({self.name!r}, {kind}, fps={self.fps}, frame_count={self.frame_count})"


def open_source(
    spec: str,
    *,
    realtime: bool = False,
    camera: CameraOptions | None = None,
    on_skip: Callable[[str], None] | None = None,
    open_capture: OpenCapture | None = None,
    prefetch: bool = True,
) -> Source:
    """Open a video/image file, image folder, glob, camera index ("0") or OpenCV/GStreamer URL or pipeline.

    Args:
        spec: what to read; see the module docstring.
        realtime: replay a video file at its own frame rate as if it were a camera (live, drops frames).
        camera: capture settings and reconnect budget for cameras and URLs.
        on_skip: called on the consumer's thread with a one-line message for each image that cannot be
            decoded (it still yields a Frame with image None), each damaged stretch of a video, a truncated
            video, or a camera that was lost and reconnected or given up (then also `Source.failure`).
        open_capture: factory for camera/URL captures, `cv2.VideoCapture` by default (injectable for tests).
        prefetch: recorded media: decode ahead on a thread of the source's own (False: on the consumer's thread,
            for a consumer that already keeps every core busy, like the pipelined run loop).

    Raises:
        SourceError: the source does not exist or holds no readable frame.
    """
    spec = str(spec).strip()
    camera = camera or CameraOptions()
    open_capture = open_capture or cv2.VideoCapture
    if not spec:
        raise SourceError("empty source: expected a video, image, folder, glob, camera index (0) or URL")
    if spec.isdigit():
        return _open_live_capture(int(spec), f"camera {spec}", camera, open_capture, on_skip)
    if _URL_RE.match(spec) or " ! " in spec or spec.endswith("appsink"):
        api = camera.api_preference
        if api == cv2.CAP_ANY and not _URL_RE.match(spec):
            api = cv2.CAP_GSTREAMER
        return _open_live_capture(spec, _redact(spec), replace(camera, api_preference=api), open_capture, on_skip)
    path = Path(spec).expanduser()
    if not path.exists() and _GLOB_CHARS & set(spec):
        return _open_images(_glob_images(spec), spec, on_skip, realtime, prefetch)
    if not path.exists():
        raise SourceError(
            f"source not found: {spec} (expected a video file, image file, folder of images, glob, camera index or URL)"
        )
    if path.is_dir():
        return _open_images(_folder_images(path), spec, on_skip, realtime, prefetch)
    if path.suffix.lower() in IMAGE_EXTS:
        return _open_images([path], spec, on_skip, realtime, prefetch)
    return _open_video(path, spec, on_skip, realtime, prefetch)


# --- parsing ------------------------------------------------------------------------------------


def _folder_images(folder: Path) -> list[Path]:
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise SourceError(f"folder {folder} is empty; expected image files ({ext_list()})")
    images = list_images(folder)
    if not images:
        found = ", ".join(sorted({p.suffix.lower() or p.name for p in entries})[:5])
        raise SourceError(f"folder {folder} has no images; expected {ext_list()}, found {len(entries)} other ({found})")
    return images


def _glob_images(pattern: str) -> list[Path]:
    matches = [Path(p) for p in glob.glob(str(Path(pattern).expanduser()), recursive=True)]
    if not matches:
        raise SourceError(f"no files match {pattern}; expected a glob such as frames/*.png")
    images = sorted((p for p in matches if p.is_file() and is_image_name(p)), key=natural_key)
    if not images:
        raise SourceError(f"{pattern} matches {len(matches)} paths but no images; expected {ext_list()}")
    return images


def _redact(url: str) -> str:
    """The URL without a password, so it can appear in logs and result files."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# --- images ---------------------------------------------------------------------------------------


def _open_images(
    paths: list[Path], spec: str, on_skip: Callable | None, realtime: bool, prefetch: bool = True
) -> Source:
    if len(paths) == 1:
        read_image(paths[0])  # a single image that cannot be decoded is an error, not a skip
    return Source(
        _image_frames(paths),
        name=spec,
        fps=IMAGE_SEQUENCE_FPS if realtime else None,
        frame_count=None if realtime else len(paths),
        is_live=realtime,
        on_skip=on_skip,
        pace=realtime,
        prefetch=prefetch,
    )


def _image_frames(paths: list[Path]) -> _Items:
    """A Frame per path, index = its position, no timestamp; image None (and a _Skip) where it cannot be decoded.

    One frame per file, so the run writes a row (bad_frame) for every file. Undecodable files before the
    first good one are held back, so a set where none decodes raises SourceError before yielding a frame.
    """
    decoded_any = False
    held: list[Frame | _Skip] = []
    for i, path in enumerate(paths):
        try:
            image = read_image(path)
        except SourceError as exc:
            held += [_Skip(f"skipped {exc}"), Frame(None, i, None, str(path))]
        else:
            decoded_any = True
            held.append(Frame(image, i, None, str(path)))
        if decoded_any:
            yield from held
            held.clear()
    if not decoded_any:
        raise SourceError(f"none of the {len(paths)} images could be decoded (first: {paths[0]})")


# --- video files ----------------------------------------------------------------------------------


def _open_video(path: Path, spec: str, on_skip: Callable | None, realtime: bool, prefetch: bool = True) -> Source:
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        if path.suffix.lower() not in VIDEO_EXTS:
            try:  # an image with an unusual extension
                read_image(path)
                return _open_images([path], spec, on_skip, realtime, prefetch)
            except SourceError:
                pass
        what = "a video" if path.suffix.lower() in VIDEO_EXTS else "a video or image"
        raise SourceError(
            f"{spec} is not {what} OpenCV can decode ({path.stat().st_size} bytes; "
            "expected e.g. .mp4/.avi/.mkv with a codec FFmpeg supports, or a complete file)"
        )
    fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frame_count = count if count > 0 else None
    return Source(
        _video_frames(cap, first, spec, fps, frame_count),
        name=spec,
        fps=fps,
        frame_count=None if realtime else frame_count,
        is_live=realtime,
        on_skip=on_skip,
        pace=realtime,
        prefetch=prefetch,
    )


def _sane_fps(fps: float) -> float | None:
    return float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else None


def _video_frames(cap: Capture, first: np.ndarray, name: str, fps: float | None, frame_count: int | None) -> _Items:
    """Every decodable frame of an opened video, first frame already read; releases `cap` when done.

    Reads on past damage to the end. A frame's index is its position in the video (across damage, as the
    container's timestamps place it); each damaged stretch and an early end are reported as _Skip messages.
    """
    timeline = _Timeline(fps)
    reads = 1  # the first frame's
    image: np.ndarray | None = first
    failed = 0
    try:
        while image is not None:
            # POS_MSEC is the decoded frame's presentation time; some backends return 0 or garbage.
            placed = timeline.place(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, failed)
            if placed is not None:
                yield Frame(image, *placed, name)
            if (damage := timeline.settled_damage()) is not None:
                yield _Skip(f"video {name}: {damage}")
            image, failed = _read_next(cap, _failed_reads_allowed(frame_count, reads))
            reads += failed + 1
        if (damage := timeline.end()) is not None:
            yield _Skip(f"video {name}: {damage}")
        if frame_count and timeline.next_index < frame_count:
            yield _Skip(f"video {name} ended at frame {timeline.next_index} of {frame_count} (truncated or corrupt)")
    finally:
        cap.release()


def _failed_reads_allowed(frame_count: int | None, reads: int) -> int:
    """How many reads in a row may fail before the video counts as ended; see _FAILED_READS_MARGIN."""
    if frame_count is None:
        return _FAILED_READS_UNKNOWN_LENGTH
    return min(max(frame_count - reads, 0) + _FAILED_READS_MARGIN, _FAILED_READS_MAX)


def _read_next(cap: Capture, failures_allowed: int) -> tuple[np.ndarray | None, int]:
    """The next decodable frame and the number of failed reads before it; None after `failures_allowed` failures."""
    failed = 0
    while failed < failures_allowed:
        ok, image = cap.read()
        if ok and image is not None:
            return image, failed
        failed += 1
    return None, failed


@dataclass
class _Damage:
    """The frame positions missing from one damaged stretch of a video."""

    first: int | None = None
    last: int | None = None
    missing: int = 0
    in_order: int = 0  # frames in a row since the last gap or failed read

    def add_gap(self, first: int, last: int) -> None:
        """Positions first..last (inclusive) got no frame."""
        if last >= first:
            self.first = first if self.first is None else self.first
            self.last = last
            self.missing += last - first + 1

    def __str__(self) -> str:
        span = f"frame {self.first}" if self.first == self.last else f"frames {self.first}-{self.last}"
        return f"{span} could not be decoded; skipped {self.missing}"


class _Timeline:
    """Places a video's decoded frames: one after another, and across damage as the container's clock says.

    A frame's position after a damaged stretch comes from its timestamp's distance to the last frame's (this
    keeps variable-frame-rate videos counting one by one elsewhere). Without a usable clock (no frame rate,
    or timestamps that stop increasing), each failed read counts as one missing frame.
    """

    def __init__(self, fps: float | None) -> None:
        self._period_s = 1.0 / (fps or IMAGE_SEQUENCE_FPS)
        self._clock = fps is not None  # stays True while every timestamp is later than the one before
        self._last_index = -1
        self._last_ts = -math.inf
        self._damage: _Damage | None = None
        self._settled: _Damage | None = None

    @property
    def next_index(self) -> int:
        """The position after the last placed frame."""
        return self._last_index + 1

    def place(self, pts_s: float, failed_reads: int) -> tuple[int, float] | None:
        """(index, timestamp_s) of the next decoded frame; None for one to drop (older than the last one)."""
        increasing = math.isfinite(pts_s) and pts_s >= 0 and pts_s > self._last_ts
        if failed_reads and self._damage is None:
            self._damage = _Damage()
        if self._damage is not None and self._clock:
            if not increasing:
                return None  # held back by the decoder from before the damage: out of order, counted missing
            step = max(1, round((pts_s - self._last_ts) / self._period_s))
        else:
            step = 1 + failed_reads
            self._clock = self._clock and increasing
        index = self._last_index + step
        if self._damage is not None:
            self._damage.add_gap(self._last_index + 1, index - 1)
            self._damage.in_order = self._damage.in_order + 1 if step == 1 and not failed_reads else 0
            if self._damage.in_order >= _DAMAGE_SETTLE_FRAMES:
                self._settled, self._damage = self._damage, None
        self._last_index = index
        self._last_ts = pts_s if increasing else index * self._period_s
        return index, self._last_ts

    def settled_damage(self) -> _Damage | None:
        """A damaged stretch that is over and lost frames, once; else None."""
        settled, self._settled = self._settled, None
        return settled if settled is not None and settled.missing else None

    def end(self) -> _Damage | None:
        """At the end of the video: the damaged stretch still open, if it lost frames."""
        if self._damage is not None:
            self._settled, self._damage = self._damage, None
        return self.settled_damage()


# --- cameras and streams --------------------------------------------------------------------------


def _open_live_capture(
    target: int | str, name: str, options: CameraOptions, open_capture: OpenCapture, on_skip: Callable | None
) -> Source:
    def connect() -> Capture:
        cap = open_capture(target, options.api_preference)
        if cap.isOpened():
            _apply_options(cap, options)
        return cap

    cap = connect()
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        hint = (
            "check the index, permissions, and that no other program is using it"
            if isinstance(target, int)
            else "check the URL or pipeline (a GStreamer pipeline must end in appsink)"
        )
        state = "opened but delivered no frame" if cap.isOpened() else "could not be opened"
        raise SourceError(f"{name} {state}; expected a working camera or stream ({hint})")
    fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS)) or options.fps
    stop = threading.Event()
    return Source(
        _capture_frames(cap, first, connect, name, options.reconnect_timeout_s, stop),
        name=name,
        fps=fps,
        frame_count=None,
        is_live=True,
        on_skip=on_skip,
        stall_timeout_s=options.reconnect_timeout_s + STALL_GRACE_S,
        stop=stop,
    )


def _apply_options(cap: Capture, options: CameraOptions) -> None:
    """Set what the user asked for; cap.set is a no-op (returns False) where the backend lacks the property."""
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # where supported, stops the driver queueing stale frames
    for prop, value in (
        (cv2.CAP_PROP_FRAME_WIDTH, options.width),
        (cv2.CAP_PROP_FRAME_HEIGHT, options.height),
        (cv2.CAP_PROP_FPS, options.fps),
        (cv2.CAP_PROP_EXPOSURE, options.exposure),
    ):
        if value is not None:
            cap.set(prop, float(value))


def _capture_frames(
    cap: Capture | None,
    first: np.ndarray,
    connect: Callable[[], Capture],
    name: str,
    timeout_s: float,
    stop: threading.Event,
) -> _Items:
    """Frames from a live capture, reopening it with exponential backoff when reads fail.

    Gives up (with a _Skip message) once no frame has arrived for `timeout_s`. The worker closes this
    generator to stop it, which releases the capture on the worker's own thread.
    """
    index = 0
    image: np.ndarray | None = first
    lost_at: float | None = None
    delay_s = RECONNECT_FIRST_DELAY_S
    try:
        while True:
            if image is not None:
                if lost_at is not None:
                    yield _Skip(f"{name} reconnected after {time.perf_counter() - lost_at:.1f} s")
                    lost_at, delay_s = None, RECONNECT_FIRST_DELAY_S
                yield Frame(image, index, 0.0, name)  # the worker stamps the time it becomes available
                index += 1
            else:
                now = time.perf_counter()
                if lost_at is None:
                    lost_at = now
                    yield _Skip(f"{name} read failed at frame {index}; reconnecting")
                left_s = timeout_s - (now - lost_at)
                if left_s <= 0:
                    yield _Skip(f"{name} lost; gave up after {timeout_s:.1f} s", gave_up=True)
                    return
                if cap is not None:
                    cap.release()
                    cap = None
                if stop.wait(min(delay_s, left_s)):
                    return
                delay_s = min(2 * delay_s, RECONNECT_MAX_DELAY_S)
                cap = connect()
                if not cap.isOpened():
                    cap.release()
                    cap = None
                yield None  # heartbeat: lets the worker notice a stop request between attempts
            image = None
            if cap is not None:
                ok, read = cap.read()
                image = read if ok else None
    finally:
        if cap is not None:
            cap.release()


# --- worker threads -------------------------------------------------------------------------------


def _pump_queue(items: _Items, q: queue.Queue, stop: threading.Event) -> None:
    """Recorded media: decode ahead into a bounded queue; blocks (never drops) when the consumer is slow."""
    last: object = _END
    try:
        for item in items:
            if item is not None and not _put(q, item, stop):
                return
    except Exception as exc:  # re-raised on the consumer's thread
        last = _Failed(exc)
    finally:
        items.close()
    _put(q, last, stop)


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def drain(q: queue.Queue) -> None:
    """Remove every item a queue holds now, without blocking."""
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def _pump_latest(
    items: _Items,
    buffer: LatestFrameBuffer,
    messages: collections.deque,
    alive_at: list[float],
    stop: threading.Event,
    pace: bool,
    go: threading.Event,
) -> None:
    """Live media: publish each frame to a one-slot buffer, stamped with perf_counter when it became available.

    With `pace`, frames are released at their recorded timestamps (a file replayed as if it were a camera),
    from when `go` is set (the consumer's first read).
    """
    start: float | None = None
    first_ts = 0.0
    last_due = next_capture = None
    while not go.wait(0.05):
        if stop.is_set():
            items.close()
            buffer.close()
            return
    try:
        frames = iter(items)
        while True:
            # A camera decodes a frame once it is captured, never before: a replay decodes the next frame at
            # its capture moment (predicted from the last frame interval), not while the consumer processes the
            # last one, where the decode would take a core from it that a camera's decode does not.
            if next_capture is not None and stop.wait(max(0.0, next_capture - time.perf_counter())):
                return
            item = next(frames, _EXHAUSTED)
            if item is _EXHAUSTED:
                break
            alive_at[0] = time.perf_counter()
            if stop.is_set():
                return
            if isinstance(item, _Skip):
                messages.append(item)
            elif isinstance(item, Frame):
                if pace:
                    if start is None:
                        start, first_ts = time.perf_counter(), _recorded_time_s(item)
                    due = start + (_recorded_time_s(item) - first_ts)
                    if stop.wait(max(0.0, due - time.perf_counter())):
                        return
                    next_capture = None if last_due is None else due + (due - last_due)
                    last_due = due
                buffer.put(replace(item, timestamp_s=time.perf_counter()))
    except Exception as exc:  # re-raised on the consumer's thread
        messages.append(_Failed(exc))
    finally:
        items.close()
        buffer.close()


def _recorded_time_s(frame: Frame) -> float:
    """When a replayed frame is due: its timestamp, or for an image (no clock) its position at IMAGE_SEQUENCE_FPS."""
    return frame.timestamp_s if frame.timestamp_s is not None else frame.index / IMAGE_SEQUENCE_FPS
