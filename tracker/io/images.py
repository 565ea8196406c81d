"""The one image reader and image-extension list: sources, evaluation and training all read images here."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import SourceError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm", ".jp2"})


def natural_key(path: Path) -> list:
    """Sort key that puts frame2.png before frame10.png."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def is_image_name(path: Path) -> bool:
    """True for a visible file name with one of IMAGE_EXTS."""
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, in natural order (no recursion)."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and is_image_name(p)), key=natural_key)


def ext_list() -> str:
    """IMAGE_EXTS as a readable, sorted list for messages."""
    return ", ".join(sorted(IMAGE_EXTS))


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to (H, W) or (H, W, 3) uint8/uint16; SourceError with the reason if it cannot."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # also handles non-ASCII paths, unlike cv2.imread
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise SourceError(f"{path} is not a decodable image ({data.size} bytes)")
    if image.dtype not in (np.uint8, np.uint16):
        raise SourceError(f"{path} has {image.dtype} pixels; expected 8- or 16-bit")
    if image.ndim == 3 and image.shape[2] == 4:
        image = np.ascontiguousarray(image[:, :, :3])  # BGRA -> BGR: alpha carries no eye
    elif image.ndim == 3 and image.shape[2] in (1, 2):
        image = np.ascontiguousarray(image[:, :, 0])  # gray (+ alpha) -> gray
    return image
