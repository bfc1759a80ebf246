"""Pruning as the paper does it.

Weights (sections 3.1, 4.1): "Prune 20% of the weights from within each hidden layer and 10% of
the weights in the output layer, removing those with the lowest magnitudes", of the weights that
remain, at every round. Units (section 2.1): the input-magnitude, output-magnitude and
magnitude-product heuristics.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import datasets, masks, models, pruning
from lth_jax.trainers import step as train_step


def paper_rates(params, rate=0.2):
    return pruning.layer_rates(params, rate, rate / 2)


# Params are arguments, never closed-over constants: XLA would constant-fold the sort of a
# 235,200-entry constant at compile time, which takes minutes.
prune_at = jax.jit(lambda p, m, rate: pruning.magnitude(p, m, paper_rates(p, rate)))
prune_uniform = jax.jit(lambda p, m, rate: pruning.magnitude(p, m, pruning.layer_rates(p, rate)))
prune_units = jax.jit(pruning.units, static_argnames="heuristic")


# ------------------------------------------------------------------ weight pruning


def test_layer_rates_prune_output_layer_at_half_rate_and_never_biases(lenet_params):
    rates = paper_rates(lenet_params)
    chex.assert_trees_all_close(rates, {"Dense_0": {"kernel": 0.2, "bias": 0.0},
                                        "Dense_1": {"kernel": 0.2, "bias": 0.0},
                                        "Dense_2": {"kernel": 0.1, "bias": 0.0}})


def test_iterative_rounds_remove_exact_fraction_of_remaining_lowest_magnitude_weights(lenet_params):
    """Five rounds of LeNet-300-100: per hidden layer round(20%) and for the output layer
    round(10%) of the *remaining* weights go, exactly; they are the smallest |w| alive; pruned
    weights never come back; biases are never pruned."""
    rng = np.random.default_rng(0)
    mask = masks.ones_like(lenet_params)
    for _ in range(5):
        # Stand-in for training: fresh values everywhere, *including* at pruned positions
        # (large ones there), so a rule that looked at dead weights would revive some.
        trained = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), lenet_params)
        trained = jax.tree.map(lambda t, m: np.where(np.asarray(m), t, 10.0 * t), trained, mask)
        new = prune_at(trained, mask, 0.2)
        chex.assert_trees_all_equal_structs(new, mask)
        for i, name in enumerate(models.layer_names(lenet_params)):
            old_k, new_k = np.asarray(mask[name]["kernel"]), np.asarray(new[name]["kernel"])
            rate = 0.1 if i == 2 else 0.2
            remaining = int(old_k.sum())
            assert remaining - int(new_k.sum()) == round(remaining * rate), (name, remaining)
            assert not np.any(new_k & ~old_k), f"{name}: a pruned weight was revived"
            w = np.abs(trained[name]["kernel"])
            removed = old_k & ~new_k
            assert w[new_k].min() >= w[removed].max(), f"{name}: a larger weight was pruned before a smaller"
            assert bool(np.all(np.asarray(new[name]["bias"]))), f"{name}: a bias was pruned"
        mask = new
    # After five rounds of the paper's schedule the first layer holds ~0.8^5 = 32.8% of its weights.
    np.testing.assert_allclose(np.mean(mask["Dense_0"]["kernel"]), 0.8**5, atol=1e-4)


def test_first_round_keeps_80_percent_of_each_hidden_layer_and_90_percent_of_the_output_layer(lenet_params):
    new = prune_at(lenet_params, masks.ones_like(lenet_params), 0.2)
    counts = {name: int(c["kernel"]) for name, c in masks.count(new).items()}
    assert counts == {"Dense_0": 784 * 300 * 4 // 5, "Dense_1": 300 * 100 * 4 // 5, "Dense_2": 100 * 10 * 9 // 10}


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.55, 1.0])
def test_counts_are_exact_even_when_all_weights_tie(rate):
    """A threshold on |w| would keep all or nothing of a layer of equal weights; ranks don't."""
    params = {"Dense_0": {"kernel": np.full((10, 10), 0.5, np.float32), "bias": np.zeros(10, np.float32)},
              "Dense_1": {"kernel": np.full((10, 2), -0.5, np.float32), "bias": np.zeros(2, np.float32)}}
    new = jax.device_get(prune_uniform(params, masks.ones_like(params), rate))
    assert new["Dense_0"]["kernel"].sum() == 100 - round(100 * rate)
    assert new["Dense_1"]["kernel"].sum() == 20 - round(20 * rate)


def test_rates_are_traced_one_compile_gives_each_vmapped_trial_its_own_exact_sparsity(params_like):
    params = params_like([30, 40, 20, 10], seed=3, trials=3)
    traces = []

    @jax.jit
    @jax.vmap
    def prune(p, m, rate):
        traces.append(None)  # runs only while tracing
        return pruning.magnitude(p, m, paper_rates(p, rate))

    ones = jax.device_get(masks.ones_like(params))
    for rates in ([0.2, 0.5, 0.9], [0.1, 0.3, 0.7]):
        out = jax.device_get(prune(params, ones, np.array(rates, np.float32)))
        for t, rate in enumerate(rates):
            for i, name in enumerate(["Dense_0", "Dense_1", "Dense_2"]):
                w = np.abs(params[name]["kernel"][t])
                keep = w.size - round(w.size * (rate / 2 if i == 2 else rate))
                # This trial's own rate: exactly its `keep` largest |w| survive (numpy reference).
                expected = w >= np.sort(w, axis=None)[::-1][keep - 1]
                np.testing.assert_array_equal(out[name]["kernel"][t], expected, err_msg=f"rate {rate}, {name}")
    assert len(traces) == 1, "different rates must not recompile"


@pytest.mark.parametrize("rate", [1.5, -0.5, float("nan"), np.array([0.2, 1.01])])
def test_a_rate_outside_0_1_is_rejected_not_turned_into_negative_or_extra_survivors(rate, params_like):
    """Pruning 150% of 10 weights would "keep" -5; pruning -50% would keep 15 of 10."""
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pruning.survivors_after(10, rate)
    params = params_like([4, 3, 2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pruning.layer_rates(params, rate)
    with pytest.raises(ValueError, match="output pruning rate"):
        pruning.layer_rates(params, 0.2, rate)


def test_a_traced_rate_cannot_raise_so_it_is_clipped_to_0_1():
    survivors = jax.jit(pruning.survivors_after)
    assert [int(survivors(10, r)) for r in (1.5, 1.0, 0.25, 0.0, -0.5)] == [0, 0, 8, 10, 10]


# ------------------------------------------------------------------ unit pruning (XOR, section 2.1)

# Four hidden units A, B, C, D chosen so that the three heuristics disagree:
#   input  (mean |in|):         A 0.1   B 1.0   C 0.5   D 2.0   -> prunes A
#   output (|out|):             A 5.0   B 0.2   C 0.3   D 3.0   -> prunes B
#   product (|out| * sum |in|): A 1.0   B 0.4   C 0.3   D 12.0  -> prunes C
W_IN = [[0.1, -1.0, 0.5, 2.0], [-0.1, 1.0, -0.5, -2.0]]
B_IN = [0.3, 0.1, 0.2, -0.1]
W_OUT = [[-5.0], [0.2], [-0.3], [3.0]]
B_OUT = [0.05]
EXPECTED = {  # heuristic -> (scores, first unit pruned, second unit pruned)
    "input": ([0.1, 1.0, 0.5, 2.0], 0, 2),
    "output": ([5.0, 0.2, 0.3, 3.0], 1, 2),
    "product": ([1.0, 0.4, 0.3, 12.0], 2, 1),
}


def hand_built_xor():
    return {"Dense_0": {"kernel": jnp.array(W_IN), "bias": jnp.array(B_IN)},
            "Dense_1": {"kernel": jnp.array(W_OUT), "bias": jnp.array(B_OUT)}}


def unit_removed(mask, u):
    """Whether unit ``u`` has lost its incoming weights, its bias and its outgoing weight."""
    return (not np.any(mask["Dense_0"]["kernel"][:, u]) and not bool(mask["Dense_0"]["bias"][u])
            and not np.any(mask["Dense_1"]["kernel"][u, :]))


def test_heuristics_cover_the_paper():
    assert set(pruning.HEURISTICS) == set(EXPECTED)


@pytest.mark.parametrize("heuristic", sorted(EXPECTED))
def test_each_heuristic_scores_and_prunes_the_right_unit(heuristic):
    params = hand_built_xor()
    full = masks.ones_like(params)
    scores, first, second = EXPECTED[heuristic]
    np.testing.assert_allclose(pruning.unit_scores(params, full, heuristic), scores, rtol=1e-6)

    one = prune_units(params, full, 1, heuristic=heuristic)
    assert unit_removed(one, first)
    # Nothing else is touched: every other unit keeps all its connections and its bias.
    others = np.array([u for u in range(4) if u != first])
    assert np.all(one["Dense_0"]["kernel"][:, others]) and np.all(one["Dense_0"]["bias"][others])
    assert np.all(one["Dense_1"]["kernel"][others, :]) and bool(one["Dense_1"]["bias"][0])
    np.testing.assert_array_equal(pruning.alive_units(one), [u != first for u in range(4)])

    # Iterative pruning ranks only the units still alive: the next round removes the runner-up.
    two = prune_units(params, one, 1, heuristic=heuristic)
    assert unit_removed(two, first) and unit_removed(two, second)
    assert int(jnp.sum(pruning.alive_units(two))) == 2
    # Pruning two at once in one shot removes the same two units.
    chex.assert_trees_all_equal(prune_units(params, full, 2, heuristic=heuristic), two)


@pytest.mark.parametrize("heuristic", sorted(EXPECTED))
def test_net_with_a_unit_pruned_computes_what_the_smaller_net_computes(heuristic):
    params = hand_built_xor()
    pruned = prune_units(params, masks.ones_like(params), 1, heuristic=heuristic)
    keep = np.array([u for u in range(4) if u != EXPECTED[heuristic][1]])
    small = {"Dense_0": {"kernel": params["Dense_0"]["kernel"][:, keep], "bias": params["Dense_0"]["bias"][keep]},
             "Dense_1": {"kernel": params["Dense_1"]["kernel"][keep, :], "bias": params["Dense_1"]["bias"]}}
    x, _ = datasets.xor_points()
    out_masked = models.xor_net(4).apply({"params": masks.apply(params, pruned)}, x)
    out_small = models.xor_net(3).apply({"params": small}, x)
    np.testing.assert_allclose(out_masked, out_small, rtol=1e-6, atol=1e-7)
    # The pruned unit mattered: without pruning, the output is different.
    assert not np.allclose(models.xor_net(4).apply({"params": params}, x), out_small)


def test_unknown_heuristic_is_rejected():
    params = hand_built_xor()
    with pytest.raises(ValueError, match="heuristic"):
        pruning.units(params, masks.ones_like(params), 1, "random")


def test_first_units_leaves_exactly_n_units_under_one_compile(params_like):
    params = params_like([2, 10, 1])
    full = masks.ones_like(params)
    widths = jnp.arange(1, 11)
    cut = jax.jit(jax.vmap(pruning.first_units, in_axes=(None, 0)))(full, widths)
    for i, n in enumerate(range(1, 11)):
        mask_n = jax.tree.map(lambda m, i=i: m[i], cut)
        np.testing.assert_array_equal(pruning.alive_units(mask_n), np.arange(10) < n)
        for u in range(n, 10):
            assert unit_removed(mask_n, u)
        # The survivors keep every connection, and the output bias is never pruned.
        assert int(jnp.sum(mask_n["Dense_0"]["kernel"])) == 2 * n
        assert int(jnp.sum(mask_n["Dense_1"]["kernel"])) == n
        assert bool(mask_n["Dense_1"]["bias"][0])


def test_ten_unit_net_cut_to_two_units_is_the_two_unit_net_before_and_after_training(params_like):
    """Why every XOR width can train in one program: a 10-unit network with 8 units removed
    computes, and trains, exactly like a 2-unit network holding the same weights."""
    p10 = params_like([2, 10, 1], seed=7, std=0.5, bias_std=0.1)  # nonzero biases, removed units' too
    m2 = pruning.first_units(masks.ones_like(p10), 2)
    p2 = {"Dense_0": {"kernel": p10["Dense_0"]["kernel"][:, :2], "bias": p10["Dense_0"]["bias"][:2]},
          "Dense_1": {"kernel": p10["Dense_1"]["kernel"][:2], "bias": p10["Dense_1"]["bias"]}}
    x, y = datasets.xor_points()
    net10, net2 = models.xor_net(10), models.xor_net(2)
    np.testing.assert_allclose(net10.apply({"params": masks.apply(p10, m2)}, x), net2.apply({"params": p2}, x),
                               rtol=1e-6, atol=1e-7)

    opt = train_step.make_optimizer("sgd", 0.5)
    t10, loss10 = jax.jit(train_step.full_batch(train_step.sigmoid_bce(net10.apply), opt, 300))(p10, m2, (x, y))
    fit2 = jax.jit(train_step.full_batch(train_step.sigmoid_bce(net2.apply), opt, 300))
    t2, loss2 = fit2(p2, masks.ones_like(p2), (x, y))
    np.testing.assert_allclose(loss10, loss2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t10["Dense_0"]["kernel"][:, :2], t2["Dense_0"]["kernel"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t10["Dense_1"]["kernel"][:2], t2["Dense_1"]["kernel"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t10["Dense_0"]["bias"][:2], t2["Dense_0"]["bias"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t10["Dense_1"]["bias"], t2["Dense_1"]["bias"], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(masks.apply(t10, m2), t10)  # the 8 removed units are still all zeros
    # Training actually moved the weights (the comparison above is not of two untouched copies).
    assert float(loss2[-1]) < float(loss2[0])
