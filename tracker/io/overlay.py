"""Drawing a result on its frame: the overlay the video sink records and the preview window shows."""

from __future__ import annotations

import math

import cv2
import numpy as np

from tracker.structures import Boundary, FrameResult, Status

IRIS_BGR = (0, 255, 0)
PUPIL_BGR = (255, 0, 255)
TEXT_BGR = (255, 255, 255)
WARN_BGR = (0, 165, 255)  # a status other than ok
BOX_BGR = (255, 200, 0)  # eye boxes of a face frame
_SHIFT = 4  # cv2 drawing with 4 fractional bits: 1/16 px precision
BAD_FRAME_CANVAS_HW = (240, 320)  # a video sink resizes it to the video's size


def _showable(image) -> bool:
    return (
        isinstance(image, np.ndarray)
        and image.size > 0
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)))
        and (image.dtype == np.uint8 or image.dtype == np.uint16 or np.issubdtype(image.dtype, np.floating))
    )


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) uint8/uint16/float -> new (H, W, 3) uint8 BGR; deeper images min-max stretched."""
    if image.dtype != np.uint8:
        # Per-frame stretch: 10/12-bit sensors in 16-bit containers would otherwise look black.
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX, dtype=cv2.CV_8U)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def _fixed(x: float) -> int:
    return int(round(x * (1 << _SHIFT)))


def _draw_boundary(img: np.ndarray, b: Boundary, color: tuple[int, int, int], thickness: int) -> None:
    e = b.ellipse
    if not (math.isfinite(e.cx) and math.isfinite(e.cy) and math.isfinite(e.semi_major)):
        return
    centre = (_fixed(e.cx), _fixed(e.cy))
    axes = (_fixed(e.semi_major), _fixed(e.semi_minor))
    cv2.ellipse(img, centre, axes, e.angle_deg, 0, 360, color, thickness, cv2.LINE_AA, _SHIFT)
    arm = _fixed(max(2.0, 1.5 * thickness + 1))
    cx, cy = centre
    cv2.line(img, (cx - arm, cy), (cx + arm, cy), color, thickness, cv2.LINE_AA, _SHIFT)
    cv2.line(img, (cx, cy - arm), (cx, cy + arm), color, thickness, cv2.LINE_AA, _SHIFT)


def _put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    thickness = max(1, int(round(scale * 1.5)))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, result: FrameResult, *, fps: float | None = None, text: bool = True) -> np.ndarray:
    """(H, W[, 3|4]) uint8/uint16 frame -> new (H, W, 3) uint8 BGR with iris (green) and pupil (magenta) drawn.

    A frame that cannot be shown (unreadable, 2-channel, another pixel type) gives a black canvas with its
    status, so a bad_frame still has its place in the video and the window.
    """
    img = to_bgr8(image) if _showable(image) else np.zeros(BAD_FRAME_CANVAS_HW + (3,), np.uint8)
    h, w = img.shape[:2]
    thickness = max(1, round(min(h, w) / 240))
    if result.iris is not None:
        _draw_boundary(img, result.iris, IRIS_BGR, thickness)
    if result.pupil is not None:
        _draw_boundary(img, result.pupil, PUPIL_BGR, thickness)
    for eye in result.eyes or ():
        # Eyes in a face frame are small: hairlines, so the ellipses do not hide the boundary they follow.
        cv2.polylines(img, [np.round(eye.box.corners_xy()).astype(np.int32)], True, BOX_BGR, 1, cv2.LINE_AA)
        for boundary, color in ((eye.iris, IRIS_BGR), (eye.pupil, PUPIL_BGR)):
            if boundary is not None:
                _draw_boundary(img, boundary, color, 1)
    if text:
        # A face frame's lines are longer (one per eye) and its eyes small: smaller text keeps the face clear.
        scale = max(0.3, min(h, w) / (600 if result.eyes is None else 1100))
        line_h = int(30 * scale) + 4
        status = Status(result.status)
        lines = _closeup_lines(result) if result.eyes is None else _face_lines(result)
        lines.append((status.value, TEXT_BGR if status is Status.OK else WARN_BGR))
        perf = f"{result.latency_ms:.1f} ms"
        if fps is not None:
            perf += f"  {fps:.1f} fps"
        lines.append((perf, TEXT_BGR))
        for i, (line, color) in enumerate(lines):
            _put_text(img, line, (4, line_h * (i + 1)), scale, color)
    return img


def _mm(size) -> str:
    return f" {size.value_mm:.1f}+-{size.sd_mm:.1f} mm" if size is not None else ""


def _closeup_lines(result: FrameResult) -> list[tuple[str, tuple[int, int, int]]]:
    return [
        (f"iris {result.iris.confidence:.2f}" if result.iris else "iris -", IRIS_BGR),
        (f"pupil {result.pupil.confidence:.2f}{_mm(result.pupil_diameter)}" if result.pupil else "pupil -", PUPIL_BGR),
    ]


def _face_lines(result: FrameResult) -> list[tuple[str, tuple[int, int, int]]]:
    if not result.eyes:
        return [("no face", WARN_BGR)]
    lines = []
    for eye in result.eyes:
        iris = f"{eye.iris.confidence:.2f}" if eye.iris else "-"
        pupil = f"{eye.pupil.confidence:.2f}" if eye.pupil else "-"
        lines.append((f"{eye.side}: iris {iris} pupil {pupil}{_mm(eye.pupil_diameter)}", TEXT_BGR))
    return lines


PASS_BGR = (0, 200, 0)
FAIL_BGR = (0, 0, 255)


def draw_quality(img: np.ndarray, report, kept: int | None = None, wanted: int | None = None) -> np.ndarray:
    """Write a QualityReport's verdict on an overlay (H, W, 3) uint8, in place: PASS, or FAIL and the failing gates.

    The verdict goes at the bottom left (the result's lines are at the top), with `kept/wanted` when given.
    """
    h, w = img.shape[:2]
    scale = max(0.3, min(h, w) / 600)
    line_h = int(30 * scale) + 4
    counter = f"  kept {kept}/{wanted}" if kept is not None and wanted is not None else ""
    if report.passed:
        lines = [(f"PASS  score {report.score:.1f}{counter}", PASS_BGR)]
    else:
        lines = [(f"FAIL{counter}", FAIL_BGR), *((f"  {gate}", FAIL_BGR) for gate in report.failed[:4])]
        if len(report.failed) > 4:
            lines.append((f"  +{len(report.failed) - 4} more", FAIL_BGR))
    for i, (line, color) in enumerate(lines):
        _put_text(img, line, (4, h - 6 - line_h * (len(lines) - 1 - i)), scale, color)
    return img
