"""Frame sources: files, folders, globs, truncated and damaged videos, the latest-frame buffer, live capture."""

from __future__ import annotations

import hashlib
import re
import struct
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import tracker.io.sources as sources
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


CODE_BLOCK = 8  # frame i shows i in binary as white 8x8 blocks in its right half: exact through lossy codecs
CODE_BITS = [(row * CODE_BLOCK, SIZE_WH[0] // 2 + col * CODE_BLOCK) for row in range(2) for col in range(4)]


def write_coded_video(path: Path, n: int) -> Path:
    """mp4v video of n frames: noise on the left (big frames, so damage spans several), the number on the right."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, SIZE_WH)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((SIZE_WH[1], SIZE_WH[0], 3), np.uint8)
        img[:, : SIZE_WH[0] // 2] = rng.integers(0, 256, (SIZE_WH[1], SIZE_WH[0] // 2, 3), dtype=np.uint8)
        for bit, (y, x) in enumerate(CODE_BITS):
            if i >> bit & 1:
                img[y : y + CODE_BLOCK, x : x + CODE_BLOCK] = 255
        writer.write(img)
    writer.release()
    return path


def coded_number(frame: Frame) -> int:
    half = CODE_BLOCK // 2
    return sum(1 << bit for bit, (y, x) in enumerate(CODE_BITS) if frame.image[y + half, x + half].mean() > 128)


def zero_middle_of_mdat(path: Path, nbytes: int) -> None:
    """Overwrite `nbytes` in the middle of an MP4's media data with zeros; the index (moov) stays intact."""
    data = bytearray(path.read_bytes())
    offset = 0
    while True:  # top-level boxes: 4-byte big-endian size (header included), 4-byte type
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"mdat":
            break
        offset += size
    start = offset + size // 2 - nbytes // 2
    data[start : start + nbytes] = bytes(nbytes)
    path.write_bytes(data)


def skipped_count(message: str) -> int:
    return int(re.fullmatch(r".*; skipped (\d+)", message).group(1))


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
    assert (frames[0].index, frames[0].timestamp_s) == (0, None)  # an image has no clock: no invented time


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
@pytest.mark.parametrize("spec", ["", "frame*.png"], ids=["folder", "glob"])
def test_every_image_file_is_a_frame_in_natural_order(tmp_path, prefetch, spec):
    write_images(tmp_path, ["frame2.png", "frame10.png", "frame1.png"])
    (tmp_path / "frame3.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    skipped: list[str] = []
    with open_source(str(tmp_path / spec), on_skip=skipped.append, prefetch=prefetch) as src:
        assert src.frame_count == 4 and src.fps is None and not src.is_live
        frames = list(src)
    # One frame per file (the run writes a bad_frame row for the undecodable one), index = its position.
    assert [Path(f.source).name for f in frames] == ["frame1.png", "frame2.png", "frame3.png", "frame10.png"]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.image is None for f in frames] == [False, False, True, False]
    assert all(f.timestamp_s is None for f in frames)  # images have no clock
    assert skipped == [f"skipped {tmp_path / 'frame3.png'} is not a decodable image (9 bytes)"]


@PREFETCH
def test_folder_where_no_image_decodes_raises_before_any_frame(tmp_path, prefetch):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"not a png")
    frames: list[Frame] = []
    with (
        pytest.raises(SourceError, match="none of the 2 images could be decoded"),
        open_source(str(tmp_path), prefetch=prefetch) as src,
    ):
        frames.extend(src)
    assert frames == []


def test_glob_selects_matching_images(tmp_path):
    write_images(tmp_path, ["a1.png", "a2.png", "b1.png", "a3.jpg"])
    with open_source(str(tmp_path / "a*.png")) as src:
        names = [Path(f.source).name for f in src]
    assert names == ["a1.png", "a2.png"]


def test_realtime_image_folder_is_live_and_paced(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(7)])
    t0 = time.perf_counter()
    with open_source(str(tmp_path), realtime=True) as src:
        frames = list(src)
    elapsed_s = time.perf_counter() - t0
    assert src.is_live and src.frame_count is None
    assert frames[-1].index == 6
    assert elapsed_s >= 6 / sources.IMAGE_SEQUENCE_FPS - 0.01  # shown at the sequence rate, without timestamps


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
    assert src.failure is None  # recorded media that ends early is reported, not a failure


CODED_FRAMES = 60


@PREFETCH
def test_damaged_video_is_read_past_the_damage_to_its_end(tmp_path, prefetch):
    path = write_coded_video(tmp_path / "damaged.mp4", CODED_FRAMES)
    zero_middle_of_mdat(path, path.stat().st_size // 5)
    skipped: list[str] = []
    with open_source(str(path), on_skip=skipped.append, prefetch=prefetch) as src:
        frames = list(src)
    indices = [f.index for f in frames]
    missing = sorted(set(range(CODED_FRAMES)) - set(indices))
    assert indices == sorted(set(indices)) and indices[-1] == CODED_FRAMES - 1  # in order, to the end
    assert len(missing) >= 5  # more reads failed in a row than a few retries would cover
    assert skipped == [f"video {path}: frames {missing[0]}-{missing[-1]} could not be decoded; skipped {len(missing)}"]
    # Indices are true positions: frames before the damage, and after the decoder recovered at a keyframe,
    # show their own number (those in between are predicted from damaged frames and show garbage).
    assert [coded_number(f) for f in frames if f.index < missing[0] - 1] == list(range(missing[0] - 1))
    tail = frames[-15:]
    assert tail[0].index > missing[-1] + 1 and [coded_number(f) for f in tail] == [f.index for f in tail]
    np.testing.assert_allclose([f.timestamp_s for f in tail], [f.index / 30.0 for f in tail], atol=1e-3)
    assert src.failure is None


class ScriptedVideo:
    """A video capture replaying a script: a presentation time in ms per good read, None per failed read.

    After the script every read fails, as at the end of a file. Counts its reads.
    """

    def __init__(self, script: list[float | None]) -> None:
        self.script, self.reads, self.pos_ms, self.released = list(script), 0, 0.0, False

    def read(self):
        self.reads += 1
        step = self.script.pop(0) if self.script else None
        if step is None:
            return False, None
        self.pos_ms = step
        return True, np.zeros((2, 2), np.uint8)

    def get(self, prop):
        return self.pos_ms if prop == cv2.CAP_PROP_POS_MSEC else 0.0

    def release(self):
        self.released = True


def read_script(script: list[float | None], fps: float | None, frame_count: int | None):
    """(indices, timestamps, messages, capture) of `_video_frames` over a scripted capture."""
    cap = ScriptedVideo(script)
    first = cap.read()[1]
    items = list(sources._video_frames(cap, first, "v.mp4", fps, frame_count))
    frames = [item for item in items if isinstance(item, Frame)]
    messages = [item.message for item in items if not isinstance(item, Frame)]
    return [f.index for f in frames], [f.timestamp_s for f in frames], messages, cap


MS_25FPS = 40.0


def test_frames_after_damage_are_placed_by_their_timestamps():
    # Measured on deepvog_demo.mp4 (H.264, 25 fps) with 200 kB overwritten: 210 failed reads, then the
    # decoder releases frame 172, jumps to 390, and later hands back 176, which it held from before the damage.
    shown = [*range(172), *[None] * 210, 172, 390, 392, 393, 176, *range(394, 1112)]
    indices, timestamps, messages, cap = read_script([None if i is None else i * MS_25FPS for i in shown], 25.0, 1112)
    assert indices == [*range(173), 390, *range(392, 1112)]  # in order; the late frame 176 is dropped
    np.testing.assert_allclose(timestamps, np.array(indices) * MS_25FPS / 1000)
    assert messages == ["video v.mp4: frames 173-391 could not be decoded; skipped 218"]
    assert len(indices) + 218 == 1112 and cap.released


def test_damage_without_a_clock_counts_one_frame_per_failed_read():
    # A backend that reports no presentation time (always 0): the failed reads say how many frames were lost.
    indices, timestamps, messages, _ = read_script([0.0] * 5 + [None] * 3 + [0.0] * 20, 25.0, 28)
    assert indices == [*range(5), *range(8, 28)]
    np.testing.assert_allclose(timestamps, np.array(indices) / 25.0)
    assert messages == ["video v.mp4: frames 5-7 could not be decoded; skipped 3"]


@pytest.mark.parametrize(
    ("frame_count", "reads"),
    [
        (None, 1 + sources._FAILED_READS_UNKNOWN_LENGTH),
        (10**9, 1 + sources._FAILED_READS_MAX),  # a broken header's frame count
        (50, 50 + sources._FAILED_READS_MARGIN),
    ],
    ids=["unknown length", "absurd length", "known length"],
)
def test_reading_past_damage_is_bounded(frame_count, reads):
    _, _, messages, cap = read_script([0.0], 25.0, frame_count)  # one frame, then reads fail for ever
    assert cap.reads == reads and cap.released
    assert messages == (
        [] if frame_count is None else [f"video v.mp4 ended at frame 1 of {frame_count} (truncated or corrupt)"]
    )


def _h264_clip(path: Path, n_frames: int, gop: int) -> None:
    """A plain (unfragmented) H.264 MP4 of rendered eyes, a keyframe every `gop` frames, as cameras record."""
    import av

    from tools.synthetic import render_clip

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        for image, _truth in render_clip(n_frames, (320, 240), 25.0, seed=1):
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_a_damaged_h264_video_keeps_true_frame_positions_and_reports_the_skip(tmp_path):
    # The deepvog test below on a clip made here, so it runs without the development data.
    clip, damaged = tmp_path / "clip.mp4", tmp_path / "damaged.mp4"
    _h264_clip(clip, 300, gop=100)
    damaged.write_bytes(clip.read_bytes())
    zero_middle_of_mdat(damaged, 20_000)

    def digest(frame: Frame) -> str:
        return hashlib.sha1(frame.image.tobytes()).hexdigest()

    with open_source(str(clip)) as src:
        clean = {f.index: digest(f) for f in src}
    skipped: list[str] = []
    with open_source(str(damaged), on_skip=skipped.append) as src:
        frames = [(f.index, digest(f)) for f in src]
    assert len(clean) == 300 and skipped, "the damage must make frames undecodable"
    assert len(frames) + sum(map(skipped_count, skipped)) == 300 and frames[-1][0] == 299
    # Frames after the next keyframe past the damage are bit-identical to the clean clip's at the same index.
    first = min(int(re.fullmatch(r".*: frames (\d+)-\d+ could.*", m).group(1)) for m in skipped)
    next_keyframe = (first // 100 + 1) * 100
    assert next_keyframe < 300
    assert all(clean[i] == d for i, d in frames if i >= next_keyframe or i < first)


@pytest.mark.data
@pytest.mark.skipif(not DEMO_VIDEO.exists(), reason="development data not present")
def test_damaged_demo_video_frames_keep_their_true_positions(tmp_path):
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(DEMO_VIDEO.read_bytes())
    zero_middle_of_mdat(damaged, 30_000)  # about 35 frames of H.264 after frame 657 of 1112

    def digest(frame: Frame) -> str:
        return hashlib.sha1(frame.image.tobytes()).hexdigest()

    with open_source(str(DEMO_VIDEO)) as src:
        clean = {f.index: digest(f) for f in src}
    skipped: list[str] = []
    with open_source(str(damaged), on_skip=skipped.append) as src:
        frames = [(f.index, digest(f)) for f in src]
    (message,) = skipped
    first, last = map(int, re.fullmatch(r".*: frames (\d+)-(\d+) could not be decoded; skipped \d+", message).groups())
    assert len(frames) + skipped_count(message) == 1112 and frames[-1][0] == 1111
    assert len(frames) > 1050  # OpenCV decodes 1081 (one out of order); reading used to stop at 657
    # Keyframes every 250 frames: frames predicted from damaged ones differ until frame 750; every other
    # frame is bit-identical to the clean video's frame at the same index.
    next_keyframe = 750
    assert first < last < next_keyframe
    assert all(clean[i] == d for i, d in frames if not first <= i < next_keyframe)


def test_an_h264_video_header_gives_its_frame_count_fps_and_first_indices(tmp_path):
    # The demo-video test below on a clip made here, so it runs without the development data.
    clip = tmp_path / "clip.mp4"
    _h264_clip(clip, 40, gop=20)
    with open_source(str(clip)) as src:
        first = [next(src) for _ in range(5)]
    assert src.frame_count == 40 and src.fps == 25.0
    assert [f.index for f in first] == list(range(5))


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
    assert src.failure == "camera 0 lost; gave up after 0.5 s"
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
    assert src.failure is None  # the consumer ended it: not a failure


class HungCapture(FakeCapture):
    """`frames` good reads, then a read() that blocks (a hung driver) until `unblock` is set."""

    def __init__(self, frames: int) -> None:
        super().__init__(frames)
        self.unblock = threading.Event()

    def read(self):
        if self.left == 0:
            self.unblock.wait(timeout=5.0)
            return False, None
        return super().read()


def test_stalled_camera_is_a_failure(monkeypatch):
    monkeypatch.setattr(sources, "STALL_GRACE_S", 0.2)
    session = HungCapture(2)
    messages: list[str] = []

    def on_skip(message: str) -> None:
        messages.append(message)
        session.unblock.set()  # the source gave up: let the hung read return so its thread can end

    options = CameraOptions(reconnect_timeout_s=0.1)
    with open_source("0", camera=options, on_skip=on_skip, open_capture=FakeCamera(session)) as src:
        frames = list(src)
    assert frames and frames[-1].index == 1
    assert src.failure is not None and src.failure.startswith("camera 0 stopped responding (no frame for ")
    assert src.failure.endswith(" s); gave up") and messages == [src.failure]


@pytest.mark.parametrize("kind", ["video", "folder", "realtime video"])
def test_recorded_media_that_ends_is_no_failure(tmp_path, kind):
    spec = write_video(tmp_path / "clip.mp4", n=5) if kind != "folder" else tmp_path
    if kind == "folder":
        write_images(tmp_path, ["a.png", "b.png"])
    with open_source(str(spec), realtime=kind == "realtime video") as src:
        assert list(src)
    assert src.failure is None


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


def test_a_replay_decodes_each_frame_at_its_capture_moment_not_while_the_last_one_is_processed():
    period_s, decoded_at = 0.05, []

    def frames():
        for i in range(8):
            decoded_at.append(time.perf_counter())  # the decode of frame i happens on this call
            yield Frame(np.zeros((4, 4), np.uint8), i, i * period_s)

    with sources.Source(
        frames(), name="replay", fps=20.0, frame_count=None, is_live=True, on_skip=None, pace=True
    ) as src:
        got = [f.index for f in src]
    assert got == list(range(8))
    start = decoded_at[0]  # the replay's clock starts at the first frame
    for i in range(2, 8):  # from the third frame on, the capture moment is known from the frame interval
        assert decoded_at[i] >= start + i * period_s - 0.005, (i, decoded_at[i] - start)


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
