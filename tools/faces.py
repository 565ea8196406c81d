"""Synthetic webcam frames: a real face photograph with rendered eyes, whose iris and pupil are known, in its eyes.

A face detector needs a real face, and a test of the eye path needs the truth of every iris: so the face is a
photograph that a registry package ships (scikit-image's `astronaut`, NASA, public domain) and each of its eyes
is replaced by a visible-light eye from tools.synthetic, rendered at the eye's own size, placed upright along
the eye's corner line and feathered into the skin. The photo's eye positions are constants (measured once
with tracker.eyes.FaceEyeFinder), so making frames needs neither the face models nor OpenVINO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from tools.synthetic import DomainEffects, EyeParams, render_domain_eye
from tracker.structures import Ellipse, EyeBox

# The astronaut photo's eyes (512x512 px): centre of the corner line (x, y), corner-to-corner span, angle.
# Right/left as the person sees it (the person's right eye is on the image's left).
PHOTO_EYES = {"right": (204.0, 101.0, 18.7, 0.12), "left": (245.4, 104.3, 18.7, 0.01)}
EYE_BOX_PER_SPAN = 1.6  # the face finder's eye box (tracker.eyes.EYE_BOX_WIDTH_PER_SPAN): rendered eyes fill it
IRIS_RADIUS_PER_SPAN = 0.195  # HVID 11.7 mm over an adult fissure of ~30 mm, halved
FEATHER = 0.18  # share of the box over which the rendered eye fades into the photo


@dataclass(frozen=True, slots=True)
class EyeTruth:
    """Where a rendered eye is in the frame: side, iris and pupil ellipses (frame px), and its pupil in mm."""

    side: str
    iris: Ellipse
    pupil: Ellipse
    pupil_diameter_mm: float  # 11.7 mm x pupil/iris semi-major ratio: the truth the mm estimate is scored on


def face_photo() -> np.ndarray:
    """(512, 512, 3) uint8 BGR face photograph from scikit-image's data (ImportError where it is not installed)."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _eye_params(params: EyeParams, size_wh: tuple[int, int], gaze_xy: tuple[float, float], pupil_ratio: float):
    """Centre the sampled eye in its crop at the face's proportions: iris, lid opening and gaze offset."""
    w, h = size_wh
    span = w / EYE_BOX_PER_SPAN
    radius = IRIS_RADIUS_PER_SPAN * span
    cx, cy = (w - 1) / 2 + gaze_xy[0] * radius, (h - 1) / 2 + gaze_xy[1] * radius
    return replace(
        params,
        iris_cx=cx,
        iris_cy=cy,
        iris_radius_px=radius,
        tilt_x=0.3 * gaze_xy[0],
        tilt_y=0.3 * gaze_xy[1],
        pupil_ratio=pupil_ratio,
        pupil_offset_x=0.0,
        pupil_offset_y=0.0,
        lid_cx=(w - 1) / 2,
        lid_cy=(h - 1) / 2 + 0.1 * radius,
        lid_tilt_rad=0.0,
        lid_half_width_px=span / 2,
        upper_lid_height_px=0.95 * radius,
        lower_lid_height_px=0.9 * radius,
        openness=1.0,
        glints=(),
    )


def paste_eye(
    image: np.ndarray,
    box: EyeBox,
    rng: np.random.Generator,
    gaze_xy: tuple[float, float] = (0.0, 0.0),
    pupil_ratio: float = 0.4,
) -> EyeTruth:
    """Render an eye the size of `box` and blend it into `image` ((H, W, 3) uint8 BGR, in place) -> its truth."""
    size_wh = (max(8, round(box.width_px)), max(6, round(box.height_px)))
    effects = DomainEffects()  # no glasses, blur or compression: the face frame is the test, not the renderer
    eye, truth = render_domain_eye(
        rng, size_wh, "visible", effects, adjust=lambda p: _eye_params(p, size_wh, gaze_xy, pupil_ratio)
    )
    scaled = replace(box, width_px=float(size_wh[0]), height_px=float(size_wh[1]))
    to_frame = scaled.crop_to_frame(size_wh)
    h, w = image.shape[:2]
    warped = cv2.warpAffine(eye, to_frame, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(_feather(size_wh), to_frame, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    image[:] = np.clip(alpha * warped + (1.0 - alpha) * image, 0, 255).astype(np.uint8)
    iris, pupil = truth.iris.affine(to_frame), truth.pupil.affine(to_frame)
    return EyeTruth(box.side, iris, pupil, 11.7 * pupil.semi_major / iris.semi_major)


def _feather(size_wh: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 alpha: 1 over the eye, fading to 0 at the crop's edge over FEATHER of its size."""
    w, h = size_wh
    u = np.abs(np.linspace(-1, 1, w, dtype=np.float32))[None, :]
    v = np.abs(np.linspace(-1, 1, h, dtype=np.float32))[:, None]
    r = np.sqrt(u**2 + v**2)  # an ellipse inscribed in the crop: no corner of the rendered skin shows
    return np.clip((1.0 - r) / FEATHER, 0.0, 1.0)


def face_frame(
    frame_wh: tuple[int, int],
    eye_width_px: float,
    rng: np.random.Generator,
    shift_xy: tuple[float, float] = (0.0, 0.0),
    gazes: dict[str, tuple[float, float]] | None = None,
    pupil_ratio: float = 0.4,
    photo: np.ndarray | None = None,
) -> tuple[np.ndarray, list[EyeTruth]]:
    """A (H, W, 3) uint8 BGR webcam frame with rendered eyes -> (frame, truth of each eye inside the frame).

    The photo is scaled so an eye box is eye_width_px wide, its eyes at the frame centre moved by shift_xy px.
    """
    photo = face_photo() if photo is None else photo
    scale = eye_width_px / (EYE_BOX_PER_SPAN * PHOTO_EYES["right"][2])
    w, h = frame_wh
    face_x, face_y = (PHOTO_EYES["right"][0] + PHOTO_EYES["left"][0]) / 2, PHOTO_EYES["right"][1]
    # The eyes a third of the way down the frame, as in a webcam framing of the head and shoulders.
    tx, ty = w / 2 + shift_xy[0] - scale * face_x, h / 3 + shift_xy[1] - scale * face_y
    to_frame = np.array([[scale, 0.0, tx], [0.0, scale, ty]])
    frame = cv2.warpAffine(photo, to_frame, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    truths = []
    for side, (x, y, span, angle) in PHOTO_EYES.items():
        cx, cy = scale * x + tx, scale * y + ty
        width = EYE_BOX_PER_SPAN * span * scale
        box = EyeBox(side, cx, cy, width, width * 0.75, angle)
        if 0 <= cx < w and 0 <= cy < h:
            truths.append(paste_eye(frame, box, rng, (gazes or {}).get(side, (0.0, 0.0)), pupil_ratio))
    return frame, truths


def face_clip(
    n_frames: int, frame_wh: tuple[int, int], eye_width_px: float, seed: int = 0
) -> tuple[list[np.ndarray], list[list[EyeTruth]]]:
    """n_frames of a face that sways a few pixels, with both eyes looking about and pupils changing slowly."""
    photo = face_photo()
    frames, truths = [], []
    for i in range(n_frames):
        t = i / 30.0
        shift = (12.0 * math.sin(0.7 * t), 6.0 * math.sin(1.1 * t))
        gaze = (0.35 * math.sin(1.3 * t), 0.15 * math.sin(0.9 * t))
        ratio = 0.4 + 0.1 * math.sin(0.5 * t)
        # The same seed every frame: each eye keeps its rendered texture all along the clip.
        eye_rng = np.random.default_rng(seed)
        frame, truth = face_frame(frame_wh, eye_width_px, eye_rng, shift, {"right": gaze, "left": gaze}, ratio, photo)
        frames.append(frame)
        truths.append(truth)
    return frames, truths


def write_face_clip(path: str | Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """Write BGR frames as an MP4 (mp4v) video; a TrackerError-free helper for tests and the bench."""
    path = Path(path)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@dataclass(frozen=True)
class FaceScore:
    """How a face run did on rendered eyes: eyes found, irises and pupils reported, their errors, mm errors."""

    eyes: int  # rendered eyes inside the frames
    boxes_found: int  # of them with an eye box on their side, within two iris radii
    iris_reported: int
    iris_hit: int  # centre within 5 % of the true radius
    iris_within_quarter: int  # centre within a quarter of the true radius (the webcam issue's bar)
    iris_trusted: int
    pupil_reported: int
    pupil_hit: int
    mm_errors: tuple[float, ...]  # reported pupil diameter minus the truth, mm
    mm_within_2sd: int  # of them, |error| <= 2 reported SD

    def lines(self) -> list[str]:
        """Human-readable summary."""
        n = max(self.eyes, 1)
        mm = np.abs(np.array(self.mm_errors)) if self.mm_errors else np.array([np.nan])
        return [
            f"{self.eyes} rendered eyes: eye box found {100 * self.boxes_found / n:.1f} %",
            f"iris reported {100 * self.iris_reported / n:.1f} %, centre within 5 % of the radius "
            f"{100 * self.iris_hit / n:.1f} %, within a quarter {100 * self.iris_within_quarter / n:.1f} %, "
            f"trusted {100 * self.iris_trusted / n:.1f} %",
            f"pupil reported {100 * self.pupil_reported / n:.1f} %, centre within 5 % of the radius "
            f"{100 * self.pupil_hit / n:.1f} %",
            f"pupil diameter (mm) on {len(self.mm_errors)} eyes: |error| median {np.median(mm):.2f} mm, p95 "
            f"{np.percentile(mm, 95):.2f} mm, bias {np.mean(self.mm_errors) if self.mm_errors else np.nan:+.2f} mm; "
            f"within 2 reported SD {100 * self.mm_within_2sd / max(len(self.mm_errors), 1):.1f} %",
        ]


def score_face_run(results, truths: list[list[EyeTruth]]) -> FaceScore:
    """FrameResults of a face run against the rendered truth of each frame -> FaceScore."""
    counts = dict.fromkeys(("eyes", "boxes", "iris", "hit", "quarter", "trusted", "pupil", "pupil_hit", "sd2"), 0)
    errors = []
    for result, frame_truth in zip(results, truths, strict=True):
        found = {eye.side: eye for eye in result.eyes or ()}
        for true in frame_truth:
            counts["eyes"] += 1
            eye = found.get(true.side)
            radius = true.iris.semi_major
            if eye is None or math.dist((eye.box.cx, eye.box.cy), true.iris.center_xy) > 2 * radius:
                continue
            counts["boxes"] += 1
            if eye.iris is not None:
                offset = math.dist(eye.iris.ellipse.center_xy, true.iris.center_xy)
                counts["iris"] += 1
                counts["hit"] += offset <= 0.05 * radius
                counts["quarter"] += offset <= 0.25 * radius
                counts["trusted"] += eye.iris.trusted
            if eye.pupil is not None:
                counts["pupil"] += 1
                counts["pupil_hit"] += math.dist(eye.pupil.ellipse.center_xy, true.pupil.center_xy) <= 0.05 * radius
            if eye.pupil_diameter is not None:
                error = eye.pupil_diameter.value_mm - true.pupil_diameter_mm
                errors.append(error)
                counts["sd2"] += abs(error) <= 2 * eye.pupil_diameter.sd_mm
    return FaceScore(
        counts["eyes"],
        counts["boxes"],
        counts["iris"],
        counts["hit"],
        counts["quarter"],
        counts["trusted"],
        counts["pupil"],
        counts["pupil_hit"],
        tuple(errors),
        counts["sd2"],
    )


def webcam_figure(tracker) -> np.ndarray:
    """README's webcam figure: the real photo at 2x (eyes ~60 px wide) tracked by `tracker`, and its eyes at 3x.

    (H, W, 3) uint8 BGR: the whole overlay frame on the left, the overlay around both eye boxes enlarged on the right.
    """
    from tracker.io.overlay import draw_overlay
    from tracker.structures import Frame

    frame = cv2.resize(face_photo(), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    result = tracker(Frame(frame, 0, 0.0))
    drawn = draw_overlay(frame, result)
    corners = np.concatenate([eye.box.corners_xy() for eye in result.eyes or ()] or [np.zeros((1, 2))])
    (x0, y0), (x1, y1) = np.maximum(corners.min(0) - 24, 0).astype(int), (corners.max(0) + 24).astype(int)
    eyes = cv2.resize(drawn[y0:y1, x0:x1], None, fx=3.0, fy=3.0, interpolation=cv2.INTER_NEAREST)
    whole = cv2.resize(drawn, (eyes.shape[0], eyes.shape[0]), interpolation=cv2.INTER_AREA)
    return np.hstack([whole, eyes])


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.faces OUT.mp4 [--size WxH] [--eye-width PX] [--frames N] [--score]`: write a face clip.

    With --score, also track it with `iristrack run --eyes face`'s tracker (shipped model) and print how the
    eyes were found against the rendered truth.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.faces", description=main.__doc__)
    parser.add_argument("out")
    parser.add_argument("--size", default="640x480", help="frame size WxH")
    parser.add_argument("--eye-width", type=float, default=60.0, help="eye box width in px (webcams: 40-100)")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--fps", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score", action="store_true", help="track the clip and score it against the truth")
    parser.add_argument("--figure", action="store_true", help="write README's webcam figure (a PNG) to OUT instead")
    parser.add_argument(
        "--model", default=None, help="ONNX model for --score, close-ups and eyes (default: the shipped ones)"
    )
    args = parser.parse_args(argv)
    if args.figure:
        from tracker.eyes import FaceTracker

        with FaceTracker.from_model(args.model, mode="face") as tracker:
            cv2.imwrite(args.out, webcam_figure(tracker))
        print(f"wrote {args.out}")
        return 0
    w, h = (int(v) for v in args.size.lower().split("x"))
    frames, truths = face_clip(args.frames, (w, h), args.eye_width, args.seed)
    print(f"wrote {write_face_clip(args.out, frames, args.fps)}: {args.frames} frames, {w}x{h}")
    if args.score:
        from tracker.eyes import FaceTracker
        from tracker.structures import Frame

        with FaceTracker.from_model(args.model, mode="face") as tracker:
            results = [tracker(Frame(image, i, i / args.fps)) for i, image in enumerate(frames)]
        for line in score_face_run(results, truths).lines():
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
