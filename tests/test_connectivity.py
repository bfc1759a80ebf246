"""Footnote 7: edges with no path to an output unit are removed before counting
connections (Figure 10); and the forward-direction counterpart."""

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.reproduction import connectivity


def mlp_masks(*kernels, biases=None):
    """A mask tree for an MLP from hand-written 0/1 kernels (fan_in x units)."""
    tree = {}
    for i, k in enumerate(kernels):
        k = jnp.asarray(k, bool)
        b = jnp.ones(k.shape[-1], bool) if biases is None else jnp.asarray(biases[i], bool)
        tree[f"Dense_{i}"] = {"kernel": k, "bias": b}
    return tree


def as_np(tree):
    return jax.tree.map(np.asarray, tree)


def assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, as_np(a), as_np(b))


# 3 inputs -> 3 hidden -> 2 hidden -> 2 outputs.
# Hidden-2 unit 1 has no outgoing edge; hidden-1 unit 2 feeds only hidden-2 unit 1.
K0 = [[1, 1, 1],
      [1, 0, 1],
      [0, 1, 1]]
K1 = [[1, 0],
      [1, 1],
      [0, 1]]
K2 = [[1, 1],
      [0, 0]]


def test_hidden_unit_without_outgoing_edges_loses_its_incoming_edges_and_bias():
    out = connectivity.remove_disconnected(mlp_masks(K0, K1, K2))
    np.testing.assert_array_equal(out["Dense_1"]["kernel"], [[1, 0], [1, 0], [0, 0]])
    np.testing.assert_array_equal(out["Dense_1"]["bias"], [True, False])


def test_removal_cascades_back_to_the_first_hidden_layer():
    out = connectivity.remove_disconnected(mlp_masks(K0, K1, K2))
    # hidden-1 unit 2 only fed the removed hidden-2 unit: it goes too, its inputs with it
    np.testing.assert_array_equal(out["Dense_0"]["kernel"], [[1, 1, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(out["Dense_0"]["bias"], [True, True, False])


def test_output_layer_is_never_touched():
    m = mlp_masks(K0, K1, K2)
    out = connectivity.remove_disconnected(m)
    assert_same(out["Dense_2"], m["Dense_2"])


def test_bias_can_be_kept():
    out = connectivity.remove_disconnected(mlp_masks(K0, K1, K2), prune_bias=False)
    np.testing.assert_array_equal(out["Dense_1"]["bias"], [True, True])
    np.testing.assert_array_equal(out["Dense_1"]["kernel"], [[1, 0], [1, 0], [0, 0]])


def test_fully_connected_masks_are_unchanged():
    m = jax.tree.map(np.ones_like, random_masks(0, sizes=(20, 30, 10, 10)))
    assert_same(connectivity.remove_disconnected(m), m)
    assert_same(connectivity.remove_dead(m, bias_feeds=False), m)


def random_masks(seed, density=0.15, sizes=(20, 12, 8, 4), trials=None):
    """Sparse random masks (numpy: cheap to make), random biases too."""
    rng = np.random.default_rng(seed)
    shape = () if trials is None else (trials,)
    return {f"Dense_{i}": {"kernel": rng.random(shape + (a, b)) < density, "bias": rng.random(shape + (b,)) < 0.5}
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))}


def test_removal_is_idempotent_and_only_removes():
    m = random_masks(1, trials=8)
    once = connectivity.remove_disconnected(m)
    assert_same(connectivity.remove_disconnected(once), once)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a) & ~np.asarray(b), False), once, m)
    # the random masks do disconnect something, so the checks above are not vacuous
    assert sum(int(np.sum(a != b)) for a, b in zip(jax.tree.leaves(once), jax.tree.leaves(m), strict=True)) > 0


def test_every_surviving_hidden_unit_reaches_an_output():
    out = connectivity.remove_disconnected(random_masks(2, trials=8))
    useful = connectivity.reaches_output(out)
    for name, counts in connectivity.incoming_counts(out).items():
        assert not np.any((np.asarray(counts) > 0) & ~np.asarray(useful[name]))


def test_vmapped_and_batched_equal_per_trial():
    m = random_masks(3, trials=5)
    per_trial = [connectivity.remove_disconnected(jax.tree.map(lambda x, i=i: x[i], m)) for i in range(5)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *per_trial)
    assert_same(jax.jit(jax.vmap(connectivity.remove_disconnected))(m), stacked)
    assert_same(jax.jit(connectivity.remove_disconnected)(m), stacked)   # leading axes broadcast too


def network_outputs(params, m, x):
    """The MLP's forward pass (ReLU hidden layers, linear output) under masks ``m``."""
    names = sorted(params)
    for name in names:
        k, b = m[name]["kernel"], m[name]["bias"]
        x = x @ np.where(k, params[name]["kernel"], 0) + np.where(b, params[name]["bias"], 0)
        x = np.maximum(x, 0) if name != names[-1] else x
    return x


def test_exact_transforms_leave_the_networks_outputs_unchanged():
    rng = np.random.default_rng(4)
    sizes = (20, 12, 8, 4)
    # non-zero biases, so a unit fed only by its bias emits a constant
    params = {f"Dense_{i}": {"kernel": rng.normal(size=(a, b)), "bias": rng.normal(size=b)}
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))}
    x = rng.normal(size=(16, 20))
    for seed in range(5):
        m = random_masks(10 + seed, density=0.2, sizes=sizes)
        ref = network_outputs(params, m, x)
        for transformed in (connectivity.remove_disconnected(m), connectivity.remove_unfed(m),
                            connectivity.remove_dead(m)):
            np.testing.assert_allclose(network_outputs(params, as_np(transformed), x), ref, rtol=1e-12)


def test_a_unit_fed_only_by_its_bias_is_alive_unless_biases_do_not_count():
    # hidden-1 unit 0 has no incoming edge but a live bias: it emits relu(bias)
    k0 = [[0, 1], [0, 1]]
    k1 = [[1], [1]]
    m = mlp_masks(k0, k1)
    kept = connectivity.remove_unfed(m, bias_feeds=True)
    np.testing.assert_array_equal(kept["Dense_1"]["kernel"], [[1], [1]])
    cut = connectivity.remove_unfed(m, bias_feeds=False)
    np.testing.assert_array_equal(cut["Dense_1"]["kernel"], [[0], [1]])
    np.testing.assert_array_equal(cut["Dense_0"]["bias"], [False, True])
    # that unit's constant reaches the output, so the graph view changes what the network computes
    params = {"Dense_0": {"kernel": np.ones((2, 2)), "bias": np.array([0.5, 0.0])},
              "Dense_1": {"kernel": np.ones((2, 1)), "bias": np.zeros(1)}}
    x = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(network_outputs(params, as_np(kept), x), network_outputs(params, m, x))
    np.testing.assert_allclose(network_outputs(params, m, x) - network_outputs(params, as_np(cut), x), [[0.5]])


def test_a_unit_with_no_input_and_no_bias_is_removed_forward():
    k0 = [[0, 1], [0, 1]]
    k1 = [[1], [1]]
    m = mlp_masks(k0, k1, biases=[[False, True], [True]])
    out = connectivity.remove_unfed(m)
    np.testing.assert_array_equal(out["Dense_1"]["kernel"], [[0], [1]])


def test_both_directions_reach_a_fixed_point():
    for bias_feeds in (True, False):
        m = random_masks(6, density=0.2, trials=8)
        once = connectivity.remove_dead(m, bias_feeds)
        assert_same(connectivity.remove_dead(once, bias_feeds), once)
        assert_same(connectivity.remove_unfed(once, bias_feeds), once)


def test_incoming_counts_count_surviving_connections_per_unit():
    counts = connectivity.incoming_counts(mlp_masks(K0, K1, K2))
    np.testing.assert_array_equal(counts["Dense_0"], [2, 2, 3])
    np.testing.assert_array_equal(counts["Dense_1"], [2, 2])
    np.testing.assert_array_equal(counts["Dense_2"], [1, 1])
    np.testing.assert_array_equal(connectivity.outgoing_counts(mlp_masks(K0, K1, K2))["Dense_1"], [2, 0])


def test_disconnected_units_after_footnote_7():
    raw = connectivity.disconnected_units(mlp_masks(K0, K1, K2))
    assert not any(np.any(v) for v in raw.values())       # every unit has inputs before removal
    dead = connectivity.disconnected_units(connectivity.remove_disconnected(mlp_masks(K0, K1, K2)))
    np.testing.assert_array_equal(dead["Dense_0"], [False, False, True])
    np.testing.assert_array_equal(dead["Dense_1"], [False, True])
    np.testing.assert_array_equal(dead["Dense_2"], [False, False])
