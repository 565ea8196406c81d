"""The compiled summaries of the fitting stage agree with the NumPy expressions they replaced (fit-stage speed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracker.fit import kernels
from tracker.fit.geometry import angular_coverage, damped_step, ellipse_distance_px, fit_ellipse_robust
from tracker.structures import Ellipse

EMPTY_MASK = np.empty(0, dtype=bool)


def noisy_arc(seed: int, n: int = 150) -> tuple[Ellipse, np.ndarray]:
    """A random eye-like ellipse and (n, 2) points near 70 % of it, a fifth of them 2-6 px off the curve."""
    rng = np.random.default_rng(seed)
    e = Ellipse(rng.uniform(60, 200), rng.uniform(60, 150), rng.uniform(20, 60), 1.0, rng.uniform(0, math.pi))
    e = Ellipse(e.cx, e.cy, e.semi_major, e.semi_major * rng.uniform(0.5, 1.0), e.angle_rad)
    xy = e.points_at(rng.uniform(0, 1.4 * math.pi, n)) + rng.normal(0, 0.4, (n, 2))
    off = rng.random(n) < 0.2
    xy[off] += rng.choice([-1, 1], (off.sum(), 1)) * rng.uniform(2, 6, (off.sum(), 2))
    return e, np.ascontiguousarray(xy)


def params(e: Ellipse) -> tuple[float, float, float, float, float]:
    return e.cx, e.cy, e.semi_major, e.semi_minor, e.angle_rad


@pytest.mark.parametrize("seed", range(5))
def test_centred_points_equal_numpy_bit_for_bit(seed):
    _, xy = noisy_arc(seed)
    keep = np.random.default_rng(seed).random(len(xy)) < 0.7
    for mask, kept in ((keep, xy[keep]), (EMPTY_MASK, xy)):
        centred, mx, my = kernels.centred_f32(xy, mask)
        mean = kept.mean(axis=0)
        assert (mx, my) == (mean[0], mean[1])
        assert centred.dtype == np.float32 and np.array_equal(centred, (kept - mean).astype(np.float32))
    assert len(kernels.centred_f32(xy, np.zeros(len(xy), bool))[0]) == 0


@pytest.mark.parametrize("seed", range(5))
def test_sampson_inliers_count_them_and_say_whether_they_settled(seed):
    e, xy = noisy_arc(seed)
    expected = kernels.sampson_px(*params(e), xy) <= 1.5
    inliers, count, settled = kernels.sampson_inliers(*params(e), xy, 1.5, EMPTY_MASK)
    assert np.array_equal(inliers, expected) and count == expected.sum() and not settled
    assert kernels.sampson_inliers(*params(e), xy, 1.5, expected)[2]
    flipped = expected.copy()
    flipped[seed] = not flipped[seed]
    assert not kernels.sampson_inliers(*params(e), xy, 1.5, flipped)[2]


@pytest.mark.parametrize("seed", range(5))
def test_inlier_summary_matches_distances_and_coverage(seed):
    e, xy = noisy_arc(seed)
    d = ellipse_distance_px(e, xy)
    inliers, count, rms_px, coverage = kernels.inlier_summary(*params(e), xy, np.empty((2, 0)), 3, 1.5, 36)
    assert np.array_equal(inliers, d <= 1.5) and count == inliers.sum()
    assert rms_px == pytest.approx(math.sqrt(np.mean(d[inliers] ** 2)), rel=1e-12)
    assert coverage == angular_coverage(e, xy[inliers])
    assert 0.5 < coverage < 0.9  # 70 % of the perimeter holds points


@pytest.mark.parametrize("seed", range(5))
def test_inlier_support_matches_numpy(seed):
    e, xy = noisy_arc(seed)
    rng = np.random.default_rng(seed)
    peaks, inliers = rng.uniform(0.3, 1.0, len(xy)), rng.random(len(xy)) < 0.5
    count, strength, vertical = kernels.inlier_support(xy, peaks, inliers, e.cx, e.cy)
    dx, dy = xy[inliers, 0] - e.cx, xy[inliers, 1] - e.cy
    assert count == inliers.sum() and strength == pytest.approx(peaks[inliers].mean(), rel=1e-12)
    assert vertical == bool((np.abs(dy) > np.abs(dx)).any())
    side_only = inliers & (np.abs(xy[:, 1] - e.cy) <= np.abs(xy[:, 0] - e.cx))
    assert not kernels.inlier_support(xy, peaks, side_only, e.cx, e.cy)[2]
    assert kernels.inlier_support(xy, peaks, np.zeros(len(xy), bool), e.cx, e.cy) == (0, 0.0, False)


def test_ellipse_inside_matches_sampled_containment():
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(300):
        iris = Ellipse(100, 100, rng.uniform(30, 50), rng.uniform(25, 30), rng.uniform(0, math.pi))
        pupil = Ellipse(*rng.uniform(80, 120, 2), rng.uniform(5, 30), rng.uniform(5, 20), rng.uniform(0, math.pi))
        expected = bool(iris.contains(*pupil.points(16).T, scale=1.05).all())
        assert kernels.ellipse_inside(*params(pupil), *params(iris), 1.05, 16) == expected
        outcomes.add(expected)
    assert outcomes == {True, False}  # both answers were exercised


def test_damped_step_solves_the_damped_system_and_refuses_a_singular_one():
    rng = np.random.default_rng(1)
    j = rng.normal(size=(5, 40))
    jtj, jtr = j @ j.T, rng.normal(size=5)
    damped = jtj + (1e-6 * np.trace(jtj) + 1e-12) * np.eye(5)
    assert np.allclose(damped_step(jtj.copy(), jtr), np.linalg.solve(damped, -jtr), rtol=1e-10, atol=1e-12)
    assert damped_step(np.zeros((3, 3)), np.ones(3)) is not None  # the damping's floor makes zero solvable
    assert damped_step(np.full((3, 3), np.nan), np.ones(3)) is None


def test_a_non_finite_point_gives_no_robust_fit():
    _, xy = noisy_arc(0)
    for bad in (np.nan, np.inf):
        broken = xy.copy()
        broken[7, 1] = bad
        assert fit_ellipse_robust(broken) is None
    assert fit_ellipse_robust(xy) is not None
