"""Annotation-tool exports -> a label set (images/ + ellipses.csv, `tracker.io.labels`) for eval and fine-tuning.

Two exports are read, with shapes labelled ``iris`` and ``pupil`` (case and surrounding spaces ignored; other
labels, such as eyelids, are counted and skipped):

- CVAT "CVAT for images 1.1" XML (``annotations.xml``): ``<image name width height>`` elements holding
  ``<ellipse label cx cy rx ry [rotation]>`` or ``<polygon label points="x0,y0;x1,y1;...">`` shapes.
- labelme JSON (one file per image, or a folder of them): ``shapes`` of ``shape_type`` ``circle`` (two points:
  the centre and a point on the circle) or ``polygon`` (an ellipse is fitted to its vertices), ``imagePath``
  relative to the JSON file, optionally the image itself in ``imageData``.

Image files are copied byte for byte (a JPEG stays the JPEG that was annotated). Mask folders (images/ +
masks/) need no converter: evaluation and training read them directly.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import SourceError
from tracker.io.labels import LabelSetWriter, check_labels_folder
from tracker.structures import Ellipse

FORMATS = ("cvat", "labelme")
BOUNDARIES = ("iris", "pupil")
MIN_POLYGON_POINTS = 5  # cv2.fitEllipse needs five points: an ellipse has five degrees of freedom


@dataclass(frozen=True, slots=True)
class Annotated:
    """One annotated image of an export: its name there, the ellipses (pixels of that image), where it was read.

    `image_data` holds the encoded image file when the export embeds it (labelme's imageData), else None.
    `size_wh` is the image size the export records, checked against the image file (None: not recorded).
    """

    name: str
    iris: Ellipse | None
    pupil: Ellipse | None
    where: str
    size_wh: tuple[int, int] | None = None
    image_data: bytes | None = None


@dataclass(slots=True)
class ImportReport:
    """What an import wrote and skipped."""

    written: int = 0
    without_eye: list[str] = field(default_factory=list)  # images with neither an iris nor a pupil shape
    other_labels: Counter = field(default_factory=Counter)  # shape labels that are not iris/pupil
    other_shapes: Counter = field(default_factory=Counter)  # iris/pupil shapes of a kind that is not read


# ------------------------------------------------------------------------------------------------ geometry


def ellipse_from_cvat(cx: float, cy: float, rx: float, ry: float, rotation_deg: float = 0.0) -> Ellipse:
    """A CVAT ellipse (centre, semi-axes along its own x and y before rotation, rotation in degrees) -> Ellipse.

    CVAT stores an ellipse as the points (cx, cy) and (cx + rx, cy - ry) plus `rotation` (its XML dumper,
    cvat/apps/dataset_manager/formats/cvat.py, writes rx = right x - cx and ry = cy - top y), and its canvas
    draws it as an SVG ellipse of size 2rx x 2ry turned by svg.js `rotate(rotation)` about its centre
    (cvat-canvas canvasView.ts). SVG rotates from +x towards +y, which in image pixels (y down) is clockwise
    on screen: the same sense as Ellipse.angle_rad and OpenCV's RotatedRect. So rx lies along angle
    `rotation` and ry along `rotation + 90`; Ellipse swaps them if ry is the longer one.
    """
    return Ellipse(cx, cy, rx, ry, math.radians(rotation_deg))


def ellipse_from_circle(centre_xy: Iterable[float], on_circle_xy: Iterable[float]) -> Ellipse:
    """A circle given by its centre and one point on it (labelme's `circle`) -> Ellipse."""
    (cx, cy), (x, y) = centre_xy, on_circle_xy
    return Ellipse.circle(cx, cy, math.hypot(x - cx, y - cy))


def ellipse_from_polygon(xy: np.ndarray, where: str) -> Ellipse:
    """The least-squares ellipse (cv2.fitEllipse) through the (N, 2) vertices of a traced boundary."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < MIN_POLYGON_POINTS:
        raise SourceError(
            f"{where}: a polygon needs at least {MIN_POLYGON_POINTS} points to fit an ellipse, got {len(xy)}"
        )
    # Fit around the centroid: fitEllipse works in float32, and small coordinates keep its precision.
    centre = xy.mean(axis=0)
    (cx, cy), axes, angle_deg = cv2.fitEllipse((xy - centre).astype(np.float32))
    if not all(math.isfinite(v) and v > 0 for v in axes):
        raise SourceError(f"{where}: the polygon's points do not outline an ellipse (collinear or repeated)")
    return Ellipse.from_cv2(((cx + centre[0], cy + centre[1]), axes, angle_deg))


# ----------------------------------------------------------------------------------------------- readers


def _number(element: ET.Element, key: str, where: str, default: float | None = None) -> float:
    text = element.get(key)
    if text is None and default is not None:
        return default
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SourceError(f"{where}: attribute {key}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise SourceError(f"{where}: attribute {key}={text!r} is not a finite number")
    return value


def _cvat_points(text: str | None, where: str) -> np.ndarray:
    try:
        return np.array([[float(v) for v in p.split(",")] for p in (text or "").split(";") if p.strip()])
    except ValueError:
        raise SourceError(f"{where}: points {text!r} are not 'x0,y0;x1,y1;...'") from None


def _assign(found: dict[str, Ellipse], label: str, ellipse: Ellipse, where: str) -> None:
    if label in found:
        raise SourceError(f"{where}: two {label} shapes on one image; keep one (the export is ambiguous)")
    found[label] = ellipse


def read_cvat(path: str | Path, report: ImportReport | None = None) -> list[Annotated]:
    """Parse a "CVAT for images 1.1" annotations.xml into one Annotated per <image> (SourceError if it is not)."""
    path = Path(path)
    report = report if report is not None else ImportReport()
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ET.ParseError as exc:
        raise SourceError(f"{path} is not XML: {exc}") from None
    images = root.findall("image")
    if root.tag != "annotations" or not images:
        found = "tracks (a 'CVAT for video' export)" if root.find("track") is not None else "no <image> elements"
        raise SourceError(f"{path}: expected a 'CVAT for images 1.1' export (<annotations><image ...>), found {found}")
    out = []
    for element in images:
        name = element.get("name") or ""
        where = f"{path} image {name!r}"
        if not name:
            raise SourceError(f"{path}: an <image> without a name attribute")
        found: dict[str, Ellipse] = {}
        for shape in element:
            label = (shape.get("label") or "").strip().lower()
            if shape.tag not in ("ellipse", "polygon", "box", "polyline", "points", "mask", "cuboid", "skeleton"):
                continue  # <tag> and other image-level elements carry no geometry
            if label not in BOUNDARIES:
                report.other_labels[label or "(none)"] += 1
            elif shape.tag == "ellipse":
                e = ellipse_from_cvat(
                    _number(shape, "cx", where),
                    _number(shape, "cy", where),
                    _number(shape, "rx", where),
                    _number(shape, "ry", where),
                    _number(shape, "rotation", where, default=0.0),  # omitted by CVAT when 0
                )
                _assign(found, label, e, where)
            elif shape.tag == "polygon":
                _assign(found, label, ellipse_from_polygon(_cvat_points(shape.get("points"), where), where), where)
            else:
                report.other_shapes[shape.tag] += 1
        size = None
        if element.get("width") and element.get("height"):
            size = (int(_number(element, "width", where)), int(_number(element, "height", where)))
        out.append(Annotated(name, found.get("iris"), found.get("pupil"), where, size))
    return out


def _labelme_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if not p.name.startswith("."))
        if not files:
            raise SourceError(f"{path} holds no labelme .json files")
        return files
    if not path.is_file():
        raise SourceError(f"annotation file {path} does not exist")
    return [path]


def read_labelme(path: str | Path, report: ImportReport | None = None) -> list[Annotated]:
    """Parse a labelme JSON file, or every .json under a folder, into one Annotated per file.

    The name is `imagePath` relative to the JSON's folder (how labelme stores it).
    """
    report = report if report is not None else ImportReport()
    out = []
    for file in _labelme_files(Path(path)):
        where = str(file)
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SourceError(f"cannot read {file}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(f"{file} is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list) or not doc.get("imagePath"):
            raise SourceError(f"{file}: expected a labelme file (an object with 'shapes' and 'imagePath')")
        found: dict[str, Ellipse] = {}
        for i, shape in enumerate(doc["shapes"]):
            label = str(shape.get("label") or "").strip().lower()
            kind = shape.get("shape_type") or "polygon"  # labelme's default shape
            at = f"{file} shape {i} ({label or 'no label'})"
            if label not in BOUNDARIES:
                report.other_labels[label or "(none)"] += 1
                continue
            try:
                points = np.asarray(shape.get("points"), dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError):
                raise SourceError(f"{at}: points must be [[x, y], ...]") from None
            if not np.isfinite(points).all():
                raise SourceError(f"{at}: points must be finite numbers")
            if kind == "circle":
                if len(points) != 2:
                    raise SourceError(f"{at}: a circle has two points (centre, a point on it), got {len(points)}")
                _assign(found, label, ellipse_from_circle(points[0], points[1]), at)
            elif kind == "polygon":
                _assign(found, label, ellipse_from_polygon(points, at), at)
            else:
                report.other_shapes[kind] += 1
        size = None
        if doc.get("imageWidth") and doc.get("imageHeight"):
            size = (int(doc["imageWidth"]), int(doc["imageHeight"]))
        data = None
        if doc.get("imageData"):
            try:
                data = base64.b64decode(doc["imageData"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise SourceError(f"{file}: imageData is not base64") from None
        # Relative to the JSON, as labelme writes it; a Windows export separates folders with backslashes.
        name = str(Path(file.parent, str(doc["imagePath"]).replace("\\", "/")))
        out.append(Annotated(name, found.get("iris"), found.get("pupil"), where, size, data))
    return out


# ------------------------------------------------------------------------------------------------ import


def _image_file(item: Annotated, images: Path | None, fmt: str) -> Path | None:
    """Where the annotated image is (None: only embedded in the export); SourceError naming every place looked."""
    name = Path(item.name)
    if fmt == "cvat":
        places = [images / name, images / name.name] if images is not None else [name]
    else:
        places = [name, *([images / name.name] if images is not None else [])]
    for place in places:
        if place.is_file():
            return place
    if item.image_data is not None:
        return None
    looked = " nor ".join(str(p) for p in places)
    raise SourceError(f"{item.where}: image {item.name!r} is neither {looked}; pass the images folder with --images")


def _read(place: Path | None, item: Annotated) -> bytes:
    if place is None:
        return item.image_data or b""
    try:
        return place.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {place}: {exc.strerror or exc}") from exc


def _flat_name(item: Annotated, fmt: str) -> str:
    """The image's name in the label set: CVAT's folders joined by '_' (s1/left.png -> s1_left.png)."""
    return "_".join(Path(item.name).parts) if fmt == "cvat" else Path(item.name).name


def _check_image(data: bytes, item: Annotated) -> None:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if image is None:
        raise SourceError(f"{item.where}: image {item.name!r} is not a decodable image ({len(data)} bytes)")
    h, w = image.shape[:2]
    if item.size_wh is not None and item.size_wh != (w, h):
        raise SourceError(
            f"{item.where}: the export says {item.size_wh[0]}x{item.size_wh[1]} pixels, the image file is {w}x{h}; "
            "its ellipses would be in another pixel frame (was the image resized after annotating?)"
        )


def import_annotations(
    fmt: str, annotations: str | Path, out: str | Path, images: str | Path | None = None
) -> ImportReport:
    """Convert an export (`fmt` in FORMATS) into the label set `out` (a new or empty folder); SourceError if bad.

    `images` is where the annotated image files are: for CVAT the folder its image names are relative to (the
    export's images/), for labelme an alternative to the paths beside the JSON files. Every image is read and
    checked (decodable, the size the export records) before the first file is written.
    """
    if fmt not in FORMATS:
        raise SourceError(f"unknown annotation format {fmt!r}: expected one of {', '.join(FORMATS)}")
    images_dir = Path(images).expanduser() if images is not None else None
    if images_dir is not None and not images_dir.is_dir():
        raise SourceError(f"images folder {images_dir} does not exist")
    if fmt == "cvat" and images_dir is None:  # an unpacked CVAT export: annotations.xml beside images/
        beside = Path(annotations).expanduser().parent
        images_dir = beside / "images" if (beside / "images").is_dir() else beside
    check_labels_folder(out, [images_dir] if images_dir is not None else [])
    report = ImportReport()
    items = (read_cvat if fmt == "cvat" else read_labelme)(Path(annotations).expanduser(), report)
    entries, names = [], {}
    for item in items:
        if item.iris is None and item.pupil is None:
            report.without_eye.append(item.name)
            continue
        place, flat = _image_file(item, images_dir, fmt), _flat_name(item, fmt)
        _check_image(_read(place, item), item)
        if flat in names:
            raise SourceError(f"{item.where}: two annotated images are named {flat} ({names[flat]} and {item.name})")
        names[flat] = item.name
        entries.append((flat, place, item))
    if not entries:
        raise SourceError(f"{annotations}: no image has an iris or pupil shape (labels must be 'iris' or 'pupil')")
    with contextlib.closing(LabelSetWriter(out)) as writer:
        for flat, place, item in entries:  # read again rather than hold every image in memory
            writer.add(flat, _read(place, item), item.iris, item.pupil)
            report.written += 1
    return report
