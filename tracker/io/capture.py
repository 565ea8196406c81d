"""Best-frame capture: keep the N best frames that pass a quality profile as lossless PNGs with a JSON record.

`CaptureSink` is a sink like the others (`write(frame, result)`), so `tracker.run.run` drives it from any source,
and a rig that drives its own camera calls `write` itself (it returns the frame's QualityReport). The folder holds
`<stem>_<frame:06d>.png` (the frame as it came, 8- or 16-bit) and `capture.json` (CAPTURE_RECORD): the source, the
profile, counts, and per kept frame its ellipses, every measure, the verdict and its times. Each image is written
whole (created exclusively) before the record names it; the record is replaced atomically (temp file, fsync,
rename), and an image that leaves the best N is deleted only after the record no longer lists it. A run cut short
by a crash, a signal or a full disk leaves a record that lists only complete images.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2

from tracker.errors import TrackerError
from tracker.io.labels import safe_stem
from tracker.io.sinks import ClosingSink, QualityAssessor, result_to_dict
from tracker.quality import Profile, QualityReport
from tracker.structures import Frame, FrameResult

CAPTURE_RECORD = "capture.json"
EYE_INDEX = 0  # one eye per frame: the tracker fits one iris and one pupil


def check_capture_folder(folder: str | Path, source_paths: Iterable[str | Path] = ()) -> None:
    """Refuse, before anything is opened, a --out that is a file, holds anything, or is or lies inside a source."""
    path = Path(folder).expanduser()
    real = os.path.realpath(path)
    for source in source_paths:
        src = os.path.realpath(Path(source).expanduser())
        if real == src or real.startswith(src.rstrip(os.sep) + os.sep):
            raise TrackerError(f"--out {folder} is or lies inside the source {source}: choose a folder outside it")
    if path.exists() and not path.is_dir():
        raise TrackerError(f"--out {folder} is a file: give a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        raise TrackerError(
            f"--out {folder} is not empty; a capture never overwrites or mixes: give a new or empty folder"
        )


@dataclass(frozen=True, slots=True)
class Kept:
    """One kept frame: its image file name, score and record entry."""

    image: str
    score: float
    entry: dict


class CaptureSink(ClosingSink):
    """Keeps the `best` highest-scoring frames that pass `profile` in `folder` (see the module docstring).

    `stop_when_full`: `wants_quit` turns true once `best` frames are kept (live capture ends there); off, a
    recorded file is read to its end and the best of all its frames are kept.
    """

    def __init__(
        self,
        folder: str | Path,
        best: int = 3,
        profile: Profile | None = None,
        source: str = "",
        stop_when_full: bool = True,
    ) -> None:
        if best < 1:
            raise TrackerError(f"--best must be at least 1, got {best}")
        check_capture_folder(folder)
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackerError(f"cannot write the capture to {self.folder}: {exc.strerror or exc}") from None
        self.path = self.folder / CAPTURE_RECORD
        self.best, self.source, self.stop_when_full = best, source, stop_when_full
        self.assess = QualityAssessor(profile)
        self.profile = self.assess.profile
        self.kept: list[Kept] = []
        self.frames_seen = self.frames_passed = 0
        self.failed_gates: Counter[str] = Counter()
        self.last_report: QualityReport | None = None
        self.started_unix_s = time.time()
        self._closed = False
        self._write_record()

    @property
    def full(self) -> bool:
        """True once `best` passing frames are kept."""
        return len(self.kept) >= self.best

    @property
    def wants_quit(self) -> bool:
        """The run loop stops on it: the capture is full and stops there."""
        return self.stop_when_full and self.full

    def write(self, frame: Frame | None, result: FrameResult) -> QualityReport:
        """Assess the frame; keep it (image first, then the record) when it passes and ranks among the best."""
        report = self.assess(frame, result)
        self.last_report = report
        self.frames_seen += 1
        self.failed_gates.update(report.failed)
        if not report.passed or frame is None or frame.image is None:
            return report
        self.frames_passed += 1
        if self.full and report.score <= self.kept[-1].score:
            return report
        name = f"{safe_stem(result.source or frame.source or self.source)}_{int(result.frame_index):06d}.png"
        self._write_image(name, frame)
        entry = {
            "image": name,
            "eye": EYE_INDEX,
            **result_to_dict(result),
            "captured_unix_s": round(time.time(), 6),
            "quality": report.to_dict(),
        }
        self.kept.append(Kept(name, report.score, entry))
        self.kept.sort(key=lambda k: -k.score)
        dropped = self.kept[self.best :]
        del self.kept[self.best :]
        self._write_record()
        for old in dropped:  # only now that the record no longer lists it
            with contextlib.suppress(OSError):
                (self.folder / old.image).unlink()
        return report

    def _write_image(self, name: str, frame: Frame) -> None:
        ok, png = cv2.imencode(".png", frame.image)
        if not ok:
            raise TrackerError(f"cannot encode frame {name} as PNG for {self.folder}")
        path = self.folder / name
        try:
            with open(path, "xb") as file:  # exclusive: a kept image is never replaced
                file.write(png.tobytes())
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                if path.exists():
                    path.unlink()  # no half image
            raise TrackerError(f"cannot write the capture image {path}: {exc.strerror or exc}") from None

    def record(self) -> dict:
        """The JSON record as it stands (CAPTURE_RECORD)."""
        return {
            "source": self.source,
            "best": self.best,
            "profile": self.profile.to_dict(),
            "started_unix_s": round(self.started_unix_s, 6),
            "updated_unix_s": round(time.time(), 6),
            "frames_seen": self.frames_seen,
            "frames_passed": self.frames_passed,
            "failed_gates": dict(self.failed_gates.most_common()),
            "frames": [k.entry for k in self.kept],
        }

    def _write_record(self) -> None:
        tmp = self.path.with_name(f".{CAPTURE_RECORD}.tmp")
        data = (json.dumps(self.record(), indent=1, allow_nan=False) + "\n").encode()
        try:
            with open(tmp, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)  # atomic: a reader sees the old record or the new one, never half
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise TrackerError(f"cannot write the capture record {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Write the final record and remove any image it does not list (a write cut short); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._write_record()
        listed = {k.image for k in self.kept} | {CAPTURE_RECORD}
        for path in self.folder.iterdir():
            if path.name not in listed and path.suffix == ".png":
                with contextlib.suppress(OSError):
                    path.unlink()


class CaptureWindow(ClosingSink):
    """The preview window of a capture: the overlay plus PASS, or FAIL and the failing gates, and kept/wanted."""

    def __init__(self, title: str = "iristrack capture") -> None:
        from tracker.io.window import open_window

        self._window = open_window(title)  # before the capture folder: a display that cannot open fails first
        self._capture: CaptureSink | None = None

    def attach(self, capture: CaptureSink) -> CaptureWindow:
        """Show this capture's verdicts and counts."""
        self._capture = capture
        return self

    @property
    def wants_quit(self) -> bool:
        """True once the user pressed q/Esc or closed the window."""
        return self._window.wants_quit

    def request_quit(self) -> None:
        """A stop signal arrived: let the window go."""
        self._window.request_quit()

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Show the frame with its verdict (the capture sink, written first, assessed it)."""
        if self._capture is None:
            raise TrackerError("CaptureWindow.write before attach(capture)")
        report = self._capture.last_report or self._capture.assess(frame, result)
        shown = capture_view(frame, result, report, len(self._capture.kept), self._capture.best)
        cv2.imshow(self._window.title, shown)
        self._window._poll(1)

    def close(self) -> None:
        """Close the window; safe to call twice."""
        self._window.close()


def capture_view(frame: Frame, result: FrameResult, report: QualityReport, kept: int, wanted: int):
    """(H, W, 3) uint8 BGR: the result's overlay with the quality verdict (what the capture window shows)."""
    from tracker.io.overlay import draw_overlay, draw_quality

    return draw_quality(draw_overlay(frame.image, result), report, kept, wanted)
