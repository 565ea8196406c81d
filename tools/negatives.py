"""Images that contain no eye, and a measurement of the tracker on them, on a closing lid and on half-closed eyes.

The negative set for "no eye, no ellipse" (issue 10) is built only from what the project generates or ships:

- synthetic non-eyes (NumPy + OpenCV, deterministic by seed and index): the kinds in SYNTHETIC_KINDS, gray or
  colour (BGR), 160x120 to 1280x720. ``dark_disc`` is the hardest: a lone dark disc looks like a pupil.
  ``face_far`` is a small cartoon face whose two eyes (tools.synthetic.render_eye at a few pixels) are far too
  small for the close-up tracker: a legitimate negative, but it does contain eyes.
- sample photos bundled inside scikit-image's wheel (skimage.data), used only when the file is in the wheel, so
  nothing is ever downloaded. Their kinds start with ``photo_``. Three kinds show faces or eyes that are not
  close-ups and are negatives for this tracker for that reason: ``photo_face_far`` (astronaut, camera, a mosaic
  of the 25x25 px LFW faces), ``photo_animal_face`` (chelsea, a cat) and ``photo_fundus`` (retina photos: the
  inside of an eye, no iris or pupil in view). FACE_KINDS names every kind that contains a face or eye.
  scikit-image is in the `dev` extra; without it the set is the synthetic part only.

Images are (H, W) uint8 gray or (H, W, 3) uint8 BGR, as a camera or cv2.imread gives them.

`python -m tools.negatives` runs the tracker (the shipped model) on the negative set, on closing-lid clips
(tools.synthetic.render_blink_clip) and on half-closed eyes (tools.synthetic.half_closed_eye_params) and prints
markdown tables (--json FILE keeps every row); it is a measurement, not a test. The default set is 360
synthetic images + 25 photos = 385, and takes a few seconds to build.
"""

from __future__ import annotations

import argparse
import json
import math
import string
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from tools.synthetic import half_closed_eye_params, random_eye_params, render_blink_clip, render_eye
from tracker.structures import Ellipse

if TYPE_CHECKING:  # the tracker (numba kernels, a model) is loaded only by the measurement
    from tracker.pipeline import Tracker
    from tracker.structures import FrameResult

SYNTHETIC_KINDS: tuple[str, ...] = (
    "noise", "multiscale_noise", "blobs", "stripes", "wood", "gradient", "flat", "dark_glints",
    "checkerboard", "text", "rings", "dark_disc", "bright_disc", "cells", "face_far",
)  # fmt: skip
# Synthetic frame sizes (W, H) and how often each is drawn: most small, as camera crops are.
SIZES_WH: tuple[tuple[int, int], ...] = (
    (160, 120), (320, 240), (400, 300), (640, 360), (640, 480), (800, 600), (1280, 720),
)  # fmt: skip
_SIZE_P = (0.15, 0.25, 0.1, 0.1, 0.2, 0.1, 0.1)
COLOUR_SHARE = 0.4  # of synthetic images rendered in colour (BGR)
# 360 synthetic + the bundled photos is about the size of the issue's own negative set (385).
DEFAULT_N_SYNTHETIC = 360
MAX_SAMPLE_WH = (1280, 720)  # larger sample photos are shrunk to fit, like the synthetic ones

# skimage.data loader name, the file it reads from the wheel's skimage/data folder, and the kind.
SAMPLE_PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "astronaut.png", "photo_face_far"),  # a portrait: the eyes are ~25 px in 512 px
    ("camera", "camera.png", "photo_face_far"),  # the cameraman: a face ~60 px wide
    ("lfw_subset", "lfw_subset.npy", "photo_face_far"),  # the 100 LFW faces (25x25 px each) as a 10x10 mosaic
    ("chelsea", "chelsea.png", "photo_animal_face"),  # a cat's face, eyes ~40 px wide
    ("retina", "retina.jpg", "photo_fundus"),  # a retina seen through the pupil: a bright disc with vessels
    ("microaneurysms", "microaneurysms.png", "photo_fundus"),
    ("brick", "brick.png", "photo_texture"),
    ("grass", "grass.png", "photo_texture"),
    ("gravel", "gravel.png", "photo_texture"),
    ("text", "text.png", "photo_text"),
    ("page", "page.png", "photo_text"),
    ("coins", "coins.png", "photo_coins"),
    ("moon", "moon.png", "photo_moon"),
    ("cell", "cell.png", "photo_cells"),
    ("immunohistochemistry", "ihc.png", "photo_cells"),
    ("hubble_deep_field", "hubble_deep_field.jpg", "photo_cells"),  # galaxies: many small blobs
    ("checkerboard", "chessboard_GRAY.png", "photo_pattern"),
    ("colorwheel", "color.png", "photo_pattern"),  # a colour disc
    ("shepp_logan_phantom", "phantom.png", "photo_pattern"),  # nested ellipses: a hard one
    ("logo", "logo.png", "photo_object"),
    ("coffee", "coffee.png", "photo_object"),  # a round cup seen from above
    ("rocket", "rocket.jpg", "photo_object"),
    ("horse", "horse.png", "photo_object"),
    ("clock", "clock_motion.png", "photo_object"),  # a round wall clock
    ("stereo_motorcycle", "motorcycle_left.png", "photo_object"),
)
FACE_KINDS = frozenset({"face_far", "photo_face_far", "photo_animal_face", "photo_fundus"})


@dataclass(frozen=True, slots=True)
class NegativeImage:
    """One image without a close-up eye: a unique name, its kind and (H, W) uint8 gray or (H, W, 3) uint8 BGR."""

    name: str  # "synthetic/0011-dark_disc" or "skimage/coins"
    kind: str  # one of SYNTHETIC_KINDS, or a "photo_*" kind of SAMPLE_PHOTOS
    image: np.ndarray


def negative_images(
    n_synthetic: int = DEFAULT_N_SYNTHETIC, seed: int = 0, include_samples: bool = True
) -> Iterator[NegativeImage]:
    """Yield n_synthetic synthetic non-eyes (kinds in turn), then the bundled sample photos that load offline.

    Image i depends only on (seed, i), so a shorter set is a prefix of a longer one with the same seed.
    """
    for index in range(n_synthetic):
        yield synthetic_negative(index, seed)
    if include_samples:
        yield from sample_photos()


def synthetic_negative(index: int, seed: int = 0) -> NegativeImage:
    """The index-th synthetic non-eye of a seed; its kind is SYNTHETIC_KINDS[index % len(SYNTHETIC_KINDS)]."""
    kind = SYNTHETIC_KINDS[index % len(SYNTHETIC_KINDS)]
    rng = np.random.default_rng([seed, index])
    w, h = SIZES_WH[int(rng.choice(len(SIZES_WH), p=_SIZE_P))]
    colour = rng.random() < COLOUR_SHARE
    gray = _GENERATORS[kind](rng, w, h)
    palette = _PALETTES.get(kind, _random_palette)(rng)
    image = _finish(gray, rng, palette if colour else None)
    return NegativeImage(f"synthetic/{index:04d}-{kind}", kind, image)


def sample_photos() -> Iterator[NegativeImage]:
    """Yield the SAMPLE_PHOTOS whose files are in the installed scikit-image wheel; skip the rest silently.

    Only files shipped inside the wheel are read (skimage.data would download the others), so this never
    touches the network; without scikit-image (the dev extra) it yields nothing.
    """
    try:
        import skimage.data
    except ImportError:
        return
    folder = Path(skimage.data.__file__).parent
    for name, filename, kind in SAMPLE_PHOTOS:
        if not (folder / filename).is_file() or not hasattr(skimage.data, name):
            continue
        yield NegativeImage(f"skimage/{name}", kind, _as_frame(name, getattr(skimage.data, name)()))


# ----------------------------------------------------------------------------------------------- photos


def _as_frame(name: str, data: np.ndarray | tuple) -> np.ndarray:
    """A skimage.data array (RGB, RGBA, bool, float or a stack) -> (H, W) uint8 or (H, W, 3) uint8 BGR."""
    if isinstance(data, tuple):  # stereo_motorcycle: (left, right, disparity)
        data = data[0]
    a = np.asarray(data)
    if name == "lfw_subset":  # (200, 25, 25) float: the first 100 are faces
        faces = a[:100]
        a = faces.reshape(10, 10, *faces.shape[1:]).transpose(0, 2, 1, 3).reshape(10 * faces.shape[1], -1)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 4:  # RGBA logo: composite on white
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = np.clip(a[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    h, w = a.shape[:2]
    scale = min(MAX_SAMPLE_WH[0] / w, MAX_SAMPLE_WH[1] / h, 1.0)
    if scale < 1.0:
        a = cv2.resize(a, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(a)


# -------------------------------------------------------------------------------------------- synthetic
# Each generator: (rng, W, H) -> (H, W) float32 gray in about [0, 1]; _finish adds blur, noise and colour.


def _normalise(a: np.ndarray) -> np.ndarray:
    """Stretch to [0, 1] between the 1st and 99th percentiles (float32)."""
    lo, hi = np.percentile(a, (1, 99))
    return np.clip((a - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, clipped so that far-off pixels do not overflow float32."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def _value_noise(rng: np.random.Generator, w: int, h: int, cell_px: float) -> np.ndarray:
    """(H, W) float32 smooth noise with features about cell_px across: a random grid upsampled bicubically."""
    gw, gh = max(2, round(w / cell_px)) + 1, max(2, round(h / cell_px)) + 1
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 x and y of pixel centres."""
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def _noise(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Pure noise: Gaussian, uniform or salt-and-pepper around a random level."""
    level, style = rng.uniform(0.2, 0.8), rng.integers(3)
    if style == 0:
        return (level + rng.uniform(0.05, 0.3) * rng.standard_normal((h, w))).astype(np.float32)
    if style == 1:
        return rng.random((h, w), dtype=np.float32)
    salt = rng.random((h, w)) < rng.uniform(0.02, 0.3)
    return np.where(salt, rng.integers(0, 2, (h, w)).astype(np.float32), np.float32(level))


def _multiscale_noise(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Noise at several scales (1/f-like): octaves of value noise, 2 px to a quarter of the frame."""
    beta = rng.uniform(0.3, 1.2)  # how much the coarse octaves dominate
    out = np.zeros((h, w), np.float32)
    cell = 2.0
    while cell < min(w, h) / 4:
        if rng.random() < 0.8:
            out += cell**beta * _value_noise(rng, w, h, cell)
        cell *= 2.0
    return _normalise(out) * rng.uniform(0.3, 1.0) + rng.uniform(0.0, 0.3)


def _blobs(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Perlin-like blobs: smooth noise through a soft threshold (spots, cow patches, clouds)."""
    n = _value_noise(rng, w, h, rng.uniform(8, min(w, h) / 3))
    n = n / max(float(n.std()), 1e-6)
    blobs = _sigmoid(rng.uniform(1.0, 12.0) * (n - rng.uniform(-1.0, 1.0)))
    lo, hi = sorted(rng.uniform(0.0, 1.0, 2))
    return (lo + (hi - lo) * blobs + 0.05 * _value_noise(rng, w, h, 3.0)).astype(np.float32)


def _stripes(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Stripes at a random angle and period (sine or square), gently warped."""
    x, y = _grid(w, h)
    t = rng.uniform(0, np.pi)
    period = rng.uniform(4, min(w, h) / 2)
    warp = rng.uniform(0.0, 0.3) * period * _value_noise(rng, w, h, rng.uniform(20, 200))
    phase = 2 * np.pi * (x * math.cos(t) + y * math.sin(t) + warp) / period
    wave = np.sin(phase)
    if rng.random() < 0.5:
        wave = np.tanh(wave * rng.uniform(3, 20))  # square-ish
    return (0.5 + rng.uniform(0.1, 0.5) * wave).astype(np.float32)


def _wood(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Wood grain: noisy growth rings around a centre (inside the frame a third of the time) plus fibre."""
    x, y = _grid(w, h)
    side = max(w, h)
    if rng.random() < 0.33:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    else:
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.7, 3.0) * side
        cx, cy = w / 2 + dist * math.cos(ang), h / 2 + dist * math.sin(ang)
    stretch = rng.uniform(1.0, 4.0)  # rings elongated along the grain
    t = rng.uniform(0, np.pi)
    c, s = math.cos(t), math.sin(t)
    dx, dy = x - cx, y - cy
    r = np.hypot((c * dx + s * dy) / stretch, -s * dx + c * dy)
    period = rng.uniform(4, side / 8)
    r = r + 0.4 * period * _value_noise(rng, w, h, rng.uniform(30, 150))
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * r / period) ** rng.choice([1, 3])
    fibre = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.6)
    base, contrast = rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.35)
    return (base + contrast * (rings - 0.5) + 0.03 * fibre).astype(np.float32)


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A linear, radial (vignette or spotlight) or soft-step gradient."""
    x, y = _grid(w, h)
    a, b = rng.uniform(0.0, 1.0, 2)
    style = rng.integers(3)
    if style == 0:
        t = rng.uniform(0, 2 * np.pi)
        u = (x - w / 2) * math.cos(t) + (y - h / 2) * math.sin(t)
        f = u / max(float(np.abs(u).max()), 1.0) * 0.5 + 0.5
    elif style == 1:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        f = np.clip(np.hypot(x - cx, y - cy) / (rng.uniform(0.3, 1.2) * max(w, h)), 0, 1) ** rng.uniform(0.5, 2.5)
    else:
        t = rng.uniform(0, 2 * np.pi)
        u = (x - rng.uniform(0, w)) * math.cos(t) + (y - rng.uniform(0, h)) * math.sin(t)
        f = _sigmoid(u / rng.uniform(2, 0.2 * max(w, h)))
    return (a + (b - a) * f).astype(np.float32)


def _flat(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A flat frame at any level from black to white (the finish adds sensor noise)."""
    return np.full((h, w), rng.uniform(0.02, 0.98), np.float32)


def _glint(canvas: np.ndarray, x: float, y: float, radius_px: float, peak: float) -> None:
    """Add a flat-topped specular spot in place (peak above 1 saturates)."""
    x_grid, y_grid = _grid(canvas.shape[1], canvas.shape[0])
    d2 = ((x_grid - x) ** 2 + (y_grid - y) ** 2) / max(radius_px, 0.5) ** 2
    canvas += peak * np.exp(-(d2**2))


def _dark_glints(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A nearly black frame (faint haze) with one or two specular glints, sometimes close together."""
    out = rng.uniform(0.0, 0.06) + rng.uniform(0.0, 0.02) * _value_noise(rng, w, h, rng.uniform(20, 100))
    side = min(w, h)
    x0, y0 = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    _glint(out, x0, y0, rng.uniform(1.0, 0.03 * side + 1.0), rng.uniform(0.8, 4.0))
    if rng.random() < 0.6:
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.4) * side
        _glint(out, x0 + dist * math.cos(ang), y0 + dist * math.sin(ang), rng.uniform(1.0, 0.03 * side + 1), 2.0)
    return out


def _checkerboard(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A checkerboard of random square size and contrast, rotated, sometimes seen in perspective."""
    x, y = _grid(w, h)
    square = rng.uniform(4, min(w, h) / 3)
    t = rng.uniform(0, np.pi / 2)
    u = (x * math.cos(t) + y * math.sin(t)) / square
    v = (-x * math.sin(t) + y * math.cos(t)) / square
    board = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    if rng.random() < 0.4:
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = src + rng.uniform(-0.2, 0.2, (4, 2)).astype(np.float32) * np.float32([w, h])
        board = cv2.warpPerspective(board, cv2.getPerspectiveTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT)
    lo, hi = sorted(rng.uniform(0.0, 1.0, 2))
    return (lo + (hi - lo) * board).astype(np.float32)


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_ITALIC | cv2.FONT_HERSHEY_SIMPLEX,
)  # fmt: skip
_TEXT_CHARS = string.ascii_letters + string.digits + "  OOoo00@Qe.,:;!?()"  # round letters over-represented


def _text(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Lines of random text (cv2.putText), dark on light or light on dark, one font and size per line."""
    dark_on_light = rng.random() < 0.7
    bg, ink = (rng.integers(170, 256), rng.integers(0, 90)) if dark_on_light else (rng.integers(0, 80), 255)
    canvas = np.full((h, w), bg, np.uint8)
    y = rng.uniform(0.0, 0.15) * h
    while y < h:
        scale = rng.uniform(0.4, 3.5) * min(w, h) / 240
        font = int(rng.choice(_FONTS))
        thickness = int(rng.integers(1, max(2, round(2.5 * scale))))
        y += 30 * scale * rng.uniform(0.9, 1.6)
        line = "".join(rng.choice(list(_TEXT_CHARS), int(rng.integers(3, 40))))
        org = (int(rng.uniform(-0.1, 0.3) * w), int(y))
        cv2.putText(canvas, line, org, font, scale, int(ink), thickness, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def _circle_aa(canvas: np.ndarray, x: float, y: float, r: float, value: int, thickness: int) -> None:
    """Anti-aliased circle with 4 bits of sub-pixel position on a uint8 canvas (thickness -1: filled)."""
    cv2.circle(canvas, (round(x * 16), round(y * 16)), max(1, round(r * 16)), value, thickness, cv2.LINE_AA, 4)


def _rings(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Circles and rings of many sizes and contrasts: coins (rimmed discs), bubbles (thin rings), or a mix."""
    side = min(w, h)
    bg = int(rng.integers(0, 256))
    canvas = np.full((h, w), bg, np.uint8)
    style = rng.integers(3)
    n = int(rng.integers(2, 12)) if style == 0 else int(rng.integers(5, 40))
    for _ in range(n):
        x, y = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h
        if style == 0:  # a coin: a filled disc, a rim and an embossed inner ring
            r = side * rng.uniform(0.05, 0.2)
            face = int(rng.integers(0, 256))
            rim, relief = (int(np.clip(face + rng.integers(-k, k), 0, 255)) for k in (80, 50))
            _circle_aa(canvas, x, y, r, face, -1)
            _circle_aa(canvas, x, y, r * 0.97, rim, max(1, round(r / 15)))
            _circle_aa(canvas, x, y, r * rng.uniform(0.5, 0.85), relief, 1)
        elif style == 1:  # a bubble: a thin bright or dark ring with a highlight
            r = math.exp(rng.uniform(math.log(3), math.log(0.25 * side)))
            _circle_aa(canvas, x, y, r, int(rng.integers(0, 256)), int(rng.integers(1, 4)))
            _circle_aa(canvas, x - 0.4 * r, y - 0.4 * r, max(1.0, 0.12 * r), 255, -1)
        else:  # anything: filled or outlined, any size and contrast
            r = math.exp(rng.uniform(math.log(2), math.log(0.45 * side)))
            filled = rng.random() < 0.5
            _circle_aa(canvas, x, y, r, int(rng.integers(0, 256)), -1 if filled else int(rng.integers(1, 8)))
    return canvas.astype(np.float32) / 255.0


def _background(rng: np.random.Generator, w: int, h: int, lo: float, hi: float) -> np.ndarray:
    """A plausible surface between levels lo and hi: flat, a gradient or a soft low-contrast texture."""
    level = rng.uniform(lo, hi)
    style = rng.integers(3)
    if style == 0:
        return np.full((h, w), level, np.float32)
    if style == 1:
        return (level + rng.uniform(-0.15, 0.15) * (_gradient(rng, w, h) - 0.5)).astype(np.float32)
    return (level + rng.uniform(0.02, 0.08) * _value_noise(rng, w, h, rng.uniform(10, 80))).astype(np.float32)


def _dark_disc(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """The hardest negative: one dark disc (or a near-circular ellipse) on a lighter surface, maybe a glint on it."""
    side = min(w, h)
    out = _background(rng, w, h, 0.35, 0.9)
    r = side * math.exp(rng.uniform(math.log(0.03), math.log(0.3)))
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    ratio, t = rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)
    x, y = _grid(w, h)
    c, s = math.cos(t), math.sin(t)
    dx, dy = x - cx, y - cy
    rho = np.hypot(c * dx + s * dy, (-s * dx + c * dy) / ratio)
    edge = rng.uniform(0.5, 0.04 * r + 0.5)  # sharp to soft edge, pixels
    inside = _sigmoid((r - rho) / edge)
    darkness = rng.uniform(0.0, 0.15)  # a pupil's reflectance
    out = out + inside * (darkness - out)
    if rng.random() < 0.5:
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.1) * r
        _glint(out, cx + dist * math.cos(ang), cy + dist * math.sin(ang), rng.uniform(1.0, 0.15 * r + 1.0), 3.0)
    return out.astype(np.float32)


def _bright_disc(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A moon: a bright limb-darkened disc with dark maria and craters on black, sometimes a crescent phase."""
    side = min(w, h)
    out = np.full((h, w), rng.uniform(0.0, 0.05), np.float32)
    r = side * rng.uniform(0.15, 0.45)
    cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
    x, y = _grid(w, h)
    d = np.hypot(x - cx, y - cy) / r
    mu = np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))
    surface = 1.0 - 0.25 * _normalise(_value_noise(rng, w, h, r / 3))  # maria
    for _ in range(int(rng.integers(5, 40))):
        ang, dist = rng.uniform(0, 2 * np.pi), r * math.sqrt(rng.random())
        kx, ky, kr = cx + dist * math.cos(ang), cy + dist * math.sin(ang), r * rng.uniform(0.02, 0.12)
        x0, x1 = max(0, math.floor(kx - 2 * kr)), min(w, math.ceil(kx + 2 * kr) + 1)
        y0, y1 = max(0, math.floor(ky - 2 * kr)), min(h, math.ceil(ky + 2 * kr) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        rk = np.hypot(x[y0:y1, x0:x1] - kx, y[y0:y1, x0:x1] - ky) / kr
        surface[y0:y1, x0:x1] -= 0.15 * np.exp(-(rk**4)) - 0.08 * np.exp(-(((rk - 1.0) / 0.15) ** 2))  # floor, rim
    lit = np.ones_like(d)
    if rng.random() < 0.4:  # phase: light from one side, terminator as a shifted disc
        ang = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(0.3, 1.5) * r
        lit = np.clip((np.hypot(x - cx - shift * math.cos(ang), y - cy - shift * math.sin(ang)) - r) / 2.0, 0, 1)
    disc = np.clip(0.5 - (d - 1.0) * r, 0.0, 1.0)  # anti-aliased edge
    brightness = rng.uniform(0.6, 1.0)
    return (out + disc * lit * brightness * (0.4 + 0.6 * mu**0.5) * surface).astype(np.float32)


def _cells(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Many small blobs: fluorescent nuclei (bright on dark) or bright-field cells (membranes and halos)."""
    fluorescent = rng.random() < 0.5
    canvas = np.full((h, w), int(rng.integers(0, 40) if fluorescent else rng.integers(150, 230)), np.uint8)
    n = int(rng.integers(20, 300) * (w * h) / (640 * 480)) + 10
    r_mean = rng.uniform(2.0, 15.0) * min(w, h) / 480 + 1.5
    for _ in range(n):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), max(1.5, r_mean * rng.uniform(0.6, 1.5))
        if fluorescent:
            _circle_aa(canvas, x, y, r, int(rng.integers(90, 256)), -1)
        else:
            _circle_aa(canvas, x, y, r * 1.15, int(np.clip(canvas[0, 0] + 25, 0, 255)), -1)  # halo
            _circle_aa(canvas, x, y, r, int(rng.integers(60, 170)), -1)
            _circle_aa(canvas, x, y, r, int(rng.integers(20, 90)), 1)  # membrane
            _circle_aa(canvas, x + rng.uniform(-0.3, 0.3) * r, y, 0.35 * r, int(rng.integers(20, 110)), -1)  # nucleus
    out = canvas.astype(np.float32) / 255.0
    return cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 2.0)) if fluorescent else out


def _face_far(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A small face (an oval, hair, brows, nose, mouth and two render_eye eyes a few pixels high) in a larger scene."""
    out = _background(rng, w, h, 0.1, 0.9)
    fh = h * rng.uniform(0.15, 0.5)  # face height: far too small for a close-up eye tracker
    fw = fh * rng.uniform(0.68, 0.8)
    cx, cy = rng.uniform(0.6 * fw, w - 0.6 * fw), rng.uniform(0.6 * fh, h - 0.6 * fh)
    skin = rng.uniform(0.35, 0.85)
    x, y = _grid(w, h)

    def oval(ox: float, oy: float, ax: float, ay: float, soft: float = 1.0) -> np.ndarray:
        d = np.hypot((x - ox) / ax, (y - oy) / ay)
        return np.clip((1.0 - d) * min(ax, ay) / soft + 0.5, 0.0, 1.0)

    hair = rng.uniform(0.02, 0.6)
    out += oval(cx, cy - 0.08 * fh, 0.56 * fw, 0.58 * fh) * (hair - out)
    out += oval(cx, cy + 0.04 * fh, 0.5 * fw, 0.5 * fh) * (skin - out)
    # Eyes: one render_eye patch, mirrored for the other eye, feathered into the skin.
    pw, ph = max(8, round(0.24 * fw)), max(5, round(0.13 * fw))
    radius = 0.42 * ph
    eye = replace(
        random_eye_params(rng, (pw, ph)),
        iris_cx=pw / 2, iris_cy=ph / 2, iris_radius_px=radius, lid_cx=pw / 2, lid_cy=ph / 2 + 0.1 * radius,
        lid_tilt_rad=0.0, lid_half_width_px=0.46 * pw, upper_lid_height_px=1.1 * radius,
        lower_lid_height_px=0.9 * radius, openness=rng.uniform(0.6, 1.0), skin_gray=skin,
        illum_gradient_x=0.0, illum_gradient_y=0.0, glints=((pw / 2 + 0.2 * radius, ph / 2 - 0.2 * radius, 0.6),),
        n_lashes=0, gain=1.0, gamma=1.0, black_level=0.0, noise_sigma=0.0,
    )  # fmt: skip
    patch = render_eye(eye, (pw, ph))[0].astype(np.float32) / 255.0
    py, px = np.mgrid[0:ph, 0:pw].astype(np.float32)
    feather = np.clip(1.5 - 1.5 * np.hypot((px - pw / 2) / (pw / 2), (py - ph / 2) / (ph / 2)), 0.0, 1.0)
    eye_y = cy - 0.05 * fh
    for side_sign, p in ((-1, patch), (1, patch[:, ::-1])):
        ex = cx + side_sign * 0.21 * fw
        x0, y0 = round(ex - pw / 2), round(eye_y - ph / 2)
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
        if sx0 < sx1 and sy0 < sy1:
            region = out[sy0:sy1, sx0:sx1]
            f = feather[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
            region += f * (p[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] - region)
        brow = oval(ex, eye_y - 0.09 * fh, 0.11 * fw, 0.018 * fh + 0.5)
        out += brow * (0.6 * hair - out) * 0.8
    out += oval(cx, cy + 0.12 * fh, 0.05 * fw, 0.09 * fh, soft=3.0) * (-0.12 * skin)  # nose shadow
    out += oval(cx, cy + 0.27 * fh, 0.16 * fw, 0.03 * fh + 0.5) * (0.45 * skin - out)  # mouth
    return out.astype(np.float32)


_GENERATORS = {
    "noise": _noise, "multiscale_noise": _multiscale_noise, "blobs": _blobs, "stripes": _stripes, "wood": _wood,
    "gradient": _gradient, "flat": _flat, "dark_glints": _dark_glints, "checkerboard": _checkerboard,
    "text": _text, "rings": _rings, "dark_disc": _dark_disc, "bright_disc": _bright_disc, "cells": _cells,
    "face_far": _face_far,
}  # fmt: skip


def _random_palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two BGR colours in [0, 1] that gray 0 and gray 1 map to."""
    return rng.uniform(0.0, 0.5, 3), rng.uniform(0.5, 1.0, 3)


def _tint_palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Black stays black, white becomes a light colour: for scenes on a black ground (glints, moon, nuclei)."""
    hi = rng.uniform(0.4, 1.0, 3)
    return np.zeros(3), hi / hi.max()


def _skin_palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dark brown to a warm light tone (BGR), so a gray face becomes a plausible skin colour."""
    return np.array([0.02, 0.03, 0.06]) * rng.uniform(0.5, 2.0), np.array([0.72, 0.85, 1.0]) * rng.uniform(0.85, 1.0)


# Colour versions: most kinds through two random colours; black stays black where it is the point (glints on
# black, the moon, a dark disc that must stay as dark as a pupil); faces get skin tones.
_PALETTES = {
    "dark_glints": _tint_palette, "bright_disc": _tint_palette, "dark_disc": _tint_palette, "face_far": _skin_palette,
}  # fmt: skip


def _finish(gray: np.ndarray, rng: np.random.Generator, palette: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """(H, W) float gray -> (H, W) uint8, or (H, W, 3) uint8 BGR through `palette`, with mild blur and noise."""
    h, w = gray.shape
    out = gray.astype(np.float32)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.5))
    if palette is not None:
        lo, hi = (np.asarray(c, np.float32) for c in palette)
        out = lo + out[:, :, None] * (hi - lo)
        noise = rng.standard_normal((h, w, 3), dtype=np.float32)
    else:
        noise = rng.standard_normal((h, w), dtype=np.float32)
    out = out + rng.uniform(0.0, 0.03) * noise
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def write_negatives(folder: str | Path, images: Iterable[NegativeImage]) -> int:
    """Write images as folder/<name>.png plus folder/index.csv (file, name, kind); returns how many."""
    folder = Path(folder)
    lines = ["file,name,kind"]
    for item in images:
        file = Path(item.name + ".png")
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / file), item.image)
        lines.append(f"{file.as_posix()},{item.name},{item.kind}")
    (folder / "index.csv").write_text("\n".join(lines) + "\n")
    return len(lines) - 1


# ------------------------------------------------------------------------------------------ measurement
# Not tests: what today's tracker does on the material above (`python -m tools.negatives`).

PUPIL_HIDDEN_BELOW = 0.2  # blink clip: a pupil reported while less than this much of its outline shows is on the slit
IRIS_HIDDEN_BELOW = 1.0 / 3.0  # blink clip: an iris reported with less than a third of its outline visible
RADIUS_TOL = 0.05  # half-closed eyes: a semi-major axis within 5 % of the truth (the centre as in is_hit)


@dataclass(frozen=True, slots=True)
class Found:
    """What the tracker reported for one image or frame (None: no such boundary)."""

    name: str
    kind: str
    status: str
    iris_confidence: float | None
    pupil_confidence: float | None
    iris_semi_major_px: float | None
    pupil_semi_major_px: float | None

    @classmethod
    def of(cls, name: str, kind: str, result: FrameResult) -> Found:
        """A FrameResult -> the fields the measurement reports."""
        iris, pupil = result.iris, result.pupil
        return cls(
            name,
            kind,
            result.status.value,
            iris.confidence if iris else None,
            pupil.confidence if pupil else None,
            iris.ellipse.semi_major if iris else None,
            pupil.ellipse.semi_major if pupil else None,
        )

    @property
    def any_ellipse(self) -> bool:
        """True when the iris or the pupil was reported."""
        return self.iris_confidence is not None or self.pupil_confidence is not None


def load_tracker(smooth: bool, model: str | None = None) -> Tracker:
    """The shipped model (or `model`) on the "auto" backend; smoothing on for clips, off for unrelated images."""
    from tracker.pipeline import Tracker, TrackerConfig

    return Tracker.from_model(model, config=TrackerConfig(smooth=smooth))


def measure_negatives(tracker: Tracker, images: Iterable[NegativeImage]) -> list[Found]:
    """Run a (non-smoothing) tracker on each negative image: one Found per image."""
    out = []
    for item in images:
        tracker.reset()
        out.append(Found.of(item.name, item.kind, tracker(item.image)))
    return out


def _confidences(values: list[float]) -> str:
    """'median / max' of the confidences, or '-'."""
    return f"{np.median(values):.2f} / {max(values):.2f}" if values else "-"


def negatives_table(found: list[Found]) -> str:
    """Markdown: per kind, images, with any ellipse, with status ok, iris and pupil counts and confidences."""
    rows = [
        "| kind | images | any ellipse | status ok | iris | pupil | iris conf. median / max "
        "| pupil conf. median / max |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    kinds = sorted({f.kind for f in found}, key=lambda k: (k.startswith("photo_"), k))
    for kind in [*kinds, "all"]:
        group = [f for f in found if kind in ("all", f.kind)]
        iris = [f.iris_confidence for f in group if f.iris_confidence is not None]
        pupil = [f.pupil_confidence for f in group if f.pupil_confidence is not None]
        ok = sum(f.status == "ok" for f in group)
        name = f"**{kind}**" if kind == "all" else kind
        rows.append(
            f"| {name} | {len(group)} | {sum(f.any_ellipse for f in group)} | {ok} | {len(iris)} | {len(pupil)} "
            f"| {_confidences(iris)} | {_confidences(pupil)} |"
        )
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class BlinkFrame:
    """One closing-lid frame: its truth and what the tracker reported."""

    clip_seed: int
    frame: int
    openness: float
    iris_visible: float
    pupil_visible: float
    status: str
    iris_confidence: float | None
    pupil_confidence: float | None
    iris_hit: bool  # centre within 5 % of the true semi-major (is_hit)
    pupil_hit: bool


def measure_blink(
    tracker: Tracker, seeds: Iterable[int], n_frames: int = 48, size_wh: tuple[int, int] = (320, 240)
) -> list[BlinkFrame]:
    """Run a tracker (reset per clip) over render_blink_clip for each seed: one BlinkFrame per frame."""
    from tools.evaluation import is_hit

    out = []
    for seed in seeds:
        tracker.reset()
        for i, (image, truth) in enumerate(render_blink_clip(n_frames, size_wh, seed)):
            r = tracker(image)
            out.append(
                BlinkFrame(
                    clip_seed=seed,
                    frame=i,
                    openness=truth.openness,
                    iris_visible=truth.iris_visible_fraction,
                    pupil_visible=truth.pupil_visible_fraction,
                    status=r.status.value,
                    iris_confidence=r.iris.confidence if r.iris else None,
                    pupil_confidence=r.pupil.confidence if r.pupil else None,
                    iris_hit=is_hit(truth.iris, r.iris.ellipse if r.iris else None),
                    pupil_hit=is_hit(truth.pupil, r.pupil.ellipse if r.pupil else None),
                )
            )
    return out


def blink_table(frames: list[BlinkFrame]) -> str:
    """Markdown: frames by how much of each outline shows, and what the tracker reported on them."""
    groups = (
        ("pupil visible < 0.2 (slit or shut)", lambda f: f.pupil_visible < PUPIL_HIDDEN_BELOW, "pupil"),
        ("iris visible < 1/3", lambda f: f.iris_visible < IRIS_HIDDEN_BELOW, "iris"),
        ("eye shut (openness 0)", lambda f: f.openness == 0.0, "any"),
        ("fully open (openness 1)", lambda f: f.openness == 1.0, "any"),
    )
    rows = [
        "| frames | n | pupil reported | iris reported | status ok | pupil conf. median / max "
        "| iris conf. median / max | iris hit | pupil hit |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for label, select, _ in groups:
        g = [f for f in frames if select(f)]
        pupil = [f.pupil_confidence for f in g if f.pupil_confidence is not None]
        iris = [f.iris_confidence for f in g if f.iris_confidence is not None]
        rows.append(
            f"| {label} | {len(g)} | {len(pupil)} | {len(iris)} | {sum(f.status == 'ok' for f in g)} "
            f"| {_confidences(pupil)} | {_confidences(iris)} | {sum(f.iris_hit for f in g)} "
            f"| {sum(f.pupil_hit for f in g)} |"
        )
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class HalfClosedEye:
    """One half-closed eye: the visible share of its limbus and how the reported iris compares with the truth."""

    index: int
    iris_visible: float
    pupil_visible: float
    status: str
    iris_confidence: float | None
    centre_error_frac: float | None  # |centre error| / true semi-major
    semi_major_ratio: float | None  # reported / true
    semi_minor_ratio: float | None
    pupil_reported: bool
    pupil_hit: bool

    @property
    def outcome(self) -> str:
        """'right' (centre and semi-major within 5 %), 'centre only', 'off' or 'dropped'."""
        if self.centre_error_frac is None:
            return "dropped"
        centre_ok = self.centre_error_frac <= RADIUS_TOL
        if centre_ok and abs(self.semi_major_ratio - 1.0) <= RADIUS_TOL:
            return "right"
        return "centre only" if centre_ok else "off"


def measure_half_closed(
    tracker: Tracker, n: int = 50, size_wh: tuple[int, int] = (320, 240), seed: int = 0
) -> list[HalfClosedEye]:
    """Run a (non-smoothing) tracker on n half_closed_eye_params eyes."""
    from tools.evaluation import center_error_px, is_hit

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image, truth = render_eye(half_closed_eye_params(rng, size_wh), size_wh)
        tracker.reset()
        r = tracker(image)
        iris: Ellipse | None = r.iris.ellipse if r.iris else None
        a = truth.iris.semi_major
        out.append(
            HalfClosedEye(
                index=i,
                iris_visible=truth.iris_visible_fraction,
                pupil_visible=truth.pupil_visible_fraction,
                status=r.status.value,
                iris_confidence=r.iris.confidence if r.iris else None,
                centre_error_frac=center_error_px(truth.iris, iris) / a if iris else None,
                semi_major_ratio=iris.semi_major / a if iris else None,
                semi_minor_ratio=iris.semi_minor / truth.iris.semi_minor if iris else None,
                pupil_reported=r.pupil is not None,
                pupil_hit=is_hit(truth.pupil, r.pupil.ellipse if r.pupil else None),
            )
        )
    return out


def half_closed_table(eyes: list[HalfClosedEye]) -> str:
    """Markdown: outcomes of the iris on half-closed eyes, with confidences and the reported/true axis ratios."""
    rows = [
        "| iris outcome | eyes | conf. median / max | semi-major reported/true median "
        "| semi-minor reported/true median |",
        "|---|---:|---|---|---|",
    ]
    for outcome in ("right", "centre only", "off", "dropped"):
        g = [e for e in eyes if e.outcome == outcome]
        conf = [e.iris_confidence for e in g if e.iris_confidence is not None]
        major = [e.semi_major_ratio for e in g if e.semi_major_ratio is not None]
        minor = [e.semi_minor_ratio for e in g if e.semi_minor_ratio is not None]
        rows.append(
            f"| {outcome} | {len(g)} | {_confidences(conf)} | {f'{np.median(major):.2f}' if major else '-'} "
            f"| {f'{np.median(minor):.2f}' if minor else '-'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.negatives`: measure the tracker on negatives, closing lids and half-closed eyes."""
    parser = argparse.ArgumentParser(prog="python -m tools.negatives", description=main.__doc__)
    parser.add_argument("--n-synthetic", type=int, default=DEFAULT_N_SYNTHETIC)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blink-clips", type=int, default=5, help="closing-lid clips (seeds 0..N-1), 48 frames each")
    parser.add_argument("--half-closed", type=int, default=50)
    parser.add_argument("--model", default=None, help="model file (default: the shipped one)")
    parser.add_argument("--json", type=Path, default=None, help="also write every per-image/per-frame row here")
    parser.add_argument("--write-images", type=Path, default=None, help="write the negative set as PNGs here")
    args = parser.parse_args(argv)

    images = list(negative_images(args.n_synthetic, args.seed))
    if args.write_images:
        write_negatives(args.write_images, images)
    from tracker.pipeline import Tracker

    still = load_tracker(smooth=False, model=args.model)
    video = Tracker(still.backend, replace(still.config, smooth=True))  # the same model, as a video would run it
    negatives = measure_negatives(still, images)
    blinks = measure_blink(video, range(args.blink_clips))
    blinks_raw = measure_blink(still, range(args.blink_clips))
    half = measure_half_closed(still, args.half_closed, seed=args.seed)
    counts = Counter(e.outcome for e in half)
    print(f"## Negative set: {len(images)} images without a close-up eye (seed {args.seed})\n")
    print(negatives_table(negatives))
    print(f"\n## Closing-lid clips: {args.blink_clips} x 48 frames, smoothing on (video)\n")
    print(blink_table(blinks))
    print("\n## The same clips, smoothing off\n")
    print(blink_table(blinks_raw))
    print(f"\n## Half-closed eyes: {len(half)} (only the side arcs of the limbus visible)\n")
    print(half_closed_table(half))
    hidden = [e for e in half if e.pupil_visible < PUPIL_HIDDEN_BELOW]
    print(
        f"\niris: right {counts['right']}, centre only {counts['centre only']}, off {counts['off']}, "
        f"dropped {counts['dropped']}; status ok {sum(e.status == 'ok' for e in half)}. "
        f"pupil: reported {sum(e.pupil_reported for e in half)}, of them within 5 % {sum(e.pupil_hit for e in half)}; "
        f"reported where < 0.2 of it shows: {sum(e.pupil_reported for e in hidden)} of {len(hidden)}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "negatives": [asdict(f) for f in negatives],
                    "blink_smoothed": [asdict(f) for f in blinks],
                    "blink_raw": [asdict(f) for f in blinks_raw],
                    "half_closed": [asdict(e) | {"outcome": e.outcome} for e in half],
                },
                indent=1,
            )
        )
    still.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
