"""Footnote 5: "We define convergence as the moment at which the 1000-iteration moving average of
test accuracy changed by less than 0.002 for 1000 consecutive iterations. We measured test
accuracy every 100 iterations."

With the defaults, ``acc[i]`` is the accuracy after iteration 100 * (i + 1); the moving average
covers 10 evaluations and first exists at index 9 (iteration 1000); index i has converged when each
of the next 10 moving-average values is within 0.002 of its own, and the run's convergence
iteration is 100 * (i + 1) for the first such i (the docstring's reading of the footnote).
"""

import numpy as np
import pytest

from lth_jax import criteria


def step_curve(n=50, rise_at=15, low=0.5, high=0.9, creep=1e-4):
    """``low`` before evaluation ``rise_at``, then ``high`` creeping up by ``creep`` per evaluation
    (far below the tolerance: it makes each post-rise accuracy distinguishable)."""
    acc = np.full(n, low)
    acc[rise_at:] = high + creep * np.arange(n - rise_at)
    return acc


def test_moving_average_is_the_trailing_mean():
    acc = np.random.default_rng(0).random(37)
    ma = criteria.moving_average(acc, 10)
    assert ma.shape == acc.shape
    assert np.all(np.isnan(ma[:9]))
    np.testing.assert_allclose(ma[9:], np.convolve(acc, np.ones(10) / 10, mode="valid"), rtol=0, atol=1e-12)


def test_moving_average_runs_along_the_last_axis_of_a_batch_of_curves():
    acc = np.random.default_rng(1).random((2, 3, 25))
    ma = criteria.moving_average(acc, 4)
    for idx in np.ndindex(2, 3):
        np.testing.assert_allclose(ma[idx][3:], np.convolve(acc[idx], np.ones(4) / 4, mode="valid"), atol=1e-12)
        assert np.all(np.isnan(ma[idx][:3]))


def test_flat_curve_converges_at_the_first_possible_point():
    # The 1000-iteration average first exists after 10 evaluations = iteration 1000, and it never changes.
    result = criteria.convergence(np.full(50, 0.97))
    assert result.iteration == 1000
    assert result.accuracy == 0.97


def test_convergence_needs_the_full_stability_window_after_the_average_exists():
    # 10 evaluations to fill the average + 10 more to watch it: 20 is the shortest curve that can converge.
    assert criteria.convergence(np.full(20, 0.97)).iteration == 1000
    assert np.isnan(criteria.convergence(np.full(19, 0.97)).iteration)


def test_step_curve_converges_once_the_average_has_absorbed_the_rise():
    """Accuracy jumps by 0.4 at evaluation 15 (iteration 1600). The moving average at index i mixes
    evaluations i-9..i, so it keeps rising by 0.04 per evaluation through index 24; index 23 still
    sees the last rise in its window, index 24 (iteration 2500) is the first whose next ten averages
    (creeping up 1e-4 per evaluation: 0.001 over the window) stay within 0.002."""
    acc = step_curve(rise_at=15)
    result = criteria.convergence(acc)
    assert result.iteration == 2500
    # Accuracy at convergence is the raw accuracy at that evaluation (index 24), not the average.
    assert result.accuracy == acc[24] == pytest.approx(0.9 + 9e-4)


def test_curve_that_keeps_rising_never_converges():
    # +0.0005 per evaluation: each single step is under 0.002, but the average moves 0.005 over
    # 1000 iterations, so it never holds still for 1000 consecutive iterations.
    slow = criteria.convergence(0.5 + 0.0005 * np.arange(100))
    fast = criteria.convergence(0.5 + 0.003 * np.arange(100))
    for result in (slow, fast):
        assert np.isnan(result.iteration) and np.isnan(result.accuracy)


def test_diverged_run_never_converges():
    acc = step_curve()
    acc[30:] = np.nan  # a trial flagged as diverged reports NaN accuracy from then on
    assert np.isnan(criteria.convergence(acc).iteration)


def test_batch_of_curves_gives_each_curve_its_own_result():
    curves = [np.full(50, 0.97), step_curve(rise_at=15), step_curve(rise_at=5), 0.5 + 0.003 * np.arange(50)]
    batch = criteria.convergence(np.stack(curves).reshape(2, 2, 50))
    assert batch.iteration.shape == batch.accuracy.shape == (2, 2)
    for idx, curve in zip(np.ndindex(2, 2), curves, strict=True):
        alone = criteria.convergence(curve)
        np.testing.assert_array_equal(batch.iteration[idx], alone.iteration)
        np.testing.assert_array_equal(batch.accuracy[idx], alone.accuracy)
    # A rise ten evaluations earlier converges 1000 iterations earlier.
    assert batch.iteration[0, 1] - batch.iteration[1, 0] == 1000


def test_convergence_is_the_first_stable_moment_even_if_accuracy_rises_later():
    # A plateau that holds for 1000 iterations is convergence by the footnote's rule, whatever follows.
    acc = step_curve(n=60, rise_at=30)
    result = criteria.convergence(acc)
    assert result.iteration == 1000
    assert result.accuracy == 0.5


def test_rule_follows_its_parameters():
    """Evaluations every 50 iterations, a 200-iteration average (4 evaluations) that must hold for
    100 iterations (2 evaluations). Accuracy climbs 0.05 per evaluation up to index 7 and is flat
    (creeping 1e-4) from index 8; the average has absorbed the climb at index 8 + 4 - 1 = 11, which
    is iteration 50 * 12 = 600. (At index 10 the next average still moves by (acc[11] - acc[7]) / 4.)"""
    acc = np.concatenate([0.5 + 0.05 * np.arange(8), 0.9 + 1e-4 * np.arange(32)])
    result = criteria.convergence(acc, eval_every=50, average_over=200, stable_for=100)
    assert result.iteration == 600
    assert result.accuracy == acc[11]
    # A looser tolerance accepts the 0.04-per-evaluation rise of a step: stable from the first average on.
    assert criteria.convergence(step_curve(rise_at=15), tolerance=0.5).iteration == 1000
