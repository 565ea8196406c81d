"""Label sets for fine-tuning: images/ + ellipses.csv, the layout `iristrack eval` and the trainer read.

A label set is a folder holding ``images/`` (each image stored losslessly) and ``ellipses.csv`` (LABEL_COLUMNS:
``image`` a path relative to the CSV, the iris and pupil ellipses in pixels of that image, ``subject``,
``eye``). Blank ellipse cells mean "not labelled": the boundary is absent or was not trusted, and is not
scored. Two writers fill one: `LabelSink` (the trusted frames of a run, `iristrack run --save-labels`) and
`tools.annotations` (annotation-tool exports). Both write each image whole before its row, and each row in
one flushed write, so a set cut short by a crash, a signal or a full disk is still a valid set.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import cv2

from tracker.errors import TrackerError
from tracker.io.sinks import ClosingSink, LineFile
from tracker.structures import Boundary, Ellipse, Frame, FrameResult

_ELLIPSE_KEYS = ("cx", "cy", "semi_major", "semi_minor", "angle_deg")
LABEL_COLUMNS = (
    "image",
    *(f"iris_{k}" for k in _ELLIPSE_KEYS),
    *(f"pupil_{k}" for k in _ELLIPSE_KEYS),
    "subject",
    "eye",
)
LABELS_CSV = "ellipses.csv"
IMAGES_DIR = "images"


def ellipse_cells(e: Ellipse | None) -> list[float | None]:
    """The five ellipse cells, rounded as the JSONL rounds them (1/1000 px, 0.01 deg); blanks for None."""
    if e is None:
        return [None] * len(_ELLIPSE_KEYS)
    cells = [round(e.cx, 3), round(e.cy, 3), round(e.semi_major, 3), round(e.semi_minor, 3), round(e.angle_deg, 2)]
    return cells if all(math.isfinite(c) for c in cells) else [None] * len(_ELLIPSE_KEYS)


def safe_stem(name: str) -> str:
    """A file-name part from a source name: `rtsp://cam/live` -> `live`, anything odd -> `_`, never empty."""
    stem = Path(name.rstrip("/\\")).stem if name else ""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "frame"


def check_labels_folder(folder: str | Path, source_folders: Iterable[str | Path] = ()) -> None:
    """Refuse, before anything is opened, a label folder that holds anything or lies in a source folder.

    TrackerError when `folder` is a file, a folder that is not empty (an earlier set is never overwritten or
    mixed with), or equal to or inside one of `source_folders` (its images would become input of a later run).
    """
    path = Path(folder).expanduser()
    real = os.path.realpath(path)
    for source in source_folders:
        src = os.path.realpath(Path(source).expanduser())
        if real == src or real.startswith(src.rstrip(os.sep) + os.sep):
            raise TrackerError(
                f"label folder {folder} is inside the source folder {source}; its images would become input: "
                "choose a folder outside it"
            )
    if path.exists() and not path.is_dir():
        raise TrackerError(f"label folder {folder} is a file: give a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        held = LABELS_CSV if (path / LABELS_CSV).exists() else "files"
        raise TrackerError(
            f"label folder {folder} already holds {held}; a label set is never overwritten: give a new or empty folder"
        )


class LabelSetWriter:
    """Appends (image file, ellipses) entries to FOLDER/images/ and FOLDER/ellipses.csv; never overwrites.

    Each image file is created exclusively and written whole before its row; each row is one flushed write
    (LineFile). A failed image write removes its partial file and raises TrackerError naming the path.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.images = self.folder / IMAGES_DIR
        try:
            self.images.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackerError(f"cannot write labels to {self.images}: {exc.strerror or exc}") from exc
        if any(self.images.iterdir()):
            raise TrackerError(f"{self.images} already holds images; give a new or empty label folder")
        self._csv = LineFile(self.folder / LABELS_CSV, exclusive=True)
        self.path = self._csv.path
        self.rows = 0
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self._write_row(LABEL_COLUMNS)

    def add(
        self,
        name: str,
        data: bytes,
        iris: Ellipse | None,
        pupil: Ellipse | None,
        subject: str | None = None,
        eye: str | None = None,
    ) -> Path:
        """Write `data` (an encoded image file) as images/NAME, then its row; returns the image path."""
        image = self.images / name
        try:
            file = open(image, "xb")  # noqa: SIM115 (exclusive: an entry of this set is never replaced)
        except OSError as exc:
            raise TrackerError(f"cannot write labels to {image}: {exc.strerror or exc}") from None
        try:
            with file:
                file.write(data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                image.unlink()  # a cut-off image has no row; leave no half file behind either
            raise TrackerError(f"cannot write labels to {image}: {exc.strerror or exc}") from None
        try:
            self._write_row(
                [f"{IMAGES_DIR}/{name}", *ellipse_cells(iris), *ellipse_cells(pupil), subject or "", eye or ""]
            )
        except TrackerError:
            with contextlib.suppress(OSError):
                image.unlink()  # its row never made it: the set stays exactly its rows
            raise
        self.rows += 1
        return image

    def _write_row(self, row) -> None:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(row)  # csv writes None as an empty cell
        self._csv.write_line(self._buffer.getvalue().encode("utf-8"))

    def close(self) -> None:
        """Close the CSV; safe to call twice."""
        self._csv.close()


def _trusted(b: Boundary | None) -> Ellipse | None:
    return b.ellipse if b is not None and b.trusted else None


class LabelSink(ClosingSink):
    """The frames of a run with a trusted boundary, as a label set: images/<stem>_<frame:06d>.png + ellipses.csv.

    Ellipses are the run's own (the JSONL's values), in pixels of the original frame, which is stored as a
    lossless PNG. By default only frames with both boundaries trusted (status ok) are kept; `partial` also
    keeps frames with one trusted boundary and leaves the other blank (a trainer that reads blank as "absent"
    would learn that a visible but untrusted pupil has no edge). At most one frame per `every_frames` frame
    indices is kept, so a video gives varied frames instead of runs of near-duplicates. The subject is the
    source's stem (one recording, one subject: a split by subject keeps its near-duplicates together).
    """

    def __init__(self, folder: str | Path, every_frames: int = 1, partial: bool = False) -> None:
        if every_frames < 1:
            raise TrackerError(f"every_frames must be at least 1, got {every_frames}")
        self._set = LabelSetWriter(folder)
        self.folder, self.path = self._set.folder, self._set.path
        self.every_frames, self.partial = every_frames, partial
        self.trusted_frames = 0  # frames that qualify (both boundaries trusted, or one with `partial`), kept or not
        self._last_kept: int | None = None

    @property
    def rows(self) -> int:
        """Frames written to the set."""
        return self._set.rows

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Keep the frame if it qualifies (see the class) and is `every_frames` past the last kept one."""
        iris, pupil = _trusted(result.iris), _trusted(result.pupil)
        wanted = (iris is not None or pupil is not None) if self.partial else (iris is not None and pupil is not None)
        if frame is None or frame.image is None or not wanted:
            return
        self.trusted_frames += 1
        index = int(result.frame_index)
        if self._last_kept is not None and index - self._last_kept < self.every_frames:
            return
        ok, png = cv2.imencode(".png", frame.image)
        if not ok:
            raise TrackerError(f"cannot encode frame {index} of {result.source} as PNG for {self.folder}")
        stem = safe_stem(result.source or frame.source)
        self._set.add(f"{stem}_{index:06d}.png", png.tobytes(), iris, pupil, subject=stem)
        self._last_kept = index

    def close(self) -> None:
        """Close the CSV; safe to call twice."""
        self._set.close()
