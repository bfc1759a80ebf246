"""Section 5's summaries (Figures 9-10), divergence flags (section 6.1) and the
readings of accuracy/convergence curves against size (sections 4 and 6.2)."""

import jax
import numpy as np
import pytest

from lth_jax import models
from lth_jax.reproduction import analysis


def two_layer(k0, k1, v0=None, v1=None):
    tree = {"Dense_0": {"kernel": np.asarray(k0, bool), "bias": np.ones(np.shape(k0)[-1], bool)},
            "Dense_1": {"kernel": np.asarray(k1, bool), "bias": np.ones(np.shape(k1)[-1], bool)}}
    if v0 is None:
        return tree
    return tree, {"Dense_0": {"kernel": np.asarray(v0, float), "bias": np.zeros(np.shape(k0)[-1])},
                  "Dense_1": {"kernel": np.asarray(v1, float), "bias": np.zeros(np.shape(k1)[-1])}}


# ---------------------------------------------------------------- Figure 9

def test_survivor_initial_values_are_the_init_values_where_the_mask_survives_pooled_over_trials():
    masks, init = two_layer([[[1, 0], [0, 1]], [[0, 0], [1, 0]]], [[[1], [0]], [[1], [1]]],
                            [[[.1, .2], [.3, .4]], [[.5, .6], [.7, .8]]], [[[.9], [1.]], [[1.1], [1.2]]])
    vals = analysis.survivor_initial_values(init, masks)
    np.testing.assert_allclose(sorted(vals["Dense_0"]), [.1, .4, .7])
    np.testing.assert_allclose(sorted(vals["Dense_1"]), [.9, 1.1, 1.2])


def test_histogram_uses_the_given_bins_and_integrates_to_one():
    values = np.array([-0.15, -0.05, 0.05, 0.05, 0.15])
    density, edges = analysis.histogram(values, bins=4, range=(-0.2, 0.2))
    np.testing.assert_allclose(edges, [-0.2, -0.1, 0.0, 0.1, 0.2])
    np.testing.assert_allclose(density * np.diff(edges), [0.2, 0.2, 0.4, 0.2])
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)


def test_histograms_of_different_samples_share_bins_and_an_empty_sample_is_flat_zero():
    _, e1 = analysis.histogram(np.array([0.0]), bins=10, range=(-1, 1))
    density, e2 = analysis.histogram(np.array([]), bins=10, range=(-1, 1))
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(density, np.zeros(10))


def test_normal_share_within_one_std_matches_the_papers_init_distribution():
    # the share is computed from the normal CDF; check it against draws from the model's own initialiser
    std = 0.1
    draws = np.asarray(models.truncated_normal(std)(jax.random.key(0), (200_000,)))
    empirical = np.mean(np.abs(draws) <= std)
    share = analysis.truncated_normal_share(1.0, 2.0)
    assert abs(empirical - share) < 4 * np.sqrt(share * (1 - share) / draws.size)
    assert analysis.truncated_normal_share(2.0, 2.0) == pytest.approx(1.0)
    assert analysis.truncated_normal_share(1.0, 50.0) == pytest.approx(0.6826894921)  # the untruncated 68%


def test_bimodality_of_an_unpruned_sample_is_the_normals_share():
    std = 0.1
    draws = np.asarray(models.truncated_normal(std)(jax.random.key(1), (50_000,)))
    summary = analysis.bimodality(draws, std)
    assert summary["n"] == 50_000
    assert abs(summary["fraction_within"] - summary["normal_share"]) < 4 * summary["se"]
    assert summary["ratio"] == pytest.approx(1.0, abs=0.02)


def test_bimodality_of_a_sample_with_its_middle_pruned_is_near_zero():
    std = 0.1
    draws = np.asarray(models.truncated_normal(std)(jax.random.key(2), (50_000,)))
    hollow = draws[np.abs(draws) > 1.2 * std]
    summary = analysis.bimodality(hollow, std)
    assert summary["fraction_within"] == 0.0
    assert summary["n"] == hollow.size


# --------------------------------------------------------------- Figure 10

def test_sorted_incoming_counts_are_pooled_over_trials_and_descending():
    # two trials of a 3-input, 2-hidden, 1-output net; in trial 1 hidden unit 1 has no outgoing edge
    k0 = [[[1, 1], [1, 0], [1, 0]], [[1, 1], [0, 1], [0, 1]]]
    k1 = [[[1], [1]], [[1], [0]]]
    counts = analysis.sorted_incoming(two_layer(k0, k1))
    np.testing.assert_array_equal(counts["Dense_0"], [3, 1, 1, 0])   # trial 1's unit 1 (3 inputs) removed
    np.testing.assert_array_equal(counts["Dense_1"], [2, 1])
    raw = analysis.sorted_incoming(two_layer(k0, k1), disconnect=False)
    np.testing.assert_array_equal(raw["Dense_0"], [3, 3, 1, 1])


def test_disconnected_summary_counts_units_without_inputs_after_footnote_7():
    k0 = [[[1, 1], [1, 0], [1, 0]], [[1, 1], [0, 1], [0, 1]]]
    k1 = [[[1], [1]], [[1], [0]]]
    summary = analysis.disconnected_summary(two_layer(k0, k1))
    assert summary["Dense_0"]["units"] == 4
    assert summary["Dense_0"]["disconnected"] == 1
    assert summary["Dense_0"]["fraction"] == pytest.approx(0.25)
    assert summary["Dense_0"]["se"] == pytest.approx(np.sqrt(0.25 * 0.75 / 4))
    assert summary["Dense_1"]["disconnected"] == 0


def test_nearest_level_picks_the_papers_rounded_percentages():
    densities = [0.8 ** r for r in range(15)]
    assert analysis.nearest_level(densities, 0.512) == 3
    assert analysis.nearest_level(densities, 0.168) == 8
    assert analysis.nearest_level(densities, 0.055) == 13


# -------------------------------------------------------------- divergence

def test_divergence_summary_flags_trials_with_a_first_bad_step():
    summary = analysis.divergence_summary(np.array([[-1, 1200, -1], [300, -1, -1]]))
    assert (summary["n"], summary["diverged"]) == (6, 2)
    assert summary["fraction"] == pytest.approx(2 / 6)
    assert summary["first_step"] == 300
    assert summary["steps"] == [300, 1200]
    fine = analysis.divergence_summary(np.full(5, -1))
    assert (fine["diverged"], fine["first_step"]) == (0, None)


# --------------------------------------------------- curves against size

SIZES = [100.0, 51.2, 21.1, 7.0, 3.6, 1.8, 1.2]


def test_accuracy_drop_finds_the_first_level_more_than_the_tolerance_below_the_original():
    acc = [0.9800, 0.9810, 0.9790, 0.9786, 0.9784, 0.9700, 0.9600]
    drop = analysis.accuracy_drop(SIZES, acc, tolerance=0.0015)
    assert drop["reference"] == 0.98
    assert drop["first_below"] == 3.6          # 0.9784 < 0.9785
    assert drop["last_before_drop"] == 7.0
    assert analysis.accuracy_drop(SIZES, acc, tolerance=0.003)["first_below"] == 1.8


def test_accuracy_drop_reports_where_accuracy_returns_to_the_original():
    # iterative tickets: accuracy rises, then returns to the original's level, then falls
    acc = [0.9800, 0.9830, 0.9840, 0.9820, 0.9800, 0.9790, 0.9700]
    drop = analysis.accuracy_drop(SIZES, acc, tolerance=0.0)
    assert drop["smallest_within"] == 3.6
    assert drop["first_below"] == 1.8


def test_accuracy_drop_order_of_levels_does_not_matter_and_nan_counts_as_below():
    acc = [0.9800, 0.9810, 0.9790, 0.9786, np.nan, 0.9700, 0.9790]
    drop = analysis.accuracy_drop(SIZES[::-1], acc[::-1])
    assert drop["first_below"] == 3.6
    assert drop["smallest_within"] == 1.2       # a late level back within tolerance is still reported
    none = analysis.accuracy_drop(SIZES, [0.98] * 7)
    assert (none["first_below"], none["last_before_drop"]) == (None, 1.2)


def test_fastest_ticket_is_the_smallest_network_at_the_lowest_convergence_time():
    conv = [8000, 6000, 5000, 5000, 5500, np.nan, 9000]
    best = analysis.fastest_ticket(SIZES, conv)
    assert best == {"size": 7.0, "convergence": 5000.0}


def test_ticket_sizes_give_both_definitions_in_number_of_weights():
    weights = [266_200, 140_000, 80_000, 40_000, 20_000]
    conv = [7000, 5000, 5200, 6000, 9000]
    acc = [0.980, 0.981, 0.980, 0.977, 0.960]
    assert analysis.ticket_sizes(weights, conv, acc) == {"by_convergence": 140_000.0, "by_accuracy": 80_000.0}


def test_curves_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="equal-length"):
        analysis.accuracy_drop([1.0, 0.5], [0.9])
