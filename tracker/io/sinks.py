"""Result records and files: JSONL and CSV sinks, and a fan-out to several sinks (video: video.py, window: window.py).

Every sink is a context manager with `write(frame, result)` and an idempotent `close()`. File sinks
write each frame's line in one call and flush it, so a crash or Ctrl-C loses nothing already processed.
Given a `QualityAssessor` (`iristrack run --quality`), the JSONL and CSV sinks also write each frame's quality
measures and gate verdict (tracker/quality.py); without one their records are unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from tracker.errors import TrackerError
from tracker.quality import MEASURE_NAMES, Profile, QualityReport, default_profile, quality_of
from tracker.structures import Boundary, EyeResult, Frame, FrameResult, SizeMm, Status

_BOUNDARY_KEYS = ("cx", "cy", "semi_major", "semi_minor", "angle_deg", "confidence", "trusted")
_SIZE_KEYS = ("pupil_diameter_mm", "pupil_diameter_sd_mm", "distance_mm", "distance_sd_mm")
_BOX_KEYS = ("cx", "cy", "width_px", "height_px", "angle_deg")
EYE_SIDES = ("right", "left")  # as the person sees it; CSV column order of a face run
CSV_COLUMNS = (
    "source",
    "frame",
    "timestamp_s",
    *(f"iris_{k}" for k in _BOUNDARY_KEYS),
    *(f"pupil_{k}" for k in _BOUNDARY_KEYS),
    "status",
    "latency_ms",
    *_SIZE_KEYS,
)
# A face run (--eyes face, or auto on a face): still one row per frame, each eye's values under its side's prefix
# (blank when that eye was not found), so a row stays one moment in time for plotting both eyes.
_EYE_KEYS = (
    "status",
    *(f"iris_{k}" for k in _BOUNDARY_KEYS),
    *(f"pupil_{k}" for k in _BOUNDARY_KEYS),
    *_SIZE_KEYS,
    *(f"box_{k}" for k in _BOX_KEYS),
)
FACE_CSV_COLUMNS = (
    "source",
    "frame",
    "timestamp_s",
    "status",
    "latency_ms",
    *(f"{side}_{k}" for side in EYE_SIDES for k in _EYE_KEYS),
)
_MAX_PENDING = 256  # unreadable frames held before an auto run's kind is known; then it is taken as close-ups
QUALITY_COLUMNS = (*(f"quality_{k}" for k in MEASURE_NAMES), "quality_pass", "quality_failed", "quality_score")


class QualityAssessor:
    """(frame, result) -> QualityReport under one profile, computed once per frame however many sinks ask."""

    def __init__(self, profile: Profile | None = None) -> None:
        self.profile = profile or default_profile()
        self._last: tuple[int, int, QualityReport] | None = None

    def __call__(self, frame: Frame | None, result: FrameResult) -> QualityReport:
        """The report of this frame (the cached one when the previous caller asked for the same pair)."""
        key = (id(frame), id(result))
        if self._last is None or self._last[:2] != key:
            image = frame.image if frame is not None else None
            self._last = (*key, quality_of(image, result, self.profile))
        return self._last[2]


class Sink(Protocol):
    """Anything that takes (frame, result) pairs and must be closed."""

    def write(self, frame: Frame, result: FrameResult) -> None: ...  # noqa: D102
    def close(self) -> None: ...  # noqa: D102


# --- results as records ----------------------------------------------------------------------------


def _num(x: float | None, ndigits: int) -> float | None:
    """Rounded float; None for None, NaN and inf, which JSON cannot carry."""
    if x is None:
        return None
    x = float(x)
    return round(x, ndigits) if math.isfinite(x) else None


def _boundary_dict(b: Boundary | None) -> dict | None:
    if b is None:
        return None
    e = b.ellipse
    return {
        "cx": _num(e.cx, 3),
        "cy": _num(e.cy, 3),
        "semi_major": _num(e.semi_major, 3),
        "semi_minor": _num(e.semi_minor, 3),
        "angle_deg": _num(e.angle_deg, 2),
        "confidence": _num(b.confidence, 4),
        "trusted": bool(b.trusted),
    }


def _sizes_dict(pupil_diameter: SizeMm | None, distance: SizeMm | None) -> dict:
    """Pupil diameter and distance in mm (1/1000 mm) with their SDs; None where not measured."""
    return {
        "pupil_diameter_mm": _num(pupil_diameter.value_mm, 3) if pupil_diameter else None,
        "pupil_diameter_sd_mm": _num(pupil_diameter.sd_mm, 3) if pupil_diameter else None,
        "distance_mm": _num(distance.value_mm, 1) if distance else None,
        "distance_sd_mm": _num(distance.sd_mm, 1) if distance else None,
    }


def _eye_dict(eye: EyeResult) -> dict:
    box = eye.box
    return {
        "side": eye.side,
        "status": Status(eye.status).value,
        "iris": _boundary_dict(eye.iris),
        "pupil": _boundary_dict(eye.pupil),
        **_sizes_dict(eye.pupil_diameter, eye.distance),
        "box": {
            "cx": _num(box.cx, 3),
            "cy": _num(box.cy, 3),
            "width_px": _num(box.width_px, 3),
            "height_px": _num(box.height_px, 3),
            "angle_deg": _num(math.degrees(box.angle_rad), 2),
        },
    }


def result_to_dict(r: FrameResult) -> dict:
    """FrameResult -> JSON-ready dict; pixels to 1/1000 px, angles 0.01 deg, timestamps 1 us, latency 1 us.

    A face frame also holds `eyes`: one object per eye found (`side`, `status`, `iris`, `pupil`, sizes, `box`).
    """
    record = {
        "source": r.source,
        "frame": int(r.frame_index),
        "timestamp_s": _num(r.timestamp_s, 6),
        "iris": _boundary_dict(r.iris),
        "pupil": _boundary_dict(r.pupil),
        "status": Status(r.status).value,
        "latency_ms": _num(r.latency_ms, 3),
        **_sizes_dict(r.pupil_diameter, r.distance),
    }
    if r.eyes is not None:
        record["eyes"] = [_eye_dict(eye) for eye in r.eyes]
    return record


def _boundary_cells(d: dict | None) -> list:
    return [d[k] if d else None for k in _BOUNDARY_KEYS]


def result_to_row(r: FrameResult) -> list:
    """FrameResult -> values in CSV_COLUMNS order (FACE_CSV_COLUMNS for a face frame); None where absent."""
    d = result_to_dict(r)
    if r.eyes is None:
        return [
            d["source"],
            d["frame"],
            d["timestamp_s"],
            *_boundary_cells(d["iris"]),
            *_boundary_cells(d["pupil"]),
            d["status"],
            d["latency_ms"],
            *(d[k] for k in _SIZE_KEYS),
        ]
    row = [d["source"], d["frame"], d["timestamp_s"], d["status"], d["latency_ms"]]
    by_side = {eye["side"]: eye for eye in d["eyes"]}
    for side in EYE_SIDES:
        eye = by_side.get(side)
        if eye is None:
            row.extend([None] * len(_EYE_KEYS))
            continue
        row.append(eye["status"])
        row.extend([*_boundary_cells(eye["iris"]), *_boundary_cells(eye["pupil"])])
        row.extend(eye[k] for k in _SIZE_KEYS)
        row.extend(eye["box"][k] for k in _BOX_KEYS)
    return row


def check_output_paths(outputs: dict[str, str | Path | None], inputs: Iterable[str | Path]) -> None:
    """Refuse, before anything is opened, an output that is an input or another output (TrackerError).

    `outputs` maps option names (`--out`) to paths; `inputs` are the files a run reads. Paths are compared
    after resolving symlinks, and by inode where both exist (hard links), so no alias slips through.
    """
    seen: dict[str, str] = {}
    protected = {_real(p): str(p) for p in inputs}
    for option, path in outputs.items():
        if not path:
            continue
        real = _real(path)
        hit = protected.get(real) or next((str(q) for q in protected.values() if _same_file(path, q)), None)
        if hit is not None:
            raise TrackerError(f"{option} {path} is the input {hit}; it would be overwritten: choose another path")
        if real in seen:
            raise TrackerError(f"{option} and {seen[real]} are the same file {path}: choose two paths")
        seen[real] = option


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _open_for_writing(path: str | Path, mode: str, **kwargs):
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, **kwargs)  # noqa: SIM115 (the sink owns the handle until close)
    except OSError as exc:
        raise TrackerError(f"cannot write results to {path}: {exc.strerror or exc}") from exc


class ClosingSink:
    """Context-manager plumbing shared by the sinks."""

    def close(self) -> None:  # noqa: D102
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LineFile:
    """A file of whole lines: each line goes to the OS in unbuffered writes as soon as it is given.

    A write that fails (full disk, quota, I/O error) is cut back to the last whole line, so the file always
    ends with a complete line, and reported as one TrackerError line.
    """

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        # exclusive: fail on a file that exists instead of emptying it (a label set is never overwritten).
        self._file = _open_for_writing(self.path, "xb" if exclusive else "wb", buffering=0)
        self._whole_bytes = 0  # length of the file up to its last complete line

    def write_line(self, line: bytes) -> None:
        """Append one line (ending in a newline); TrackerError, with the file cut back, if it cannot be written."""
        view = memoryview(line)
        try:
            while view:  # a raw write may be partial (a disk that is filling up); lines are short
                view = view[self._file.write(view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):  # a device such as /dev/full cannot be truncated: nothing to cut
                os.ftruncate(self._file.fileno(), self._whole_bytes)
                self._file.seek(self._whole_bytes)  # a caller that writes on must not leave a hole
            raise TrackerError(f"cannot write results to {self.path}: {exc.strerror or exc}") from None
        self._whole_bytes += len(line)

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._file.closed

    def close(self) -> None:
        """Close the file; safe to call twice."""
        self._file.close()


class JsonlSink(ClosingSink):
    """One JSON object per frame and line (see `result_to_dict`), each line written to the OS at once.

    With `quality`, each object also holds `quality`: the measures, `quality_pass`, `quality_failed`, `quality_score`.
    """

    def __init__(self, path: str | Path, quality: QualityAssessor | None = None) -> None:
        self._file = LineFile(path)
        self.path = self._file.path
        self._quality = quality

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        """Append `result` as one line."""
        record = result_to_dict(result)
        if self._quality is not None:
            record["quality"] = self._quality(frame, result).to_dict()
        self._file.write_line((json.dumps(record, allow_nan=False) + "\n").encode())

    def close(self) -> None:
        """Close the file; safe to call twice."""
        self._file.close()


class CsvSink(ClosingSink):
    """Flat CSV with CSV_COLUMNS (FACE_CSV_COLUMNS for a face run), blank cells for absent values, a row at a time.

    With `quality`, QUALITY_COLUMNS follow (blank where a measure is absent; failed gates joined by `;`).
    `faces`: True for a face run, False for close-ups, None when the run decides on its first frame
    (--eyes auto): the header is then written with the first row (or at close, for a run with no frame).
    """

    def __init__(self, path: str | Path, quality: QualityAssessor | None = None, faces: bool | None = False) -> None:
        self._file = LineFile(path)
        self.path = self._file.path
        self._quality = quality
        self._row = io.StringIO()  # one row is formatted here, then written whole
        self._writer = csv.writer(self._row)
        self._faces = faces
        self._pending: list[tuple[Frame | None, FrameResult]] = []
        if faces is not None:
            self._write_header(faces)

    def _write_header(self, faces: bool) -> None:
        """The header of this kind of run, then the rows held back until it was known."""
        columns = FACE_CSV_COLUMNS if faces else CSV_COLUMNS
        self._write_row(columns + (QUALITY_COLUMNS if self._quality is not None else ()))
        self._faces = faces
        pending, self._pending = self._pending, []
        for frame, result in pending:
            self._write_result(frame, replace(result, eyes=()) if faces else result)

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        """Append `result` as one row."""
        if self._faces is None:
            if result.status is Status.BAD_FRAME and result.eyes is None and len(self._pending) < _MAX_PENDING:
                # Unreadable frames before --eyes auto could decide say nothing about the kind: held, written
                # under the header the first readable frame chooses.
                self._pending.append((frame, result))
                return
            self._write_header(result.eyes is not None)
        if result.eyes is not None and not self._faces:
            raise TrackerError(f"cannot write a face frame to {self.path}: its columns are those of close-ups")
        if result.eyes is None and self._faces:
            result = replace(result, eyes=())  # an unreadable frame of a face run: a row with no eye
        self._write_result(frame, result)

    def _write_result(self, frame: Frame | None, result: FrameResult) -> None:
        row = result_to_row(result)
        if self._quality is not None:
            q = self._quality(frame, result).to_dict()
            row += [q[k] for k in MEASURE_NAMES] + [
                q["quality_pass"],
                ";".join(q["quality_failed"]),
                q["quality_score"],
            ]
        self._write_row(row)  # csv writes None as an empty cell

    def _write_row(self, row) -> None:
        self._row.seek(0)
        self._row.truncate()
        self._writer.writerow(row)
        self._file.write_line(self._row.getvalue().encode("utf-8"))

    def close(self) -> None:
        """Close the file (with a header, if no row gave it one); safe to call twice."""
        if self._faces is None and not self._file.closed:
            self._write_header(False)
        self._file.close()


# --- fan-out ---------------------------------------------------------------------------------------


class MultiSink(ClosingSink):
    """Writes each (frame, result) to every sink; closes them all (even if one fails), once."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)
        self._closed = False

    @property
    def wants_quit(self) -> bool:
        """True when any sink (a window) asks the run loop to stop."""
        return any(getattr(s, "wants_quit", False) for s in self.sinks)

    def request_quit(self) -> None:
        """Ask every sink that can block (a paused window) to let the run end."""
        for sink in self.sinks:
            if hasattr(sink, "request_quit"):
                sink.request_quit()

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Pass the pair to every sink in order."""
        for sink in self.sinks:
            sink.write(frame, result)

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise
            # The error that ended the run matters more than a close failure it may have caused.

    def close(self) -> None:
        """Close every sink; re-raise the first error after all were tried."""
        if self._closed:
            return
        self._closed = True
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:  # close the rest, then report
                first = first or exc
        if first is not None:
            raise first
