"""Global magnitude pruning (issue 9, item 3): the lowest-|w| fraction of the remaining weights of
all layers together goes, with one threshold across layers, exact counts and ties broken by rank;
``rules.GlobalMagnitude`` drives the runner with it, and the MNIST experiment selects it with
``pruning="global"`` (``--pruning=global``) while layer-wise stays the default.

Trees are hand-made (numpy leaves) except the Flax conv net and the tiny synthetic MNIST runs.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import synthetic_mnist

from lth_jax import masks as masks_lib
from lth_jax import pruning, rules, runner, store
from lth_jax.reproduction import mnist

# Params are arguments, never closed-over constants (see test_pruning).
prune = jax.jit(pruning.global_magnitude, static_argnames="where")


def kernels(tree):
    return {masks_lib.layer_name(p): np.asarray(masks_lib.get(tree, (*p, "kernel")))
            for p in masks_lib.layer_paths(tree)}


def three_layers(seed=0):
    """Three layers whose weights live on different scales, a nested one among them, so one
    threshold across layers prunes them at very different fractions."""
    rng = np.random.default_rng(seed)

    def layer(shape, scale):
        return {"kernel": (scale * rng.standard_normal(shape)).astype(np.float32),
                "bias": (0.001 * rng.standard_normal(shape[-1:])).astype(np.float32)}  # tiny: pruned first if looked at

    return {"big": layer((6, 5), 10.0), "block": {"small": layer((5, 4), 0.1)}, "mid": layer((4, 3), 1.0)}


def test_global_pruning_keeps_exactly_the_requested_count_with_one_threshold_across_layers():
    params = three_layers()
    rng = np.random.default_rng(1)
    mask = jax.tree.map(lambda p: rng.random(p.shape) > 0.2, params)  # some weights already gone
    mask = jax.tree_util.tree_map_with_path(lambda path, m: m if masks_lib.is_kernel(path) else np.ones_like(m), mask)
    new = prune(params, mask, 0.3)
    jax.tree.map(lambda a, b: None, new, mask)  # the masks mirror the params leaf for leaf
    w, before, after = kernels(params), kernels(mask), kernels(new)
    remaining = sum(int(m.sum()) for m in before.values())
    kept = sum(int(m.sum()) for m in after.values())
    assert kept == int(pruning.survivors_after(remaining, 0.3)) == remaining - round(0.3 * remaining)
    assert all(not (after[n] & ~before[n]).any() for n in w)  # nothing pruned comes back
    gone = np.concatenate([np.abs(w[n])[before[n] & ~after[n]] for n in w])
    stay = np.concatenate([np.abs(w[n])[after[n]] for n in w])
    assert gone.max() <= stay.min()  # one threshold across all layers
    fractions = {n: after[n].sum() / before[n].sum() for n in w}
    assert fractions["block/small"] == 0.0 and fractions["big"] == 1.0  # not 70% of each layer
    for path in (("big", "bias"), ("block", "small", "bias"), ("mid", "bias")):
        assert np.asarray(masks_lib.get(new, path)).all()  # biases are never pruned


def test_ties_are_broken_by_rank_in_the_trees_flattened_order():
    """Equal |w| everywhere: the survivors are the first ones in jax's leaf order (dict keys sorted:
    "a" before "b"), row-major within a leaf, whatever the signs; the count stays exact."""
    params = {"b": {"kernel": np.array([[1.0, -1.0], [1.0, -1.0]], np.float32)},
              "a": {"kernel": np.array([[-1.0, 1.0, -1.0]], np.float32)}}
    new = prune(params, masks_lib.ones_like(params), 3 / 7)
    np.testing.assert_array_equal(new["a"]["kernel"], [[True, True, True]])
    np.testing.assert_array_equal(new["b"]["kernel"], [[True, False], [False, False]])
    # a tie at the threshold only: the smaller weight goes first, then rank decides among the equal
    params = {"a": {"kernel": np.array([[0.5, 2.0, 0.5]], np.float32)},
              "b": {"kernel": np.array([[0.1, 0.5]], np.float32)}}
    new = prune(params, masks_lib.ones_like(params), 0.4)  # 5 weights, 2 go: 0.1, then the last 0.5
    np.testing.assert_array_equal(new["a"]["kernel"], [[True, True, True]])
    np.testing.assert_array_equal(new["b"]["kernel"], [[False, False]])


def test_traced_rate_under_jit_and_vmap_equals_the_concrete_rate():
    params = three_layers(2)
    ones = masks_lib.ones_like(params)
    rates = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0]
    eager = [pruning.global_magnitude(params, ones, r) for r in rates]
    jitted = [prune(params, ones, jnp.float32(r)) for r in rates]
    vmapped = jax.jit(jax.vmap(pruning.global_magnitude, in_axes=(None, None, 0)))(params, ones, jnp.asarray(rates))
    for i, r in enumerate(rates):
        jax.tree.map(np.testing.assert_array_equal, eager[i], jitted[i])
        jax.tree.map(lambda v, e, i=i: np.testing.assert_array_equal(v[i], e), vmapped, eager[i])
        kept = sum(int(m.sum()) for m in kernels(eager[i]).values())
        assert kept == 30 + 20 + 12 - round(r * 62)
    with pytest.raises(ValueError, match="fraction"):
        pruning.global_magnitude(params, ones, 1.5)  # a concrete rate out of range is refused


def test_only_selected_leaves_are_pruned():
    params = three_layers(3)
    mask = masks_lib.ones_like(params)
    mask = masks_lib.replace(mask, {("mid", "bias"): np.array([True, False, True])})  # a bias mask as the user left it
    only_mid_and_big = lambda path: masks_lib.is_kernel(path) and path[0] != "block"  # noqa: E731
    new = prune(params, mask, 0.5, where=only_mid_and_big)
    np.testing.assert_array_equal(new["block"]["small"]["kernel"], True)  # the smallest weights, but not selected
    np.testing.assert_array_equal(new["mid"]["bias"], [True, False, True])  # unselected leaves come back as they were
    assert all(np.asarray(new[k]["bias"]).sum() == np.asarray(mask[k]["bias"]).sum() for k in ("big", "mid"))
    kept = int(new["big"]["kernel"].sum() + new["mid"]["kernel"].sum())
    assert kept == 42 - 21 and new["mid"]["kernel"].sum() < 6  # one threshold over the two selected layers
    everything = prune(params, masks_lib.ones_like(params), 0.5, where=lambda path: True)  # biases too, if asked
    assert not np.asarray(everything["mid"]["bias"]).all()
    with pytest.raises(ValueError, match="selects no leaf"):
        pruning.global_magnitude(params, mask, 0.5, where=lambda path: False)


class Features(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), strides=2, name="z_conv")(x))
        return nn.relu(nn.Conv(6, (3, 3), strides=2, name="a_conv")(x))


class ConvNet(nn.Module):
    """User-named conv layers nested in a submodule, and a dense head: 36 + 216 + 96 weights."""

    @nn.compact
    def __call__(self, x):
        x = Features(name="features")(x)
        return nn.Dense(4, name="a_head")(x.reshape((x.shape[0], -1)))


def test_works_on_a_nested_user_named_flax_conv_tree():
    params = ConvNet().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    ones = masks_lib.ones_like(params)
    new = prune(params, ones, 0.6)
    assert jax.tree.structure(new) == jax.tree.structure(params)
    assert all(m.shape == p.shape and m.dtype == bool for m, p in zip(jax.tree.leaves(new), jax.tree.leaves(params),
                                                                       strict=True))
    w, after = kernels(params), kernels(new)
    assert sorted(w) == ["a_head", "features/a_conv", "features/z_conv"]
    assert sum(int(m.sum()) for m in after.values()) == 348 - round(0.6 * 348)
    gone = np.concatenate([np.abs(w[n])[~after[n]] for n in w])
    stay = np.concatenate([np.abs(w[n])[after[n]] for n in w])
    assert gone.max() <= stay.min()  # a conv kernel is ranked over all its entries, with the others
    assert all(np.asarray(masks_lib.get(new, p)["bias"]).all() for p in masks_lib.layer_paths(params))


# ---------------------------------------------------------------- the rule, the runner, the MNIST settings


def test_the_rule_predicts_the_total_it_keeps_and_names_itself_in_the_hash():
    net = mnist.network((300, 100))
    rule = rules.GlobalMagnitude(0.2)
    assert rule.counts(net, rounds=0) == {"Dense_0+Dense_1+Dense_2": 266_200}
    assert rule.counts(net, rounds=2) == {"Dense_0+Dense_1+Dense_2": 266_200 - 53_240 - 42_592}
    assert rule.counts(net, value=5.0) == {"Dense_0+Dense_1+Dense_2": 13_310}
    assert rule.value_after(3) == pytest.approx(51.2)
    assert rule.hashed("iterative") == {"pruning": "global", "rate": 0.2}
    assert rule.hashed("oneshot") == {"pruning": "global"}
    with pytest.raises(ValueError, match="rate"):
        rules.GlobalMagnitude(1.0)


def test_layerwise_stays_the_default_and_its_run_hashes_are_unchanged():
    for mode in runner.MODES:
        s = mnist.Settings(mode=mode)
        assert s.pruning == "layerwise" and "pruning" not in s.hashed()
        assert isinstance(s.lottery().prune, rules.LayerwiseMagnitude)
        assert mnist.run_dir(s.replace(pruning="global"), "runs") != mnist.run_dir(s, "runs")
    # the paper's defaults still hash to the directory they had before the field existed (the
    # golden digests, tests/test_refactor_keeps_numbers.py, check stored runs bit for bit)
    assert mnist.run_dir(mnist.Settings(), "runs").name == "oneshot-4558e560277d"
    with pytest.raises(ValueError, match="pruning"):
        mnist.Settings(pruning="magnitude")


TINY = dict(hidden=(16, 8), iterations=100, eval_every=50, seeds=(0, 1), reinit=1, shuffle=1,
            average_over=50, stable_for=50, pruning="global")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = synthetic_mnist(256, 128)
    root = tmp_path_factory.mktemp("runs")
    iterative = mnist.Settings(mode="iterative", min_remaining=60.0, **TINY)
    oneshot = mnist.Settings(mode="oneshot", levels=(100, 30), **TINY)
    return {s.mode: (s, mnist.run(s, data, root)) for s in (iterative, oneshot)}


def _totals(masks):
    """Per seed, the surviving weights of all layers together."""
    return sum(m["kernel"].reshape(m["kernel"].shape[0], -1).sum(axis=1) for m in masks.values())


def test_an_iterative_mnist_run_prunes_a_fifth_of_all_remaining_weights_a_round_with_one_threshold(runs):
    settings, path = runs["iterative"]
    recs = sorted(mnist.records(path, arrays=True), key=lambda r: r.name)  # r00 first
    assert [r.name for r in recs] == ["r00", "r01", "r02", "r03"]  # 100, 80, 64, 51.2 % (stops under 60)
    expected = sum(mnist.weight_counts(settings).values())  # 12544 + 128 + 80
    for prev, cur in zip([None, *recs], recs, strict=False):
        m = store.subtree(cur.arrays, "masks")
        assert (_totals(m) == expected).all(), cur.name
        assert cur.metrics["expected_weights"] == {"Dense_0+Dense_1+Dense_2": expected}  # the plan knew the total
        assert cur.metrics["weights_total"] == expected
        assert all(layer["bias"].all() for layer in m.values())  # biases are never pruned
        if prev is not None:
            w, before = store.subtree(prev.arrays, "trained"), store.subtree(prev.arrays, "masks")
            for s in range(len(settings.seeds)):
                gone = np.concatenate([np.abs(w[n]["kernel"][s])[before[n]["kernel"][s] & ~m[n]["kernel"][s]]
                                       for n in w])
                stay = np.concatenate([np.abs(w[n]["kernel"][s])[m[n]["kernel"][s]] for n in w])
                assert gone.max() <= stay.min()  # one threshold across the layers of each seed
        expected -= round(0.2 * expected)
    assert mnist.load_settings(path) == settings  # the stored run says it was global


def test_a_one_shot_mnist_run_keeps_p_percent_of_all_weights_and_the_controls_keep_its_layers(runs):
    settings, path = runs["oneshot"]
    recs = {r.name: r for r in mnist.records(path, arrays=True)}
    total = sum(mnist.weight_counts(settings).values())
    ticket = store.subtree(recs["p30"].arrays, "masks")
    assert (_totals(ticket) == round(0.3 * total)).all()
    assert recs["p30"].metrics["percent_overall"] == pytest.approx(100 * round(0.3 * total) / total)
    per_layer = {n: ticket[n]["kernel"].reshape(2, -1).sum(axis=1) for n in ticket}
    assert not np.allclose(per_layer["Dense_0"] / 12544, per_layer["Dense_2"] / 80)  # not 30% of each layer
    assert sorted(recs["p30"].metrics["roles"]) == ["reinit", "shuffle", "ticket"]


def test_trainings_to_about_5_percent_with_global_pruning_counts_the_global_plan():
    """Global pruning at 20% a round removes 20% of ALL remaining weights, so about 5% takes
    ceil(log(0.05) / log(0.8)) = 14 trainings; how the ticket splits across layers is not known
    before training, so no hidden-layer percent is claimed."""
    t = mnist.trainings_to(5.0, mnist.Settings(mode="iterative", pruning="global"))
    assert t["trainings"] == 14 and t["percent_hidden"] is None
    assert 0.8 ** 14 * 100 == pytest.approx(t["percent_overall"], rel=1e-3)
