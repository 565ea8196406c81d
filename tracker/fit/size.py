"""Sizes in millimetres with the iris as the ruler: pupil diameter, and eye-to-camera distance given a focal length.

The horizontal visible iris diameter (HVID) varies little across adults: 11.7 +/- 0.5 mm (mean, SD; white-to-
white: 11.71 +/- 0.42 mm in Rüfer, Schröder & Erb 2005, Cornea 24:259, as tracker/fit/priors.py cites;
MediaPipe Iris takes 11.7 mm for its depth). The iris's semi-major axis is its unforeshortened radius (a
tilted circle images as an ellipse whose long axis keeps the true size), so mm per pixel = HVID / (2 a_iris),
and the distance is f_px * HVID / (2 a_iris).
"""

from __future__ import annotations

import math
from statistics import NormalDist

from tracker.fit.priors import IRIS_DIAMETER_MM as HVID_MM
from tracker.fit.priors import IRIS_DIAMETER_SD_MM as HVID_SD_MM
from tracker.structures import Boundary, SizeMm

__all__ = ["HVID_MM", "HVID_SD_MM", "distance_mm", "eye_sizes", "fit_sd_px", "mm_per_px_from_iris", "pupil_diameter_mm"]
_CONF_RANGE = (0.05, 0.99)  # a boundary's confidence is clamped here before it becomes a radius SD
_RADIUS_TOL = 0.05  # the calibration's "right": within 5 % of the true radius (README "When to trust a result")


def mm_per_px_from_iris(iris_semi_major_px: float, hvid_mm: float = HVID_MM) -> float:
    """Millimetres per pixel at the eye, with the iris as the ruler."""
    return hvid_mm / (2.0 * iris_semi_major_px)


def pupil_diameter_mm(
    pupil_semi_major_px: float,
    iris_semi_major_px: float,
    pupil_sd_px: float = 0.0,
    iris_sd_px: float = 0.0,
    hvid_mm: float = HVID_MM,
    hvid_sd_mm: float = HVID_SD_MM,
) -> SizeMm:
    """Pupil diameter in mm from pupil and iris semi-major axes (px); SD from the HVID spread and the fit SDs (px).

    d = 2 a_p * HVID / (2 a_i); relative variances add: (sd_HVID/HVID)^2 + (sd_p/a_p)^2 + (sd_i/a_i)^2.
    The HVID term (0.5/11.7 = 4.3 %) is the floor: it is a person's unknown iris size, not a fit error.
    """
    if pupil_semi_major_px <= 0 or iris_semi_major_px <= 0:
        raise ValueError(f"semi-axes must be positive, got pupil {pupil_semi_major_px}, iris {iris_semi_major_px}")
    value = 2.0 * pupil_semi_major_px * mm_per_px_from_iris(iris_semi_major_px, hvid_mm)
    rel = math.hypot(hvid_sd_mm / hvid_mm, pupil_sd_px / pupil_semi_major_px, iris_sd_px / iris_semi_major_px)
    return SizeMm(value, value * rel)


def distance_mm(
    iris_semi_major_px: float,
    focal_px: float,
    iris_sd_px: float = 0.0,
    hvid_mm: float = HVID_MM,
    hvid_sd_mm: float = HVID_SD_MM,
) -> SizeMm:
    """Eye-to-camera distance in mm from the iris semi-major axis (px) and the focal length (px): pinhole model."""
    if iris_semi_major_px <= 0 or focal_px <= 0:
        raise ValueError(f"iris semi-axis and focal length must be positive, got {iris_semi_major_px}, {focal_px}")
    value = focal_px * hvid_mm / (2.0 * iris_semi_major_px)
    return SizeMm(value, value * math.hypot(hvid_sd_mm / hvid_mm, iris_sd_px / iris_semi_major_px))


def fit_sd_px(boundary: Boundary) -> float:
    """A boundary's radius SD in px from its calibrated confidence: P(|error| < 5 % radius) = confidence.

    For a normal error, P(|e| < k sd) = conf gives sd = 0.05 a / k with k = inv_cdf(0.5 + conf / 2); the
    confidence is clamped to [0.05, 0.99] so a confidence near 0 or 1 gives a finite, non-vanishing SD.
    """
    conf = min(max(boundary.confidence, _CONF_RANGE[0]), _CONF_RANGE[1])
    return _RADIUS_TOL * boundary.ellipse.semi_major / NormalDist().inv_cdf(0.5 + conf / 2)


def eye_sizes(
    iris: Boundary | None, pupil: Boundary | None, focal_px: float | None = None
) -> tuple[SizeMm | None, SizeMm | None]:
    """(pupil diameter, distance) of one eye; None where a boundary it needs is missing (or no focal length)."""
    if iris is None or iris.ellipse.semi_major <= 0:
        return None, None
    iris_sd = fit_sd_px(iris)
    diameter = None
    if pupil is not None and pupil.ellipse.semi_major > 0:
        diameter = pupil_diameter_mm(pupil.ellipse.semi_major, iris.ellipse.semi_major, fit_sd_px(pupil), iris_sd)
    distance = distance_mm(iris.ellipse.semi_major, focal_px, iris_sd) if focal_px else None
    return diameter, distance
