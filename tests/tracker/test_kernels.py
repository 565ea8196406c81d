"""The compiled summaries of the fitting stage agree with the NumPy expressions they replaced (fit-stage speed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracker.fit import kernels, priors
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


def numpy_limbus_in_pupil_frame(xy, peaks, pupil: Ellipse, tol: float, min_points: int):
    """The NumPy version of fit_iris_like_pupil's search that kernels.limbus_in_pupil_frame replaced."""
    c, s = math.cos(pupil.angle_rad), math.sin(pupil.angle_rad)
    k = pupil.semi_major / pupil.semi_minor
    d = xy - (pupil.cx, pupil.cy)
    u, v = d[:, 0] * c + d[:, 1] * s, (-d[:, 0] * s + d[:, 1] * c) * k
    r = np.hypot(u, v)
    lo, hi = pupil.semi_major / priors.PUPIL_IRIS_RATIO[1], pupil.semi_major / priors.PUPIL_IRIS_RATIO[0]
    in_range = (r >= lo) & (r <= hi)
    if in_range.sum() < min_points:
        return None
    edges = np.arange(lo, hi + tol, tol)
    counts, _ = np.histogram(r[in_range], bins=edges, weights=peaks[in_range])
    radius = float(edges[int(np.argmax(np.convolve(counts, np.ones(3), mode="same")))] + 0.5 * tol)
    near = np.abs(r - radius) <= 1.5 * tol
    if near.sum() < min_points:
        return None
    sol, *_ = np.linalg.lstsq(np.stack([u[near], v[near], np.ones(near.sum())], axis=1), r[near] ** 2, rcond=None)
    cu, cv = sol[0] / 2, sol[1] / 2
    r2 = sol[2] + cu * cu + cv * cv
    rr = math.sqrt(r2) if r2 > 0 else None
    if rr is None or math.hypot(cu, cv) > priors.MAX_CENTRE_OFFSET * rr:
        cu, cv, rr = 0.0, 0.0, float(np.median(r[near]))
    dist = np.abs(np.hypot(u - cu, v - cv) - rr)
    inliers = dist <= tol
    if inliers.sum() < min_points:
        return None
    sectors = ((np.arctan2(v[inliers] - cv, u[inliers] - cu) + math.pi) / (2 * math.pi) * 36).astype(np.intp) % 36
    return cu, cv, rr, inliers, np.unique(sectors).size / 36, math.sqrt(np.mean(dist[inliers] ** 2))


def limbus_case(seed: int):
    """A pupil, ridge points and a tolerance: side arcs or more of a limbus around it (in every third case one
    short noisy arc, whose algebraic circle wanders off; none in every fifth), a lid line and clutter."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, math.pi)
    a = rng.uniform(12, 30)
    pupil = Ellipse(160, 120, a, a * rng.uniform(0.6, 1.0), angle)
    scale = rng.uniform(2.0, 3.5)
    iris = Ellipse(161, 120.5, scale * pupil.semi_major, scale * pupil.semi_minor, angle)
    span = rng.uniform(0.2, 1.2)
    t = np.concatenate([rng.uniform(-span, span, 60), rng.uniform(math.pi - span, math.pi + span, 60)])
    noise_px = 0.5
    if seed % 3 == 2:  # the median-radius fallback: the circle through a 7-degree arc is not the limbus
        t, noise_px = rng.uniform(-0.06, 0.06, 120), 1.0
    arcs = iris.points_at(t) + rng.normal(0, noise_px, (120, 2)) if seed % 5 else np.empty((0, 2))
    lid = np.stack([rng.uniform(40, 280, 50), rng.uniform(60, 75, 50)], axis=1)
    clutter = rng.uniform(40, 280, (rng.integers(0, 60), 2))
    xy = np.ascontiguousarray(np.concatenate([arcs, lid, clutter]))
    return pupil, xy, rng.uniform(0.35, 1.0, len(xy)), rng.uniform(1.0, 2.5)


def compiled_limbus(pupil: Ellipse, xy: np.ndarray, peaks: np.ndarray, tol: float):
    k = pupil.semi_major / pupil.semi_minor
    lo, hi = pupil.semi_major / priors.PUPIL_IRIS_RATIO[1], pupil.semi_major / priors.PUPIL_IRIS_RATIO[0]
    return kernels.limbus_in_pupil_frame(
        xy, peaks, pupil.cx, pupil.cy, pupil.angle_rad, k, lo, hi, tol, 12, priors.MAX_CENTRE_OFFSET, 36
    )


@pytest.mark.parametrize("seed", range(45))
def test_limbus_search_in_the_pupil_frame_matches_numpy(seed):
    """The same circle, inliers, coverage and residual as the NumPy search, or no circle in both."""
    pupil, xy, peaks, tol = limbus_case(seed)
    expected = numpy_limbus_in_pupil_frame(xy, peaks, pupil, tol, 12)
    found, cu, cv, rr, inliers, coverage, rms_px = compiled_limbus(pupil, xy, peaks, tol)
    assert found == (expected is not None)
    if found:
        assert (cu, cv, rr) == pytest.approx(expected[:3], abs=1e-9)
        assert np.array_equal(inliers, expected[3]) and coverage == expected[4]
        assert rms_px == pytest.approx(expected[5], rel=1e-9)


def test_the_limbus_cases_cover_every_outcome():
    outcomes = [numpy_limbus_in_pupil_frame(*(lambda p, x, w, t: (x, w, p, t, 12))(*limbus_case(s))) for s in range(45)]
    assert any(o is None for o in outcomes)  # no circle
    assert any(o is not None and (o[0], o[1]) == (0.0, 0.0) for o in outcomes)  # the median-radius fallback
    assert any(o is not None and (o[0], o[1]) != (0.0, 0.0) for o in outcomes)  # the algebraic circle kept


def test_limbus_search_gives_up_without_enough_points_in_range():
    pupil = Ellipse.circle(100, 100, 20)
    far = Ellipse.circle(100, 100, 400).points(100)  # 20x the pupil: no iris
    found, *_ = kernels.limbus_in_pupil_frame(far, np.ones(100), 100, 100, 0.0, 1.0, 25.0, 166.7, 1.5, 12, 0.2, 36)
    assert not found and numpy_limbus_in_pupil_frame(far, np.ones(100), pupil, 1.5, 12) is None
