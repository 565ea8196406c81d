"""Edge precision / recall / F over thresholds (ODS), with a matching tolerance in model pixels. NumPy + OpenCV."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)
TOLERANCE_PX = 2.0


@dataclass(frozen=True, slots=True)
class EdgeScore:
    """Best (ODS) F over thresholds, with its precision, recall and threshold."""

    f: float
    precision: float
    recall: float
    threshold: float

    def to_dict(self) -> dict:
        """Rounded JSON-ready form."""
        return {
            k: round(float(v), 4)
            for k, v in (
                ("f", self.f),
                ("precision", self.precision),
                ("recall", self.recall),
                ("threshold", self.threshold),
            )
        }


def thin_edges(prob: np.ndarray) -> np.ndarray:
    """(H, W) float32 -> (H, W) float32 with non-maxima across the ridge set to 0 (Canny-style NMS)."""
    gx = cv2.Sobel(prob, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(prob, cv2.CV_32F, 0, 1, ksize=3)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    direction = np.digitize(angle, [22.5, 67.5, 112.5, 157.5]) % 4  # 0: x, 1: diag, 2: y, 3: anti-diag
    p = np.pad(prob, 1, mode="constant")
    h, w = prob.shape
    neighbours = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    keep = np.zeros_like(prob, dtype=bool)
    for d, ((dy1, dx1), (dy2, dx2)) in neighbours.items():
        a = p[1 + dy1 : 1 + dy1 + h, 1 + dx1 : 1 + dx1 + w]
        b = p[1 + dy2 : 1 + dy2 + h, 1 + dx2 : 1 + dx2 + w]
        keep |= (direction == d) & (prob >= a) & (prob >= b)
    return np.where(keep, prob, 0.0).astype(np.float32)


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) float32 Euclidean distance to the nearest True pixel (inf-like when none)."""
    if not mask.any():
        return np.full(mask.shape, 1e6, dtype=np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def edge_counts(
    prob: np.ndarray, gt: np.ndarray, thresholds: np.ndarray = THRESHOLDS, tolerance_px: float = TOLERANCE_PX
) -> np.ndarray:
    """(H, W) probabilities and (H, W) bool 1-px ground-truth edges -> (T, 4) counts per threshold.

    Columns: matched predicted pixels, predicted pixels, matched ground-truth pixels, ground-truth pixels.
    A predicted (thinned) pixel is correct when a ground-truth edge lies within `tolerance_px`; a
    ground-truth pixel is recalled when a predicted pixel lies within `tolerance_px`.
    """
    thin = thin_edges(prob)
    gt_dist = _distance_to(gt)
    n_gt = int(gt.sum())
    counts = np.zeros((len(thresholds), 4), dtype=np.int64)
    for i, t in enumerate(thresholds):
        pred = thin >= t
        n_pred = int(pred.sum())
        matched_pred = int((gt_dist[pred] <= tolerance_px).sum())
        matched_gt = int((_distance_to(pred)[gt] <= tolerance_px).sum()) if n_gt and n_pred else 0
        counts[i] = (matched_pred, n_pred, matched_gt, n_gt)
    return counts


def ods_score(counts: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> EdgeScore:
    """(T, 4) counts summed over a data set -> the best F over thresholds (optimal dataset scale)."""
    precision = counts[:, 0] / np.maximum(counts[:, 1], 1)
    recall = counts[:, 2] / np.maximum(counts[:, 3], 1)
    f = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f))
    return EdgeScore(float(f[best]), float(precision[best]), float(recall[best]), float(thresholds[best]))


def f_at(counts: np.ndarray, threshold: float, thresholds: np.ndarray = THRESHOLDS) -> float:
    """F at one fixed threshold (what a runtime with that threshold sees), from (T, 4) counts."""
    i = int(np.argmin(np.abs(thresholds - threshold)))
    p = counts[i, 0] / max(counts[i, 1], 1)
    r = counts[i, 2] / max(counts[i, 3], 1)
    return float(2 * p * r / max(p + r, 1e-12))


def score_edges(probs: np.ndarray, gts: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> list[EdgeScore]:
    """(N, H, W, C) probabilities and (N, H, W, C) bool edges -> one ODS EdgeScore per channel."""
    scores = []
    for c in range(probs.shape[-1]):
        counts = sum(edge_counts(probs[i, :, :, c], gts[i, :, :, c], thresholds) for i in range(len(probs)))
        scores.append(ods_score(counts, thresholds))
    return scores
