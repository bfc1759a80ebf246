"""What is trained after pruning: the winning ticket (section 1, step 4) and the two controls
(section 3.2): reinitialise the ticket's architecture, or shuffle its initial weights within
each layer. Plus Han et al.'s carry-on (section 6.4).
"""

import math

import chex
import jax
import numpy as np
import pytest

from lth_jax import masks, models, pruning, transforms

STD = 0.1
prune = jax.jit(lambda p, m, rate: pruning.magnitude(p, m, pruning.layer_rates(p, rate, rate / 2)))
shuffle = jax.jit(transforms.shuffle)


@pytest.fixture(scope="module")
def ticket(params_like):
    """An init, the trained values it led to, and the mask pruning those trained values gives."""
    init = params_like([20, 30, 10], seed=0, bias_std=1.0)  # nonzero biases make "untouched" checkable
    trained = params_like([20, 30, 10], seed=1, std=1.0, bias_std=1.0)
    mask = prune(trained, masks.ones_like(trained), 0.5)
    return init, trained, jax.device_get(mask)


def kernels(tree):
    return {name: np.asarray(leaf["kernel"]) for name, leaf in tree.items()}


def test_rewind_restores_the_original_init_of_survivors_exactly(ticket):
    init, trained, mask = ticket
    params, out_mask = transforms.rewind(init, mask)
    chex.assert_trees_all_equal(out_mask, mask)
    for p, i, m in zip(jax.tree.leaves(params), jax.tree.leaves(init), jax.tree.leaves(mask), strict=True):
        np.testing.assert_array_equal(np.asarray(p)[m], i[m])   # survivors: their value from before training
        np.testing.assert_array_equal(np.asarray(p)[~m], 0.0)   # pruned: exactly 0
    # The mask came from the trained values, the values from the init: those differ.
    assert not np.allclose(kernels(params)["Dense_0"], kernels(transforms.carry_on(trained, mask)[0])["Dense_0"])


def test_carry_on_keeps_the_trained_values_of_survivors(ticket):
    _, trained, mask = ticket
    params, out_mask = transforms.carry_on(trained, mask)
    chex.assert_trees_all_equal(out_mask, mask)
    chex.assert_trees_all_equal(params, jax.tree.map(lambda t, m: np.where(m, t, np.float32(0)), trained, mask))


def test_reinit_keeps_the_mask_and_redraws_survivors_from_the_init_distribution():
    net = models.MLP(hidden=(200,), outputs=10, std=STD)
    init_fn = jax.jit(lambda k: models.init_params(net, k, 100))
    init = jax.device_get(init_fn(jax.random.key(0)))
    rng = np.random.default_rng(0)  # any mask will do: 70% of each kernel alive, biases all alive
    mask = {name: {"kernel": rng.random(leaf["kernel"].shape) < 0.7, "bias": np.ones(leaf["bias"].shape, bool)}
            for name, leaf in init.items()}

    params, out_mask = transforms.reinit(jax.random.key(1), init_fn, mask)
    params = jax.device_get(params)
    chex.assert_trees_all_equal(out_mask, mask)
    for name, k in kernels(params).items():
        m = mask[name]["kernel"]
        assert np.all(k[m] != init[name]["kernel"][m]), f"{name}: a survivor kept its original value"
        np.testing.assert_array_equal(k[~m], 0.0)
        # The paper's distribution: N(0, 0.1^2) with values beyond two deviations redrawn.
        assert np.all(np.abs(k[m]) <= 2 * STD + 1e-7)
    # Standard deviation of a normal truncated at +-2 sigma: sigma * sqrt(1 - 2*2*phi(2) / (2*Phi(2) - 1)).
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    expected_std = STD * math.sqrt(1 - 4 * phi2 / math.erf(2 / math.sqrt(2)))
    drawn = kernels(params)["Dense_0"][mask["Dense_0"]["kernel"]]
    np.testing.assert_allclose(drawn.std(), expected_std, rtol=0.03)
    np.testing.assert_allclose(drawn.mean(), 0.0, atol=0.005)
    # Different keys give different controls; the same key the same one.
    chex.assert_trees_all_equal(transforms.reinit(jax.random.key(1), init_fn, mask)[0], params)
    assert not np.array_equal(kernels(transforms.reinit(jax.random.key(2), init_fn, mask)[0])["Dense_0"],
                              kernels(params)["Dense_0"])



def test_shuffle_keeps_each_layers_survivor_count_and_multiset_of_initial_values(ticket):
    init, _, mask = ticket
    params, new_mask = jax.device_get(shuffle(jax.random.key(0), init, mask))
    for name in init:
        old_m, new_m = mask[name]["kernel"], new_mask[name]["kernel"]
        p = params[name]["kernel"]
        assert new_m.sum() == old_m.sum(), f"{name}: survivor count changed"
        np.testing.assert_array_equal(np.sort(p[new_m]), np.sort(init[name]["kernel"][old_m]))
        np.testing.assert_array_equal(p[~new_m], 0.0)
        # The connections really moved (not the ticket's own architecture).
        assert np.mean(new_m != old_m) > 0.2, f"{name}: positions barely changed"
        # Biases are not weights: neither their values nor their mask move.
        np.testing.assert_array_equal(new_mask[name]["bias"], mask[name]["bias"])
        np.testing.assert_array_equal(params[name]["bias"], np.where(mask[name]["bias"], init[name]["bias"], 0))


def test_shuffle_of_the_unpruned_network_permutes_weights_within_each_layer(ticket):
    init, _, _ = ticket
    full = masks.ones_like(init)
    params, new_mask = jax.device_get(shuffle(jax.random.key(0), init, full))
    chex.assert_trees_all_equal(new_mask, jax.device_get(full))
    for name in init:
        p, i = params[name]["kernel"], init[name]["kernel"]
        np.testing.assert_array_equal(np.sort(p, axis=None), np.sort(i, axis=None))
        assert np.mean(p != i) > 0.5
    # Independent keys give independent controls.
    other = jax.device_get(shuffle(jax.random.key(1), init, full)[0])
    assert not np.array_equal(other["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
