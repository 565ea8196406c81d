"""Overlay video: plays after a normal close, a SIGKILL, an unhandled SIGHUP and a full disk; errors in one line."""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.paths import REPO
from tracker.errors import TrackerError
from tracker.io import video
from tracker.io.video import VideoSink
from tracker.structures import Frame, FrameResult, Status

FPS = 25.0
SIZE_WH = (96, 64)
LEVEL_TOL = 8  # grey levels: H.264/MPEG-4 at their default quality keep a flat frame's median within a few levels


def _can_encode(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        return False
    return True


# Written out (not video.VIDEO_CODECS) so that these tests also collect, and fail one by one, on other code.
AVAILABLE_CODECS = [c for c in ("libx264", "libopenh264", "mpeg4") if _can_encode(c)]


def level(i: int) -> int:
    """Grey level of frame i: consecutive frames differ by at least 37, so a swapped or missing frame shows."""
    return 30 + (37 * i) % 190


def frame_pair(i: int, size_wh: tuple[int, int] = SIZE_WH) -> tuple[Frame, FrameResult]:
    image = np.full(size_wh[::-1], level(i), np.uint8)
    return Frame(image, i, i / FPS, "clip.mp4"), FrameResult("clip.mp4", i, i / FPS, None, None, Status.NO_IRIS, 1.0)


def decoded_levels(path: Path) -> list[int]:
    """Median grey level of every frame OpenCV decodes; PyAV must decode the same number."""
    cap = cv2.VideoCapture(str(path))
    levels = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        levels.append(int(np.median(img)))
    cap.release()
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(levels)
    return levels


def assert_frames_in_order(levels: list[int]) -> None:
    expected = [level(i) for i in range(len(levels))]
    assert np.all(np.abs(np.array(levels) - np.array(expected)) <= LEVEL_TOL), (levels, expected)


@pytest.mark.parametrize("fps", [25.0, 29.97, 60.0])
def test_normal_close_holds_every_frame_at_its_size_and_fps(tmp_path, fps):
    path, n = tmp_path / "sub" / "overlay.mp4", 12
    with VideoSink(path, fps=fps) as sink:
        assert not path.exists()  # opened lazily on the first frame
        for i in range(n):
            sink.write(*frame_pair(i))
        assert sink.frames_written == n
    sink.close()  # idempotent
    levels = decoded_levels(path)
    assert len(levels) == n
    assert_frames_in_order(levels)
    cap = cv2.VideoCapture(str(path))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == SIZE_WH
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, rel=1e-3)
    cap.release()
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"  # what browsers play


def test_later_sizes_are_resized_to_the_first_and_odd_sizes_padded(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoSink(path, fps=FPS) as sink:
        sink.write(*frame_pair(0, (65, 49)))
        sink.write(*frame_pair(1, (130, 98)))
    cap = cv2.VideoCapture(str(path))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (66, 50)  # 4:2:0: even
    cap.release()
    assert_frames_in_order(decoded_levels(path))


@pytest.mark.parametrize("codec", AVAILABLE_CODECS)
def test_every_available_encoder_writes_a_playable_file(tmp_path, monkeypatch, codec):
    monkeypatch.setattr(video, "VIDEO_CODECS", (codec,))
    path = tmp_path / f"{codec}.mp4"
    with VideoSink(path, fps=FPS) as sink:
        for i in range(10):
            sink.write(*frame_pair(i))
    levels = decoded_levels(path)
    assert len(levels) == 10
    assert_frames_in_order(levels)


def test_without_h264_falls_back_to_mpeg4_and_says_so_in_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(video, "VIDEO_CODECS", ("no-such-encoder", "mpeg4"))
    path = tmp_path / "fallback.mp4"
    with caplog.at_level(logging.WARNING, logger=video.__name__), VideoSink(path, fps=FPS) as sink:
        for i in range(3):
            sink.write(*frame_pair(i))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "\n" not in message and "mpeg4" in message and "not in browsers" in message and str(path) in message
    assert len(decoded_levels(path)) == 3


WRITE_UNTIL_KILLED = """
import signal, sys
sys.path.insert(0, {repo!r})
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # unhandled, even under nohup
from tests.tracker.test_video import FPS, frame_pair
from tracker.io import video
video.VIDEO_CODECS = ({codec!r},)
sink = video.VideoSink({path!r}, fps=FPS)
for i in range(100_000):
    sink.write(*frame_pair(i))
    print(i + 1, flush=True)
"""


@pytest.mark.parametrize("codec", AVAILABLE_CODECS)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_killed_mid_write_the_file_plays_up_to_the_last_frame(tmp_path, signum, codec):
    path = tmp_path / "killed.mp4"
    script = WRITE_UNTIL_KILLED.format(repo=str(REPO), path=str(path), codec=codec)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        written = 0
        while written < 40:  # let it run, then kill it while it writes
            line = proc.stdout.readline()
            assert line, "the writer ended before the signal"
            written = int(line)
        os.kill(proc.pid, signum)
        written = int(([str(written)] + proc.stdout.read().split())[-1])  # write() calls that returned
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signum
    levels = decoded_levels(path)
    # The muxer holds the newest frame until the next one tells its duration: at most that one is lost.
    assert written - 1 <= len(levels) <= written + 1
    assert_frames_in_order(levels)


WRITE_UNTIL_FULL = """
import resource, signal, sys
sys.path.insert(0, {repo!r})
from tests.tracker.test_video import FPS, frame_pair
from tracker.errors import TrackerError
from tracker.io.video import VideoSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
sink = VideoSink({path!r}, fps=FPS)
try:
    for i in range(2000):
        sink.write(*frame_pair(i))
except TrackerError as exc:
    print(sink.frames_written)
    print(exc)
    try:
        sink.write(*frame_pair(0))
    except TrackerError as again:
        print(again)
sink.close()  # the error was reported; closing does not raise it twice
print("closed")
"""


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_full_disk_is_one_line_and_the_partial_file_plays(tmp_path):
    path, limit = tmp_path / "full.mp4", 30_000
    script = WRITE_UNTIL_FULL.format(repo=str(REPO), path=str(path), limit=limit)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:] == [f"cannot write overlay video {path}: File too large"] * 2 + ["closed"], proc.stdout
    written = int(lines[0])
    assert path.stat().st_size <= limit and written > 20
    levels = decoded_levels(path)
    assert written - 2 <= len(levels) <= written  # the fragment cut by the limit may be lost
    assert_frames_in_order(levels)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_no_space_left_is_one_line_naming_the_path(tmp_path):
    path = tmp_path / "out.mp4"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    sink = VideoSink(path, fps=FPS)
    with pytest.raises(TrackerError) as info:
        for i in range(5):
            sink.write(*frame_pair(i))
    assert str(info.value) == f"cannot write overlay video {path}: No space left on device"
    sink.close()


@pytest.mark.parametrize(
    ("make_path", "reason"),
    [
        (lambda tmp: tmp / "a_folder", "Is a directory"),
        (lambda tmp: tmp / "a_file" / "out.mp4", "Not a directory"),
    ],
    ids=["path-is-a-folder", "parent-is-a-file"],
)
def test_unwritable_path_is_one_line_naming_the_path(tmp_path, make_path, reason):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    path = make_path(tmp_path)
    with pytest.raises(TrackerError) as info, VideoSink(path, fps=FPS) as sink:
        sink.write(*frame_pair(0))
    assert str(info.value) == f"cannot write overlay video {path}: {reason}"
