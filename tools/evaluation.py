"""Accuracy of iris/pupil ellipses against ground truth: dataset loading, per-image metrics, aggregation, splits.

Three dataset layouts are read (all coordinates in pixels of the image handed to the predictor, x right, y down):

- ``images/`` + ``labels/`` or ``masks/``: masks with the same stem; ground truth fitted to the mask boundaries
  (:func:`tools.masks.boundaries_from_mask`, any convention it recognises: gray or ``.npy`` class maps, and
  colour-class masks such as MOBIUS's). ``labels/`` is preferred when it holds masks: OpenEDS ships its
  0..3 class maps there and a binary eye mask, without the pupil, in ``masks/``.
- ``ellipses.csv``: columns ``image, iris_cx, iris_cy, iris_semi_major, iris_semi_minor, iris_angle_deg,
  pupil_*`` (the same five), optionally ``subject``; ``image`` is a file name inside ``images/`` or a path
  relative to the CSV (``images/x.png``); blank cells mean the boundary is absent and not scored.
- the development-set layout: ``index.csv`` (``dataset, image, mask, subject, ..., height, width,
  original_height, original_width``) with paths relative to its folder, or one dataset subfolder of it.

A model's split (its card, or its run's split.json) says which subjects it was trained on; `choose_split`
decides which of them `iristrack eval` scores.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import ModelError, SourceError, TrackerError
from tracker.fit.geometry import EXACT_FOOT_ITERATIONS, ellipse_distance_px
from tracker.io.images import ext_list, list_images, read_image
from tracker.preprocess import frame_to_model_affine
from tracker.structures import Ellipse

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm", ".npy")  # lossless only: a JPEG mask has no exact edge
BOUNDARY_SAMPLES = 360  # ground-truth points for the boundary error (one per degree of parametric angle)
HIT_FRACTION = 0.05  # a detection is a hit when its centre is within 5% of the gt semi-major axis
WITHIN_PX = 2.0  # "within 2 px": a detection whose centre is at most this far from the gt centre
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


def boundary_error_px(gt: Ellipse, pred: Ellipse) -> float:
    """Mean distance from 360 points evenly spaced in parametric angle on `gt` to the curve `pred`, pixels."""
    return float(ellipse_distance_px(pred, gt.points(BOUNDARY_SAMPLES), EXACT_FOOT_ITERATIONS).mean())


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
    within: int = 0  # detections with centre error <= WITHIN_PX

    def add(self, gt: Ellipse | None, pred: Ellipse | None) -> None:
        """Score one image; images without ground truth are not counted."""
        if gt is None:
            return
        self.n += 1
        if pred is None:
            return
        err = center_error_px(gt, pred)
        self.center_err_px.append(err)
        self.within += err <= WITHIN_PX
        self.boundary_err_px.append(boundary_error_px(gt, pred))
        self.iou.append(ellipse_iou(gt, pred))
        self.hits += is_hit(gt, pred)

    def to_dict(self) -> dict:
        """{"n", "detected", "center_err_px", "boundary_err_px", "iou", "hit_rate", "within_2px_rate", "missed_rate"}.

        The error and IoU summaries are over detections; the three rates are over all `n` scored images (a
        missed boundary is neither a hit nor within 2 px); missed_rate is the share not detected.
        """
        detected = len(self.center_err_px)
        return {
            "n": self.n,
            "detected": detected,
            "center_err_px": _summary(self.center_err_px),
            "boundary_err_px": _summary(self.boundary_err_px),
            "iou": _summary(self.iou),
            "hit_rate": self.hits / self.n if self.n else None,
            "within_2px_rate": self.within / self.n if self.n else None,
            "missed_rate": (self.n - detected) / self.n if self.n else None,
        }


def tracker_predictor(tracker) -> Predictor:
    """A Predictor from a Tracker: the ellipses it reports (None for a boundary it drops)."""

    def predict(image: np.ndarray) -> tuple[Ellipse | None, Ellipse | None]:
        result = tracker(image)
        return (result.iris.ellipse if result.iris else None, result.pupil.ellipse if result.pupil else None)

    return predict


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
        "| boundary median px | IoU median | hit rate % | centre <= 2 px % | missed % |"
    )
    lines = [header, "|" + "---|" * 12]
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
                _fmt(b.get("within_2px_rate"), 100, 1),
                _fmt(b.get("missed_rate"), 100, 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True, slots=True)
class EvalEntry:
    """One image of a dataset before it is read: its files, ground truth given in a CSV, subject, original size."""

    name: str
    image_path: Path
    mask_path: Path | None  # ground truth fitted to this mask; None: iris_gt / pupil_gt are given
    iris_gt: Ellipse | None = None
    pupil_gt: Ellipse | None = None
    subject: str | None = None
    original_hw: tuple[int, int] | None = None  # (H, W) before the dataset squashed the image (index.csv)


@dataclass(frozen=True)
class EvalSet:
    """The images of one dataset that are scored, in a stable order; each pass reads the files (lazily) again."""

    root: Path
    layout: str  # where the ground truth comes from: "index.csv", "ellipses.csv", "labels/" or "masks/"
    entries: tuple[EvalEntry, ...]
    total: int  # images the layout holds before the subject split and the limit
    subjects: frozenset[str] | None  # every subject the layout lists, before the split; None when it lists none
    original_size: bool = True

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[EvalItem]:
        return (read_entry(e, self.original_size) for e in self.entries)


def _read_mask(path: Path) -> np.ndarray:
    """(H, W) mask, or (H, W, 3) BGR for a colour-class mask, from an image file (the one image reader) or .npy.

    Colour is kept (a gray conversion would merge the classes); gray stored as three equal channels is gray.
    """
    if path.suffix.lower() == ".npy":
        try:
            mask = np.load(path)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read mask {path}: {exc}") from exc
    else:
        mask = read_image(path)
    if mask.ndim == 3 and (mask.shape[2] == 1 or _equal_channels(mask)):
        mask = mask[:, :, 0]
    return mask


def _equal_channels(mask: np.ndarray) -> bool:
    """(H, W, C) -> whether every channel equals the first (gray stored as colour)."""
    return bool((mask == mask[:, :, :1]).all())


def _boundaries(mask: np.ndarray, path: Path, true_hw: tuple[int, int] | None) -> tuple[Ellipse | None, Ellipse | None]:
    from tools.masks import boundaries_from_mask

    try:
        found = boundaries_from_mask(mask, "auto", true_hw)
    except ValueError as exc:
        raise SourceError(f"cannot read ground truth from mask {path}: {exc}") from exc
    return found.iris, found.pupil


def read_entry(entry: EvalEntry, original_size: bool = True) -> EvalItem:
    """Read one entry: the image, its ground truth (fitted to the mask when it has one), at the original size.

    With `original_size`, a squashed image is resized back to entry.original_hw and its ground truth, fitted on
    the stored mask, is mapped exactly with the same pixel-centre convention as cv2.resize.
    """
    image = read_image(entry.image_path)
    iris, pupil = entry.iris_gt, entry.pupil_gt
    if entry.mask_path is not None:
        mask = _read_mask(entry.mask_path)
        if mask.shape[:2] != image.shape[:2]:
            raise SourceError(
                f"mask {entry.mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {entry.image_path} is "
                f"{image.shape[1]}x{image.shape[0]}: masks must match their images"
            )
        iris, pupil = _boundaries(mask, entry.mask_path, entry.original_hw)
    if original_size and entry.original_hw is not None and entry.original_hw != image.shape[:2]:
        # A resize from the stored to the original size is the map preprocess defines for frame -> model input.
        to_original = frame_to_model_affine(image.shape[:2], entry.original_hw)
        iris = iris.affine(to_original) if iris is not None else None
        pupil = pupil.affine(to_original) if pupil is not None else None
        h, w = entry.original_hw
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return EvalItem(entry.name, image, iris, pupil)


def _mask_files(folder: Path) -> dict[str, Path]:
    """{stem: path} of the mask files in `folder` (empty when it is not a folder)."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in MASK_EXTENSIONS}


def _mask_folder(root: Path) -> str | None:
    """The mask folder of an images/ layout: labels/ when it holds masks (class maps), else masks/, else None."""
    if _mask_files(root / "labels"):
        return "labels"
    return next((name for name in ("masks", "labels") if (root / name).is_dir()), None)


def _mask_entries(root: Path, folder: str) -> list[EvalEntry]:
    images = list_images(root / "images")
    if not images:
        raise SourceError(f"no images in {root / 'images'}: expected {ext_list()} files")
    masks = _mask_files(root / folder)
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise SourceError(
            f"{len(missing)} of {len(images)} images in {root / 'images'} have no mask of the same stem in "
            f"{root / folder} (first: {missing[0]})"
        )
    return [EvalEntry(p.name, p, masks[p.stem]) for p in images]


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


def _csv_image_path(root: Path, cell: str, where: str) -> Path:
    """The `image` cell of ellipses.csv: a name inside images/ or a path relative to the CSV (images/x.png)."""
    inside, beside = root / "images" / cell, root / cell
    for path in (inside, beside):
        if cell and path.is_file():
            return path
    raise SourceError(f"{where}: image {cell!r} is neither in {root / 'images'} nor at {beside}")


def _ellipse_entries(root: Path) -> list[EvalEntry]:
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
    entries = []
    for i, row in enumerate(rows):
        where = f"{csv_path} row {i + 2}"
        cell = (row["image"] or "").strip()
        entries.append(
            EvalEntry(
                cell,
                _csv_image_path(root, cell, where),
                None,
                _csv_ellipse(row, "iris", where),
                _csv_ellipse(row, "pupil", where),
                (row.get("subject") or "").strip() or None,
            )
        )
    return entries


def original_hw_of(row: dict[str, str], where: str) -> tuple[int, int] | None:
    """index.csv row -> its (original_height, original_width), None when absent; SourceError naming `where`."""
    h, w = (row.get("original_height") or "").strip(), (row.get("original_width") or "").strip()
    if not (h and w):
        return None
    try:
        return int(h), int(w)
    except ValueError:
        raise SourceError(f"{where}: original_height and original_width must be whole numbers") from None


def _index_entries(root: Path, prefix: str | None) -> list[EvalEntry]:
    index = root / "index.csv"
    with index.open(newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in ("image", "mask", "subject") if c not in (reader.fieldnames or [])]
        if absent:
            raise SourceError(f"{index} lacks columns {', '.join(absent)}")
        rows = list(enumerate(reader))
    if prefix is not None:
        rows = [(i, r) for i, r in rows if r["image"].startswith(prefix + "/")]
        if not rows:
            raise SourceError(f"{index} lists no images under {prefix}/")
    return [
        EvalEntry(
            r["image"],
            root / r["image"],
            root / r["mask"],
            subject=r["subject"],
            original_hw=original_hw_of(r, f"{index} row {i + 2}"),
        )
        for i, r in rows
    ]


def load_eval_set(
    data_dir: str | Path,
    *,
    split_subjects: Iterable[str] | None = None,
    original_size: bool = True,
    limit: int | None = None,
) -> EvalSet:
    """Ground-truth images from any supported layout (see module docstring), read lazily in a stable order.

    `split_subjects` keeps the images of those subjects (SourceError for a layout that lists no subjects);
    `original_size` applies to the index.csv layout. Raises SourceError at the call when `data_dir` is not a
    readable dataset (its first image is read to check).
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise SourceError(f"dataset folder {root} does not exist")
    if (root / "index.csv").is_file():
        layout, entries = "index.csv", _index_entries(root, None)
    elif (root.parent / "index.csv").is_file() and not (root / "ellipses.csv").is_file():
        layout, entries = "../index.csv", _index_entries(root.parent, root.name)
    elif (root / "ellipses.csv").is_file():
        layout, entries = "ellipses.csv", _ellipse_entries(root)
    elif not (root / "images").is_dir():
        raise SourceError(
            f"{root} has no images/ folder or index.csv: expected images/ + labels/ or masks/, or ellipses.csv"
        )
    elif (folder := _mask_folder(root)) is not None:
        layout, entries = f"{folder}/", _mask_entries(root, folder)
    else:
        raise SourceError(f"{root} has images/ but neither labels/, masks/ nor ellipses.csv to score against")
    subjects = frozenset(e.subject for e in entries if e.subject is not None) or None
    total = len(entries)
    if split_subjects is not None:
        if subjects is None:
            raise SourceError(
                f"{root} lists no subjects (no index.csv, no subject column in ellipses.csv): a subject split "
                "cannot apply; score all its images"
            )
        wanted = frozenset(split_subjects)
        entries = [e for e in entries if e.subject in wanted]
        if not entries:
            raise SourceError(f"{root / layout} lists no images for the requested subjects")
    entries = entries[:limit]
    for e in entries:
        missing = [p for p in (e.image_path, e.mask_path) if p is not None and not p.is_file()]
        if missing:
            raise SourceError(f"{root / layout} lists {e.name}, but {missing[0]} does not exist")
    if entries:
        read_entry(entries[0], original_size)  # a bad folder fails at the call, not at the first image scored
    return EvalSet(root, layout, tuple(entries), total, subjects, original_size)


# ------------------------------------------------------------------------------------------------- split

SPLITS = ("test", "val", "train", "all")


@dataclass(frozen=True, slots=True)
class ModelSplit:
    """Subjects per split of a model's training data, as its card or its run's split.json records them.

    A split that was not recorded is None: a model card lists its test subjects, a split.json all three.
    """

    source: Path
    train: frozenset[str] | None
    val: frozenset[str] | None
    test: frozenset[str] | None

    def subjects(self, name: str) -> frozenset[str] | None:
        """The subjects of split `name` (train, val or test), None when not recorded."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    @property
    def listed(self) -> frozenset[str]:
        """Every subject the record names, whatever its split."""
        return frozenset().union(*(s for s in (self.train, self.val, self.test) if s is not None))


def read_model_split(path: str | Path) -> ModelSplit:
    """A model card (training.split.<name>_subjects) or a run's split.json (subjects.<name>) -> ModelSplit.

    Raises ModelError when the file is neither or records no subjects.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as a model card or split.json: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{path} is not a model card or split.json (a JSON object)")
    if isinstance(doc.get("subjects"), dict):  # a run's split.json
        found = {k: doc["subjects"].get(k) for k in ("train", "val", "test")}
    else:
        split = (doc.get("training") or {}).get("split") if isinstance(doc.get("training"), dict) else None
        if not isinstance(split, dict):
            raise ModelError(f"{path} records no subject split (not a model card of a model trained with one)")
        found = {k: split.get(f"{k}_subjects") for k in ("train", "val", "test")}
    if any(v is not None and not isinstance(v, list) for v in found.values()) or not any(found.values()):
        raise ModelError(f"{path} lists no subjects of a train, val or test split")
    return ModelSplit(path, *(frozenset(map(str, v)) if v is not None else None for v in found.values()))


def model_split_for(model_path: Path, split_from: str | Path | None = None) -> tuple[ModelSplit | None, str]:
    """The split `eval` uses: `split_from`, else the card beside the model; (None, why not) when there is none.

    An explicit `split_from` that cannot be read raises ModelError; a model without a usable card does not.
    """
    if split_from is not None:
        return read_model_split(split_from), ""
    card = _shown(Path(model_path).with_suffix(".json"))
    if not card.is_file():
        return None, f"model {model_path.name} has no card ({card.name}) to say which subjects it was trained on"
    try:
        return read_model_split(card), ""
    except ModelError as exc:
        return None, str(exc)


@dataclass(frozen=True, slots=True)
class SplitChoice:
    """Which images `eval` scores: the subjects kept (None: all) and why."""

    name: str  # one of SPLITS
    subjects: frozenset[str] | None
    reason: str


def choose_split(
    requested: str | None,
    data_subjects: frozenset[str] | None,
    split: ModelSplit | None,
    no_split_reason: str = "",
    data_name: str = "DATA",
) -> SplitChoice:
    """Resolve `--split` (None: the default) against the data's subjects and the model's recorded split.

    Default: the model's test split when the data holds subjects of that split (the development set), else
    all images. An explicit train / val / test split that cannot apply raises TrackerError (see split_warning for
    the subjects the model was trained on).
    """
    on_dev = split is not None and data_subjects is not None and bool(data_subjects & split.listed)
    if requested is None:
        if on_dev and split.test is not None:
            requested = "test"
        else:
            if split is None:
                why = no_split_reason
            elif data_subjects is None:
                why = f"{data_name} lists no subjects"
            elif on_dev:
                why = f"{split.source} records no test subjects"
            else:
                why = f"{data_name} has none of the subjects of {split.source}"
            return SplitChoice("all", None, f"all images: {why}")
    if requested == "all":
        return SplitChoice("all", None, "all images (--split all)")
    if requested not in SPLITS:
        raise TrackerError(f"unknown split {requested!r}: choose one of {', '.join(SPLITS)}")
    if split is None:
        raise ModelError(
            f"--split {requested} needs the model's {requested} subjects, but {no_split_reason}; "
            "give --split-from MODEL_CARD_OR_SPLIT_JSON, or --split all"
        )
    wanted = split.subjects(requested)
    if wanted is None:
        raise ModelError(
            f"{split.source} records no {requested} subjects (a model card lists only the test split); "
            "give the run's split.json with --split-from, or --split all"
        )
    if data_subjects is None:
        raise SourceError(
            f"{data_name} lists no subjects (no index.csv, no subject column in ellipses.csv), so --split "
            f"{requested} cannot apply; use --split all"
        )
    present = data_subjects & wanted
    if not present:
        raise SourceError(
            f"{data_name} has none of the {len(wanted)} {requested} subjects of {split.source}: it is not the data "
            "the model was trained on; use --split all"
        )
    return SplitChoice(requested, wanted, f"{requested} split of {split.source} ({_count(len(present), 'subject')})")


def split_warning(items: EvalSet, split: ModelSplit | None) -> str | None:
    """One warning line when `items` include subjects the model was trained (or validated) on, else None."""
    if split is None or items.subjects is None or not items.subjects & split.listed:
        return None
    if split.train is not None:
        trained, how = split.train, "trained on"
    elif split.test is not None:
        # Only the held-out subjects are recorded: every other subject of this data was used in training.
        trained, how = items.subjects - split.test - (split.val or frozenset()), "trained or validated on"
    else:
        return None
    seen = [e.subject for e in items.entries if e.subject in trained]
    if not seen:
        return None
    subjects = _count(len(set(seen)), "subject")
    return (
        f"warning: {len(seen):,} of the {len(items):,} images scored are of {subjects} the model was {how} "
        f"({split.source}); --split test scores held-out subjects only"
    )


def scoring_line(data: str | Path, items: EvalSet, choice: SplitChoice, limit: int | None = None) -> str:
    """One line saying what `eval` scores: data set, images, split and where the split came from."""
    capped = f"; --limit {limit}" if limit is not None and len(items) == limit else ""
    of = f"{len(items):,} of {items.total:,}" if len(items) != items.total else f"all {items.total:,}"
    return f"scoring {of} images of {data} ({items.layout}{capped}): {choice.reason}"


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (shorter messages), else as given."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except (OSError, ValueError):
        return path


def _count(n: int, noun: str) -> str:
    """'1 subject', '2 subjects'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


# ------------------------------------------------------------------------------------------- cross-dataset


@dataclass(frozen=True, slots=True)
class CrossCell:
    """One model scored on one source's test subjects, and whether the model trained on that source."""

    model: str
    source: str
    trained_on_source: bool
    result: dict  # evaluate()'s result


def trained_on(card_path: Path, items: EvalSet) -> bool:
    """True when the model card's train or val subjects include a subject of `items`' source (not held out)."""
    try:
        split = read_model_split(card_path)
    except ModelError:
        return False
    seen = (split.train or frozenset()) | (split.val or frozenset())
    return bool(items.subjects and items.subjects & seen) and not _left_out(card_path, items.root.name)


def _left_out(card_path: Path, source: str) -> bool:
    try:
        doc = json.loads(Path(card_path).read_text())
    except (OSError, ValueError):
        return False
    return source in ((doc.get("training") or {}).get("leave_out") or [])


def format_cross_table(cells: list[CrossCell]) -> str:
    """Markdown table of the cross-dataset protocol: per model, source and boundary the four tracked figures."""
    lines = [
        "| model | source | trained on it | boundary | n | hit % (5 % of radius) | centre <= 2 px % | centre p95 px "
        "| missed % |",
        "|" + "---|" * 9,
    ]
    for c in cells:
        for boundary in ("iris", "pupil"):
            b = c.result[boundary]
            if not b["n"]:
                continue
            lines.append(
                f"| {c.model} | {c.source} | {'yes' if c.trained_on_source else 'no'} | {boundary} | {b['n']} | "
                f"{_fmt(b['hit_rate'], 100, 1)} | {_fmt(b['within_2px_rate'], 100, 1)} | "
                f"{_fmt(b['center_err_px']['p95'])} | {_fmt(b['missed_rate'], 100, 1)} |"
            )
    return "\n".join(lines)
