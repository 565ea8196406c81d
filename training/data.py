"""Training data: image + mask folders, ellipse sets or synthetic eyes -> model-resolution images and visible arcs.

Three layouts load (the ones `iristrack eval` reads): `index.csv` (the development set), `images/` + `masks/`
with equal stems, and `images/` + `ellipses.csv` (ellipse annotations of the whole boundary, such as
visible-eyes or `iristrack run --save-labels`; training.evidence keeps the arcs the image shows).
Mask conventions (see tools.masks): "hole" (the development set: 255 = iris texture, the pupil is the hole,
eyelids cut the mask) and "labels" (0 background, 1 iris, 2 pupil); "auto" tells them apart.
Every sample is stored at model resolution: the image resized exactly as the runtime does
(tracker.preprocess) and the visible limbus / pupil arcs in model pixels, lid cut lines excluded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tools.masks import boundaries_from_mask, visible_arcs
from tracker.errors import SourceError
from tracker.io.images import list_images, read_image
from tracker.preprocess import INPUT_HW, frame_to_model_affine, to_gray
from tracker.structures import Ellipse
from training.evidence import evidenced_arcs

SPLITS = ("train", "val", "test")
WEIGHTS_FILE = "model.weights.h5"  # Keras weights beside an exported model.onnx: what fine-tuning starts from
LABEL_VERSION = 3  # bump when labelling changes, to invalidate cached labels


@dataclass(frozen=True, slots=True)
class EdgeSample:
    """One training example at model resolution: (h, w) uint8 image and visible arcs per channel."""

    name: str
    subject: str
    image: np.ndarray
    arcs: tuple[list[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled image on disk: with a mask, or with annotated ellipses (mask_path None); and its subject."""

    image_path: Path
    mask_path: Path | None
    subject: str
    name: str
    iris: Ellipse | None = None  # annotated whole-boundary ellipses of an ellipse set, image pixels
    pupil: Ellipse | None = None
    original_hw: tuple[int, int] | None = None  # the true (H, W) of an image stored squashed to another size

    @property
    def source(self) -> str:
        """The dataset inside a folder: the first part of its name (casia-interval, iitd), else the folder's name."""
        head = self.name.split("/")[0]
        return head if "/" in self.name else self.image_path.parent.parent.name


def _ellipse_records(data_dir: Path) -> list[Record]:
    """Records of `images/` + `ellipses.csv` (read by the one CSV reader, tools.evaluation)."""
    from tools.evaluation import load_eval_set

    entries = load_eval_set(data_dir).entries
    # Without a subject column every image is its own subject.
    return [Record(e.image_path, None, e.subject or Path(e.name).stem, e.name, e.iris_gt, e.pupil_gt) for e in entries]


def find_records(data_dir: Path) -> list[Record]:
    """Records of a data folder: `index.csv`, `images/` + `ellipses.csv`, or `images/` + `masks/` with equal stems."""
    data_dir = Path(data_dir)
    if (data_dir / "ellipses.csv").is_file() and not (data_dir / "index.csv").is_file():
        try:
            return _ellipse_records(data_dir)
        except SourceError as exc:
            raise FileNotFoundError(str(exc)) from None
    index = data_dir / "index.csv"
    if index.exists():
        from tools.evaluation import original_hw_of

        with index.open(newline="") as f:
            rows = list(csv.DictReader(f))
        try:
            # The true shape of a squashed image: the mask's limbus is checked against the pupil there.
            sizes = [original_hw_of(row, f"{index} row {i + 2}") for i, row in enumerate(rows)]
        except SourceError as exc:
            raise FileNotFoundError(str(exc)) from None
        return [
            Record(data_dir / row["image"], data_dir / row["mask"], row["subject"], row["image"], original_hw=hw)
            for row, hw in zip(rows, sizes, strict=True)
        ]
    images, masks = data_dir / "images", data_dir / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise FileNotFoundError(f"{data_dir}: expected index.csv, images/ + ellipses.csv, or images/ + masks/")
    by_stem = {p.stem: p for p in list_images(masks)}
    records = []
    for p in list_images(images):
        if p.stem in by_stem:
            # Without an index, the subject is the stem up to the first '_' or '-' (one subject per image otherwise).
            subject = p.stem.split("_")[0].split("-")[0]
            records.append(Record(p, by_stem[p.stem], subject, p.name))
    if not records:
        raise FileNotFoundError(f"{data_dir}: no image with a mask of the same name")
    return records


def split_subjects(
    subjects: list[str], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[str]]:
    """Deterministic split by subject: each subject lands in exactly one of train / val / test."""
    unique = sorted(set(subjects))
    # Hash-based order: stable across Python versions and independent of the file order.
    order = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n_train = round(fractions[0] * len(order))
    n_val = round(fractions[1] * len(order))
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def write_split(path: Path, split: dict[str, list[str]], data: list[str], leave_out: tuple[str, ...] = ()) -> None:
    """Record the subject split in the run folder (JSON), with the sources left out of train and val."""
    Path(path).write_text(json.dumps({"data": data, "leave_out": list(leave_out), "subjects": split}, indent=1))


def sample_from_mask(
    name: str,
    subject: str,
    image: np.ndarray,
    mask: np.ndarray,
    input_hw: tuple[int, int] = INPUT_HW,
    convention: str = "auto",
    true_hw: tuple[int, int] | None = None,
) -> EdgeSample:
    """Full-resolution image and mask -> EdgeSample at model resolution (image resized like the runtime).

    `true_hw`: the image's original (H, W) when it is stored squashed (tools.masks checks shapes there).
    """
    gray = _gray_u8(image)
    small = cv2.resize(gray, (input_hw[1], input_hw[0]), interpolation=cv2.INTER_AREA)
    to_model = frame_to_model_affine(gray.shape[:2], input_hw)
    found = boundaries_from_mask(mask, convention, true_hw)
    arcs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for channel, ellipse, xy in ((0, found.iris, found.iris_xy), (1, found.pupil, found.pupil_xy)):
        if ellipse is not None and len(xy):
            arcs[channel].extend(a @ to_model[:, :2].T + to_model[:, 2] for a in visible_arcs(ellipse, xy))
    return EdgeSample(name, subject, small, arcs)


def sample_from_ellipses(
    name: str,
    subject: str,
    image: np.ndarray,
    ellipses: tuple[Ellipse | None, Ellipse | None],
    input_hw: tuple[int, int] = INPUT_HW,
) -> EdgeSample:
    """Full-resolution image and annotated (iris, pupil) ellipses -> EdgeSample with the arcs the image shows."""
    gray = _gray_u8(image)
    small = cv2.resize(gray, (input_hw[1], input_hw[0]), interpolation=cv2.INTER_AREA)
    to_model = frame_to_model_affine(gray.shape[:2], input_hw)
    arcs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for channel, ellipse in enumerate(ellipses):
        if ellipse is not None:
            arcs[channel].extend(a @ to_model[:, :2].T + to_model[:, 2] for a in evidenced_arcs(gray, ellipse))
    return EdgeSample(name, subject, small, arcs)


def _gray_u8(image: np.ndarray) -> np.ndarray:
    gray = to_gray(image)
    if gray.dtype != np.uint8:
        gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    return gray


def _load_one(record: Record, input_hw: tuple[int, int]) -> EdgeSample | None:
    if record.mask_path is None:
        if record.iris is None and record.pupil is None:
            return None
        try:
            image = read_image(record.image_path)
        except SourceError:
            return None
        return sample_from_ellipses(record.name, record.subject, image, (record.iris, record.pupil), input_hw)
    try:
        image, mask = read_image(record.image_path), read_image(record.mask_path)
    except SourceError:
        return None  # unreadable pairs are dropped (load_samples)
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    return sample_from_mask(record.name, record.subject, image, mask, input_hw, true_hw=record.original_hw)


def _load_chunk(records: list[Record], input_hw: tuple[int, int]) -> list[EdgeSample | None]:
    return [_load_one(r, input_hw) for r in records]


def load_samples(
    records: list[Record],
    input_hw: tuple[int, int] = INPUT_HW,
    workers: int | None = None,
    cache_dir: Path | None = None,
) -> list[EdgeSample]:
    """Read and label every record; unreadable pairs are dropped.

    Labelling fits ellipses in Python (GIL-bound), so it runs in worker processes, and the result is
    cached in `cache_dir` (keyed by the files, their sizes and mtimes, and the input size) for later runs.
    """
    cache = _cache_path(records, input_hw, cache_dir) if cache_dir else None
    if cache is not None and cache.exists():
        return _read_cache(cache, records)
    workers = workers or os.cpu_count() or 1
    chunks = [records[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_load_chunk, chunks, [input_hw] * workers))
    by_name = {s.name: s for part in parts for s in part if s is not None}
    samples = [by_name[r.name] for r in records if r.name in by_name]
    if cache is not None:
        _write_cache(cache, samples)
    return samples


def _cache_path(records: list[Record], input_hw: tuple[int, int], cache_dir: Path) -> Path:
    h = hashlib.sha256(f"{LABEL_VERSION}:{input_hw}".encode())
    # The labelling code is part of the key: a change in mask fitting invalidates the cache.
    import tools.masks
    import tracker.fit.geometry
    import tracker.preprocess
    import training.evidence

    for module in (tracker.fit.geometry, tools.masks, training.evidence, tracker.preprocess):
        h.update(Path(module.__file__).read_bytes())
    for r in records:
        for p in (r.image_path, r.mask_path):
            if p is not None:
                st = p.stat()
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(f"{r.iris}:{r.pupil}".encode())
    return Path(cache_dir) / f"labels-{h.hexdigest()[:16]}.npz"


def _write_cache(path: Path, samples: list[EdgeSample]) -> None:
    """Arcs as flat arrays (no pickles): points, arc lengths, arc channel, arcs per sample; images stacked."""
    points, lengths, channels, per_sample = [], [], [], []
    for s in samples:
        n = 0
        for c, arcs in enumerate(s.arcs):
            for a in arcs:
                points.append(a.astype(np.float32))
                lengths.append(len(a))
                channels.append(c)
                n += 1
        per_sample.append(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        images=np.stack([s.image for s in samples]),
        names=np.array([s.name for s in samples]),
        points=np.concatenate(points) if points else np.empty((0, 2), np.float32),
        lengths=np.array(lengths, np.int64),
        channels=np.array(channels, np.int64),
        per_sample=np.array(per_sample, np.int64),
    )
    tmp.replace(path)


def _read_cache(path: Path, records: list[Record]) -> list[EdgeSample]:
    subject = {r.name: r.subject for r in records}
    with np.load(path) as z:
        images, names, points = z["images"], z["names"], z["points"]
        lengths, channels, per_sample = z["lengths"], z["channels"], z["per_sample"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    samples, arc = [], 0
    for i, name in enumerate(names):
        arcs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        for _ in range(per_sample[i]):
            arcs[channels[arc]].append(points[offsets[arc] : offsets[arc + 1]].astype(np.float64))
            arc += 1
        samples.append(EdgeSample(str(name), subject[str(name)], images[i], arcs))
    return samples


def synthetic_samples(
    n: int,
    input_hw: tuple[int, int] = INPUT_HW,
    seed: int = 0,
    size_wh: tuple[int, int] = (320, 240),
    randomised: bool = True,
) -> list[EdgeSample]:
    """N synthetic eyes with exact ellipses, visible arcs from their exact masks.

    `randomised`: domain-randomised eyes (tools.synthetic.random_domain_eye: NIR iris camera, NIR eye tracker
    from below, visible-light colour crops, glasses, blur, compression); otherwise the NIR renderer alone.
    """
    from tools.synthetic import random_domain_eye, random_eye_params, render_eye

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        if randomised:
            image, truth = random_domain_eye(rng, size_wh)
        else:
            image, truth = render_eye(random_eye_params(rng, size_wh), size_wh)
        gray = _gray_u8(image)
        to_model = frame_to_model_affine(gray.shape[:2], input_hw)
        found = boundaries_from_mask(truth.mask, "labels")
        arcs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        # Exact ellipses from the renderer; the mask only decides which parts are visible.
        for channel, ellipse, xy in ((0, truth.iris, found.iris_xy), (1, truth.pupil, found.pupil_xy)):
            if len(xy):
                arcs[channel].extend(a @ to_model[:, :2].T + to_model[:, 2] for a in visible_arcs(ellipse, xy))
        small = cv2.resize(gray, (input_hw[1], input_hw[0]), interpolation=cv2.INTER_AREA)
        samples.append(EdgeSample(f"synthetic/{i:05d}", "synthetic", small, arcs))
    return samples


NEGATIVE_SEED = 4242  # calibration and tests draw eye-free images from seeds 0, 1 and 7
TRAIN_NEGATIVE_KINDS_EXCLUDED = ("dark_disc",)  # a lone dark disc is what a pupil-only close-up looks like


def negative_samples(n: int, input_hw: tuple[int, int] = INPUT_HW, seed: int = NEGATIVE_SEED) -> list[EdgeSample]:
    """N synthetic eye-free images (tools.negatives: textures, text, rings, blobs) with no edge anywhere.

    Lone dark discs are left out: they are what a pupil-only close-up looks like, so "no edge" would be wrong.
    """
    from tools.negatives import synthetic_negative

    samples, index = [], 0
    while len(samples) < n:
        item = synthetic_negative(index, seed)
        index += 1
        if item.kind in TRAIN_NEGATIVE_KINDS_EXCLUDED:
            continue
        small = cv2.resize(_gray_u8(item.image), (input_hw[1], input_hw[0]), interpolation=cv2.INTER_AREA)
        samples.append(EdgeSample(f"negative/{item.name}", "negative", small, ([], [])))
    return samples
