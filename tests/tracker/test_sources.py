"""Frame sources: files, folders, globs, truncation, the latest-frame buffer, live capture and reconnection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import SHARED_DATA
from tracker.errors import SourceError
from tracker.io.sources import CameraOptions, LatestFrameBuffer, open_source
from tracker.structures import Frame

DEMO_VIDEO = SHARED_DATA / "videos" / "deepvog_demo.mp4"
N_FRAMES = 30
SIZE_WH = (64, 48)
GRAY_STEP = 8  # frame i is filled with i * GRAY_STEP, so the decoded frame tells its own number
GRAY_TOL = 4  # mp4v/MJPG rounding on a flat frame


def write_video(path: Path, n: int = N_FRAMES, fourcc: str = "mp4v", noise: bool = False) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30.0, SIZE_WH)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((SIZE_WH[1], SIZE_WH[0], 3), i * GRAY_STEP, np.uint8)
        if noise:  # big incompressible frames, so a byte cut lands mid-stream
            img[:, : SIZE_WH[0] // 2] = rng.integers(0, 256, (SIZE_WH[1], SIZE_WH[0] // 2, 3), dtype=np.uint8)
        writer.write(img)
    writer.release()
    return path


def frame_number(frame: Frame) -> int:
    # Top rows only: the last frame of a cut file may decode just its top part.
    return round(float(frame.image[:4, -8:].mean()) / GRAY_STEP)


def source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("source ") and t.is_alive()]


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    yield
    deadline = time.perf_counter() + 3.0
    while source_threads() and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not source_threads(), "a source left its worker thread running"


# --- recorded media -----------------------------------------------------------------------------


PREFETCH = pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "inline"])


@PREFETCH
def test_video_delivers_every_frame_in_order(tmp_path, prefetch):
    path = write_video(tmp_path / "clip.mp4")
    with open_source(str(path), prefetch=prefetch) as src:
        assert (src.fps, src.frame_count, src.is_live) == (30.0, N_FRAMES, False)
        frames = []
        for f in src:
            time.sleep(0.002)  # a consumer slower than decoding still gets every frame
            frames.append(f)
            assert prefetch or not source_threads()  # inline: decoded on this thread, no worker
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert [frame_number(f) for f in frames] == list(range(N_FRAMES))
    assert all(abs(float(f.image[:, -8:].mean()) - f.index * GRAY_STEP) < GRAY_TOL for f in frames)
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(N_FRAMES) / 30.0, atol=1e-3)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    assert {f.source for f in frames} == {str(path)}
    assert src.dropped_frames == 0


def test_early_exit_stops_prefetch_thread(tmp_path):
    path = write_video(tmp_path / "clip.mp4")
    with open_source(str(path)) as src:
        first = next(src)
        time.sleep(0.05)  # let the prefetch queue fill, so the worker is blocked on a full queue
    assert first.index == 0
    assert list(src) == []  # a closed source is exhausted


def test_inline_source_closed_early_is_exhausted(tmp_path):
    path = write_video(tmp_path / "clip.mp4")
    with open_source(str(path), prefetch=False) as src:
        assert next(src).index == 0
    assert list(src) == []


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("gray.png", np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)),
        ("bgr.png", np.dstack([np.full((48, 64), v, np.uint8) for v in (10, 20, 30)])),
        ("odd.png", np.full((17, 33), 7, np.uint8)),
        ("deep.png", (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)),
        ("deep_bgr.png", np.dstack([np.full((48, 64), v, np.uint16) for v in (1000, 2000, 40000)])),
        ("gray.tiff", np.full((48, 64), 300, np.uint16)),
    ],
)
def test_image_file_kept_as_is(tmp_path, name, image):
    path = tmp_path / name
    assert cv2.imwrite(str(path), image)
    with open_source(str(path)) as src:
        frames = list(src)
    assert src.frame_count == 1 and len(frames) == 1
    assert frames[0].image.dtype == image.dtype
    np.testing.assert_array_equal(frames[0].image, image)
    assert (frames[0].index, frames[0].timestamp_s) == (0, 0.0)


def test_bgra_image_loses_alpha(tmp_path):
    image = np.dstack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30, 255)])
    cv2.imwrite(str(tmp_path / "a.png"), image)
    with open_source(str(tmp_path / "a.png")) as src:
        (frame,) = list(src)
    np.testing.assert_array_equal(frame.image, image[:, :, :3])


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((12, 16), i, np.uint8))


@PREFETCH
def test_folder_skips_corrupt_image_and_sorts_naturally(tmp_path, prefetch):
    write_images(tmp_path, ["frame2.png", "frame10.png", "frame1.png"])
    (tmp_path / "frame3.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    skipped: list[str] = []
    with open_source(str(tmp_path), on_skip=skipped.append, prefetch=prefetch) as src:
        assert src.frame_count == 4 and src.fps is None and not src.is_live
        frames = list(src)
    assert [Path(f.source).name for f in frames] == ["frame1.png", "frame2.png", "frame10.png"]
    assert [f.index for f in frames] == [0, 1, 3]  # index = position among the folder's images
    np.testing.assert_allclose([f.timestamp_s for f in frames], [0, 1 / 30, 3 / 30])
    assert len(skipped) == 1 and "frame3.png" in skipped[0]


def test_glob_selects_matching_images(tmp_path):
    write_images(tmp_path, ["a1.png", "a2.png", "b1.png", "a3.jpg"])
    with open_source(str(tmp_path / "a*.png")) as src:
        names = [Path(f.source).name for f in src]
    assert names == ["a1.png", "a2.png"]


def test_realtime_image_folder_is_live(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(3)])
    with open_source(str(tmp_path), realtime=True) as src:
        frames = list(src)
    assert src.is_live and src.frame_count is None
    assert frames[-1].index == 2


def test_bad_sources_raise_one_line_errors(tmp_path):
    (tmp_path / "fake.mp4").write_text("this is text, not a video\n" * 20)
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    cases = {
        str(tmp_path / "missing.mp4"): "not found",
        str(tmp_path / "fake.mp4"): "not a video",
        str(tmp_path / "empty"): "is empty",
        str(tmp_path / "docs"): "no images",
        str(tmp_path / "*.jpg"): "no files match",
        str(tmp_path / "broken.png"): "not a decodable image",
        "": "empty source",
    }
    for spec, expected in cases.items():
        with pytest.raises(SourceError, match=expected) as info:
            open_source(spec)
        assert "\n" not in str(info.value)


@PREFETCH
def test_truncated_video_delivers_frames_up_to_the_cut(tmp_path, prefetch):
    # AVI keeps its index at the end, so a cut file still opens and decodes up to the cut (like a crashed recorder).
    full = write_video(tmp_path / "full.avi", fourcc="MJPG", noise=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    skipped: list[str] = []
    with open_source(str(cut), on_skip=skipped.append, prefetch=prefetch) as src:
        frames = list(src)
    assert 0 < len(frames) < N_FRAMES
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [frame_number(f) for f in frames] == list(range(len(frames)))
    assert skipped == [f"video {cut} ended at frame {len(frames)} of {N_FRAMES} (truncated or corrupt)"]


@pytest.mark.data
@pytest.mark.skipif(not DEMO_VIDEO.exists(), reason="development data not present")
def test_demo_video_header():
    with open_source(str(DEMO_VIDEO)) as src:
        first = [next(src) for _ in range(5)]
    assert src.frame_count == 1112 and src.fps == 25.0
    assert [f.index for f in first] == list(range(5))


# --- latest-frame buffer ------------------------------------------------------------------------


def make_frame(i: int) -> Frame:
    return Frame(np.zeros((2, 2), np.uint8), i, float(i))


def test_buffer_fast_consumer_sees_every_frame():
    buf = LatestFrameBuffer()
    got: list[int] = []

    def consume():
        while (f := buf.get(timeout_s=2.0)) is not None:
            got.append(f.index)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(20):
        buf.put(make_frame(i))
        time.sleep(0.01)
    buf.close()
    consumer.join(timeout=3.0)
    assert got == list(range(20)) and buf.dropped == 0


def test_buffer_slow_consumer_sees_fresh_frames():
    buf = LatestFrameBuffer()
    n = 100

    def produce():
        for i in range(n):
            buf.put(make_frame(i))
            time.sleep(0.001)
        buf.close()

    producer = threading.Thread(target=produce)
    producer.start()
    got: list[int] = []
    while (f := buf.get(timeout_s=2.0)) is not None:
        got.append(f.index)
        time.sleep(0.02)
    producer.join()
    assert got == sorted(set(got)) and got[-1] == n - 1  # increasing, and the newest frame is never lost
    assert buf.dropped > 0 and len(got) + buf.dropped == n  # every frame was either seen or counted dropped


def test_buffer_get_times_out_and_returns_none_after_close():
    buf = LatestFrameBuffer()
    t0 = time.perf_counter()
    assert buf.get(timeout_s=0.05) is None
    assert time.perf_counter() - t0 >= 0.04
    buf.put(make_frame(1))
    buf.close()
    assert buf.get(timeout_s=0.05).index == 1  # an unread frame survives close
    assert buf.get(timeout_s=1.0) is None and buf.closed


# --- live capture -------------------------------------------------------------------------------


class FakeCapture:
    """A camera session: `frames` good reads (None = endless) at `period_s`, then failing reads."""

    def __init__(self, frames: int | None, opened: bool = True, period_s: float = 0.01) -> None:
        self.left, self.opened, self.period_s = frames, opened, period_s
        self.released = False
        self.props: dict[int, float] = {}

    def read(self):
        if not self.opened or self.released or self.left == 0:
            return False, None
        time.sleep(self.period_s)
        if self.left is not None:
            self.left -= 1
        return True, np.zeros((4, 4, 3), np.uint8)

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.opened and not self.released

    def release(self):
        self.released = True

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)


class FakeCamera:
    """Capture factory handing out scripted sessions, then unopenable ones (an unplugged camera)."""

    def __init__(self, *sessions: FakeCapture) -> None:
        self.sessions = list(sessions)
        self.opened: list[FakeCapture] = []
        self.calls: list[tuple] = []

    def __call__(self, target, api):
        self.calls.append((target, api))
        cap = self.sessions.pop(0) if self.sessions else FakeCapture(0, opened=False)
        self.opened.append(cap)
        return cap


def test_camera_reconnects_and_continues():
    camera = FakeCamera(FakeCapture(5), FakeCapture(0, opened=False), FakeCapture(3))
    messages: list[str] = []
    options = CameraOptions(width=640, height=480, fps=60, reconnect_timeout_s=0.5)
    t0 = time.perf_counter()
    with open_source("0", camera=options, on_skip=messages.append, open_capture=camera) as src:
        assert src.is_live and src.frame_count is None and src.name == "camera 0"
        frames = list(src)
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 7  # 5 + 3 frames, capture index kept across reconnects
    assert len(frames) + src.dropped_frames == 8
    assert frames[-1].timestamp_s > t0  # perf_counter time the frame became available
    assert any("read failed at frame 5; reconnecting" in m for m in messages)
    assert any("reconnected after" in m for m in messages)
    assert messages[-1] == "camera 0 lost; gave up after 0.5 s"
    first = camera.opened[0]
    assert first.props[cv2.CAP_PROP_FRAME_WIDTH] == 640 and first.props[cv2.CAP_PROP_FPS] == 60
    assert all(cap.released for cap in camera.opened)


def test_camera_that_never_returns_ends_within_the_timeout():
    camera = FakeCamera(FakeCapture(3))
    messages: list[str] = []
    options = CameraOptions(reconnect_timeout_s=0.3)
    t0 = time.perf_counter()
    with open_source("1", camera=options, on_skip=messages.append, open_capture=camera) as src:
        frames = list(src)
    elapsed = time.perf_counter() - t0
    assert frames and frames[-1].index == 2
    assert 0.3 <= elapsed < 1.5
    assert messages[-1] == "camera 1 lost; gave up after 0.3 s"
    assert len(camera.calls) >= 3  # it did retry, with backoff (0.1 + 0.2 s fit in the budget)


def test_camera_consumer_exit_releases_capture():
    session = FakeCapture(None, period_s=0.001)
    with open_source("0", open_capture=FakeCamera(session)) as src:
        for i, _ in enumerate(src):
            if i == 2:
                break
    assert session.released


def test_camera_that_cannot_open_raises():
    with pytest.raises(SourceError, match="camera 3 could not be opened"):
        open_source("3", open_capture=FakeCamera(FakeCapture(0, opened=False)))


def test_url_and_pipeline_are_live_and_redacted():
    camera = FakeCamera(FakeCapture(None), FakeCapture(None))
    with open_source("rtsp://user:secret@cam.local:554/stream", open_capture=camera) as src:
        assert src.is_live and "secret" not in src.name and "cam.local:554" in src.name
    with open_source("videotestsrc ! videoconvert ! appsink", open_capture=camera) as src:
        next(src)
    assert camera.calls[0] == ("rtsp://user:secret@cam.local:554/stream", cv2.CAP_ANY)
    assert camera.calls[1][1] == cv2.CAP_GSTREAMER


def test_realtime_file_replays_at_its_frame_rate(tmp_path):
    path = write_video(tmp_path / "clip.mp4")  # 30 frames at 30 fps: one second
    t0 = time.perf_counter()
    with open_source(str(path), realtime=True) as src:
        assert src.is_live and src.frame_count is None and src.fps == 30.0
        frames = []
        for f in src:
            frames.append(f)
            time.sleep(0.08)  # a consumer at ~12 fps must skip frames, not fall behind
    elapsed = time.perf_counter() - t0
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == N_FRAMES - 1
    assert src.dropped_frames > 0 and len(frames) + src.dropped_frames == N_FRAMES
    assert 0.9 < elapsed < 1.6  # paced, not decoded as fast as possible, and no backlog at the end
    assert all(t0 <= f.timestamp_s <= t0 + elapsed for f in frames)
