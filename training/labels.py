"""Edge labels from boundaries: soft ridges for training, 1-px curves for scoring. NumPy + OpenCV.

Label width: an anti-aliased polyline of the visible boundary, blurred with a Gaussian of sigma
LABEL_SIGMA_PX (model pixels), scaled to peak 1. About 3 px wide at half height: wide enough to absorb
the +-1 px jitter of hand-drawn masks (a 1-px label punishes the model for the annotator's noise),
narrow enough that the ridge's centre line, which the runtime fits, stays on the boundary. The ridge
is symmetric across the boundary, so its maximum is an unbiased estimate of the boundary position.
"""

from __future__ import annotations

import cv2
import numpy as np

from tracker.preprocess import CHANNELS

LABEL_SIGMA_PX = 0.8
_SHIFT = 4  # polyline coordinates in 1/16 px
_PEAK = None


def _draw_arcs(canvas: np.ndarray, arcs: list[np.ndarray], thickness: int, antialias: bool) -> None:
    """Draw each (k, 2) arc (model pixels, pixel centres at integers) onto `canvas` in place."""
    pts = [np.round(a * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2) for a in arcs if len(a) >= 2]
    if pts:
        cv2.polylines(
            canvas,
            pts,
            isClosed=False,
            color=255,
            thickness=thickness,
            lineType=cv2.LINE_AA if antialias else cv2.LINE_8,
            shift=_SHIFT,
        )


def _ridge_peak() -> float:
    """Peak value of a blurred straight anti-aliased line, used to scale ridges to a maximum of ~1."""
    global _PEAK
    if _PEAK is None:
        canvas = np.zeros((33, 33), np.uint8)
        _draw_arcs(canvas, [np.array([[0.0, 16.0], [32.0, 16.0]])], 1, True)
        _PEAK = float(cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), LABEL_SIGMA_PX).max())
    return _PEAK


def soft_edge_labels(arcs: tuple[list[np.ndarray], list[np.ndarray]], hw: tuple[int, int]) -> np.ndarray:
    """Visible arcs per channel (limbus, pupil) -> (H, W, 2) float32 soft ridges in [0, 1]."""
    out = np.empty((*hw, len(CHANNELS)), np.float32)
    canvas = np.empty(hw, np.uint8)  # LINE_AA draws on 8-bit images only
    for c, channel_arcs in enumerate(arcs):
        canvas.fill(0)
        _draw_arcs(canvas, channel_arcs, 1, True)
        ridge = cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), LABEL_SIGMA_PX)
        out[:, :, c] = np.minimum(ridge / _ridge_peak(), 1.0)
    return out


def thin_edge_labels(arcs: tuple[list[np.ndarray], list[np.ndarray]], hw: tuple[int, int]) -> np.ndarray:
    """Visible arcs per channel -> (H, W, 2) bool 1-px (8-connected) curves: the ground truth for edge F."""
    out = np.zeros((*hw, len(CHANNELS)), bool)
    for c, channel_arcs in enumerate(arcs):
        canvas = np.zeros(hw, np.uint8)
        _draw_arcs(canvas, channel_arcs, 1, False)
        out[:, :, c] = canvas > 0
    return out


def transform_arcs(arcs: tuple[list[np.ndarray], ...], m: np.ndarray) -> tuple[list[np.ndarray], ...]:
    """Apply a 2x3 affine map to every (k, 2) arc."""
    a, t = m[:, :2], m[:, 2]
    return tuple([pts @ a.T + t for pts in channel] for channel in arcs)
