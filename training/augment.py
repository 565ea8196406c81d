"""Augmentation at model resolution, covering what capture rigs and webcams produce. NumPy + OpenCV.

Geometry (scale, rotation, translation, aspect, mirror) moves the image and its arcs with one affine
map, so labels stay exact. Photometry (gamma, contrast, blur, noise, glints, lashes, occluders) changes
pixels only; an occluder also removes the labels it hides (a hidden boundary is not an edge).
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

    scale: tuple[float, float] = (0.75, 1.3)
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
    if rng.random() < cfg.noise_p:
        img += rng.normal(0, rng.uniform(*cfg.noise_sigma), img.shape).astype(np.float32)
    return np.clip(img, 0, 1, out=img), labels
