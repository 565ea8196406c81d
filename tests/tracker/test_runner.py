"""The run loop: order and completeness, live sources, failures, interrupts and SIGTERM, sequential and pipelined."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import tracker.run as runner
from tracker.errors import TrackerError
from tracker.fit.eye import EyeFit
from tracker.io.sinks import JsonlSink, MultiSink
from tracker.io.sources import CameraOptions, open_source
from tracker.io.video import VideoSink
from tracker.pipeline import Tracker, TrackerConfig
from tracker.structures import Frame, Status

IMAGE_HW = (16, 16)  # = the stub's input: preprocessing keeps the position of the one bright pixel
LIVE_MODES = pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "sequential"])
# Recorded media: pipelined with the source's prefetch thread, or decoding on the calling thread (what
# `iristrack run` does), and sequential.
MODES = pytest.mark.parametrize(
    ("pipelined", "prefetch"), [(True, True), (True, False), (False, True)], ids=["pipelined", "inline", "sequential"]
)


class StubBackend:
    """Backend whose output encodes the bright pixel's flat position, in one buffer reused by every call."""

    name = "stub"
    input_hw = IMAGE_HW

    def __init__(self, fail_at: int | None = None, jitter_s: float = 0.0) -> None:
        self.calls, self.fail_at, self.jitter_s = 0, fail_at, jitter_s
        self._out = np.zeros((1, *IMAGE_HW, 2), np.float32)
        self._rng = np.random.default_rng(0)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError(f"inference failed at call {self.calls}")
        self.calls += 1
        if self.jitter_s:  # uneven stage times shake out ordering bugs between the threads
            time.sleep(self._rng.uniform(0, self.jitter_s))
        self._out[...] = float(np.argmax(batch[0, :, :, 0]))
        return self._out

    def close(self) -> None:
        pass


class RecordingTracker(Tracker):
    """Tracker whose fit records the edge map it was given (the stub's code for the frame) and finds nothing."""

    def __init__(self, backend) -> None:
        super().__init__(backend, TrackerConfig(smooth=False))
        self.fitted: list[int] = []

    def fit(self, edges, frame_hw, gray=None):
        assert gray is not None and gray.shape == frame_hw
        self.fitted.append(int(edges[0, 0, 0]))
        return EyeFit(None, None, Status.NO_IRIS)


class ListSink:
    """Records the frame indices written; can fail, ask to quit, or send a signal at a given frame."""

    def __init__(
        self,
        fail_at: int | None = None,
        quit_after: int | None = None,
        signal_at: int | None = None,
        delay_s: float = 0.0,
        signum: int = signal.SIGTERM,
    ) -> None:
        self.signum = signum
        self.indices: list[int] = []
        self.fail_at, self.quit_after, self.signal_at, self.delay_s = fail_at, quit_after, signal_at, delay_s
        self.closed = False

    @property
    def wants_quit(self) -> bool:
        return self.quit_after is not None and len(self.indices) >= self.quit_after

    def write(self, frame, result) -> None:
        if self.fail_at is not None and len(self.indices) == self.fail_at:
            raise OSError("disk full")
        if self.signal_at is not None and len(self.indices) == self.signal_at:
            os.kill(os.getpid(), self.signum)
        time.sleep(self.delay_s)
        assert frame.index == result.frame_index
        self.indices.append(result.frame_index)

    def close(self) -> None:
        self.closed = True


def pixel_frames(folder: Path, n: int) -> Path:
    """n lossless PNGs; image i is black with one white pixel at flat position i (its own number)."""
    folder.mkdir()
    for i in range(n):
        img = np.zeros(IMAGE_HW, np.uint8)
        img.flat[i] = 255
        cv2.imwrite(str(folder / f"f{i}.png"), img)
    return folder


def write_video(path: Path, n: int, size_wh=(64, 48), fourcc: str = "mp4v", noise: bool = False) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30.0, size_wh)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((size_wh[1], size_wh[0], 3), (i * 8) % 256, np.uint8)
        if noise:  # incompressible, so a byte cut lands mid-stream
            img[:, : size_wh[0] // 2] = rng.integers(0, 256, (size_wh[1], size_wh[0] // 2, 3), dtype=np.uint8)
        writer.write(img)
    writer.release()
    return path


def live_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.is_alive() and (t.name == runner.INFERENCE_THREAD_NAME or t.name.startswith("source "))
    ]


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    yield
    deadline = time.perf_counter() + 3.0
    while live_threads() and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not live_threads(), "a run left a thread running"


# --- order and completeness -------------------------------------------------------------------------


@MODES
def test_every_frame_in_order_with_its_own_edges(tmp_path, pipelined, prefetch):
    n = 120
    folder = pixel_frames(tmp_path / "frames", n)
    tracker = RecordingTracker(StubBackend(jitter_s=0.002))
    sink = ListSink(delay_s=0.0005)
    with open_source(str(folder), prefetch=prefetch) as src:
        summary = runner.run(src, tracker, sink, pipelined=pipelined)
    assert summary.frames == n and summary.pipelined == pipelined and not summary.interrupted
    assert sink.indices == list(range(n))
    assert tracker.fitted == list(range(n))  # each fit saw its own frame's edge map, not a reused buffer's later one


def test_pipelined_and_sequential_write_the_same_results(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 40)
    lines = {}
    for pipelined in (False, True):
        tracker = Tracker(StubBackend())
        out = tmp_path / f"{pipelined}.jsonl"
        with open_source(str(video)) as src, JsonlSink(out) as sink:
            runner.run(src, tracker, sink, pipelined=pipelined)
        lines[pipelined] = [
            {k: v for k, v in json.loads(s).items() if k != "latency_ms"} for s in out.read_text().splitlines()
        ]
    assert [d["frame"] for d in lines[True]] == list(range(40))
    assert lines[True] == lines[False]


@MODES
def test_slow_output_never_drops_a_recorded_frame(tmp_path, pipelined, prefetch):
    video = write_video(tmp_path / "clip.mp4", 30)
    sink = ListSink(delay_s=0.01)  # the queues fill up: inference must wait, not skip
    with open_source(str(video), prefetch=prefetch) as src:
        summary = runner.run(src, Tracker(StubBackend()), sink, pipelined=pipelined)
    assert sink.indices == list(range(30)) and summary.dropped_frames == 0


@MODES
def test_max_frames_stops_exactly(tmp_path, pipelined, prefetch):
    folder = pixel_frames(tmp_path / "frames", 20)
    tracker = RecordingTracker(StubBackend())
    sink = ListSink()
    with open_source(str(folder), prefetch=prefetch) as src:
        summary = runner.run(src, tracker, sink, pipelined=pipelined, max_frames=7)
    assert summary.frames == 7 and sink.indices == list(range(7))
    assert tracker.backend.calls <= 7  # the inference stage did not read ahead past the limit


class ListSource:
    """A recorded source over in-memory frames."""

    is_live, fps, dropped_frames = False, None, 0

    def __init__(self, frames) -> None:
        self.frames, self.frame_count = frames, len(frames)

    def __iter__(self):
        return iter(self.frames)

    def close(self) -> None:
        pass


@MODES
def test_unusable_frames_become_bad_frame_results_in_order(pipelined, prefetch):
    good = np.zeros(IMAGE_HW, np.uint8)
    images = [good, np.zeros((*IMAGE_HW, 2), np.uint8), good, None, good, np.zeros((0, 0), np.uint8), good]
    sink = ListSink()
    statuses = []
    src = ListSource([Frame(image, i, i / 30) for i, image in enumerate(images)])
    summary = runner.run(
        src, Tracker(StubBackend()), sink, pipelined=pipelined, on_result=lambda r: statuses.append(r.status)
    )
    assert summary.frames == len(images) and sink.indices == list(range(len(images)))
    assert [s == Status.BAD_FRAME for s in statuses] == [False, True, False, True, False, True, False]


class LiveListSource(ListSource):
    """A live source over in-memory frames (a camera that may hand over raw YUYV or empty buffers)."""

    is_live = True


@LIVE_MODES
def test_unusable_frames_from_a_live_source_become_bad_frame_results(pipelined):
    # Raw YUYV from a camera is 2-channel: it used to kill the pipelined live loop with a ValueError.
    good = np.zeros(IMAGE_HW, np.uint8)
    images = [good, np.zeros((*IMAGE_HW, 2), np.uint8), good, None, np.zeros((*IMAGE_HW, 3), np.int32), good]
    statuses = []
    src = LiveListSource([Frame(image, i, float(i)) for i, image in enumerate(images)])
    summary = runner.run(
        src, Tracker(StubBackend()), ListSink(), pipelined=pipelined, on_result=lambda r: statuses.append(r.status)
    )
    assert summary.frames == len(images)
    assert [s == Status.BAD_FRAME for s in statuses] == [False, True, False, True, True, False]


def test_an_inference_that_outlives_the_join_is_an_error_not_a_leaked_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "JOIN_TIMEOUT_S", 0.2)
    release = threading.Event()

    class HangingBackend(StubBackend):
        def infer(self, batch):
            if self.calls >= 1:
                release.wait(10)  # the second frame's inference is still running when the run ends
            return super().infer(batch)

    folder = pixel_frames(tmp_path / "frames", 6)
    with open_source(str(folder), prefetch=False) as src, pytest.raises(TrackerError, match="did not stop within"):
        runner.run(src, Tracker(HangingBackend()), ListSink(quit_after=1), pipelined=True)
    release.set()
    deadline = time.perf_counter() + 5
    while _inference_thread_alive() and time.perf_counter() < deadline:
        time.sleep(0.01)


def _inference_thread_alive() -> bool:  # noqa: N802
    return any(t.name == runner.INFERENCE_THREAD_NAME for t in threading.enumerate())


def test_truncated_video_processes_the_frames_before_the_cut(tmp_path):
    full = write_video(tmp_path / "full.avi", 30, fourcc="MJPG", noise=True)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    messages: list[str] = []
    sink = ListSink()
    with open_source(str(cut), on_skip=messages.append) as src:
        summary = runner.run(src, Tracker(StubBackend()), sink)
    assert 0 < summary.frames < 30 and sink.indices == list(range(summary.frames))
    assert messages == [f"video {cut} ended at frame {summary.frames} of 30 (truncated or corrupt)"]


# --- live sources -----------------------------------------------------------------------------------


class FakeCapture:
    """A camera session: `frames` good reads (None = endless) every `period_s`, then failing reads."""

    def __init__(self, frames: int | None, opened: bool = True, period_s: float = 0.002) -> None:
        self.left, self.opened, self.period_s = frames, opened, period_s

    def read(self):
        if not self.opened or self.left == 0:
            return False, None
        time.sleep(self.period_s)
        if self.left is not None:
            self.left -= 1
        return True, np.zeros((*IMAGE_HW, 3), np.uint8)

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.opened

    def release(self):
        self.opened = False

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 0.0


def camera(*sessions: FakeCapture):
    """A capture factory handing out `sessions`, then captures that do not open (the camera is unplugged)."""
    queue = list(sessions)
    return lambda target, api: queue.pop(0) if queue else FakeCapture(0, opened=False)


@LIVE_MODES
def test_failing_live_source_ends_the_run_with_a_message(pipelined):
    messages: list[str] = []
    sink = ListSink()
    options = CameraOptions(reconnect_timeout_s=0.3)
    with open_source("0", camera=options, on_skip=messages.append, open_capture=camera(FakeCapture(5))) as src:
        summary = runner.run(src, Tracker(StubBackend()), sink, pipelined=pipelined)
    assert 0 < summary.frames <= 5 and summary.frames + summary.dropped_frames == 5
    assert sink.indices == sorted(set(sink.indices))
    assert messages[-1] == "camera 0 lost; gave up after 0.3 s"
    assert summary.source_failure == "camera 0 lost; gave up after 0.3 s"  # the CLI exits 1 on it


class CountingSource:
    """Wraps a source and counts the frames handed to the run loop."""

    def __init__(self, source) -> None:
        self.source, self.handed_out = source, 0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def __iter__(self):
        for frame in self.source:
            self.handed_out += 1
            yield frame


def test_live_pipeline_holds_no_stale_backlog():
    in_flight: list[int] = []

    class Sink(ListSink):
        def write(self, frame, result):
            in_flight.append(src.handed_out - len(self.indices))  # frames taken but not yet written, this one included
            super().write(frame, result)

    with open_source("0", open_capture=camera(FakeCapture(None, period_s=0.001))) as live:
        src = CountingSource(live)
        summary = runner.run(src, Tracker(StubBackend()), Sink(delay_s=0.01), pipelined=True, max_frames=15)
    assert summary.frames == 15
    assert summary.dropped_frames > 0  # the camera outpaced the slow sink and stale frames were skipped
    assert max(in_flight) <= runner.LIVE_DEPTH


def test_live_run_stops_promptly_when_the_camera_stalls():
    quit_sink = ListSink(quit_after=1)
    # One frame, then a camera that does not reopen for the default 10 s reconnect budget: no frame comes.
    with open_source("0", open_capture=camera(FakeCapture(1))) as src:
        t0 = time.perf_counter()
        summary = runner.run(src, Tracker(StubBackend()), quit_sink, pipelined=True)
        assert time.perf_counter() - t0 < 5.0
    assert summary.frames == 1


# --- failures and interrupts ------------------------------------------------------------------------


@MODES
def test_sink_error_stops_the_run_and_sinks_are_closed(tmp_path, pipelined, prefetch):
    video = write_video(tmp_path / "clip.mp4", 30)
    jsonl, failing = tmp_path / "out.jsonl", ListSink(fail_at=5)
    with (
        pytest.raises(OSError, match="disk full"),
        open_source(str(video), prefetch=prefetch) as src,
        MultiSink([JsonlSink(jsonl), failing]) as sink,
    ):
        runner.run(src, Tracker(StubBackend()), sink, pipelined=pipelined)
    assert failing.closed
    frames = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
    assert frames == list(range(6))  # the JSONL sink wrote the sixth frame before the failing one raised


@MODES
def test_inference_error_reaches_the_caller_with_earlier_frames_written(tmp_path, pipelined, prefetch):
    video = write_video(tmp_path / "clip.mp4", 30)
    jsonl = tmp_path / "out.jsonl"
    with (
        pytest.raises(RuntimeError, match="inference failed at call 7"),
        open_source(str(video), prefetch=prefetch) as src,
        JsonlSink(jsonl) as sink,
    ):
        runner.run(src, Tracker(StubBackend(fail_at=7)), sink, pipelined=pipelined)
    frames = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
    assert frames == list(range(7))


@MODES
def test_window_quit_ends_the_run(tmp_path, pipelined, prefetch):
    folder = pixel_frames(tmp_path / "frames", 30)
    sink = ListSink(quit_after=4)
    with open_source(str(folder), prefetch=prefetch) as src:
        summary = runner.run(src, Tracker(StubBackend()), MultiSink([sink]), pipelined=pipelined)
    assert summary.frames == 4 and sink.indices == [0, 1, 2, 3] and not summary.interrupted


@MODES
def test_sigterm_finishes_the_current_frame_and_restores_the_handler(tmp_path, pipelined, prefetch):
    folder = pixel_frames(tmp_path / "frames", 40)
    before = signal.getsignal(signal.SIGTERM)
    sink = ListSink(signal_at=10)
    with open_source(str(folder), prefetch=prefetch) as src:
        summary = runner.run(src, Tracker(StubBackend()), sink, pipelined=pipelined)
    assert summary.interrupted and sink.indices == list(range(11))
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture
def signals_not_ignored():
    """SIGINT/SIGHUP as an interactive shell leaves them: a runner started with nohup or & ignores them (and the run
    rightly leaves ignored signals alone)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_each_stop_signal_ends_the_run_cleanly_and_is_reported(tmp_path, sig, signals_not_ignored):
    folder = pixel_frames(tmp_path / "frames", 30)
    sink = ListSink(signal_at=5, signum=sig)
    with open_source(str(folder), prefetch=False) as src:
        summary = runner.run(src, Tracker(StubBackend()), sink, pipelined=True)
    assert summary.interrupted and summary.stop_signal == sig and sink.indices == list(range(6))


def test_sigterm_while_waiting_on_a_slow_inference_stops_without_a_second_signal(tmp_path):
    folder = pixel_frames(tmp_path / "frames", 20)

    class SlowBackend(StubBackend):
        def infer(self, batch):
            time.sleep(0.3)
            return super().infer(batch)

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    sink = ListSink()
    with open_source(str(folder), prefetch=False) as src:
        timer.start()
        t0 = time.perf_counter()
        summary = runner.run(src, Tracker(SlowBackend()), sink, pipelined=True)
        elapsed_s = time.perf_counter() - t0
    timer.join()
    assert summary.interrupted and len(sink.indices) < 20 and sink.indices == list(range(len(sink.indices)))
    assert elapsed_s < 2.0  # the queued slots were dropped: only the inference under way was finished


def test_video_sink_closed_by_the_caller_after_an_interrupt(tmp_path):
    folder = pixel_frames(tmp_path / "frames", 30)
    mp4 = tmp_path / "o.mp4"
    with open_source(str(folder)) as src, MultiSink([VideoSink(mp4, 30.0), ListSink(signal_at=5)]) as sink:
        summary = runner.run(src, Tracker(StubBackend()), sink)
    assert summary.interrupted
    cap = cv2.VideoCapture(str(mp4))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()


def test_a_stop_signal_releases_a_sink_that_blocks_like_a_paused_window(tmp_path):
    folder = pixel_frames(tmp_path / "frames", 20)

    class PausedSink(ListSink):
        quit = False

        def write(self, frame, result):
            super().write(frame, result)
            while len(self.indices) == 3 and not self.quit:  # paused after the third frame
                time.sleep(0.01)

        def request_quit(self):
            self.quit = True

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    sink = PausedSink()
    with open_source(str(folder), prefetch=False) as src:
        timer.start()
        t0 = time.perf_counter()
        summary = runner.run(src, Tracker(StubBackend()), MultiSink([sink]), pipelined=True)
    timer.join()
    assert summary.interrupted and summary.stop_signal == signal.SIGTERM and time.perf_counter() - t0 < 3
    assert sink.indices == [0, 1, 2]


def test_pipelined_and_sequential_agree_on_real_fits(tmp_path):
    # The stub backend above finds no eye; this compares real ellipses, confidences and trusted flags.
    from tests.paths import SHIPPED_MODEL
    from tools.synthetic import write_clip

    video = tmp_path / "eye.mp4"
    write_clip(video, tmp_path / "truth.csv", 40, (320, 240), 30.0, 5)
    rows = {}
    for pipelined in (False, True):
        out = tmp_path / f"{pipelined}.jsonl"
        with (
            Tracker.from_model(SHIPPED_MODEL, backend="onnxruntime") as tracker,
            open_source(str(video), prefetch=not pipelined) as src,
            JsonlSink(out) as sink,
        ):
            runner.run(src, tracker, sink, pipelined=pipelined)
        rows[pipelined] = [
            {k: v for k, v in json.loads(s).items() if k != "latency_ms"} for s in out.read_text().splitlines()
        ]
    assert len(rows[True]) == 40 and sum(r["iris"] is not None for r in rows[True]) >= 30
    assert rows[True] == rows[False]
