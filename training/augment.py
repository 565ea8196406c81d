"""Augmentation at model resolution, covering what capture rigs and webcams produce. NumPy + OpenCV.

Geometry (scale, rotation, translation, aspect, mirror) moves the image and its arcs with one affine
map, so labels stay exact. Photometry (gamma, contrast, blur, motion blur, low resolution, JPEG blocks,
noise, glints, lashes, occluders) changes pixels only; an occluder also removes the labels it hides (a
hidden boundary is not an edge). Scales reach down to half size: small eyes in a larger webcam crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from training.labels import transform_arcs


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of each augmentation; probabilities in [0, 1]."""

    scale: tuple[float, float] = (0.55, 1.3)
    rotation_deg: float = 25.0
    translation: float = 0.12  # fraction of the image size
    aspect: tuple[float, float] = (0.85, 1.18)
    mirror_p: float = 0.5
    gamma: tuple[float, float] = (0.6, 1.6)
    contrast: tuple[float, float] = (0.6, 1.4)
    blur_p: float = 0.3
    blur_sigma_px: tuple[float, float] = (0.4, 1.3)
    noise_p: float = 0.5
    noise_sigma: tuple[float, float] = (0.005, 0.05)
    glint_p: float = 0.4
    lash_p: float = 0.3
    occluder_p: float = 0.15
    motion_blur_p: float = 0.15
    motion_blur_px: tuple[int, int] = (3, 7)  # kernel length in model pixels
    low_res_p: float = 0.15
    low_res_factor: tuple[float, float] = (1.5, 3.0)  # down by this, then back up: a low-resolution camera
    jpeg_p: float = 0.2
    jpeg_quality: tuple[int, int] = (20, 70)


def random_affine(rng: np.random.Generator, hw: tuple[int, int], cfg: AugmentConfig) -> np.ndarray:
    """A 2x3 affine map about the image centre drawn from the config's ranges."""
    h, w = hw
    s = rng.uniform(*cfg.scale)
    a = rng.uniform(*cfg.aspect)
    t = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    flip = -1.0 if rng.random() < cfg.mirror_p else 1.0
    c, si = math.cos(t), math.sin(t)
    linear = np.array([[c, -si], [si, c]]) @ np.diag([s * math.sqrt(a) * flip, s / math.sqrt(a)])
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    shift = rng.uniform(-cfg.translation, cfg.translation, 2) * np.array([w, h])
    offset = centre + shift - linear @ centre
    return np.hstack([linear, offset[:, None]])


def _glints(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape
    for _ in range(rng.integers(1, 4)):
        centre = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h))
        cv2.circle(img, centre, int(rng.integers(1, 4)), float(rng.uniform(0.85, 1.0)), -1, cv2.LINE_AA)


def _lashes(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape
    base_y = rng.uniform(0.05, 0.45) * h
    for _ in range(rng.integers(5, 20)):
        x0 = rng.uniform(0, w)
        length = rng.uniform(0.08, 0.3) * h
        bend = rng.uniform(-0.4, 0.4)
        t = np.linspace(0, 1, 8)
        pts = np.stack([x0 + bend * length * t**2, base_y + length * t], axis=1)
        cv2.polylines(
            img, [np.round(pts * 16).astype(np.int32)], False, float(rng.uniform(0.0, 0.15)), 1, cv2.LINE_AA, 4
        )


def _occluder(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape
    occ = np.zeros((h, w), np.uint8)
    centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
    axes = (int(rng.uniform(0.1, 0.3) * w), int(rng.uniform(0.05, 0.2) * h))
    cv2.ellipse(occ, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    hidden = occ > 0
    img[hidden] = float(rng.uniform(0.0, 1.0))
    labels[hidden] = 0.0


def _motion_blur(img: np.ndarray, rng: np.random.Generator, length_px: tuple[int, int]) -> np.ndarray:
    """Linear motion blur of a random direction (a saccade or a moving head during the exposure)."""
    n = int(rng.integers(length_px[0], length_px[1] + 1))
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0 / n
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (n, n))
    return cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6), borderType=cv2.BORDER_REPLICATE)


def _low_res(img: np.ndarray, rng: np.random.Generator, factor: tuple[float, float]) -> np.ndarray:
    h, w = img.shape
    f = rng.uniform(*factor)
    small = cv2.resize(img, (max(8, round(w / f)), max(8, round(h / f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg(img: np.ndarray, rng: np.random.Generator, quality: tuple[int, int]) -> np.ndarray:
    """Compression blocks and ringing, as webcams and photo archives give."""
    u8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(quality[0], quality[1] + 1))])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) * (1 / 255) if ok else img


def augment(image: np.ndarray, arcs, rng: np.random.Generator, cfg: AugmentConfig, soft_labels_fn):
    """(h, w) uint8 image + arcs -> ((h, w) float32 in [0, 1], (h, w, 2) float32 soft labels), randomly changed."""
    hw = image.shape[:2]
    m = random_affine(rng, hw, cfg)
    # Replicate the border: a reflected border would paint fake iris boundaries.
    img = cv2.warpAffine(image, m, (hw[1], hw[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    labels = soft_labels_fn(transform_arcs(arcs, m), hw)
    img = img.astype(np.float32) * (1 / 255)
    img = np.power(img, rng.uniform(*cfg.gamma), out=img)
    mean = float(img.mean())
    img = (img - mean) * rng.uniform(*cfg.contrast) + mean + rng.uniform(-0.1, 0.1)
    if rng.random() < cfg.lash_p:
        _lashes(img, rng)
    if rng.random() < cfg.glint_p:
        _glints(img, rng)
    if rng.random() < cfg.occluder_p:
        _occluder(img, labels, rng)
    if rng.random() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma_px))
    if rng.random() < cfg.motion_blur_p:
        img = _motion_blur(img, rng, cfg.motion_blur_px)
    if rng.random() < cfg.low_res_p:
        img = _low_res(img, rng, cfg.low_res_factor)
    if rng.random() < cfg.noise_p:
        img += rng.normal(0, rng.uniform(*cfg.noise_sigma), img.shape).astype(np.float32)
    img = np.clip(img, 0, 1, out=img)
    if rng.random() < cfg.jpeg_p:
        img = _jpeg(img, rng, cfg.jpeg_quality)
    return img, labels
