"""What anatomy and optics guarantee about an eye's two boundaries, as numbers with their sources. Pure functions.

The pupil and the limbus are close to circles in nearly the same plane (the iris plane), so the camera sees
two ellipses with nearly the same axis ratio and orientation (both set by the gaze angle), nearly the same
centre, and a radius ratio bounded by the ranges of pupil size and iris size. A fit that breaks these is a
fit of something else (a lid line, a glasses frame, the eye slit, a glint) and must not be reported as the eye.
"""

from __future__ import annotations

import math

from tracker.structures import Ellipse

# Horizontal visible iris diameter of adults: 11.71 +- 0.42 mm (Rüfer, Schröder & Erb 2005, "White-to-white
# corneal diameter: normal values in healthy humans", Cornea 24:259); 11.7 +- 0.5 mm across studies.
IRIS_DIAMETER_MM = 11.7
IRIS_DIAMETER_SD_MM = 0.5
# Pupil diameter 2-8 mm over the light range (Watson & Yellott 2012, "A unified formula for light-adapted pupil
# size", J. Vision 12(10):12). With the iris within 2 SD, the ratio lies in 2/12.7 .. 8/10.7 = 0.16 .. 0.75;
# the bounds below add fitting noise (the pupil edge is blurred by the model's 128 px input) and match the
# validator range of open-iris (Worldcoin), pupil/iris 0.1 .. 0.7, on the wide side.
PUPIL_IRIS_RATIO = (0.12, 0.80)
# Pupil centre vs limbus centre: the pupil is decentred by 0.1-0.3 mm on average and rarely more than 0.6 mm
# (Yang, Thompson & Burns 2002, "Pupil location under mesopic, photopic, and pharmacologically dilated
# conditions", IOVS 43:2508), i.e. < 0.1 of the 5.85 mm iris radius; corneal refraction and the ~0.5 mm depth
# between limbus and pupil planes add ~0.05 at 40 deg gaze. 0.2 leaves room for fitting noise on side arcs.
MAX_CENTRE_OFFSET = 0.2  # of the iris semi-major axis
# Both boundaries are seen at the same gaze angle: their axis ratios (cos of the angle) agree. The pupil is
# seen through the cornea, which magnifies it about 1.13x and makes it look rounder off-axis (Mathur, Gehrmann
# & Atchison 2013, "Pupil shape as viewed along the horizontal visual field", J. Vision 13(6):3): allow 0.2.
MAX_AXIS_RATIO_GAP = 0.2
ROUND_ENOUGH = 0.9  # above this axis ratio the orientation of an ellipse is noise, not evidence
MAX_ORIENTATION_GAP_RAD = math.radians(30.0)
# An eye camera sees the eye within ~60 deg of its axis (cos 60 = 0.5); a flatter "pupil" is the eye slit of a
# closing lid or a lash shadow, not a pupil (the cornea makes the real one look rounder still).
MIN_PUPIL_AXIS_RATIO = 0.5
# An eye close-up shows the iris no larger than the frame: a limbus ellipse wider or taller than the frame is
# a face outline, a glasses frame or an eye socket. (Close-ups where the limbus leaves the frame report the
# pupil only.)
MAX_IRIS_DIAMETER_OF_FRAME = 1.0


def centre_offset(pupil: Ellipse, iris: Ellipse) -> float:
    """Distance between the centres as a fraction of the iris semi-major axis."""
    return math.hypot(pupil.cx - iris.cx, pupil.cy - iris.cy) / max(iris.semi_major, 1e-9)


def radius_ratio(pupil: Ellipse, iris: Ellipse) -> float:
    """Pupil semi-major / iris semi-major."""
    return pupil.semi_major / max(iris.semi_major, 1e-9)


def orientation_gap_rad(a: Ellipse, b: Ellipse) -> float:
    """Angle between the major axes in [0, pi/2]."""
    d = abs(a.angle_rad - b.angle_rad) % math.pi
    return min(d, math.pi - d)


def shape_gap(pupil: Ellipse, iris: Ellipse) -> float:
    """How far the two ellipses are from one gaze angle: axis-ratio difference, plus pi/2-scaled orientation gap."""
    gap = abs(pupil.axis_ratio - iris.axis_ratio)
    if min(pupil.axis_ratio, iris.axis_ratio) < ROUND_ENOUGH:
        gap = max(gap, MAX_AXIS_RATIO_GAP * orientation_gap_rad(pupil, iris) / MAX_ORIENTATION_GAP_RAD)
    return gap


def one_eye(pupil: Ellipse, iris: Ellipse) -> bool:
    """Whether a pupil and an iris ellipse can be the two boundaries of one eye (all priors above)."""
    return (
        PUPIL_IRIS_RATIO[0] <= radius_ratio(pupil, iris) <= PUPIL_IRIS_RATIO[1]
        and centre_offset(pupil, iris) <= MAX_CENTRE_OFFSET
        and shape_gap(pupil, iris) <= MAX_AXIS_RATIO_GAP
    )


def iris_fits_frame(iris: Ellipse, frame_hw: tuple[int, int]) -> bool:
    """Whether the iris is no larger than the frame (see MAX_IRIS_DIAMETER_OF_FRAME)."""
    return 2 * iris.semi_major <= MAX_IRIS_DIAMETER_OF_FRAME * max(frame_hw) and (
        2 * iris.semi_minor <= MAX_IRIS_DIAMETER_OF_FRAME * min(frame_hw)
    )


def pupil_flatter_than_iris(pupil: Ellipse, iris: Ellipse) -> bool:
    """Whether the pupil looks flatter than its limbus by more than MAX_AXIS_RATIO_GAP.

    The cornea makes a pupil look rounder than its limbus off-axis, never flatter (see MAX_AXIS_RATIO_GAP): a
    much flatter "pupil" inside a measured limbus is the cap a closing lid leaves of it, or the slit.
    """
    return pupil.axis_ratio < iris.axis_ratio - MAX_AXIS_RATIO_GAP


def pupil_shape_plausible(pupil: Ellipse) -> bool:
    """Whether an ellipse is round enough to be a pupil (see MIN_PUPIL_AXIS_RATIO)."""
    return pupil.axis_ratio >= MIN_PUPIL_AXIS_RATIO
