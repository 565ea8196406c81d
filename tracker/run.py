"""The run loop: a source's frames through a Tracker into sinks, sequential or pipelined, with a summary.

Pipelined (the default) overlaps inference with everything else, and keeps to one busy thread per core
on a 2-core machine (`iristrack run` gives the CPU backend cpu_count - 1 threads, so the rest keeps a core).
Recorded media (throughput first): the calling thread decodes (open the source with `prefetch=False` to
keep its decoding thread out of the way), preprocesses into a ring of input buffers, and fits and writes
the results in frame order; an inference thread runs only the model, ring slot by ring slot. Nothing is
dropped. On 2 cores a third busy thread (a decoding thread, or preprocessing on the inference thread)
cost a fifth of the throughput: three threads on two cores keep preempting the inference thread.
Live media (latency first): the inference thread takes the newest frame only when a ring slot is free,
preprocesses and infers it, and hands one edge map at a time to the calling thread, so no stale frame
piles up. Stateful smoothing needs frame order, which both keep. The sinks are written on the calling
thread (a preview window must be driven from the thread that created it), which also receives
SIGINT/SIGTERM: the first asks the run to stop after the frame being written, a second interrupts at once.
"""

from __future__ import annotations

import collections
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from tracker.fit.eye import EyeFit
from tracker.io.sources import drain
from tracker.pipeline import Tracker
from tracker.structures import Frame, FrameResult, Status

PIPELINED_BY_DEFAULT = True
RECORDED_DEPTH = 4  # frames in flight for recorded media: absorbs jitter between inference and fitting
LIVE_DEPTH = 2  # live: one frame being fitted and written, one being inferred or waiting in a length-1 queue
INFERENCE_THREAD_NAME = "iristrack inference"
_POLL_S = 0.05  # how often blocked stages look at the stop flag
_JOIN_TIMEOUT_S = 5.0
_SOURCE_CLOSE_AFTER_S = 0.2  # a worker still waiting on a live source this long after a stop: close the source


@dataclass
class RunSummary:
    """What a run did: frame counts, detections, speed, and what was skipped or dropped."""

    frames: int = 0
    iris_detected: int = 0
    pupil_detected: int = 0
    elapsed_s: float = 0.0
    dropped_frames: int = 0
    interrupted: bool = False
    pipelined: bool = False
    skipped: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """End-to-end frames per second (decode, inference, fitting and output)."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Stop(Exception):
    """Raised by a second SIGINT/SIGTERM so the loop unwinds through the sinks' context managers at once."""


class _StopSignals:
    """SIGINT/SIGTERM -> `requested`, checked between frames; a second signal raises _Stop.

    Installed only on the main thread (elsewhere the embedding application owns signals), and not
    over a signal that is ignored (a run started with nohup keeps ignoring SIGINT).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise _Stop
        self.requested = True

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


@dataclass(frozen=True, slots=True)
class _Inferred:
    """One frame past the inference stage: its edge map lives in ring[slot] (None: the frame is unusable)."""

    frame: Frame
    slot: int | None
    started_s: float  # perf_counter when the inference stage took the frame
    gray: np.ndarray | None = None  # (H, W) gray frame behind the edge map: the fit refines boundaries on it


@dataclass(frozen=True, slots=True)
class _Failed:
    """An exception raised on the inference thread, re-raised on the calling thread."""

    error: BaseException


_END = object()


def run(
    source,
    tracker: Tracker,
    sink,
    *,
    pipelined: bool | None = None,
    progress: bool = False,
    max_frames: int | None = None,
    on_result: Callable[[FrameResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunSummary:
    """Track every frame of `source` into `sink` (anything with write(frame, result)), in frame order.

    Args:
        source: a `tracker.io.sources.Source` (or any iterable of Frame with is_live, frame_count, dropped_frames,
            close()). Pipelined, recorded media are read on the calling thread: open them with `prefetch=False`
            (as `iristrack run` does) so no decoding thread competes for the cores; a live source still
            waiting for a frame when the run stops early is closed, to release the inference thread.
        tracker: used by this run only until it returns (the inference thread is joined before that).
        sink: written on the calling thread; a sink with a true `wants_quit` (the preview window) ends the run.
        pipelined: overlap decoding, inference and fitting (None: PIPELINED_BY_DEFAULT); False runs one frame
            at a time on the calling thread.
        progress: a tqdm bar for recorded media.
        max_frames: stop after this many frames.
        on_result: called on the calling thread with each result, after the sink.
        should_stop: polled after each frame; True ends the run.

    SIGINT/SIGTERM end the run cleanly (`interrupted`): the frame being written is finished, nothing after it
    is written, and the caller's context managers close the sinks. Exceptions from any stage propagate
    after the inference thread has stopped.
    """
    pipelined = PIPELINED_BY_DEFAULT if pipelined is None else pipelined
    summary = RunSummary(pipelined=pipelined)
    bar = None
    if progress and not source.is_live:
        from tqdm import tqdm

        bar = tqdm(total=source.frame_count, unit="frame", dynamic_ncols=True, leave=False)

    def record(frame: Frame, result: FrameResult) -> bool:
        """Write one result; True when the run should end after it."""
        sink.write(frame, result)
        summary.frames += 1
        summary.iris_detected += result.iris is not None
        summary.pupil_detected += result.pupil is not None
        if on_result is not None:
            on_result(result)
        if bar is not None:
            bar.update()
        return bool(
            (max_frames and summary.frames >= max_frames)
            or getattr(sink, "wants_quit", False)
            or (should_stop and should_stop())
        )

    t0 = time.perf_counter()
    try:
        with _StopSignals() as signals:
            try:
                if pipelined and source.is_live:
                    _run_live(source, tracker, record, lambda: signals.requested, max_frames)
                elif pipelined:
                    _run_recorded(source, tracker, record, lambda: signals.requested, max_frames)
                else:
                    _run_sequential(source, tracker, record, lambda: signals.requested)
            finally:
                summary.interrupted = signals.requested
    except (KeyboardInterrupt, _Stop):
        summary.interrupted = True
    finally:
        summary.elapsed_s = time.perf_counter() - t0
        summary.dropped_frames = source.dropped_frames
        if bar is not None:
            bar.close()
    return summary


def _run_sequential(
    source, tracker: Tracker, record: Callable[[Frame, FrameResult], bool], stop_requested: Callable[[], bool]
) -> None:
    for frame in source:
        if record(frame, tracker(frame)) or stop_requested():
            return


def _run_live(
    source,
    tracker: Tracker,
    record: Callable[[Frame, FrameResult], bool],
    stop_requested: Callable[[], bool],
    max_frames: int | None,
) -> None:
    """Live media: the inference thread takes the newest frame when a slot frees; fit and write here."""
    h, w = tracker.backend.input_hw
    ring = np.empty((LIVE_DEPTH, h, w, 2), dtype=np.float32)  # allocated once per run, reused for every frame
    free: queue.Queue = queue.Queue(maxsize=LIVE_DEPTH)
    for slot in range(LIVE_DEPTH):
        free.put(slot)
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    worker = threading.Thread(
        target=_infer_loop,
        args=(source, tracker, ring, free, ready, stop, max_frames),
        name=INFERENCE_THREAD_NAME,
        daemon=True,
    )
    worker.start()
    try:
        while not stop_requested():
            try:
                item = ready.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            frame, found = item.frame, None
            if item.slot is not None:
                found = tracker.fit(ring[item.slot], frame.image.shape[:2], item.gray)
            done = record(frame, _result(frame, found, item.started_s))
            if item.slot is not None:
                free.put(item.slot)  # the next frame is taken only now, so it is as fresh as can be
            if done:
                return
    finally:
        stop.set()
        worker.join(timeout=_SOURCE_CLOSE_AFTER_S)
        if worker.is_alive():  # waiting on a source that has no frame yet (a stalled camera): wake it
            source.close()
            worker.join(timeout=_JOIN_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A recorded frame handed to the inference thread (slot None: unusable, passed through in order)."""

    frame: Frame
    slot: int | None
    started_s: float  # perf_counter when preprocessing began
    gray: np.ndarray | None = None


def _run_recorded(
    source,
    tracker: Tracker,
    record: Callable[[Frame, FrameResult], bool],
    stop_requested: Callable[[], bool],
    max_frames: int | None,
) -> None:
    """Recorded media: decode, preprocess, fit and write here; the inference thread only runs the model."""
    h, w = tracker.backend.input_hw
    depth = RECORDED_DEPTH
    inputs = np.empty((depth, 1, h, w, 1), dtype=np.float32)  # both rings allocated once per run
    edges = np.empty((depth, h, w, 2), dtype=np.float32)
    todo: queue.Queue = queue.Queue()  # slots to infer, at most `depth`
    done: queue.Queue = queue.Queue()  # slots inferred, in the same order (or _Failed)
    worker = threading.Thread(
        target=_infer_slots, args=(tracker, inputs, edges, todo, done), name=INFERENCE_THREAD_NAME, daemon=True
    )
    worker.start()
    free = list(range(depth))
    in_flight: collections.deque[_InFlight] = collections.deque()
    frames = iter(source)
    more, taken = True, 0
    try:
        while True:
            # Keep the inference thread fed: every free slot gets the next frame before this thread fits one.
            # Unusable frames take no slot; the bound keeps a long run of them from piling up unwritten.
            while more and free and len(in_flight) < 2 * depth:
                frame = next(frames, None) if not max_frames or taken < max_frames else None
                if frame is None:
                    more = False
                    break
                taken += 1
                in_flight.append(_submit(frame, tracker, inputs, free, todo))
            if not in_flight:
                return
            item = in_flight.popleft()
            frame, found = item.frame, None
            if item.slot is not None:
                slot = _next_done(done, worker, stop_requested)
                if slot is None:
                    return
                found = tracker.fit(edges[slot], frame.image.shape[:2], item.gray)
                free.append(slot)
            if record(frame, _result(frame, found, item.started_s)) or stop_requested():
                return
    finally:
        drain(todo)  # an early stop: the worker finishes at most the inference it is running
        todo.put(_END)
        worker.join(timeout=_JOIN_TIMEOUT_S)


def _result(frame: Frame, found: EyeFit | None, started_s: float) -> FrameResult:
    """The result of a fitted frame, latency measured from `started_s`; None: an unusable frame (bad_frame)."""
    if found is None:
        return FrameResult(frame.source, frame.index, frame.timestamp_s, None, None, Status.BAD_FRAME, 0.0)
    latency_ms = (time.perf_counter() - started_s) * 1e3
    return FrameResult(frame.source, frame.index, frame.timestamp_s, found.iris, found.pupil, found.status, latency_ms)


def _next_done(done: queue.Queue, worker: threading.Thread, stop_requested: Callable[[], bool]) -> int | None:
    """The next inferred slot; None when a stop was requested while waiting. Re-raises an inference error."""
    while True:
        try:
            slot = done.get(timeout=_POLL_S)
        except queue.Empty:
            if stop_requested():
                return None
            if not worker.is_alive():
                raise RuntimeError("the inference thread ended without a result") from None
            continue
        if isinstance(slot, _Failed):
            raise slot.error
        return slot


def _submit(frame: Frame, tracker: Tracker, inputs: np.ndarray, free: list[int], todo: queue.Queue) -> _InFlight:
    """Preprocess one frame into a free input slot and queue the slot for inference."""
    started_s = time.perf_counter()
    image = frame.image
    if image is None or image.ndim not in (2, 3) or image.size == 0:
        return _InFlight(frame, None, started_s)
    slot = free[-1]
    try:
        tracker.prepare(image, out=inputs[slot])
    except (cv2.error, ValueError):  # a pixel type or layout the preprocessing cannot take (int32, bool, 2-channel)
        return _InFlight(frame, None, started_s)
    free.pop()
    todo.put(slot)
    return _InFlight(frame, slot, started_s, tracker.last_gray)


def _infer_slots(tracker: Tracker, inputs: np.ndarray, edges: np.ndarray, todo: queue.Queue, done: queue.Queue) -> None:
    """Inference thread of recorded runs: model input slot -> edge map in the same slot, until _END."""
    while (slot := todo.get()) is not _END:
        try:
            np.copyto(edges[slot], tracker.infer(inputs[slot])[0])  # the backend reuses its output buffer
        except BaseException as exc:  # re-raised on the calling thread
            done.put(_Failed(exc))
            return
        done.put(slot)


def _infer_loop(
    source,
    tracker: Tracker,
    ring: np.ndarray,
    free: queue.Queue,
    ready: queue.Queue,
    stop: threading.Event,
    max_frames: int | None,
) -> None:
    """Inference thread: take a free ring slot, then the next frame, infer into the slot, queue it in order."""
    last: object = _END
    taken = 0
    try:
        frames = iter(source)
        while not max_frames or taken < max_frames:
            # The slot first, then the frame: a live frame is taken only when it can be processed at once.
            slot = _get(free, stop)
            if slot is None:
                return
            frame = next(frames, None)
            if frame is None or stop.is_set():
                break
            started_s = time.perf_counter()
            image = frame.image
            if image is None or image.ndim not in (2, 3) or image.size == 0:
                free.put(slot)
                item = _Inferred(frame, None, started_s)
            else:
                np.copyto(ring[slot], tracker.edges(image))  # edges() returns a buffer the next call overwrites
                item = _Inferred(frame, slot, started_s, tracker.last_gray)  # a new array per frame, not reused
            if not _put(ready, item, stop):
                return
            taken += 1
    except BaseException as exc:  # re-raised on the calling thread
        last = _Failed(exc)
    _put(ready, last, stop)


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return None


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
