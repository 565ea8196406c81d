"""The run loop: schedules a Tracker's steps (prepare -> infer -> finish) on threads, from a source into sinks.

It composes nothing itself: every frame's stages and its result come from `Tracker`; this module owns the
threads, the queues between them, the stop signals and the joins.

Pipelined (the default) overlaps inference with everything else, and keeps to one busy thread per core
on a 2-core machine (`iristrack run` gives the CPU backend cpu_count - 1 threads, so the rest keeps a core).
Recorded media (throughput first): the calling thread decodes (open the source with `prefetch=False` to
keep its decoding thread out of the way), prepares frames into a ring of input slots, and finishes and
writes the results in frame order; an inference thread runs only the model, slot by slot. Nothing is
dropped. On 2 cores a third busy thread (a decoding thread, or preprocessing on the inference thread)
cost a fifth of the throughput: three threads on two cores keep preempting the inference thread.
Live media (latency first): the inference thread takes the newest frame only when a slot is free,
prepares and infers it, and hands one edge map at a time to the calling thread, so no stale frame
piles up. After writing a face frame's result the calling thread runs the face mesh for the next
frames (FaceTracker.follow), in the time before the next frame arrives. Stateful smoothing needs frame
order, which both keep. The sinks are written on the calling thread (a preview window must be driven
from the thread that created it), which also receives
SIGINT/SIGTERM/SIGHUP: the first asks the run to stop after the frame being written, a second interrupts
at once.
"""

from __future__ import annotations

import collections
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tracker.errors import TrackerError
from tracker.io.sources import drain
from tracker.pipeline import Prepared, Tracker
from tracker.structures import Frame, FrameResult

PIPELINED_BY_DEFAULT = True
RECORDED_DEPTH = 4  # frames in flight for recorded media: absorbs jitter between inference and fitting
LIVE_DEPTH = 2  # live: one frame being fitted and written, one being inferred or waiting in a length-1 queue
INFERENCE_THREAD_NAME = "iristrack inference"
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_POLL_S = 0.05  # how often blocked stages look at the stop flag
# A stopped inference thread finishes at most the model call it is in (milliseconds): one still alive after
# this long is hung, and the run says so instead of returning with a thread still using the backend.
JOIN_TIMEOUT_S = 30.0
_WAKE_AFTER_S = 0.2  # a live worker still waiting on its source this long after a stop: close the source


@dataclass
class RunSummary:
    """What a run did: frame counts, detections, speed, and why it ended if it did not reach the end."""

    frames: int = 0
    face_frames: int = 0  # frames tracked as a face (--eyes face, or auto on a face)
    eyes: int = 0  # eyes looked at: one per close-up frame, one per eye found in a face frame
    iris_detected: int = 0  # counted per eye
    pupil_detected: int = 0
    iris_trusted: int = 0  # reported and trusted (confidence at or above the model's calibrated threshold)
    pupil_trusted: int = 0
    elapsed_s: float = 0.0
    dropped_frames: int = 0
    interrupted: bool = False
    stop_signal: int | None = None  # the signal (SIGINT, SIGTERM, SIGHUP) that ended the run, if one did
    source_failure: str | None = None  # why a live source gave up (camera lost), if it did
    pipelined: bool = False
    skipped: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """End-to-end frames per second (decode, inference, fitting and output)."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Stop(Exception):
    """Raised by a second stop signal so the loop unwinds through the sinks' context managers at once."""


class _StopSignals:
    """SIGINT/SIGTERM/SIGHUP -> `signum`, checked between frames; a second signal raises _Stop.

    SIGHUP (an ssh session closed) is handled like SIGTERM. Installed only on the main thread (elsewhere
    the embedding application owns signals), and not over a signal that is ignored (a run started with
    nohup keeps ignoring SIGHUP and SIGINT).
    """

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self._on_first = on_first  # tells a sink that may block (a paused window) to let go
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise _Stop
        self.signum = signum
        if self._on_first is not None:
            self._on_first()

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                previous = signal.getsignal(sig)
                # Not over an ignored signal (nohup), nor over a handler installed outside Python (it could not
                # be put back: getsignal says None).
                if previous is not signal.SIG_IGN and previous is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


@dataclass(frozen=True, slots=True)
class _Failed:
    """An exception raised on the inference thread, re-raised on the calling thread."""

    error: BaseException


_END = object()


class _InferenceThread:
    """The one worker thread of a pipelined run: started on entry; on exit told to stop, joined, and checked.

    `stop` tells the worker to end; `wake` (live sources) unblocks a worker still waiting on its source.
    A worker that outlives JOIN_TIMEOUT_S is an error, never a thread left running after the run returned.
    """

    def __init__(self, target: Callable, args: tuple, stop: Callable[[], None], wake: Callable[[], None] | None = None):
        self._thread = threading.Thread(target=target, args=args, name=INFERENCE_THREAD_NAME, daemon=True)
        self._stop, self._wake = stop, wake

    def is_alive(self) -> bool:
        """True while the worker runs."""
        return self._thread.is_alive()

    def _join(self, timeout_s: float) -> None:
        """Join for up to timeout_s; a second stop signal meanwhile does not cut the wait (the backend is in use)."""
        deadline = time.perf_counter() + timeout_s
        while self._thread.is_alive() and (left := deadline - time.perf_counter()) > 0:
            try:
                self._thread.join(timeout=left)
            except (_Stop, KeyboardInterrupt):
                continue

    def __enter__(self) -> _InferenceThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self._wake is not None:
            self._join(_WAKE_AFTER_S)
            if self._thread.is_alive():  # waiting on a source that has no frame yet (a stalled camera)
                self._wake()
        self._join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            raise TrackerError(
                f"the inference thread did not stop within {JOIN_TIMEOUT_S:g} s of the end of the run "
                "(a backend call that never returns?); results written so far are complete"
            )


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
        source: a `tracker.io.sources.Source` (or any iterable of Frame with is_live, frame_count,
            dropped_frames, close()). Pipelined, recorded media are read on the calling thread: open them with
            `prefetch=False` (as `iristrack run` does) so no decoding thread competes for the cores; a live
            source still waiting for a frame when the run stops early is closed, to release the worker.
        tracker: used by this run only until it returns (the inference thread is joined before that).
        sink: written on the calling thread; a sink with a true `wants_quit` (the preview window) ends the run.
        pipelined: overlap decoding, inference and fitting (None: PIPELINED_BY_DEFAULT); False runs one frame
            at a time on the calling thread.
        progress: a tqdm bar for recorded media.
        max_frames: stop after this many frames.
        on_result: called on the calling thread with each result, after the sink.
        should_stop: polled after each frame; True ends the run.

    SIGINT/SIGTERM/SIGHUP end the run cleanly (`interrupted`, `stop_signal`): the frame being written is
    finished, nothing after it is written, and the caller's context managers close the sinks. Exceptions
    from any stage propagate after the inference thread has stopped.
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
        summary.face_frames += result.eyes is not None
        for iris, pupil in result.views():  # the close-up's eye, or each eye of a face frame
            summary.eyes += 1
            summary.iris_detected += iris is not None
            summary.pupil_detected += pupil is not None
            summary.iris_trusted += iris is not None and iris.trusted
            summary.pupil_trusted += pupil is not None and pupil.trusted
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
    signals = _StopSignals(getattr(sink, "request_quit", None))
    try:
        with signals:
            stop_requested = lambda: signals.requested  # noqa: E731
            if not pipelined:
                _run_sequential(source, tracker, record, stop_requested)
            elif source.is_live:
                _run_live(source, tracker, record, stop_requested, max_frames)
            else:
                _run_recorded(source, tracker, record, stop_requested, max_frames)
    except (KeyboardInterrupt, _Stop):
        summary.interrupted = True
    finally:
        summary.stop_signal = signals.signum
        summary.interrupted = summary.interrupted or signals.requested
        summary.elapsed_s = time.perf_counter() - t0
        summary.dropped_frames = source.dropped_frames
        summary.source_failure = getattr(source, "failure", None)
        if bar is not None:
            bar.close()
    return summary


Record = Callable[[Frame, FrameResult], bool]


def _run_sequential(source, tracker: Tracker, record: Record, stop_requested: Callable[[], bool]) -> None:
    for frame in source:
        if record(frame, tracker(frame)) or stop_requested():
            return


def _run_recorded(
    source, tracker: Tracker, record: Record, stop_requested: Callable[[], bool], max_frames: int | None
) -> None:
    """Recorded media: decode, prepare, finish and write here; the inference thread only runs the model."""
    depth = RECORDED_DEPTH
    inputs, edges = tracker.input_buffers(depth), tracker.edge_buffers(depth)  # once per run, reused per frame
    todo: queue.Queue = queue.Queue()  # slots to infer, at most `depth`
    done: queue.Queue = queue.Queue()  # slots inferred, in the same order (or _Failed)

    def stop() -> None:
        drain(todo)  # an early stop: the worker finishes at most the inference it is running
        todo.put(_END)

    free = list(range(depth))
    in_flight: collections.deque[tuple[Prepared, int | None]] = collections.deque()
    frames = iter(source)
    more, taken = True, 0
    with _InferenceThread(_infer_slots, (tracker, inputs, edges, todo, done), stop) as worker:
        while True:
            # Keep the inference thread fed: every free slot gets the next frame before this thread fits one.
            # Unusable frames take no slot; the bound keeps a long run of them from piling up unwritten.
            while more and free and len(in_flight) < 2 * depth:
                frame = next(frames, None) if not max_frames or taken < max_frames else None
                if frame is None:
                    more = False
                    break
                taken += 1
                prepared = tracker.prepare(frame, inputs[free[-1]])
                slot = free.pop() if prepared.usable else None
                if slot is not None:
                    todo.put(slot)
                in_flight.append((prepared, slot))
            if not in_flight:
                return
            prepared, slot = in_flight.popleft()
            if slot is not None and not _wait_done(done, worker, stop_requested):
                return
            result = tracker.finish(prepared, edges[slot] if slot is not None else None)
            if slot is not None:
                free.append(slot)
            if record(prepared.frame, result) or stop_requested():
                return


def _wait_done(done: queue.Queue, worker: _InferenceThread, stop_requested: Callable[[], bool]) -> bool:
    """Wait for the next inferred slot (FIFO, so the oldest in flight); False when a stop came first."""
    while True:
        try:
            item = done.get(timeout=_POLL_S)
        except queue.Empty:
            if stop_requested():
                return False
            if not worker.is_alive():
                raise TrackerError("the inference thread ended without a result") from None
            continue
        if isinstance(item, _Failed):
            raise item.error
        return True


def _infer_slots(tracker: Tracker, inputs: np.ndarray, edges: np.ndarray, todo: queue.Queue, done: queue.Queue) -> None:
    """Inference thread of recorded runs: model input slot -> edge map in the same slot, until _END."""
    while (slot := todo.get()) is not _END:
        try:
            keep_edges(edges[slot], tracker.infer(inputs[slot]))
        except BaseException as exc:  # re-raised on the calling thread
            done.put(_Failed(exc))
            return
        done.put(slot)


def keep_edges(slot: np.ndarray, out: np.ndarray) -> None:
    """Copy a model call's output (a backend buffer its next call reuses) into the front of an edge-ring slot.

    The slot may be larger than the output: a FaceTracker's slots are flat and hold either both eyes' edges
    or one close-up's (its steps view them in the shape they need).
    """
    np.copyto(slot.reshape(-1)[: out.size], out.reshape(-1))


def _run_live(
    source, tracker: Tracker, record: Record, stop_requested: Callable[[], bool], max_frames: int | None
) -> None:
    """Live media: the inference thread takes the newest frame when a slot frees; finish and write here."""
    inputs, edges = tracker.input_buffers(LIVE_DEPTH), tracker.edge_buffers(LIVE_DEPTH)
    free: queue.Queue = queue.Queue(maxsize=LIVE_DEPTH)
    for slot in range(LIVE_DEPTH):
        free.put(slot)
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    args = (source, tracker, inputs, edges, free, ready, stop, max_frames)
    follow = getattr(tracker, "follow", None)
    with _InferenceThread(_infer_live, args, stop.set, wake=source.close):
        while not stop_requested():
            try:
                item = ready.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            prepared, slot = item
            result = tracker.finish(prepared, edges[slot] if slot is not None else None)
            done = record(prepared.frame, result)
            if slot is not None:
                free.put(slot)  # the next frame is taken only now, so it is as fresh as can be
            if done:
                return
            if follow is not None:
                # Here, not on the inference thread: there it ran beside this frame's fit and, measured at
                # 60 fps on 2 cores, put 1.6-2.5 ms on the p99 latency (the fit's p99 6.7-6.9 -> 4.7-5.5 ms).
                follow()


def _infer_live(
    source,
    tracker: Tracker,
    inputs: np.ndarray,
    edges: np.ndarray,
    free: queue.Queue,
    ready: queue.Queue,
    stop: threading.Event,
    max_frames: int | None,
) -> None:
    """Inference thread of live runs: a free slot, then the newest frame, prepared and inferred into the slot."""
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
            prepared = tracker.prepare(frame, inputs[slot])
            if prepared.usable:
                keep_edges(edges[slot], tracker.infer(inputs[slot]))
            else:
                free.put(slot)
                slot = None
            if not _put(ready, (prepared, slot), stop):
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
