"""Synthetic NIR-like eye images and clips with exact ground truth (numpy + OpenCV only).

The eye is a flat iris disc seen through an orthographic camera: a gaze tilt maps the unit disc of the
iris plane to the limbus ellipse, and the pupil is a smaller disc in the same plane, so the two ellipses
are always tilted consistently. Lids are two parabolic arcs in a (possibly rotated) lid frame. Every
boundary is drawn with analytic coverage, clip(0.5 - signed_distance_px, 0, 1), so a pixel half covered
by a region gets half its intensity: the 50 % crossing of the profile sits on the exact curve.
Pixel centres are at integer coordinates, x right, y down.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import TrackerError
from tracker.structures import Ellipse

EVENTS: tuple[str, ...] = ("fixation", "saccade", "pursuit", "blink")
# Below this visible fraction a boundary is not recoverable from the image: the CSV leaves it blank.
MIN_VISIBLE_FRACTION = 0.15
# Iris texture resolution in (normalised radius, angle): fine enough for 40 px radii at 320 x 240.
_TEX_NR, _TEX_NT = 64, 512
_EYE_RADIUS_PER_IRIS = 1.8  # eyeball rotation centre to iris plane, in iris radii (~11 mm / 6 mm)
_LASH_POINTS = 7

CLIP_COLUMNS: tuple[str, ...] = (
    "frame", "timestamp_s", "event", "openness",
    "iris_cx", "iris_cy", "iris_semi_major", "iris_semi_minor", "iris_angle_deg",
    "pupil_cx", "pupil_cy", "pupil_semi_major", "pupil_semi_minor", "pupil_angle_deg",
)  # fmt: skip
IMAGE_SET_COLUMNS: tuple[str, ...] = (
    "image",
    "iris_cx", "iris_cy", "iris_semi_major", "iris_semi_minor", "iris_angle_deg",
    "pupil_cx", "pupil_cy", "pupil_semi_major", "pupil_semi_minor", "pupil_angle_deg",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EyeTruth:
    """Exact ground truth of one rendered frame, frame pixels."""

    iris: Ellipse  # the full limbus ellipse (even where lids hide part of it)
    pupil: Ellipse  # the full pupil ellipse
    mask: np.ndarray  # (H, W) uint8: 0 background/skin/sclera/lid, 1 visible iris, 2 visible pupil
    openness: float  # 0 = eye closed, 1 = fully open
    iris_visible_fraction: float  # fraction of the iris ellipse's perimeter that is not under a lid
    pupil_visible_fraction: float
    event: str  # "fixation" | "saccade" | "pursuit" | "blink" ("fixation" for single images)


@dataclass(frozen=True, slots=True)
class EyeParams:
    """Everything needed to render one frame; lengths in frame pixels, intensities in [0, 1] of full scale."""

    # Iris disc: centre, radius, gaze tilt (x, y components of the unit gaze vector, |tilt| < 1; the
    # ellipse's axis ratio is sqrt(1 - |tilt|^2)) and roll of the texture about the optical axis.
    iris_cx: float
    iris_cy: float
    iris_radius_px: float
    tilt_x: float
    tilt_y: float
    roll_rad: float
    # Pupil disc in the iris plane, in iris radii: radius ratio and centre offset (decentration).
    pupil_ratio: float
    pupil_offset_x: float
    pupil_offset_y: float
    # Lids: parabolas in a frame centred at (lid_cx, lid_cy) rotated by lid_tilt_rad; the opening spans
    # |u| < lid_half_width_px; openness 1 puts the upper lid apex upper_lid_height_px above the centre,
    # openness 0 lowers it onto the lower lid.
    lid_cx: float
    lid_cy: float
    lid_tilt_rad: float
    lid_half_width_px: float
    upper_lid_height_px: float
    lower_lid_height_px: float
    openness: float
    # Eyelashes: a per-eye set drawn from lash_seed, rooted on the current upper lid.
    lash_seed: int
    n_lashes: int
    lash_length_px: float
    lash_darkness: float
    # Specular glints: ((x_px, y_px, radius_px), ...), saturated after the tone curve.
    glints: tuple[tuple[float, float, float], ...]
    # Appearance: reflectances in [0, 1]; the iris texture comes from texture_seed.
    texture_seed: int
    pupil_gray: float
    iris_gray: float
    sclera_gray: float
    skin_gray: float
    iris_contrast: float
    limbus_darkness: float
    lid_shadow: float
    # Camera: illumination gradient (fractional change across the frame in x, y), defocus, tone, noise.
    illum_gradient_x: float
    illum_gradient_y: float
    blur_sigma_px: float
    gain: float
    gamma: float
    black_level: float
    noise_sigma: float
    noise_seed: int


# ---------------------------------------------------------------------------------------------- geometry


def iris_plane_affine(params: EyeParams) -> np.ndarray:
    """2x3 map from iris-plane coordinates (iris radii, centre 0) to frame pixels."""
    gx, gy = params.tilt_x, params.tilt_y
    gz = math.sqrt(max(1.0 - gx * gx - gy * gy, 1e-6))
    # Projected columns of the rotation that takes the optical axis onto the gaze: continuous in the
    # tilt, so the texture does not spin when the ellipse passes through a circle.
    k = 1.0 / (1.0 + gz)
    tilt = np.array([[1.0 - gx * gx * k, -gx * gy * k], [-gx * gy * k, 1.0 - gy * gy * k]])
    c, s = math.cos(params.roll_rad), math.sin(params.roll_rad)
    linear = params.iris_radius_px * tilt @ np.array([[c, -s], [s, c]])
    return np.hstack([linear, [[params.iris_cx], [params.iris_cy]]])


def iris_ellipse(params: EyeParams) -> Ellipse:
    """The limbus ellipse in frame pixels."""
    return Ellipse.circle(0.0, 0.0, 1.0).affine(iris_plane_affine(params))


def pupil_ellipse(params: EyeParams) -> Ellipse:
    """The pupil ellipse in frame pixels."""
    circle = Ellipse.circle(params.pupil_offset_x, params.pupil_offset_y, params.pupil_ratio)
    return circle.affine(iris_plane_affine(params))


def _lid_curves(params: EyeParams, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower lid v(u) and their slopes dv/du in the lid frame (v down), for `u` in pixels."""
    o = float(np.clip(params.openness, 0.0, 1.0))
    # The lower lid rises a little as the eye closes; at o = 0 the upper lid lies on it.
    lower_h = params.lower_lid_height_px * (0.8 + 0.2 * o)
    upper_h = -params.upper_lid_height_px * o + (1.0 - o) * lower_h
    w2 = params.lid_half_width_px**2
    q = 1.0 - u * u / w2
    dq = -2.0 * u / w2
    return upper_h * q, lower_h * q, upper_h * dq, lower_h * dq


def lid_signed_distances(params: EyeParams, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate signed distances (px) below the upper lid and above the lower lid; both > 0 = open."""
    c, s = math.cos(params.lid_tilt_rad), math.sin(params.lid_tilt_rad)
    dx, dy = x - params.lid_cx, y - params.lid_cy
    u = c * dx + s * dy
    v = -s * dx + c * dy
    up, lo, dup, dlo = _lid_curves(params, u)
    # First-order distance to the curve v = f(u): (v - f) / sqrt(1 + f'^2); exact in sign.
    return (v - up) / np.sqrt(1.0 + dup * dup), (lo - v) / np.sqrt(1.0 + dlo * dlo)


def _visible_fraction(params: EyeParams, ellipse: Ellipse, n: int = 720, occluded: np.ndarray | None = None) -> float:
    """Fraction of the ellipse's arc length whose points are not under a lid (nor `occluded`, (H, W) bool)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    xy = ellipse.points_at(t)
    # |dP/dt| weights make this an arc-length fraction, not a parametric-angle fraction.
    speed = np.hypot(ellipse.semi_major * np.sin(t), ellipse.semi_minor * np.cos(t))
    d_up, d_lo = lid_signed_distances(params, xy[:, 0], xy[:, 1])
    visible = (d_up > 0) & (d_lo > 0)
    if occluded is not None:
        h, w = occluded.shape
        ix, iy = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        visible[inside] &= ~occluded[iy[inside], ix[inside]]
    total = float(speed.sum())
    return float(speed[visible].sum()) / total if total > 0 else 0.0


def _bbox(ellipse: Ellipse, size_wh: tuple[int, int], margin_px: float) -> tuple[int, int, int, int] | None:
    """Pixel index box (x0, y0, x1, y1), end-exclusive, holding the ellipse plus margin; None if off-frame."""
    c, s = math.cos(ellipse.angle_rad), math.sin(ellipse.angle_rad)
    a, b = ellipse.semi_major, ellipse.semi_minor
    hx = math.hypot(a * c, b * s) + margin_px
    hy = math.hypot(a * s, b * c) + margin_px
    w, h = size_wh
    x0, x1 = max(0, math.floor(ellipse.cx - hx)), min(w, math.ceil(ellipse.cx + hx) + 1)
    y0, y1 = max(0, math.floor(ellipse.cy - hy)), min(h, math.ceil(ellipse.cy + hy) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


@functools.lru_cache(maxsize=16)
def _pixel_grid(size_wh: tuple[int, int], dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) x and y of pixel centres in `dtype`, read-only."""
    w, h = size_wh
    y, x = np.mgrid[0:h, 0:w].astype(dtype)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


# ---------------------------------------------------------------------------------------- per-eye assets


def _wrap_blur(a: np.ndarray, sigma_r: float, sigma_t: float) -> np.ndarray:
    """Gaussian blur of a (NR, NT) polar array, periodic in the angle (axis 1), clamped in the radius."""
    pad = int(3 * sigma_t) + 2
    padded = np.concatenate([a[:, -pad:], a, a[:, :pad]], axis=1)
    out = cv2.GaussianBlur(padded, (0, 0), sigmaX=sigma_t, sigmaY=sigma_r, borderType=cv2.BORDER_REFLECT)
    return out[:, pad:-pad]


def _unit_std(a: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (float32)."""
    a = a - a.mean()
    return (a / max(float(a.std()), 1e-6)).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _iris_texture(seed: int, contrast: float, limbus_darkness: float) -> np.ndarray:
    """(NR, NT) float32 reflectance factor over (normalised radius 0 pupil..1 limbus, angle 0..2pi)."""
    rng = np.random.default_rng(seed)
    nr, nt = _TEX_NR, _TEX_NT
    rho = np.linspace(0.0, 1.0, nr, dtype=np.float32)[:, None]
    theta = np.linspace(0.0, 2 * np.pi, nt, endpoint=False, dtype=np.float32)[None, :]
    pi = np.float32(np.pi)
    # Radial fibres: noise long along the radius, thin across it.
    fibres = _unit_std(_wrap_blur(rng.standard_normal((nr, nt)).astype(np.float32), 7.0, 0.9))
    # Coarse blotches: blurred at 1/4 resolution (a wide blur at full resolution costs more than a frame).
    small = _wrap_blur(rng.standard_normal((nr // 4, nt // 4)).astype(np.float32), 1.5, 3.5)
    coarse = _unit_std(cv2.resize(small, (nt, nr), interpolation=cv2.INTER_LINEAR))
    # Collarette: a wavy ring splitting the pupillary zone from the ciliary zone.
    wobble = _unit_std(_wrap_blur(rng.standard_normal((1, nt)).astype(np.float32), 0.1, 10.0))
    rho_c = rng.uniform(0.25, 0.42) + 0.04 * wobble
    collarette = np.exp(-(((rho - rho_c) / 0.035) ** 2))
    zone = np.where(rho < rho_c, rng.uniform(-0.5, 0.5), 0.0)
    # Crypts: dark lens-shaped holes in the ciliary zone.
    crypts = np.zeros((nr, nt), np.float32)
    for _ in range(int(rng.integers(4, 16))):
        r0, t0 = rng.uniform(0.35, 0.85), rng.uniform(0, 2 * np.pi)
        dr, dt = rng.uniform(0.03, 0.09), rng.uniform(0.03, 0.12)
        ang = (theta - t0 + pi) % (2 * pi) - pi  # wrapped angular distance
        # Separable Gaussian: an outer product is far cheaper than a full-grid exp.
        crypts += rng.uniform(0.6, 1.6) * np.exp(-(((rho - r0) / dr) ** 2)) * np.exp(-((ang / dt) ** 2))
    # Contraction furrows: partial concentric dark arcs near the periphery.
    furrows = np.zeros((nr, nt), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        r0, t0, span = rng.uniform(0.6, 0.9), rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 2.0)
        ang = (theta - t0 + pi) % (2 * pi) - pi
        furrows += np.exp(-(((rho - r0) / 0.012) ** 2)) * (np.abs(ang) < span)
    detail = 0.55 * fibres + 0.35 * coarse + 0.8 * collarette + zone - crypts - 0.8 * furrows
    factor = 1.0 + contrast * detail
    ruff = 1.0 - 0.35 * np.exp(-rho / 0.04)  # dark pupillary ruff at the pupil margin
    limbal = 1.0 - limbus_darkness * np.exp((rho - 1.0) / 0.09)  # darker limbal ring
    out = np.clip(factor * ruff * limbal, 0.05, 3.0).astype(np.float32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=8)
def _fine_noise(size_wh: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 unit-std noise with a ~1 px correlation length, fixed per frame size."""
    w, h = size_wh
    raw = np.random.default_rng(12345).standard_normal((h, w)).astype(np.float32)
    out = _unit_std(cv2.GaussianBlur(raw, (0, 0), 1.2))
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=16)
def _skin_texture(seed: int, size_wh: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 zero-mean, unit-std low-frequency noise for skin, sclera and pupil shading."""
    w, h = size_wh
    rng = np.random.default_rng(seed + 1)
    coarse = rng.standard_normal((max(2, h // 40), max(2, w // 40))).astype(np.float32)
    low = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    # Pores: one shared fine field, shifted per eye (generating it per eye costs more than the render).
    fine = np.roll(_fine_noise(size_wh), (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
    out = _unit_std(0.8 * _unit_std(low) + 0.35 * fine)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=64)
def _lash_shapes(seed: int, n: int) -> np.ndarray:
    """(n, 5) float64 per lash: root position along the lid (-1..1), start angle, curl, length factor, thick."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(-0.92, 0.92, n)
    # Most lashes point up and out over the skin; about a third hang down over the eye.
    down = rng.random(n) < 0.35
    base = np.where(down, np.pi / 2, -np.pi / 2) + rng.normal(0.0, 0.25, n)
    lean = 0.9 * u * np.where(down, -1.0, 1.0)  # fan outwards from the lid centre
    curl = rng.uniform(0.02, 0.12, n) * np.sign(u + 1e-9) * np.where(down, -1.0, 1.0)
    length = rng.uniform(0.45, 1.0, n) * np.where(down, 0.8, 1.0)
    thick = (rng.random(n) < 0.12).astype(np.float64)
    out = np.stack([u, base + lean, curl, length, thick], axis=1)
    out.setflags(write=False)
    return out


# ------------------------------------------------------------------------------------------- rendering


def _coverage(signed_distance_px: np.ndarray) -> np.ndarray:
    """Area coverage of a region from the signed distance of pixel centres (> 0 inside)."""
    return np.clip(0.5 + signed_distance_px, 0.0, 1.0)


def _disc_coords(params: EyeParams, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iris-plane coordinates (p, q) of pixels and the 2x2 inverse-transpose used for gradient norms."""
    m = iris_plane_affine(params)
    inv = np.linalg.inv(m[:, :2])
    dx, dy = x - m[0, 2], y - m[1, 2]
    return inv[0, 0] * dx + inv[0, 1] * dy, inv[1, 0] * dx + inv[1, 1] * dy, inv.T


def _circle_distance_px(p: np.ndarray, q: np.ndarray, inv_t: np.ndarray, radius: float) -> np.ndarray:
    """Signed pixel distance inside the plane circle |(p, q)| = radius (> 0 inside), first order."""
    r = np.hypot(p, q)
    rs = np.maximum(r, 1e-9)
    # Gradient of r in pixels = inv^T (p, q) / r; dividing by its norm turns plane units into pixels.
    gx = (inv_t[0, 0] * p + inv_t[0, 1] * q) / rs
    gy = (inv_t[1, 0] * p + inv_t[1, 1] * q) / rs
    return (radius - r) / np.maximum(np.hypot(gx, gy), 1e-9)


def _draw_lashes(params: EyeParams, size_wh: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 lash opacity in [0, 1], lashes rooted on the current upper lid."""
    w, h = size_wh
    layer = np.zeros((h, w), np.uint8)
    if params.n_lashes <= 0 or params.lash_length_px <= 0:
        return np.zeros((h, w), np.float32)
    shapes = _lash_shapes(params.lash_seed, params.n_lashes)
    u0 = shapes[:, 0] * params.lid_half_width_px
    up, _, _, _ = _lid_curves(params, u0)
    k = np.arange(_LASH_POINTS)[None, :]
    angle = shapes[:, 1:2] + shapes[:, 2:3] * k
    step = (params.lash_length_px * shapes[:, 3:4]) / (_LASH_POINTS - 1)
    du = np.concatenate([np.zeros((len(u0), 1)), np.cumsum(step * np.cos(angle[:, :-1]), axis=1)], axis=1)
    dv = np.concatenate([np.zeros((len(u0), 1)), np.cumsum(step * np.sin(angle[:, :-1]), axis=1)], axis=1)
    u, v = u0[:, None] + du, up[:, None] + dv
    c, s = math.cos(params.lid_tilt_rad), math.sin(params.lid_tilt_rad)
    x = params.lid_cx + c * u - s * v
    y = params.lid_cy + s * u + c * v
    pts = np.round(np.stack([x, y], axis=-1) * 16).astype(np.int32)  # 4 fractional bits for cv2 shift
    thick = shapes[:, 4] > 0
    for mask, width in ((~thick, 1), (thick, 2)):
        if mask.any():
            cv2.polylines(layer, list(pts[mask]), False, 255, width, cv2.LINE_AA, shift=4)
    return layer.astype(np.float32) * (params.lash_darkness / 255.0)


def _add_glints(scene: np.ndarray, glints: tuple[tuple[float, float, float], ...]) -> None:
    """Add flat-topped specular spots (scene value up to ~4, so they saturate) in place; (C, H, W) scene."""
    h, w = scene.shape[1:]
    for gx, gy, radius in glints:
        reach = 2.0 * radius + 2.0
        x0, x1 = max(0, math.floor(gx - reach)), min(w, math.ceil(gx + reach) + 1)
        y0, y1 = max(0, math.floor(gy - reach)), min(h, math.ceil(gy + reach) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d2 = ((xx - gx) ** 2 + (yy - gy) ** 2) / max(radius, 0.3) ** 2
        spot = 4.0 * np.exp(-(d2**2))
        scene[:, y0:y1, x0:x1] += spot


@dataclass(frozen=True, slots=True)
class _Layers:
    """Colour-free shading, coverage and labels of one eye; (H, W) float32 unless noted.

    Colours are applied by _composite, so one geometry renders as NIR gray or as visible-light colour.
    """

    d_up: np.ndarray  # signed px below the upper lid (> 0 in the opening)
    d_lo: np.ndarray  # signed px above the lower lid
    u_frac: np.ndarray  # position along the lid opening: 0 centre, +-1 at the eye corners
    sclera_shade: np.ndarray
    eye_shade: np.ndarray  # shadow of the upper lid over the whole opening
    skin_shade: np.ndarray  # skin texture, lash lines and lid crease
    open_cov: np.ndarray  # area coverage of the lid opening
    lashes: np.ndarray  # lash opacity
    box: tuple[int, int, int, int] | None  # iris pixel box (x0, y0, x1, y1); the fields below are its size
    a_iris: np.ndarray | None
    a_pupil: np.ndarray | None
    iris_tex: np.ndarray | None  # iris reflectance factor around 1
    rho: np.ndarray | None  # normalised iris radius: 0 pupil margin, 1 limbus
    pupil_shade: np.ndarray | None
    mask: np.ndarray  # (H, W) uint8 labels 0 / 1 iris / 2 pupil


def _eye_layers(params: EyeParams, size_wh: tuple[int, int]) -> _Layers:
    """Shading and coverage layers of one eye, with exact labels."""
    w, h = size_wh
    # Full-frame shading in float32 for speed; label geometry in float64 inside the iris box.
    x, y = _pixel_grid((w, h), np.float32)
    x64, y64 = _pixel_grid((w, h), np.float64)
    noise_field = _skin_texture(params.texture_seed, (w, h))

    d_up, d_lo = lid_signed_distances(params, x, y)
    open_cov = (_coverage(d_up) * _coverage(d_lo)).astype(np.float32)
    open_mask = (d_up > 0) & (d_lo > 0)

    # Sclera: smooth, darker towards the corners and in the shadow of the upper lid.
    c, s = math.cos(params.lid_tilt_rad), math.sin(params.lid_tilt_rad)
    u_frac = (c * (x - params.lid_cx) + s * (y - params.lid_cy)) / params.lid_half_width_px
    sclera_shade = (1.0 - 0.35 * np.minimum(u_frac * u_frac, 1.0)) * (1.0 + 0.03 * noise_field)

    mask = np.zeros((h, w), np.uint8)
    box = _bbox(iris_ellipse(params), (w, h), margin_px=2.0)
    a_iris = a_pupil = iris_tex = rho = pupil_shade = None
    if box is not None:
        x0, y0, x1, y1 = box
        bx, by = x64[y0:y1, x0:x1], y64[y0:y1, x0:x1]
        p, q, inv_t = _disc_coords(params, bx, by)
        d_iris = _circle_distance_px(p, q, inv_t, 1.0)
        pp, pq = p - params.pupil_offset_x, q - params.pupil_offset_y
        d_pupil = _circle_distance_px(pp, pq, inv_t, params.pupil_ratio)
        # Texture lookup in (normalised radius, angle); the texture stretches as the pupil dilates.
        r = np.hypot(p, q)
        rho = np.clip((r - params.pupil_ratio) / max(1.0 - params.pupil_ratio, 1e-3), 0.0, 1.0).astype(np.float32)
        map_y = rho * np.float32(_TEX_NR - 1.001)
        map_x = ((np.arctan2(q, p) % (2 * np.pi)) * (_TEX_NT / (2 * np.pi))).astype(np.float32)
        tex = _iris_texture(params.texture_seed, params.iris_contrast, params.limbus_darkness)
        iris_tex = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        pupil_shade = 1.0 + 0.25 * noise_field[y0:y1, x0:x1]
        a_iris = _coverage(d_iris).astype(np.float32)
        a_pupil = _coverage(d_pupil).astype(np.float32)
        # Exact labels: pixel centre strictly inside the ellipse and in the lid opening.
        open_box = open_mask[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] = np.where((d_pupil > 0) & open_box, 2, np.where((d_iris > 0) & open_box, 1, 0))

    # The upper lid shades the eye just below its margin.
    shadow_px = 0.15 * params.iris_radius_px + 1.0
    eye_shade = 1.0 - params.lid_shadow * np.exp(-np.maximum(d_up, 0.0) / shadow_px).astype(np.float32)

    # Skin with a dark lash line along the lid margins and a lid crease above the upper lid.
    # Margins and crease fade out towards the eye corners (the parabolas continue past them).
    fade = np.clip(1.0 - u_frac * u_frac, 0.0, 1.0) ** 0.5
    crease_px = 0.45 * params.upper_lid_height_px + 2.0
    skin_shade = 1.0 + 0.04 * noise_field
    skin_shade *= 1.0 - 0.35 * fade * np.exp(-((d_up / 2.5) ** 2)).astype(np.float32)
    skin_shade *= 1.0 - 0.15 * fade * np.exp(-(((d_up + crease_px) / (0.15 * crease_px + 1.0)) ** 2)).astype(np.float32)
    skin_shade *= 1.0 - 0.2 * fade * np.exp(-((d_lo / 2.0) ** 2)).astype(np.float32)
    return _Layers(
        d_up=d_up,
        d_lo=d_lo,
        u_frac=u_frac,
        sclera_shade=sclera_shade,
        eye_shade=eye_shade,
        skin_shade=skin_shade,
        open_cov=open_cov,
        lashes=_draw_lashes(params, (w, h)),
        box=box,
        a_iris=a_iris,
        a_pupil=a_pupil,
        iris_tex=iris_tex,
        rho=rho,
        pupil_shade=pupil_shade,
        mask=mask,
    )


def _composite(
    layers: _Layers,
    sclera: np.ndarray,
    iris: np.ndarray,
    pupil: np.ndarray,
    skin: np.ndarray,
    glints: tuple[tuple[float, float, float], ...] = (),
    specular: np.ndarray | None = None,
    lash: np.ndarray | None = None,
) -> np.ndarray:
    """(C, H, W) float32 planar scene radiance from the layers and per-region reflectances.

    Reflectances are (C, 1, 1) colours or per-pixel (C, H, W) (sclera, skin) / (C, box h, box w) (iris,
    pupil) planes; C = 1 for gray. Planes, not (H, W, C): broadcasting a (3,) colour over a last axis is
    ~30x slower in numpy. `glints` are EyeParams.glints; `specular` (H, W) is light reflected by the cornea,
    hidden by the lids; `lash` is the lashes' own colour (black if None).
    """
    eye = layers.sclera_shade[None] * sclera
    if layers.box is not None:
        x0, y0, x1, y1 = layers.box
        iris_val = iris * layers.iris_tex[None]
        pupil_val = pupil * layers.pupil_shade[None]
        sub = eye[:, y0:y1, x0:x1]
        sub = sub + layers.a_iris[None] * (iris_val - sub)
        eye[:, y0:y1, x0:x1] = sub + layers.a_pupil[None] * (pupil_val - sub)
    eye *= layers.eye_shade[None]
    _add_glints(eye, glints)
    if specular is not None:
        eye += specular[None]
    skin_val = layers.skin_shade[None] * skin
    scene = skin_val + layers.open_cov[None] * (eye - skin_val)
    a = layers.lashes[None]
    scene *= 1.0 - a
    if lash is not None:
        scene += a * lash
    return scene


def _camera(scene: np.ndarray, params: EyeParams, motion_kernel: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) float32 scene -> uint8 (H, W) (C = 1) or (H, W, C) image: light, blur, tone curve, noise.

    The noise is one (H, W) field shared by the channels (luminance noise, as in a demosaiced photo).
    """
    h, w = scene.shape[1:]
    # Illumination falls off across the frame (off-axis light source).
    illum_x = (1.0 + params.illum_gradient_x * (np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5))[None, :]
    illum_y = (1.0 + params.illum_gradient_y * (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5))[:, None]
    illum = illum_x * illum_y
    scene *= illum[None]
    for plane in scene:
        if params.blur_sigma_px > 0.05:
            plane[:] = cv2.GaussianBlur(plane, (0, 0), params.blur_sigma_px)
        if motion_kernel is not None:
            plane[:] = cv2.filter2D(plane, -1, motion_kernel, borderType=cv2.BORDER_REFLECT)
    out = params.gain * np.power(np.maximum(scene, 0.0), params.gamma) + params.black_level
    if params.noise_sigma > 0:
        noise = np.random.default_rng(params.noise_seed).standard_normal((h, w), dtype=np.float32)
        # Shot-like noise: stronger in bright regions.
        out += params.noise_sigma * (0.5 + 0.5 * np.sqrt(np.clip(out, 0.0, 1.0))) * noise[None]
    planes = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return planes[0] if len(planes) == 1 else cv2.merge(list(planes))


def _truth(params: EyeParams, mask: np.ndarray, occluded: np.ndarray | None = None) -> EyeTruth:
    """EyeTruth of a rendered eye; `occluded` (H, W) bool marks opaque occluders in front of the lids."""
    iris, pupil = iris_ellipse(params), pupil_ellipse(params)
    return EyeTruth(
        iris=iris,
        pupil=pupil,
        mask=mask,
        openness=float(np.clip(params.openness, 0.0, 1.0)),
        iris_visible_fraction=_visible_fraction(params, iris, occluded=occluded),
        pupil_visible_fraction=_visible_fraction(params, pupil, occluded=occluded),
        event="fixation",
    )


def render_eye(params: EyeParams, size_wh: tuple[int, int]) -> tuple[np.ndarray, EyeTruth]:
    """Render one (H, W) uint8 NIR-like eye image and its exact ground truth; size_wh = (W, H)."""
    layers = _eye_layers(params, size_wh)
    scene = _composite(layers, *_gray_reflectances(params), glints=params.glints)
    return _camera(scene, params), _truth(params, layers.mask)


def _gray_reflectances(params: EyeParams) -> list[np.ndarray]:
    """Sclera, iris, pupil and skin gray as (1, 1, 1) float32 colours for _composite."""
    return [_planar([g]) for g in (params.sclera_gray, params.iris_gray, params.pupil_gray, params.skin_gray)]


def _planar(colour) -> np.ndarray:
    """(C,) colour -> (C, 1, 1) float32, to broadcast over (C, H, W) planes."""
    return np.asarray(colour, np.float32).reshape(-1, 1, 1)


# ------------------------------------------------------------------------------------------- sampling


def _random_glints(
    rng: np.random.Generator, pupil: Ellipse, iris_radius_px: float
) -> tuple[tuple[float, float, float], ...]:
    """1-4 glints near the pupil, one sometimes on the pupil boundary."""
    n = int(rng.integers(1, 5))
    glints = []
    for i in range(n):
        if i == 0 and rng.random() < 0.3:
            x, y = pupil.points_at(np.array([rng.uniform(0, 2 * np.pi)]))[0]
        else:
            ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.3) * pupil.semi_major
            x, y = pupil.cx + dist * math.cos(ang), pupil.cy + dist * math.sin(ang)
        glints.append((float(x), float(y), float(rng.uniform(0.8, 1.2 + 0.05 * iris_radius_px))))
    return tuple(glints)


def random_eye_params(rng: np.random.Generator, size_wh: tuple[int, int]) -> EyeParams:
    """A random eye spanning close-ups to small irises, tilted gaze, lids, lashes, glints and camera effects."""
    w, h = size_wh
    side = min(w, h)
    radius = side * math.exp(rng.uniform(math.log(0.12), math.log(0.40)))
    # Off-axis angle with cos in [0.6, 1], biased towards frontal views.
    cos_off = 1.0 - 0.4 * rng.random() ** 1.5
    sin_off, phi = math.sqrt(1.0 - cos_off**2), rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.2:  # partial crop: the iris may leave the frame by up to 0.6 radius
        cx, cy = rng.uniform(-0.3 * radius, w + 0.3 * radius), rng.uniform(-0.3 * radius, h + 0.3 * radius)
    else:
        mx, my = min(0.9 * radius, w / 2), min(0.9 * radius, h / 2)
        cx, cy = rng.uniform(mx, w - mx), rng.uniform(my, h - my)
    off_r, off_a = rng.uniform(0.0, 0.08), rng.uniform(0, 2 * np.pi)
    u_open = rng.random()
    openness = rng.uniform(0.75, 1.0) if u_open < 0.75 else (rng.uniform(0.1, 0.75) if u_open < 0.95 else 0.0)
    iris_gray = rng.uniform(0.22, 0.6)
    params = EyeParams(
        iris_cx=cx,
        iris_cy=cy,
        iris_radius_px=radius,
        tilt_x=sin_off * math.cos(phi),
        tilt_y=sin_off * math.sin(phi),
        roll_rad=rng.uniform(0, 2 * np.pi),
        pupil_ratio=rng.uniform(0.2, 0.7),
        pupil_offset_x=off_r * math.cos(off_a),
        pupil_offset_y=off_r * math.sin(off_a),
        lid_cx=cx + rng.uniform(-0.3, 0.3) * radius,
        lid_cy=cy + rng.uniform(-0.1, 0.25) * radius,
        lid_tilt_rad=rng.normal(0.0, 0.08),
        lid_half_width_px=radius * rng.uniform(1.7, 2.8),
        upper_lid_height_px=radius * rng.uniform(0.6, 1.35),
        lower_lid_height_px=radius * rng.uniform(0.6, 1.3),
        openness=openness,
        lash_seed=int(rng.integers(2**31)),
        n_lashes=int(rng.integers(0, 90)),
        lash_length_px=radius * rng.uniform(0.3, 0.9),
        lash_darkness=rng.uniform(0.4, 0.9),
        glints=(),
        texture_seed=int(rng.integers(2**31)),
        pupil_gray=rng.uniform(0.02, 0.12),
        iris_gray=iris_gray,
        sclera_gray=min(0.95, iris_gray + rng.uniform(0.2, 0.45)),
        skin_gray=rng.uniform(0.5, 0.9),
        iris_contrast=rng.uniform(0.1, 0.35),
        limbus_darkness=rng.uniform(0.1, 0.5),
        lid_shadow=rng.uniform(0.0, 0.35),
        illum_gradient_x=rng.uniform(-0.4, 0.4),
        illum_gradient_y=rng.uniform(-0.4, 0.4),
        blur_sigma_px=1.5 * rng.random() ** 2,
        gain=rng.uniform(0.7, 1.3),
        gamma=rng.uniform(0.7, 1.4),
        black_level=rng.uniform(0.0, 0.05),
        noise_sigma=rng.uniform(0.0, 0.06),
        noise_seed=int(rng.integers(2**31)),
    )
    return replace(params, glints=_random_glints(rng, pupil_ellipse(params), radius))


def _limbus_extremes_xy(ellipse: Ellipse) -> np.ndarray:
    """(4, 2) float64: the limbus's top, bottom, left and right points (min y, max y, min x, max x)."""
    xy = ellipse.points(720)
    return xy[[np.argmin(xy[:, 1]), np.argmax(xy[:, 1]), np.argmin(xy[:, 0]), np.argmax(xy[:, 0])]]


def half_closed_eye_params(
    rng: np.random.Generator, size_wh: tuple[int, int], opening: float | None = None
) -> EyeParams:
    """A random eye whose lids hide the top and bottom of the limbus, so only its two side arcs show.

    `opening` is the lid gap over the iris centre as a fraction of the limbus's full height, in (0, 1)
    (default: random in [0.35, 0.8]). It is widened where a tilted limbus needs more to show both of its
    leftmost and rightmost points (they sit above and below the centre). The whole limbus lies inside the
    frame, so its true size is knowable from the image; the eye's looks are drawn as in random_eye_params.
    """
    if opening is None:
        opening = rng.uniform(0.35, 0.8)
    if not 0.0 < opening < 1.0:
        raise ValueError(f"opening must be a fraction of the iris height in (0, 1), got {opening}")
    w, h = size_wh
    base = random_eye_params(rng, size_wh)
    radius = base.iris_radius_px
    cx, cy = rng.uniform(1.1 * radius, w - 1.1 * radius), rng.uniform(1.1 * radius, h - 1.1 * radius)
    placed = replace(base, iris_cx=cx, iris_cy=cy)
    extremes = _limbus_extremes_xy(iris_ellipse(placed))
    top, bottom = extremes[0, 1] - cy, extremes[1, 1] - cy  # < 0 and > 0
    margin_px = 0.5 + 0.03 * radius  # every extreme point is this far inside or outside a lid
    widest = bottom - top - 3.0 * margin_px
    gap = min(opening * (bottom - top), widest)
    # Draw lids until the top and bottom points are covered and the side points are not (a tilted limbus
    # has its side points off the centre line and the lids curve down at the sides); widen the gap as needed.
    for attempt in range(200):
        if attempt and attempt % 10 == 0:
            gap = min(1.2 * gap, widest)
        above = rng.uniform(0.3, 0.7)
        lid_cy = cy + rng.uniform(-0.05, 0.05) * radius
        v_up, v_lo = cy - above * gap - lid_cy, cy + (1.0 - above) * gap - lid_cy  # lid apexes in the lid frame
        if not top + margin_px < v_up + lid_cy - cy < 0.0 < v_lo + lid_cy - cy < bottom - margin_px:
            continue
        openness = rng.uniform(0.3, 0.7)
        # Solve _lid_curves for the apex heights at this openness: lower = L (0.8 + 0.2 o),
        # upper = -U o + (1 - o) lower.
        params = replace(
            placed,
            lid_cx=cx + rng.uniform(-0.1, 0.1) * radius,
            lid_cy=lid_cy,
            lid_tilt_rad=rng.normal(0.0, 0.03),
            lid_half_width_px=radius * rng.uniform(2.2, 2.8),
            upper_lid_height_px=((1.0 - openness) * v_lo - v_up) / openness,
            lower_lid_height_px=v_lo / (0.8 + 0.2 * openness),
            openness=openness,
        )
        d_up, d_lo = lid_signed_distances(params, extremes[:, 0], extremes[:, 1])
        if d_up[0] < -margin_px and d_lo[1] < -margin_px and min(d_up[2:].min(), d_lo[2:].min()) > margin_px:
            return replace(params, glints=_random_glints(rng, pupil_ellipse(params), radius))
    raise TrackerError(f"no lids found that show only the side arcs of {iris_ellipse(placed)}; try another rng")


# ------------------------------------------------------------------------------------ domain randomisation

# Share of each domain in random_domain_eye: NIR iris-camera close-ups (random_eye_params), NIR eye-tracker
# frames from a camera below the eye, and visible-light colour eye crops from face photos.
DOMAIN_PROBABILITIES: dict[str, float] = {"nir_iris": 0.3, "nir_tracker": 0.3, "visible": 0.4}

# Visible-light iris colours, BGR reflectances: (share, outer ciliary zone, inner zone around the pupil).
# Light irises often have a brownish or yellow ring around the pupil (central heterochromia).
IRIS_COLOURS_BGR: dict[str, tuple[float, tuple[float, float, float], tuple[float, float, float]]] = {
    "blue": (0.14, (0.62, 0.50, 0.38), (0.45, 0.47, 0.45)),
    "gray": (0.06, (0.52, 0.50, 0.47), (0.40, 0.44, 0.46)),
    "green": (0.10, (0.36, 0.50, 0.40), (0.18, 0.34, 0.46)),
    "hazel": (0.12, (0.22, 0.38, 0.42), (0.10, 0.24, 0.42)),
    "light_brown": (0.20, (0.10, 0.22, 0.38), (0.07, 0.16, 0.30)),
    "dark_brown": (0.38, (0.045, 0.07, 0.11), (0.035, 0.055, 0.085)),
}
# Skin tones from very light to very dark, BGR reflectances; a skin colour is drawn between two neighbours.
_SKIN_RAMP_BGR = np.array(
    [
        [0.78, 0.84, 0.96],
        [0.60, 0.70, 0.88],
        [0.42, 0.55, 0.76],
        [0.28, 0.40, 0.58],
        [0.15, 0.23, 0.36],
        [0.07, 0.11, 0.19],
    ],
    np.float32,
)
_EYESHADOW_BGR = np.array(
    [[0.20, 0.30, 0.45], [0.40, 0.22, 0.38], [0.25, 0.45, 0.62], [0.55, 0.42, 0.30], [0.10, 0.10, 0.12]], np.float32
)


@dataclass(frozen=True, slots=True)
class DomainEffects:
    """Occluders and degradations applied to one domain image; 0 / False / 1.0 = off."""

    glasses: bool = False  # a spectacle frame arc crossing the crop; opaque, so removed from the mask
    lens_reflection: bool = False  # large soft translucent bright patches (mask unchanged)
    motion_blur_px: int = 0  # length of a linear motion-blur kernel in a random direction
    jpeg_quality: int = 0  # cv2.imencode JPEG quality, then decoded
    downscale: float = 1.0  # downscale by this factor, then upscale back to the frame size
    heavy_lids: bool = False  # eye half closed
    out_of_frame: bool = False  # iris centre near a frame edge, part of the eye outside the frame


def random_effects(rng: np.random.Generator) -> DomainEffects:
    """Effects drawn with their per-image probabilities (each independent)."""
    glasses = rng.random() < 0.15
    return DomainEffects(
        glasses=glasses,
        lens_reflection=rng.random() < (0.5 if glasses else 0.06),
        motion_blur_px=int(rng.integers(3, 10)) if rng.random() < 0.12 else 0,
        jpeg_quality=int(rng.integers(15, 61)) if rng.random() < 0.2 else 0,
        downscale=float(rng.uniform(2.0, 4.0)) if rng.random() < 0.12 else 1.0,
        heavy_lids=rng.random() < 0.1,
        out_of_frame=rng.random() < 0.1,
    )


def _limbus_half_height_px(params: EyeParams) -> float:
    """Half the vertical extent of the limbus ellipse."""
    e = iris_ellipse(params)
    return math.hypot(e.semi_major * math.sin(e.angle_rad), e.semi_minor * math.cos(e.angle_rad))


def _tracker_glints(
    rng: np.random.Generator, pupil: Ellipse, iris_radius_px: float
) -> tuple[tuple[float, float, float], ...]:
    """1-8 LED glints in a flattened ring around the pupil; half the time the first lies on the pupil edge."""
    n = int(rng.integers(1, 9))
    ring = pupil.semi_major * rng.uniform(0.5, 1.6)
    aspect, start = rng.uniform(0.4, 1.0), rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0.0, 0.8) * pupil.semi_major * np.array([math.cos(start), math.sin(start)])
    t = start + 2 * np.pi * np.arange(n) / n + rng.normal(0.0, 0.15, n)
    xy = np.stack([pupil.cx + off[0] + ring * np.cos(t), pupil.cy + off[1] + aspect * ring * np.sin(t)], axis=1)
    if rng.random() < 0.5:
        xy[0] = pupil.points_at(np.array([rng.uniform(0, 2 * np.pi)]))[0]
    r = rng.uniform(0.7, 1.0 + 0.04 * iris_radius_px, n)
    return tuple((float(x), float(y), float(rr)) for (x, y), rr in zip(xy, r, strict=True))


def _nir_tracker_params(rng: np.random.Generator, size_wh: tuple[int, int]) -> EyeParams:
    """An eye-tracker frame: camera below and off-axis, flat limbus, lids over its top and bottom, lashes."""
    w, h = size_wh
    base = random_eye_params(rng, size_wh)
    radius = min(w, h) * math.exp(rng.uniform(math.log(0.13), math.log(0.3)))
    # Seen from below the limbus is flattened vertically; a camera off to the side adds a sideways part.
    cos_off = rng.uniform(0.5, 0.88)
    sin_off, phi = math.sqrt(1.0 - cos_off**2), -np.pi / 2 + rng.normal(0.0, 0.45)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.65) * h
    pupil_gray = rng.uniform(0.01, 0.07)
    dark_iris = rng.random() < 0.4
    iris_gray = pupil_gray + rng.uniform(0.03, 0.12) if dark_iris else rng.uniform(0.2, 0.5)
    placed = replace(
        base,
        iris_cx=cx,
        iris_cy=cy,
        iris_radius_px=radius,
        tilt_x=sin_off * math.cos(phi),
        tilt_y=sin_off * math.sin(phi),
        pupil_ratio=rng.uniform(0.25, 0.6),
        openness=1.0,
        pupil_gray=pupil_gray,
        iris_gray=iris_gray,
        iris_contrast=rng.uniform(0.05, 0.2) if dark_iris else base.iris_contrast,
        sclera_gray=min(0.9, iris_gray + rng.uniform(0.12, 0.4)),
        skin_gray=rng.uniform(0.4, 0.8),
        n_lashes=int(rng.integers(50, 130)),
        lash_darkness=rng.uniform(0.6, 0.95),
        illum_gradient_x=rng.uniform(-0.8, 0.8),
        illum_gradient_y=rng.uniform(-0.8, 0.8),
        blur_sigma_px=2.0 * rng.random() ** 2,
        noise_sigma=rng.uniform(0.01, 0.08),
    )
    # The lids cover the top and the bottom of the (flattened) limbus.
    half_h = _limbus_half_height_px(placed)
    placed = replace(
        placed,
        lid_cx=cx + rng.uniform(-0.3, 0.3) * radius,
        lid_cy=cy,
        lid_half_width_px=radius * rng.uniform(2.0, 2.8),
        upper_lid_height_px=half_h * rng.uniform(0.55, 0.95),
        lower_lid_height_px=half_h * rng.uniform(0.7, 1.02),
        lash_length_px=radius * rng.uniform(0.5, 1.1),
    )
    return replace(placed, glints=_tracker_glints(rng, pupil_ellipse(placed), radius))


def _visible_params(rng: np.random.Generator, size_wh: tuple[int, int]) -> EyeParams:
    """Geometry of a face-photo eye crop: a small, mostly frontal iris, almond lid opening, dense lashes."""
    w, h = size_wh
    base = random_eye_params(rng, size_wh)
    small = rng.random() < 0.2  # a small eye in a larger crop
    frac = rng.uniform(math.log(0.04), math.log(0.08)) if small else rng.uniform(math.log(0.08), math.log(0.2))
    radius = min(w, h) * math.exp(frac)
    cos_off = 1.0 - 0.3 * rng.random() ** 2
    sin_off, phi = math.sqrt(1.0 - cos_off**2), rng.uniform(0, 2 * np.pi)
    cx = float(np.clip(w / 2 + rng.normal(0.0, 0.1) * w, 1.2 * radius, w - 1.2 * radius))
    cy = float(np.clip(h / 2 + rng.normal(0.0, 0.1) * h, 1.2 * radius, h - 1.2 * radius))
    return replace(
        base,
        iris_cx=cx,
        iris_cy=cy,
        iris_radius_px=radius,
        tilt_x=sin_off * math.cos(phi),
        tilt_y=sin_off * math.sin(phi),
        pupil_ratio=rng.uniform(0.2, 0.5),
        lid_cx=cx + rng.uniform(-0.3, 0.3) * radius,
        lid_cy=cy + rng.uniform(-0.05, 0.25) * radius,
        lid_tilt_rad=rng.normal(0.0, 0.1),
        lid_half_width_px=radius * rng.uniform(2.3, 3.0),
        upper_lid_height_px=radius * rng.uniform(0.65, 1.15),
        lower_lid_height_px=radius * rng.uniform(0.75, 1.15),
        openness=rng.uniform(0.8, 1.0),
        n_lashes=int(rng.integers(40, 130)),
        lash_length_px=radius * rng.uniform(0.35, 0.8),
        lash_darkness=rng.uniform(0.6, 0.95),
        glints=(),
        lid_shadow=rng.uniform(0.1, 0.45),
        illum_gradient_x=rng.uniform(-0.3, 0.3),
        illum_gradient_y=rng.uniform(-0.3, 0.3),
        blur_sigma_px=1.0 * rng.random() ** 2,
        gain=rng.uniform(0.85, 1.15),
        gamma=rng.uniform(0.85, 1.15),
        black_level=rng.uniform(0.0, 0.03),
        noise_sigma=rng.uniform(0.005, 0.03),
    )


def _with_geometry_effects(
    params: EyeParams, effects: DomainEffects, rng: np.random.Generator, size_wh: tuple[int, int]
) -> EyeParams:
    """Apply the effects that change the geometry: a half-closed eye, an eye partly out of the frame."""
    if effects.heavy_lids:
        params = replace(params, openness=rng.uniform(0.2, 0.5))
    if effects.out_of_frame:
        w, h = size_wh
        r = params.iris_radius_px
        # The iris centre within -0.5..0.6 radii of a random edge: up to ~half the iris leaves the frame.
        edge, depth = int(rng.integers(4)), rng.uniform(-0.5, 0.6) * r
        cx, cy = (
            [(depth, params.iris_cy), (w - 1 - depth, params.iris_cy)][edge]
            if edge < 2
            else ([(params.iris_cx, depth), (params.iris_cx, h - 1 - depth)][edge - 2])
        )
        dx, dy = cx - params.iris_cx, cy - params.iris_cy
        params = replace(
            params,
            iris_cx=params.iris_cx + dx,
            iris_cy=params.iris_cy + dy,
            lid_cx=params.lid_cx + dx,
            lid_cy=params.lid_cy + dy,
            glints=tuple((gx + dx, gy + dy, gr) for gx, gy, gr in params.glints),
        )
    return params


def _soft_shapes(size_wh: tuple[int, int], draw, sigma_px: float) -> np.ndarray:
    """(H, W) float32 opacity of shapes drawn by draw(uint8 layer at 1/4 size, scale), blurred, in [0, 1]."""
    w, h = size_wh
    sw, sh = max(2, w // 4), max(2, h // 4)
    layer = np.zeros((sh, sw), np.uint8)
    draw(layer, 0.25)
    small = cv2.GaussianBlur(layer.astype(np.float32) / 255.0, (0, 0), max(sigma_px / 4, 0.3))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _corneal_specular(rng: np.random.Generator, params: EyeParams, size_wh: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 opacity of a window, ring-light or softbox reflection on the cornea, near the pupil."""
    w, h = size_wh
    pupil = pupil_ellipse(params)
    r = params.iris_radius_px
    # Often on the pupil edge, sometimes inside the pupil or out on the iris.
    ang, dist = rng.uniform(0, 2 * np.pi), pupil.semi_major * rng.choice([rng.uniform(0.7, 1.2), rng.uniform(0, 1.8)])
    cx, cy = pupil.cx + dist * math.cos(ang), pupil.cy + dist * math.sin(ang)
    size = r * rng.uniform(0.08, 0.25)
    layer = np.zeros((h, w), np.uint8)
    kind = rng.choice(["window", "ring", "spot", "softbox"])
    rot = rng.normal(0.0, 0.3)
    c, s = math.cos(rot), math.sin(rot)

    def rect(x: float, y: float, hw: float, hh: float) -> np.ndarray:
        corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]]) @ np.array([[c, s], [-s, c]])
        return np.round((corners + [x, y]) * 16).astype(np.int32)

    if kind == "window":  # panes of a window: two or four bright rectangles with dark bars between
        hw, hh, bar = size, size * rng.uniform(0.6, 1.3), max(0.6, 0.12 * size)
        panes = [(-1, -1), (1, -1), (-1, 1), (1, 1)] if rng.random() < 0.6 else [(-1, 0), (1, 0)]
        for i, j in panes:
            px, py = (hw / 2 + bar / 2) * i, (hh / 2 + bar / 2) * j if len(panes) == 4 else 0.0
            ex, ey = c * px - s * py, s * px + c * py
            pane_h = hh / 2 if len(panes) == 4 else hh
            cv2.fillPoly(layer, [rect(cx + ex, cy + ey, hw / 2, pane_h)], 255, cv2.LINE_AA, shift=4)
    elif kind == "ring":
        ring_r = size * rng.uniform(0.8, 1.3)
        thick = max(1, round(ring_r * rng.uniform(0.25, 0.45)))
        cv2.circle(layer, (round(cx * 16), round(cy * 16)), round(ring_r * 16), 255, thick, cv2.LINE_AA, shift=4)
    elif kind == "spot":
        spot_r = max(0.8, 0.5 * size)
        cv2.circle(layer, (round(cx * 16), round(cy * 16)), round(spot_r * 16), 255, -1, cv2.LINE_AA, shift=4)
    else:
        cv2.fillPoly(layer, [rect(cx, cy, size, size * rng.uniform(0.4, 0.8))], 255, cv2.LINE_AA, shift=4)
    out = layer.astype(np.float32) / 255.0
    if size > 4 and rng.random() < 0.6:
        out = cv2.GaussianBlur(out, (0, 0), 0.6)
    return out


def _lid_band(d: np.ndarray, width_px: float) -> np.ndarray:
    """Coverage of the skin band 0 < -d < width_px just outside a lid margin (d = signed lid distance)."""
    return _coverage(width_px + d) * _coverage(-d + 1.0)


def _brow(rng: np.random.Generator, params: EyeParams, size_wh: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 opacity of an eyebrow: hair strokes along an arch above the upper lid."""
    w, h = size_wh
    r = params.iris_radius_px
    half = params.lid_half_width_px * rng.uniform(1.0, 1.35)
    apex_y = params.lid_cy - params.upper_lid_height_px - r * rng.uniform(1.1, 2.0)
    cx = params.lid_cx + rng.uniform(-0.2, 0.2) * half
    n = int(np.clip(half * rng.uniform(3.0, 6.0), 40, 900))
    u = rng.uniform(-1.0, 1.0, n)
    # The brow is thick at its inner end and thins outwards; which end is inner is random (left or right eye).
    inner = 1.0 if rng.random() < 0.5 else -1.0
    thickness = r * rng.uniform(0.5, 0.9) * (0.6 + 0.4 * inner * u)
    y = apex_y + 0.35 * r * u * u + rng.uniform(-0.5, 0.5, n) * thickness
    x = cx + u * half
    length = r * rng.uniform(0.15, 0.4, n)
    ang = -0.35 * inner * np.sign(u + 1e-9) + rng.normal(0.0, 0.2, n) - 0.25 * inner
    pts = np.stack([np.stack([x, y], 1), np.stack([x + length * np.cos(ang), y + length * np.sin(ang)], 1)], 1)
    layer = np.zeros((h, w), np.uint8)
    cv2.polylines(layer, list(np.round(pts * 16).astype(np.int32)), False, 255, 1, cv2.LINE_AA, shift=4)
    hair = layer.astype(np.float32) / 255.0
    # Hairs overlap into a soft dark band under the strokes.
    base = cv2.GaussianBlur(hair, (0, 0), max(0.6, 0.15 * r))
    return np.clip(rng.uniform(0.5, 0.85) * hair + 0.9 * base, 0.0, 0.9)


def _visible_scene(rng: np.random.Generator, params: EyeParams, layers: _Layers) -> np.ndarray:
    """(3, H, W) float32 BGR planes of a visible-light eye: iris colour, sclera, skin, make-up, reflection."""
    h, w = layers.mask.shape
    names = list(IRIS_COLOURS_BGR)
    share = np.array([IRIS_COLOURS_BGR[k][0] for k in names])
    _, outer, inner = IRIS_COLOURS_BGR[names[int(rng.choice(len(names), p=share / share.sum()))]]
    jitter = rng.uniform(0.8, 1.2) * rng.uniform(0.92, 1.08, 3)
    outer, inner = _planar(np.float32(outer) * jitter), _planar(np.float32(inner) * jitter)
    iris = pupil = None
    if layers.rho is not None:
        mix = np.clip((layers.rho - rng.uniform(0.1, 0.25)) / rng.uniform(0.15, 0.4), 0.0, 1.0)[None]
        iris = inner + mix * (outer - inner)
        # The pupil is near black; in a dark-brown iris it is barely darker than the iris.
        pupil = _planar(rng.uniform(0.015, 0.035) * rng.uniform(0.9, 1.1, 3))

    # Sclera: white-ish, pinker and redder towards the corners.
    white = _planar(rng.uniform(0.68, 0.92) * np.float32([0.93, 0.97, 1.0]) * rng.uniform(0.95, 1.05, 3))
    pink = _planar([0.62, 0.64, 0.88])
    sclera = white + (rng.uniform(0.1, 0.7) * np.minimum(layers.u_frac**2, 1.0))[None] * (pink - white)

    # Skin between two neighbouring tones of the ramp, with eyeshadow, eyeliner and eyebrow.
    t = rng.uniform(0, len(_SKIN_RAMP_BGR) - 1)
    i = min(int(t), len(_SKIN_RAMP_BGR) - 2)
    skin_tone = _SKIN_RAMP_BGR[i] + (t - i) * (_SKIN_RAMP_BGR[i + 1] - _SKIN_RAMP_BGR[i])
    skin_tone = _planar(skin_tone * rng.uniform(0.95, 1.05, 3))
    skin = np.broadcast_to(skin_tone, (3, h, w)).copy()
    r = params.iris_radius_px
    fade = np.clip(1.2 - np.abs(layers.u_frac), 0.0, 1.0)
    # The eye socket is shaded above the upper lid and below the lower lid.
    socket = np.exp(-np.maximum(-layers.d_up, 0.0) / (1.2 * r)) + 0.5 * np.exp(-np.maximum(-layers.d_lo, 0.0) / r)
    skin *= (1.0 - rng.uniform(0.1, 0.3) * np.minimum(socket, 1.0) * fade)[None]
    if rng.random() < 0.3:  # eyeshadow: a tint over the upper lid up to above the crease
        reach = params.upper_lid_height_px * rng.uniform(0.6, 1.3) + 2.0
        weight = rng.uniform(0.25, 0.6) * fade * np.exp(-((np.maximum(-layers.d_up, 0.0) / reach) ** 2))
        tint = _planar(_EYESHADOW_BGR[int(rng.integers(len(_EYESHADOW_BGR)))] * skin_tone.mean() ** 0.3)
        skin += (weight * (layers.d_up < 1.0))[None] * (tint - skin)
    liner_colour = _planar([0.02, 0.02, 0.03])
    if rng.random() < 0.35:  # eyeliner along the upper lid margin, sometimes the lower one too
        band = _lid_band(layers.d_up, rng.uniform(1.0, 0.25 * r + 2.0)) * fade
        if rng.random() < 0.4:
            band = np.maximum(band, _lid_band(layers.d_lo, rng.uniform(0.8, 0.12 * r + 1.5)) * fade)
        skin += (rng.uniform(0.6, 0.95) * band)[None] * (liner_colour - skin)
    if rng.random() < 0.6:
        brow = _brow(rng, params, (w, h))
        skin += brow[None] * (_planar([0.03, 0.04, 0.06]) * rng.uniform(0.6, 2.5) - skin)

    specular = None
    if layers.box is not None and rng.random() < 0.85:
        specular = _corneal_specular(rng, params, (w, h)) * np.float32(rng.uniform(0.8, 3.0))
    # Colour temperature trades blue against red; a small green-magenta tint on top.
    warm = rng.uniform(-0.12, 0.12)
    white_balance = _planar([1.0 - warm, rng.uniform(0.97, 1.03), 1.0 + warm])
    scene = _composite(layers, sclera, iris, pupil, skin, specular=specular, lash=liner_colour)
    return scene * white_balance


def _add_glasses(rng: np.random.Generator, scene: np.ndarray, params: EyeParams, colour_image: bool) -> np.ndarray:
    """Draw a spectacle-frame arc over the (C, H, W) scene in place; returns its opaque (H, W) bool pixels."""
    h, w = scene.shape[1:]
    side = min(w, h)
    thick = rng.random() < 0.6
    width = round(rng.uniform(4.0, 0.07 * side + 6.0)) if thick else int(rng.integers(1, 4))
    # The rim is a large ellipse through a point; half the time that point is on the iris, so the frame
    # hides part of its boundary.
    iris = iris_ellipse(params)
    if rng.random() < 0.5:
        px, py = iris.cx + rng.uniform(-1, 1) * iris.semi_major, iris.cy + rng.uniform(-1, 1) * iris.semi_major
    else:
        px, py = rng.uniform(0, w), rng.uniform(0, h)
    direction = rng.uniform(0, 2 * np.pi)
    a = side * rng.uniform(0.5, 2.5)
    b = a * rng.uniform(0.6, 1.0)
    centre = (px + a * math.cos(direction), py + a * math.sin(direction))
    layer = np.zeros((h, w), np.uint8)
    cv2.ellipse(
        layer,
        (round(centre[0] * 16), round(centre[1] * 16)),
        (round(a * 16), round(b * 16)),
        math.degrees(direction),
        0,
        360,
        255,
        width,
        cv2.LINE_AA,
        shift=4,
    )
    if rng.random() < 0.3:  # the bridge or a temple arm: a straight bar from the rim out of the frame
        end = (px + 2 * side * math.cos(direction + np.pi / 2), py + 2 * side * math.sin(direction + np.pi / 2))
        cv2.line(layer, (round(px * 16), round(py * 16)), (round(end[0] * 16), round(end[1] * 16)), 255, width,
                 cv2.LINE_AA, shift=4)  # fmt: skip
    alpha = layer.astype(np.float32) / 255.0
    if thick:  # dark plastic, black to tortoiseshell brown
        colour = np.float32([0.03, 0.05, 0.08]) * rng.uniform(0.5, 3.0) * rng.uniform(0.8, 1.2, 3)
    else:  # thin metal
        colour = np.float32(rng.uniform(0.1, 0.7)) * rng.uniform(0.9, 1.1, 3)
    colour = _planar(colour if colour_image else [colour.mean()])
    scene += alpha[None] * (colour - scene)
    return alpha >= 0.5


def _add_lens_reflection(rng: np.random.Generator, scene: np.ndarray, colour_image: bool) -> None:
    """Add 1-2 large soft bright translucent patches (spectacle-lens reflections) to the (C, H, W) scene."""
    h, w = scene.shape[1:]
    side = min(w, h)

    def draw(layer: np.ndarray, scale: float) -> None:
        for _ in range(int(rng.integers(1, 3))):
            c = (rng.uniform(0, w) * scale * 16, rng.uniform(0, h) * scale * 16)
            axes = (side * rng.uniform(0.15, 0.5) * scale * 16, side * rng.uniform(0.08, 0.3) * scale * 16)
            centre, size = tuple(round(v) for v in c), tuple(max(1, round(v)) for v in axes)
            cv2.ellipse(layer, centre, size, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA, shift=4)

    soft = _soft_shapes((w, h), draw, side * rng.uniform(0.03, 0.12))
    if colour_image:  # anti-reflection coatings tint the reflection green, purple or blue
        tint = _planar([[1.0, 1.0, 1.0], [0.8, 1.0, 0.8], [1.0, 0.75, 0.95], [1.0, 0.9, 0.7]][int(rng.integers(4))])
    else:
        tint = _planar([1.0])
    scene += (np.float32(rng.uniform(0.1, 0.35)) * soft)[None] * tint


def _motion_kernel(rng: np.random.Generator, length_px: int) -> np.ndarray:
    """(L, L) float32 normalised line kernel of length_px in a random direction (L odd)."""
    size = length_px | 1
    k = np.zeros((size, size), np.float32)
    ang, half = rng.uniform(0, np.pi), (length_px - 1) / 2
    c = size // 2
    dx, dy = half * math.cos(ang), half * math.sin(ang)
    p0, p1 = (round((c - dx) * 16), round((c - dy) * 16)), (round((c + dx) * 16), round((c + dy) * 16))
    cv2.line(k, p0, p1, 1.0, 1, cv2.LINE_AA, shift=4)
    return k / k.sum()


def _degrade(image: np.ndarray, effects: DomainEffects) -> np.ndarray:
    """Low resolution (down- and upscaling) then JPEG artefacts, on the uint8 (H, W[, C]) image."""
    h, w = image.shape[:2]
    if effects.downscale > 1.0:
        small = (max(2, round(w / effects.downscale)), max(2, round(h / effects.downscale)))
        image = cv2.resize(
            cv2.resize(image, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR
        )
    if effects.jpeg_quality > 0:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, effects.jpeg_quality])
        if not ok:
            raise TrackerError(f"OpenCV could not JPEG-encode a {image.shape} {image.dtype} image")
        image = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if image.ndim == 2 else cv2.IMREAD_COLOR)
    return image


def render_domain_eye(
    rng: np.random.Generator,
    size_wh: tuple[int, int],
    domain: str,
    effects: DomainEffects | None = None,
    adjust: Callable[[EyeParams], EyeParams] | None = None,
) -> tuple[np.ndarray, EyeTruth]:
    """One eye of `domain` (a DOMAIN_PROBABILITIES key) with `effects` (random if None) and its truth.

    `adjust` edits the sampled geometry before rendering (tools/faces.py places an eye in a face this way).

    Returns a BGR uint8 (H, W, 3) image for "visible", a uint8 (H, W) image otherwise. Opaque occluders
    (lids, spectacle frames) are excluded from truth.mask and the visible fractions; the ellipses are the
    full geometric truth.
    """
    if domain not in DOMAIN_PROBABILITIES:
        raise ValueError(f"domain must be one of {sorted(DOMAIN_PROBABILITIES)}, got {domain!r}")
    # Separate streams, so that forcing an effect on or off leaves the eye it is applied to unchanged.
    eye_rng, effect_rng, occluder_rng = (np.random.default_rng(int(s)) for s in rng.integers(2**62, size=3))
    if effects is None:
        effects = random_effects(effect_rng)
    sample = {"nir_iris": random_eye_params, "nir_tracker": _nir_tracker_params, "visible": _visible_params}
    params = _with_geometry_effects(sample[domain](eye_rng, size_wh), effects, occluder_rng, size_wh)
    if adjust is not None:
        params = adjust(params)
    layers = _eye_layers(params, size_wh)
    colour_image = domain == "visible"
    if colour_image:
        scene = _visible_scene(eye_rng, params, layers)
    else:
        scene = _composite(layers, *_gray_reflectances(params), glints=params.glints)
    occluded = _add_glasses(occluder_rng, scene, params, colour_image) if effects.glasses else None
    if effects.lens_reflection:
        _add_lens_reflection(occluder_rng, scene, colour_image)
    kernel = _motion_kernel(occluder_rng, effects.motion_blur_px) if effects.motion_blur_px else None
    image = _degrade(_camera(scene, params, kernel), effects)
    mask = layers.mask if occluded is None else np.where(occluded, 0, layers.mask).astype(np.uint8)
    return image, _truth(params, mask, occluded)


def _draw_domain(rng: np.random.Generator) -> str:
    """A domain name drawn with DOMAIN_PROBABILITIES."""
    names = list(DOMAIN_PROBABILITIES)
    return names[int(rng.choice(len(names), p=list(DOMAIN_PROBABILITIES.values())))]


def random_domain_eye(rng: np.random.Generator, size_wh: tuple[int, int]) -> tuple[np.ndarray, EyeTruth]:
    """A random eye from a random domain (DOMAIN_PROBABILITIES) with random effects; see render_domain_eye."""
    return render_domain_eye(rng, size_wh, _draw_domain(rng))


# ------------------------------------------------------------------------------------------- clips


@dataclass(frozen=True, slots=True)
class _GazeSample:
    """Gaze angles (radians), openness and event label of one clip frame."""

    yaw_rad: float
    pitch_rad: float
    openness: float
    event: str


def _min_jerk(t: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile 0 -> 1 for t in [0, 1]: the bell-shaped velocity of a saccade."""
    return t**3 * (10 - 15 * t + 6 * t**2)


def _gaze_schedule(rng: np.random.Generator, n_frames: int, fps: float) -> list[_GazeSample]:
    """Per-frame gaze: fixations with drift, saccades, pursuits and blinks; the first blink comes early."""
    limit_yaw, limit_pitch = math.radians(18), math.radians(13)
    yaw, pitch = rng.uniform(-0.5, 0.5) * limit_yaw, rng.uniform(-0.5, 0.5) * limit_pitch
    # The opening sequence shows each kind of event once; after it events are drawn at random.
    queue = ["saccade", "blink", "pursuit"]
    out: list[_GazeSample] = []
    fixating = True
    while len(out) < n_frames:
        if fixating:
            n = max(2, round(rng.uniform(0.15, 0.4) * fps))
            drift = rng.normal(0.0, math.radians(0.6), 2) / fps  # slow drift, ~0.6 deg/s
            for _ in range(n):
                yaw += drift[0] + rng.normal(0.0, math.radians(0.03))
                pitch += drift[1] + rng.normal(0.0, math.radians(0.03))
                out.append(_GazeSample(yaw, pitch, 1.0, "fixation"))
            fixating = False
            continue
        event = queue.pop(0) if queue else str(rng.choice(["saccade", "pursuit", "blink"], p=[0.65, 0.25, 0.1]))
        fixating = True
        if event == "saccade":
            n = int(np.clip(round(rng.uniform(0.033, 0.083) * fps), 1, None))
            target = rng.uniform(-limit_yaw, limit_yaw), rng.uniform(-limit_pitch, limit_pitch)
            s = _min_jerk(np.arange(1, n + 1) / n)
            for f in s:
                out.append(_GazeSample(yaw + f * (target[0] - yaw), pitch + f * (target[1] - pitch), 1.0, event))
            yaw, pitch = target
        elif event == "pursuit":
            n = max(2, round(rng.uniform(0.3, 0.8) * fps))
            speed, direction = math.radians(rng.uniform(5, 20)), rng.uniform(0, 2 * np.pi)
            sinusoidal = rng.random() < 0.5
            y0, p0 = yaw, pitch
            for i in range(1, n + 1):
                t = i / fps
                travel = speed * (math.sin(2 * np.pi * t / (n / fps)) * n / fps / (2 * np.pi) if sinusoidal else t)
                yaw = float(np.clip(y0 + travel * math.cos(direction), -limit_yaw, limit_yaw))
                pitch = float(np.clip(p0 + travel * math.sin(direction), -limit_pitch, limit_pitch))
                out.append(_GazeSample(yaw, pitch, 1.0, event))
        else:  # blink: close ~100 ms, hold, reopen a little slower; the middle frame is fully closed
            n_close = max(2, round(rng.uniform(0.08, 0.11) * fps))
            extra = max(1, round(0.02 * fps))
            closing = 0.5 * (1 + np.cos(np.pi * np.arange(n_close) / n_close))
            opening = 0.5 * (1 - np.cos(np.pi * np.arange(1, n_close + extra + 1) / (n_close + extra)))
            profile = np.concatenate([closing, np.zeros(extra + 1), opening[:-1]])
            for o in profile:
                out.append(_GazeSample(yaw, pitch, float(o), event))
    return out[:n_frames]


def _clip_eye(rng: np.random.Generator, size_wh: tuple[int, int]) -> EyeParams:
    """A random eye suited to a demo clip: iris well inside the frame, open, mild camera effects."""
    w, h = size_wh
    base = random_eye_params(rng, size_wh)
    radius = min(w, h) * rng.uniform(0.16, 0.26)
    cx, cy = w / 2 + rng.uniform(-0.05, 0.05) * w, h / 2 + rng.uniform(-0.05, 0.05) * h
    return replace(
        base,
        iris_cx=cx,
        iris_cy=cy,
        iris_radius_px=radius,
        lid_cx=cx + rng.uniform(-0.2, 0.2) * radius,
        lid_cy=cy + rng.uniform(0.0, 0.2) * radius,
        lid_tilt_rad=rng.normal(0.0, 0.05),
        pupil_ratio=rng.uniform(0.3, 0.5),
        lid_half_width_px=radius * rng.uniform(2.2, 2.8),
        upper_lid_height_px=radius * rng.uniform(0.85, 1.2),
        lower_lid_height_px=radius * rng.uniform(0.9, 1.3),
        lash_length_px=radius * rng.uniform(0.4, 0.8),
        n_lashes=int(rng.integers(30, 80)),
        blur_sigma_px=rng.uniform(0.0, 0.8),
        noise_sigma=rng.uniform(0.01, 0.03),
        gain=rng.uniform(0.9, 1.1),
        gamma=rng.uniform(0.85, 1.15),
    )


def render_clip(
    n_frames: int, size_wh: tuple[int, int] = (320, 240), fps: float = 60.0, seed: int = 0
) -> Iterator[tuple[np.ndarray, EyeTruth]]:
    """Yield n_frames (H, W) uint8 frames of one eye moving its gaze, with per-frame truth and event."""
    rng = np.random.default_rng(seed)
    eye = _clip_eye(rng, size_wh)
    schedule = _gaze_schedule(rng, n_frames, fps)
    radius = eye.iris_radius_px
    eye_radius_px = _EYE_RADIUS_PER_IRIS * radius
    # The camera looks up at the eye from below-side, so straight-ahead gaze is already off-axis.
    cam_yaw, cam_pitch = rng.uniform(-0.25, 0.25), rng.uniform(-0.35, 0.0)
    centre_x = eye.iris_cx - eye_radius_px * math.sin(cam_yaw)
    centre_y = eye.iris_cy - eye_radius_px * math.sin(cam_pitch)
    glint_base = _random_glints(rng, pupil_ellipse(eye), radius)[:2]
    pupil_mean, pupil_amp = eye.pupil_ratio, rng.uniform(0.03, 0.08)
    pupil_period_s, pupil_phase = rng.uniform(3.0, 8.0), rng.uniform(0, 2 * np.pi)
    noise_seeds = rng.integers(0, 2**31, n_frames)
    for i, g in enumerate(schedule):
        yaw, pitch = g.yaw_rad + cam_yaw, g.pitch_rad + cam_pitch
        tilt_x, tilt_y = math.sin(yaw) * math.cos(pitch), math.sin(pitch)
        cx, cy = centre_x + eye_radius_px * tilt_x, centre_y + eye_radius_px * tilt_y
        shift_x, shift_y = cx - eye.iris_cx, cy - eye.iris_cy
        t = i / fps
        params = replace(
            eye,
            iris_cx=cx,
            iris_cy=cy,
            tilt_x=tilt_x,
            tilt_y=tilt_y,
            pupil_ratio=pupil_mean + pupil_amp * math.sin(2 * np.pi * t / pupil_period_s + pupil_phase),
            # The lids follow vertical gaze partly; corneal glints move much less than the pupil.
            lid_cy=eye.lid_cy + 0.35 * shift_y,
            openness=g.openness,
            glints=tuple((gx + 0.2 * shift_x, gy + 0.2 * shift_y, gr) for gx, gy, gr in glint_base),
            noise_seed=int(noise_seeds[i]),
        )
        image, truth = render_eye(params, size_wh)
        yield image, replace(truth, event=g.event)


def blink_openness(n_frames: int, slit_openness: float = 0.06) -> np.ndarray:
    """(n_frames,) float64 lid openness of render_blink_clip: open, close to a slit, shut, slit, reopen, open.

    Open holds at 1 take ~10 % of the frames at each end, the closed phase ~24 % (its middle third at 0,
    fully shut, the rest at `slit_openness`), closing and reopening (cosine ease) share the rest.
    """
    if n_frames < 12:
        raise ValueError(f"a blink clip needs at least 12 frames (open, close, hold, reopen), got {n_frames}")
    if not 0.0 < slit_openness < 0.5:
        raise ValueError(f"slit_openness must be a nearly closed lid in (0, 0.5), got {slit_openness}")
    n_open = max(1, round(0.1 * n_frames))
    n_hold = max(3, round(0.24 * n_frames))
    n_close = (n_frames - 2 * n_open - n_hold) // 2
    n_reopen = n_frames - 2 * n_open - n_hold - n_close
    shut = n_hold // 3
    slit_before = (n_hold - shut) // 2
    closing = slit_openness + (1.0 - slit_openness) * 0.5 * (1 + np.cos(np.pi * np.arange(1, n_close + 1) / n_close))
    reopening = slit_openness + (1.0 - slit_openness) * 0.5 * (
        1 - np.cos(np.pi * np.arange(1, n_reopen + 1) / n_reopen)
    )
    hold = np.full(n_hold, slit_openness)
    hold[slit_before : slit_before + shut] = 0.0
    return np.concatenate([np.ones(n_open), closing, hold, reopening, np.ones(n_open)])


def render_blink_clip(
    n_frames: int = 48,
    size_wh: tuple[int, int] = (320, 240),
    seed: int = 0,
    slit_openness: float = 0.06,
) -> Iterator[tuple[np.ndarray, EyeTruth]]:
    """Yield n_frames (H, W) uint8 frames of a still eye whose upper lid closes through the pupil and reopens.

    The lid follows blink_openness: it closes to a slit (a dark gap a few pixels high, the pupil hidden),
    shuts for a few frames, opens to the slit again and reopens. Gaze and pupil are fixed; only the lid and
    the sensor noise change. Truth per frame: the full iris and pupil ellipses, the visible fraction of each
    outline, openness, and event "blink" while the lid is moving or closed ("fixation" when fully open).
    """
    rng = np.random.default_rng(seed)
    eye = _clip_eye(rng, size_wh)
    eye = replace(eye, glints=_random_glints(rng, pupil_ellipse(eye), eye.iris_radius_px)[:2])
    noise_seeds = rng.integers(0, 2**31, n_frames)
    for i, openness in enumerate(blink_openness(n_frames, slit_openness)):
        image, truth = render_eye(replace(eye, openness=float(openness), noise_seed=int(noise_seeds[i])), size_wh)
        yield image, replace(truth, event="fixation" if openness >= 1.0 else "blink")


# ------------------------------------------------------------------------------------------- files


def _ellipse_cells(ellipse: Ellipse | None) -> list[str]:
    """Five CSV cells (cx, cy, semi_major, semi_minor, angle_deg), blank for None."""
    if ellipse is None:
        return [""] * 5
    values = (ellipse.cx, ellipse.cy, ellipse.semi_major, ellipse.semi_minor, ellipse.angle_deg)
    return [f"{v:.4f}" for v in values]


def write_clip(
    video_path: str | Path,
    truth_csv_path: str | Path,
    n_frames: int,
    size_wh: tuple[int, int] = (320, 240),
    fps: float = 60.0,
    seed: int = 0,
) -> None:
    """Write a rendered clip as an mp4v .mp4 and its per-frame truth as CSV (blank where not visible)."""
    video_path, truth_csv_path = Path(video_path), Path(truth_csv_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    truth_csv_path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, tuple(size_wh))
    if not writer.isOpened():
        raise TrackerError(f"cannot open {video_path} for writing with fourcc mp4v; check the folder and OpenCV build")
    try:
        with truth_csv_path.open("w", newline="") as f:
            rows = csv.writer(f)
            rows.writerow(CLIP_COLUMNS)
            for i, (image, truth) in enumerate(render_clip(n_frames, size_wh, fps, seed)):
                writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
                iris = truth.iris if truth.iris_visible_fraction >= MIN_VISIBLE_FRACTION else None
                pupil = truth.pupil if truth.pupil_visible_fraction >= MIN_VISIBLE_FRACTION else None
                head = [str(i), f"{i / fps:.6f}", truth.event, f"{truth.openness:.4f}"]
                rows.writerow(head + _ellipse_cells(iris) + _ellipse_cells(pupil))
    finally:
        writer.release()


def write_image_set(folder: str | Path, n: int, size_wh: tuple[int, int] = (320, 240), seed: int = 0) -> None:
    """Write n random eyes as folder/images/NNNN.png, folder/masks/NNNN.png (0/1/2) and folder/ellipses.csv.

    The CSV's `image` column holds paths relative to it (images/NNNN.png); a boundary hidden below
    MIN_VISIBLE_FRACTION is left blank, as in write_clip. `iristrack eval FOLDER` reads the set.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with (folder / "ellipses.csv").open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(IMAGE_SET_COLUMNS)
        for i in range(n):
            image, truth = render_eye(random_eye_params(rng, size_wh), size_wh)
            name = f"{i:04d}.png"
            cv2.imwrite(str(folder / "images" / name), image)
            cv2.imwrite(str(folder / "masks" / name), truth.mask)
            iris = truth.iris if truth.iris_visible_fraction >= MIN_VISIBLE_FRACTION else None
            pupil = truth.pupil if truth.pupil_visible_fraction >= MIN_VISIBLE_FRACTION else None
            rows.writerow([f"images/{name}"] + _ellipse_cells(iris) + _ellipse_cells(pupil))


def write_contact_sheet(
    path: str | Path, n: int = 48, seed: int = 0, size_wh: tuple[int, int] = (224, 160), columns: int = 8
) -> None:
    """Write a PNG grid of n random_domain_eye images with true iris (green) and pupil (red) and the domain."""
    rng = np.random.default_rng(seed)
    w, h = size_wh
    rows = -(-n // columns)
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i in range(n):
        domain = _draw_domain(rng)
        image, truth = render_domain_eye(rng, size_wh, domain)
        tile = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        for ellipse, colour in ((truth.iris, (0, 255, 0)), (truth.pupil, (0, 0, 255))):
            centre = (round(ellipse.cx * 16), round(ellipse.cy * 16))
            axes = (round(ellipse.semi_major * 16), round(ellipse.semi_minor * 16))
            cv2.ellipse(tile, centre, axes, ellipse.angle_deg, 0, 360, colour, 1, cv2.LINE_AA, shift=4)
        for ink, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(tile, domain, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, ink, thickness, cv2.LINE_AA)
        r, c = divmod(i, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise TrackerError(f"cannot write the contact sheet {path}; check the folder and the .png suffix")
