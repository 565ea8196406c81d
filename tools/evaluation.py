"""Accuracy of iris/pupil ellipses against ground truth: dataset loading, per-image metrics, aggregation.

Three dataset layouts are read (all coordinates in pixels of the image handed to the predictor, x right, y down):

- ``images/`` + ``masks/``: masks with the same stem; ground truth fitted to the mask boundaries
  (:func:`tools.masks.boundaries_from_mask`, any convention it recognises).
- ``images/`` + ``ellipses.csv``: columns ``image, iris_cx, iris_cy, iris_semi_major, iris_semi_minor,
  iris_angle_deg, pupil_*`` (the same five); blank cells mean the boundary is absent and not scored.
- the development-set layout: ``index.csv`` (``dataset, image, mask, subject, ..., height, width,
  original_height, original_width``) with paths relative to its folder, or one dataset subfolder of it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import SourceError
from tracker.structures import Ellipse

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm", ".npy")
BOUNDARY_SAMPLES = 360  # ground-truth points for the boundary error (one per degree of parametric angle)
HIT_FRACTION = 0.05  # a detection is a hit when its centre is within 5% of the gt semi-major axis
IOU_GRID = 400  # samples per side of the intersection box: area error well below 0.5%
ELLIPSE_COLUMNS = ("cx", "cy", "semi_major", "semi_minor", "angle_deg")

Predictor = Callable[[np.ndarray], "tuple[Ellipse | None, Ellipse | None]"]


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One evaluation image: (H, W) or (H, W, 3) array and its ground-truth boundaries (None: not scored)."""

    name: str
    image: np.ndarray
    iris_gt: Ellipse | None
    pupil_gt: Ellipse | None


# ----------------------------------------------------------------------------------------------- metrics


def center_error_px(gt: Ellipse, pred: Ellipse) -> float:
    """Euclidean distance between the two centres, pixels."""
    return math.hypot(pred.cx - gt.cx, pred.cy - gt.cy)


def _closest_on_ellipse(e: Ellipse, xy: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N, 2) nearest points on ellipse `e` (frame pixels)."""
    c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
    d = xy - np.array([e.cx, e.cy])
    u = d[:, 0] * c + d[:, 1] * s  # along the major axis
    v = -d[:, 0] * s + d[:, 1] * c  # along the minor axis
    a, b = e.semi_major, max(e.semi_minor, 1e-9)
    pu, pv = np.abs(u), np.abs(v)
    # Fixed-point iteration on the evolute (Chatfield's method): robust in the first quadrant, including
    # points near the centre, and converges to ~1e-9 relative in a handful of steps.
    tx = np.full_like(pu, math.sqrt(0.5))
    ty = np.full_like(pu, math.sqrt(0.5))
    k = a * a - b * b
    for _ in range(12):
        ex = k * tx**3 / a
        ey = -k * ty**3 / b
        rx, ry = a * tx - ex, b * ty - ey
        qx, qy = pu - ex, pv - ey
        r = np.hypot(rx, ry)
        q = np.maximum(np.hypot(qx, qy), 1e-12)
        tx = np.clip((qx * r / q + ex) / a, 0.0, 1.0)
        ty = np.clip((qy * r / q + ey) / b, 0.0, 1.0)
        t = np.maximum(np.hypot(tx, ty), 1e-12)
        tx, ty = tx / t, ty / t
    cu = np.copysign(a * tx, u)
    cv = np.copysign(b * ty, v)
    return np.stack([e.cx + cu * c - cv * s, e.cy + cu * s + cv * c], axis=-1)


def point_to_ellipse_px(e: Ellipse, xy: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N,) Euclidean distance to the ellipse curve `e`, pixels."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.hypot(*(xy - _closest_on_ellipse(e, xy)).T)


def boundary_error_px(gt: Ellipse, pred: Ellipse) -> float:
    """Mean distance from 360 points evenly spaced in parametric angle on `gt` to the curve `pred`, pixels."""
    return float(point_to_ellipse_px(pred, gt.points(BOUNDARY_SAMPLES)).mean())


def _bbox(e: Ellipse) -> tuple[float, float, float, float]:
    """Axis-aligned bounding box (x0, y0, x1, y1) of the ellipse."""
    c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
    hw = math.hypot(e.semi_major * c, e.semi_minor * s)
    hh = math.hypot(e.semi_major * s, e.semi_minor * c)
    return e.cx - hw, e.cy - hh, e.cx + hw, e.cy + hh


def ellipse_iou(gt: Ellipse, pred: Ellipse) -> float:
    """Area of intersection / area of union of the two filled ellipses, in [0, 1]."""
    # Union = exact areas - intersection; only the intersection is sampled, on a fine grid over the overlap
    # of the two bounding boxes, so a huge or far-off prediction does not coarsen the grid.
    g, p = _bbox(gt), _bbox(pred)
    x0, y0, x1, y1 = max(g[0], p[0]), max(g[1], p[1]), min(g[2], p[2]), min(g[3], p[3])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    xs = x0 + (np.arange(IOU_GRID) + 0.5) * ((x1 - x0) / IOU_GRID)
    ys = y0 + (np.arange(IOU_GRID) + 0.5) * ((y1 - y0) / IOU_GRID)
    x, y = np.meshgrid(xs, ys)
    both = np.count_nonzero(gt.contains(x, y) & pred.contains(x, y))
    inter = both * (x1 - x0) * (y1 - y0) / IOU_GRID**2
    union = gt.area_px2 + pred.area_px2 - inter
    return float(inter / union) if union > 0 else 0.0


def is_hit(gt: Ellipse, pred: Ellipse | None) -> bool:
    """True when `pred` exists and its centre is within HIT_FRACTION * gt.semi_major of the gt centre."""
    return pred is not None and center_error_px(gt, pred) <= HIT_FRACTION * gt.semi_major


# ------------------------------------------------------------------------------------------- aggregation


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "mean": None, "p95": None}
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p95": float(np.percentile(a, 95))}


@dataclass(slots=True)
class BoundaryStats:
    """Running accuracy of one boundary (iris or pupil) over images that have its ground truth."""

    n: int = 0
    center_err_px: list[float] = field(default_factory=list)
    boundary_err_px: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    hits: int = 0

    def add(self, gt: Ellipse | None, pred: Ellipse | None) -> None:
        """Score one image; images without ground truth are not counted."""
        if gt is None:
            return
        self.n += 1
        if pred is None:
            return
        self.center_err_px.append(center_error_px(gt, pred))
        self.boundary_err_px.append(boundary_error_px(gt, pred))
        self.iou.append(ellipse_iou(gt, pred))
        self.hits += is_hit(gt, pred)

    def to_dict(self) -> dict:
        """{"n", "detected", "center_err_px", "boundary_err_px", "iou", "hit_rate"}; stats over detections."""
        return {
            "n": self.n,
            "detected": len(self.center_err_px),
            "center_err_px": _summary(self.center_err_px),
            "boundary_err_px": _summary(self.boundary_err_px),
            "iou": _summary(self.iou),
            "hit_rate": self.hits / self.n if self.n else None,
        }


def evaluate(items: Iterable[EvalItem], predict: Predictor) -> dict:
    """Run `predict(image) -> (iris, pupil)` on every item: {"images": N, "iris": {...}, "pupil": {...}}."""
    iris, pupil = BoundaryStats(), BoundaryStats()
    count = 0
    for item in items:
        pred_iris, pred_pupil = predict(item.image)
        iris.add(item.iris_gt, pred_iris)
        pupil.add(item.pupil_gt, pred_pupil)
        count += 1
    return {"images": count, "iris": iris.to_dict(), "pupil": pupil.to_dict()}


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def format_table(results: dict[str, dict]) -> str:
    """{method: evaluate() result} -> Markdown table, one row per method and boundary."""
    header = (
        "| method | boundary | n | detected % | centre median px | centre mean px | centre p95 px "
        "| boundary median px | IoU median | hit rate % |"
    )
    lines = [header, "|" + "---|" * 10]
    for method, result in results.items():
        for boundary in ("iris", "pupil"):
            b = result[boundary]
            detected = b["detected"] / b["n"] if b["n"] else None
            ce = b["center_err_px"]
            cells = [
                method,
                boundary,
                str(b["n"]),
                _fmt(detected, 100, 1),
                _fmt(ce["median"]),
                _fmt(ce["mean"]),
                _fmt(ce["p95"]),
                _fmt(b["boundary_err_px"]["median"]),
                _fmt(b["iou"]["median"], 1, 3),
                _fmt(b["hit_rate"], 100, 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- dataset


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError(f"cannot read image {path}: not an image file or unreadable")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _read_mask(path: Path) -> np.ndarray:
    mask = np.load(path) if path.suffix.lower() == ".npy" else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise SourceError(f"cannot read mask {path}: not an image file or unreadable")
    if mask.ndim == 3:
        mask = mask[:, :, 0] if mask.shape[2] == 1 else cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY)
    return mask


def _boundaries(mask: np.ndarray, path: Path) -> tuple[Ellipse | None, Ellipse | None]:
    from tools.masks import boundaries_from_mask

    try:
        found = boundaries_from_mask(mask, "auto")
    except ValueError as exc:
        raise SourceError(f"cannot read ground truth from mask {path}: {exc}") from exc
    return found.iris, found.pupil


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _mask_layout(root: Path, limit: int | None) -> Iterator[EvalItem]:
    images = _list_images(root / "images")
    if not images:
        raise SourceError(f"no images in {root / 'images'}: expected {', '.join(IMAGE_EXTENSIONS)} files")
    masks = {p.stem: p for p in sorted((root / "masks").iterdir()) if p.suffix.lower() in MASK_EXTENSIONS}
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise SourceError(
            f"{len(missing)} of {len(images)} images in {root / 'images'} have no mask of the same stem in "
            f"{root / 'masks'} (first: {missing[0]})"
        )
    for path in images[:limit]:
        image, mask = _read_image(path), _read_mask(masks[path.stem])
        if mask.shape[:2] != image.shape[:2]:
            raise SourceError(
                f"mask {masks[path.stem]} is {mask.shape[1]}x{mask.shape[0]} but image {path} is "
                f"{image.shape[1]}x{image.shape[0]}: masks must match their images"
            )
        iris, pupil = _boundaries(mask, masks[path.stem])
        yield EvalItem(path.name, image, iris, pupil)


def _csv_ellipse(row: dict[str, str], prefix: str, where: str) -> Ellipse | None:
    cells = [(row.get(f"{prefix}_{c}") or "").strip() for c in ELLIPSE_COLUMNS]
    if not any(cells):
        return None
    try:
        cx, cy, a, b, angle_deg = (float(c) for c in cells)
    except ValueError as exc:
        raise SourceError(
            f"{where}: {prefix} needs all of {', '.join(ELLIPSE_COLUMNS)} as numbers or all blank"
        ) from exc
    return Ellipse(cx, cy, a, b, math.radians(angle_deg))


def _ellipse_layout(root: Path, limit: int | None) -> Iterator[EvalItem]:
    csv_path = root / "ellipses.csv"
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        required = ["image"] + [f"{p}_{c}" for p in ("iris", "pupil") for c in ELLIPSE_COLUMNS]
        absent = [c for c in required if c not in (reader.fieldnames or [])]
        if absent:
            raise SourceError(f"{csv_path} lacks columns {', '.join(absent)}")
        rows = list(reader)
    if not rows:
        raise SourceError(f"{csv_path} has no rows: expected one row per image")
    for i, row in enumerate(rows[:limit]):
        where = f"{csv_path} row {i + 2}"
        path = root / "images" / row["image"]
        if not path.is_file():
            raise SourceError(f"{where}: image {path} does not exist")
        iris, pupil = _csv_ellipse(row, "iris", where), _csv_ellipse(row, "pupil", where)
        yield EvalItem(row["image"], _read_image(path), iris, pupil)


def _index_layout(
    root: Path,
    prefix: str | None,
    split_subjects: set[str] | None,
    original_size: bool,
    limit: int | None,
) -> Iterator[EvalItem]:
    index = root / "index.csv"
    with index.open(newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in ("image", "mask", "subject") if c not in (reader.fieldnames or [])]
        if absent:
            raise SourceError(f"{index} lacks columns {', '.join(absent)}")
        rows = list(reader)
    if prefix is not None:
        rows = [r for r in rows if r["image"].startswith(prefix + "/")]
    if split_subjects is not None:
        rows = [r for r in rows if r["subject"] in split_subjects]
    if not rows:
        where = f" under {prefix}/" if prefix else ""
        raise SourceError(f"{index} lists no images{where} for the requested subjects")
    for row in rows[:limit]:
        image_path, mask_path = root / row["image"], root / row["mask"]
        if not image_path.is_file() or not mask_path.is_file():
            raise SourceError(f"{index} lists {row['image']} / {row['mask']}, which do not both exist")
        image, mask = _read_image(image_path), _read_mask(mask_path)
        iris, pupil = _boundaries(mask, mask_path)
        if original_size and row.get("original_width") and row.get("original_height"):
            # Undo the squash: fit on the stored mask, then map the ellipse exactly with the same pixel-centre
            # convention as cv2.resize (x_out + 0.5 = sx * (x_in + 0.5)).
            w, h = int(row["original_width"]), int(row["original_height"])
            sx, sy = w / image.shape[1], h / image.shape[0]
            m = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
            iris = iris.affine(m) if iris is not None else None
            pupil = pupil.affine(m) if pupil is not None else None
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        yield EvalItem(row["image"], image, iris, pupil)


def load_eval_set(
    data_dir: str | Path,
    *,
    split_subjects: set[str] | None = None,
    original_size: bool = True,
    limit: int | None = None,
) -> Iterator[EvalItem]:
    """Ground-truth images from any supported layout (see module docstring), read lazily in a stable order.

    `split_subjects` and `original_size` apply to the index.csv layout only. Raises SourceError at the call
    when `data_dir` is not a readable dataset.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise SourceError(f"dataset folder {root} does not exist")
    if (root / "index.csv").is_file():
        items = _index_layout(root, None, split_subjects, original_size, limit)
    elif (root.parent / "index.csv").is_file() and not (root / "ellipses.csv").is_file():
        items = _index_layout(root.parent, root.name, split_subjects, original_size, limit)
    elif not (root / "images").is_dir():
        raise SourceError(f"{root} has no images/ folder or index.csv: expected images/ + masks/ or ellipses.csv")
    elif (root / "ellipses.csv").is_file():
        items = _ellipse_layout(root, limit)
    elif (root / "masks").is_dir():
        items = _mask_layout(root, limit)
    else:
        raise SourceError(f"{root} has images/ but neither masks/ nor ellipses.csv to score against")
    # Validate the layout now (a bad folder fails at the call, not at the first next()), then stream the rest.
    return _prime(items)


def _prime(items: Iterator[EvalItem]) -> Iterator[EvalItem]:
    try:
        first = next(items)
    except StopIteration:
        return iter(())
    return _chain(first, items)


def _chain(first: EvalItem, rest: Iterator[EvalItem]) -> Iterator[EvalItem]:
    yield first
    yield from rest
