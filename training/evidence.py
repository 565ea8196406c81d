"""Which arcs of an annotated ellipse the image shows: edge labels for ellipse-only ground truth. NumPy + OpenCV.

Ellipse annotations (visible-eyes) cover the whole boundary, also what the lids and lashes hide. The mask
data labels only the visible arcs (a lid-hidden limbus is "no edge" there), and the runtime fits the visible
arcs, so an ellipse set is labelled the same way: a point of the ellipse is an edge where the image steps
from darker inside to brighter outside across it (iris/sclera, pupil/iris), and the runs of such points,
short gaps closed and short runs dropped, become the arcs. A lid over the boundary has skin on both sides
(no step); a dark-brown iris shows no pupil step, so that pupil gets no label rather than a guessed one.
"""

from __future__ import annotations

import cv2
import numpy as np

from tracker.structures import Ellipse

SMOOTH_SIGMA_PX = 1.0  # the step is read on a lightly smoothed image: pixel noise and JPEG blocks average out
# Sample the step this far inside and outside the boundary: past the annotation's ~1 px jitter, inside the
# narrowest ring that matters (a 9 px pupil in a 25 px iris).
STEP_OFFSET_PX = 2.0
STEP_OFFSET_FRACTION = 0.08  # ... and no closer than this fraction of the semi-minor axis for large boundaries
# A point is evidence when its step exceeds this share of the image's spread (5th to 95th percentile):
# the limbus at the visible sides of visible-eyes irises steps by a median 0.31 of it (78 % of points pass),
# its top, mostly under the upper lid, by 0.09 (34 % pass: the lid margin itself and open eyes).
MIN_STEP_FRACTION = 0.15
MIN_STEP_LEVELS = 4.0  # and at least this many 8-bit gray levels, for flat low-contrast images
MAX_GAP_FRACTION = 0.04  # gaps shorter than this share of the perimeter (a glint, a lash) are closed
MIN_RUN_FRACTION = 0.06  # runs shorter than this share are dropped (a lid edge crossing the boundary)
SAMPLES = 360


def boundary_steps(gray: np.ndarray, ellipse: Ellipse, n: int = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) gray + ellipse -> ((n, 2) points on it, (n,) outside-minus-inside intensity steps, gray levels)."""
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), SMOOTH_SIGMA_PX)
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    on = ellipse.points_at(t)
    # Outward normal of the parametric ellipse: the rotated (b cos t, a sin t).
    c, s = np.cos(ellipse.angle_rad), np.sin(ellipse.angle_rad)
    nx, ny = ellipse.semi_minor * np.cos(t), ellipse.semi_major * np.sin(t)
    normal = np.stack([c * nx - s * ny, s * nx + c * ny], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    offset = max(STEP_OFFSET_PX, STEP_OFFSET_FRACTION * ellipse.semi_minor)
    outside, inside = on + offset * normal, on - offset * normal
    sample = np.concatenate([outside, inside]).astype(np.float32)
    values = cv2.remap(
        smooth, sample[None, :, 0], sample[None, :, 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )[0]
    steps = values[:n] - values[n:]
    # Points outside the image carry no evidence.
    h, w = gray.shape[:2]
    in_frame = (on[:, 0] >= 0) & (on[:, 0] <= w - 1) & (on[:, 1] >= 0) & (on[:, 1] <= h - 1)
    return on, np.where(in_frame, steps, 0.0)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Circular (n,) bool -> [(start, length)] of its True runs; a run through index 0 stays one run."""
    n = len(flags)
    if flags.all():
        return [(0, n)]
    if not flags.any():
        return []
    shift = int(np.argmin(flags))  # start at a False so no run is split by the wrap
    rolled = np.roll(flags, -shift).astype(np.int8)
    edges = np.diff(np.concatenate([[0], rolled, [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [((a + shift) % n, b - a) for a, b in zip(starts, stops, strict=True)]


def clean_evidence(flags: np.ndarray) -> np.ndarray:
    """Circular (n,) bool -> the same, gaps under MAX_GAP_FRACTION closed, runs under MIN_RUN_FRACTION dropped."""
    n = len(flags)
    out = flags.copy()
    for start, length in _runs(~flags):
        if length < MAX_GAP_FRACTION * n:
            out[(start + np.arange(length)) % n] = True
    for start, length in _runs(out.copy()):
        if length < MIN_RUN_FRACTION * n:
            out[(start + np.arange(length)) % n] = False
    return out


def evidenced_arcs(gray: np.ndarray, ellipse: Ellipse, n: int = SAMPLES) -> list[np.ndarray]:
    """(H, W) uint8 gray + annotated ellipse -> (k, 2) arcs (frame pixels) the image shows as a dark-to-bright step."""
    on, steps = boundary_steps(gray, ellipse, n)
    lo, hi = np.percentile(gray, (5, 95))
    threshold = max(MIN_STEP_LEVELS, MIN_STEP_FRACTION * float(hi - lo))
    flags = clean_evidence(steps > threshold)
    return [on[(start + np.arange(length)) % n] for start, length in _runs(flags)]
