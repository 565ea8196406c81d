"""Robust ellipse / circle fits on synthetic ground truth with named error budgets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracker.fit.geometry import (
    EllipseFit,
    angular_coverage,
    ellipse_distance_px,
    fit_circle_lsq,
    fit_circle_robust,
    fit_ellipse_lsq,
    fit_ellipse_robust,
)
from tracker.structures import Ellipse

NOISE_PX = 0.3  # edge-point jitter, about what a sub-pixel edge detector or a mask staircase gives
DISTANCE_TOL_PX = 0.01  # ellipse_distance_px against brute-force nearest of a dense sampling
EXACT_TOL_PX = 1e-3  # least-squares fits of noise-free points
CASES = 40  # random ellipses per robust scenario


def random_ellipse(rng: np.random.Generator) -> Ellipse:
    a = rng.uniform(20, 45)
    return Ellipse(rng.uniform(80, 140), rng.uniform(80, 140), a, a * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi))


def scene(seed: int, arc_fraction: float, outlier_fraction: float, outliers: str = "lid"):
    """Points on an arc of a random ellipse plus outliers clustered on the occluded side: (truth, xy, n_inliers)."""
    rng = np.random.default_rng(seed)
    e = random_ellipse(rng)
    n_in = 180
    t0 = rng.uniform(0, 2 * math.pi)
    t = rng.uniform(t0, t0 + arc_fraction * 2 * math.pi, n_in)
    xy = e.points_at(t) + rng.normal(0, NOISE_PX, (n_in, 2))
    n_out = round(n_in * outlier_fraction / (1 - outlier_fraction))
    centre = np.array([e.cx, e.cy])
    gap_dir = e.points_at(np.array([t0 + arc_fraction * math.pi + math.pi]))[0] - centre  # middle of the gap
    gap_dir /= np.linalg.norm(gap_dir)
    along = np.array([-gap_dir[1], gap_dir[0]])
    if outliers == "lid":
        # A gently curved lid line across the occluded side, longer than the ellipse is wide.
        s = rng.uniform(-1.3, 1.3, n_out) * e.semi_major
        out = centre + np.outer(0.5 * e.semi_minor - 0.004 * s * s, gap_dir) + np.outer(s, along)
    else:
        # Glints and lashes: a compact clump just inside the occluded side.
        out = centre + 0.6 * e.semi_minor * gap_dir + rng.normal(0, 4.0, (n_out, 2))
    out = out + rng.normal(0, NOISE_PX, out.shape)
    return e, np.vstack([xy, out]), n_in


def centre_error_px(a: Ellipse, b: Ellipse) -> float:
    return math.hypot(a.cx - b.cx, a.cy - b.cy)


def axis_error_px(a: Ellipse, b: Ellipse) -> float:
    return max(abs(a.semi_major - b.semi_major), abs(a.semi_minor - b.semi_minor))


def test_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        e = random_ellipse(rng)
        dense = e.points(20000)
        # Points near the curve (the accuracy that matters) and far inside/outside.
        t = rng.uniform(0, 2 * math.pi, 400)
        normal = e.points_at(t) - np.array([e.cx, e.cy])
        xy = e.points_at(t) + normal * rng.uniform(-0.9, 1.0, (400, 1))
        brute = np.sqrt(((xy[:, None, :] - dense[None, :, :]) ** 2).sum(-1)).min(axis=1)
        # The dense sampling itself is only accurate to ~ spacing^2 / (8 * radius).
        assert np.abs(ellipse_distance_px(e, xy) - brute).max() < DISTANCE_TOL_PX


def test_distance_is_zero_on_the_curve():
    e = Ellipse(50, 60, 30, 12, 0.4)
    assert ellipse_distance_px(e, e.points(100)).max() < 1e-6
    assert ellipse_distance_px(e, np.array([[50.0, 60.0]]))[0] == pytest.approx(12.0, abs=1e-6)


def test_lsq_recovers_exact_ellipse():
    e = Ellipse(101.5, 87.25, 33.0, 21.0, 2.0)
    fit = fit_ellipse_lsq(e.points(50))
    assert fit is not None
    assert centre_error_px(fit, e) < EXACT_TOL_PX
    assert axis_error_px(fit, e) < EXACT_TOL_PX
    assert abs(fit.angle_rad - e.angle_rad) < 1e-4


@pytest.mark.parametrize(
    "xy",
    [
        np.zeros((4, 2)),  # too few
        np.column_stack([np.arange(20.0), 2 * np.arange(20.0) + 1]),  # a line
        Ellipse(50, 50, 40, 3, 0.3).points(50),  # axis ratio 0.075: a lid slit, not an eye
    ],
    ids=["too-few", "line", "absurd-axis-ratio"],
)
def test_degenerate_inputs_give_none(xy):
    assert fit_ellipse_lsq(xy) is None
    assert fit_ellipse_robust(xy) is None


# scenario, arc fraction, outlier fraction, outlier kind, centre budget, axis budget, required success rate
ROBUST_SCENARIOS = [
    ("full, clean", 1.0, 0.0, "lid", 0.2, 0.2, 1.0),
    ("full, 40% lid", 1.0, 0.4, "lid", 0.3, 0.3, 0.95),
    ("full, 40% clump", 1.0, 0.4, "clump", 0.3, 0.3, 1.0),
    ("60% arc, 30% lid", 0.6, 0.3, "lid", 1.0, 1.0, 0.95),
    ("60% arc, 40% clump", 0.6, 0.4, "clump", 2.0, 2.0, 0.95),
    ("50% arc, clean", 0.5, 0.0, "lid", 1.0, 1.0, 0.95),
    ("40% arc, clean", 0.4, 0.0, "lid", 2.0, 2.0, 0.9),
]


@pytest.mark.parametrize(
    ("arc", "outlier_fraction", "kind", "centre_tol_px", "axis_tol_px", "rate"),
    [s[1:] for s in ROBUST_SCENARIOS],
    ids=[s[0] for s in ROBUST_SCENARIOS],
)
def test_robust_ellipse_within_budget(arc, outlier_fraction, kind, centre_tol_px, axis_tol_px, rate):
    ok = 0
    for seed in range(CASES):
        truth, xy, n_in = scene(seed, arc, outlier_fraction, kind)
        fit = fit_ellipse_robust(xy)
        assert fit is not None
        ok += centre_error_px(fit.ellipse, truth) <= centre_tol_px and axis_error_px(fit.ellipse, truth) <= axis_tol_px
    assert ok / CASES >= rate


def test_robust_ellipse_fit_fields():
    truth, xy, n_in = scene(3, 0.6, 0.3)
    fit = fit_ellipse_robust(xy)
    assert isinstance(fit, EllipseFit)
    assert fit.inlier_mask.shape == (len(xy),) and fit.inlier_mask.dtype == bool
    # Nearly all arc points are inliers and nearly all lid points are not.
    assert fit.inlier_mask[:n_in].mean() > 0.95
    assert fit.inlier_mask[n_in:].mean() < 0.25
    assert fit.inlier_fraction == pytest.approx(fit.inlier_mask.mean())
    assert fit.rms_residual_px < 2 * NOISE_PX
    assert 0.5 <= fit.angular_coverage <= 0.8


def test_robust_is_deterministic_for_a_seed():
    _, xy, _ = scene(7, 0.6, 0.4)
    a, b = fit_ellipse_robust(xy, seed=5), fit_ellipse_robust(xy, seed=5)
    assert a.ellipse == b.ellipse
    assert np.array_equal(a.inlier_mask, b.inlier_mask)
    c, d = fit_circle_robust(xy, seed=5), fit_circle_robust(xy, seed=5)
    assert c.ellipse == d.ellipse


def test_robust_too_few_points():
    assert fit_ellipse_robust(Ellipse(50, 50, 20, 15, 0).points(7)) is None
    assert fit_ellipse_robust(Ellipse(50, 50, 20, 15, 0).points(7), min_points=5) is not None


def test_angular_coverage():
    e = Ellipse(0, 0, 30, 10, 0.5)
    assert angular_coverage(e, e.points(360)) == 1.0
    assert angular_coverage(e, e.points_at(np.linspace(0.01, math.pi - 0.01, 200))) == pytest.approx(0.5)
    assert angular_coverage(e, np.empty((0, 2))) == 0.0


def test_circle_lsq_short_arc():
    truth = Ellipse.circle(40.0, 30.0, 25.0)
    xy = truth.points_at(np.linspace(0, 0.4 * 2 * math.pi, 50))
    fit = fit_circle_lsq(xy)
    assert centre_error_px(fit, truth) < EXACT_TOL_PX and abs(fit.semi_major - 25.0) < EXACT_TOL_PX


@pytest.mark.parametrize(("arc", "outlier_fraction"), [(1.0, 0.4), (0.6, 0.3), (0.5, 0.0)])
def test_robust_circle_within_budget(arc, outlier_fraction):
    ok = 0
    for seed in range(CASES):
        rng = np.random.default_rng(seed)
        truth = Ellipse.circle(rng.uniform(80, 140), rng.uniform(80, 140), rng.uniform(20, 45))
        t0 = rng.uniform(0, 2 * math.pi)
        xy = truth.points_at(rng.uniform(t0, t0 + arc * 2 * math.pi, 150)) + rng.normal(0, NOISE_PX, (150, 2))
        n_out = round(150 * outlier_fraction / (1 - outlier_fraction))
        lid_y = truth.cy - 0.5 * truth.semi_major
        lid = np.column_stack([truth.cx + rng.uniform(-60, 60, n_out), lid_y + rng.normal(0, NOISE_PX, n_out)])
        fit = fit_circle_robust(np.vstack([xy, lid]))
        assert fit is not None and fit.ellipse.axis_ratio == 1.0
        ok += centre_error_px(fit.ellipse, truth) <= 0.5 and abs(fit.ellipse.semi_major - truth.semi_major) <= 0.5
    assert ok / CASES >= 0.95


def test_clean_points_need_no_ransac():
    # A trimmed least-squares seed that explains nearly every point is only refined: no samples drawn.
    truth, xy, _ = scene(11, 1.0, 0.05)
    fit = fit_ellipse_robust(xy, iterations=0)
    assert fit is not None
    assert centre_error_px(fit.ellipse, truth) <= 0.2 and axis_error_px(fit.ellipse, truth) <= 0.2
