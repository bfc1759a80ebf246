"""Masks mirror a params tree leaf for leaf; pruned entries are exactly zero."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import masks, models


def hand_built():
    """Two layers; 3 of 6 first-layer weights, 1 of 3 biases and 1 of 3 output weights alive."""
    params = {
        "Dense_0": {"kernel": jnp.array([[1.0, -2.0, 3.0], [4.0, -5.0, 6.0]]), "bias": jnp.array([0.5, -0.5, 1.5])},
        "Dense_1": {"kernel": jnp.array([[7.0], [-8.0], [9.0]]), "bias": jnp.array([2.0])},
    }
    mask = {
        "Dense_0": {"kernel": jnp.array([[True, False, True], [False, True, False]]),
                    "bias": jnp.array([False, True, False])},
        "Dense_1": {"kernel": jnp.array([[False], [False], [True]]), "bias": jnp.array([True])},
    }
    return params, mask


def test_ones_like_mirrors_params_leaf_for_leaf(lenet_params):
    m = masks.ones_like(lenet_params)
    assert jax.tree.structure(m) == jax.tree.structure(lenet_params)
    chex.assert_trees_all_equal_shapes(m, lenet_params)
    # Every leaf is a real bool array (no None placeholders for "unpruned" leaves), all alive.
    assert len(jax.tree.leaves(m)) == len(jax.tree.leaves(lenet_params)) == 6
    for leaf in jax.tree.leaves(m, is_leaf=lambda x: x is None):
        assert leaf is not None
        chex.assert_type(leaf, bool)
        assert bool(jnp.all(leaf))


def test_ones_like_mirrors_a_real_flax_params_tree(params_like):
    params = models.init_params(models.xor_net(10), jax.random.key(0), 2)
    m = masks.ones_like(params)
    assert jax.tree.structure(m) == jax.tree.structure(params)
    chex.assert_trees_all_equal_shapes(m, params)
    chex.assert_trees_all_equal_dtypes(m, jax.tree.map(lambda p: p.astype(bool), params))
    # The numpy-drawn fixtures of this suite have exactly the flax layout.
    chex.assert_trees_all_equal_shapes_and_dtypes(params_like([2, 10, 1]), params)


def test_ones_like_mirrors_a_batched_trial_axis(lenet_params):
    batched = jax.tree.map(lambda p: jnp.stack([p, p, p]), lenet_params)
    m = masks.ones_like(batched)
    chex.assert_trees_all_equal_shapes(m, batched)
    chex.assert_tree_shape_prefix(m, (3,))


def test_apply_zeros_exactly_the_masked_entries():
    params, mask = hand_built()
    out = masks.apply(params, mask)
    expected = jax.tree.map(lambda p, m: np.where(np.asarray(m), np.asarray(p), 0.0), params, mask)
    chex.assert_trees_all_equal(out, expected)
    # Survivors keep their exact values, pruned entries are exactly 0.
    for p, m, o in zip(jax.tree.leaves(params), jax.tree.leaves(mask), jax.tree.leaves(out), strict=True):
        np.testing.assert_array_equal(np.asarray(o)[np.asarray(m)], np.asarray(p)[np.asarray(m)])
        np.testing.assert_array_equal(np.asarray(o)[~np.asarray(m)], 0.0)


def test_apply_zeros_nan_and_inf_in_pruned_entries():
    """A pruned weight holding NaN or inf must not leak (x * 0 would give NaN)."""
    params, mask = hand_built()
    poisoned = jax.tree.map(lambda p, m: jnp.where(m, p, jnp.nan), params, mask)
    poisoned["Dense_1"]["kernel"] = poisoned["Dense_1"]["kernel"].at[0, 0].set(jnp.inf)
    out = masks.apply(poisoned, mask)
    chex.assert_tree_all_finite(out)
    chex.assert_trees_all_equal(out, masks.apply(params, mask))


def test_apply_with_all_alive_mask_is_identity(lenet_params):
    chex.assert_trees_all_equal(masks.apply(lenet_params, masks.ones_like(lenet_params)), lenet_params)


def test_count_and_density_per_leaf_and_overall():
    _, mask = hand_built()
    counts = masks.count(mask)
    chex.assert_trees_all_equal(counts, {"Dense_0": {"kernel": np.int32(3), "bias": np.int32(1)},
                                         "Dense_1": {"kernel": np.int32(1), "bias": np.int32(1)}})
    per_leaf, overall = masks.density(mask)
    chex.assert_trees_all_close(per_leaf, {"Dense_0": {"kernel": 3 / 6, "bias": 1 / 3},
                                           "Dense_1": {"kernel": 1 / 3, "bias": 1.0}})
    # Overall density weights leaves by size: 6 alive of 6 + 3 + 3 + 1 = 13 entries.
    np.testing.assert_allclose(overall, 6 / 13, rtol=1e-6)
    # The paper's x-axis counts weights only: 4 alive of 9 kernel entries.
    np.testing.assert_allclose(masks.kernel_density(mask), 4 / 9, rtol=1e-6)


def test_full_mask_has_density_one(lenet_params):
    per_leaf, overall = masks.density(masks.ones_like(lenet_params))
    chex.assert_trees_all_close(per_leaf, jax.tree.map(lambda _: 1.0, lenet_params))
    assert float(overall) == 1.0
    assert float(masks.kernel_density(masks.ones_like(lenet_params))) == 1.0


def test_is_kernel_tells_weights_from_biases(lenet_params):
    flags = {jax.tree_util.keystr(path): masks.is_kernel(path)
             for path, _ in jax.tree_util.tree_leaves_with_path(lenet_params)}
    assert flags == {f"['Dense_{i}']['{leaf}']": leaf == "kernel" for i in range(3) for leaf in ("bias", "kernel")}
