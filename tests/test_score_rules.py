"""Score rules (pruning that sees the initialisation and the data): a criterion is one function of
a ``rules.Context``; ``pruning.by_score`` / ``global_by_score`` rank the scores with magnitude
pruning's exact counts and ties, and ``rules.ScoreRule`` gives every criterion the magnitude
rules' levels, counts and hash.

A 4-6-3 Flax MLP and a batch of 8 are built by hand; params are numpy draws passed as arguments
(closed-over constants would be folded at compile time).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import draw_params

from lth_jax import masks as masks_lib
from lth_jax import pruning, rules

SIZES = (4, 6, 3)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(SIZES[1])(x))  # built in call order, so Dense_0 is the hidden layer
        return nn.Dense(SIZES[2])(x)


@dataclasses.dataclass(frozen=True)
class TinyNet:
    """What a rule asks of ``runner.Network``, for the MLP above (a stand-in, so these specs do not
    depend on how the runner traces a model)."""

    module: nn.Module = dataclasses.field(default_factory=MLP)

    def layers(self):
        return (("Dense_0",), ("Dense_1",))

    def output_layer(self):
        return self.layers()[-1]

    def weight_counts(self):
        return {"Dense_0": SIZES[0] * SIZES[1], "Dense_1": SIZES[1] * SIZES[2]}


NET = TinyNet()


def batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SIZES[0])).astype(np.float32), rng.integers(0, SIZES[2], n).astype(np.int32)


def cross_entropy(params, x, y):
    logp = jax.nn.log_softmax(NET.module.apply({"params": params}, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def context(init, masks, x, y, trained=None, key=None):
    """The Context the runner builds: the loss applies the masks, as training does."""
    return rules.Context(init=init, trained=trained, masks=masks, batch=(x, y),
                         loss=lambda p: cross_entropy(masks_lib.apply(p, masks), x, y),
                         key=jax.random.key(0) if key is None else key)


def ones(params):
    return jax.tree.map(lambda p: np.ones(np.shape(p), bool), params)


def kernels(tree):
    return {n: np.asarray(tree[n]["kernel"]) for n in ("Dense_0", "Dense_1")}


def top_k(scores, k):
    """Hand ranking: the k highest scores (ties by index), as a boolean array."""
    keep = np.zeros(scores.size, bool)
    keep[np.argsort(-scores.reshape(-1), kind="stable")[:k]] = True
    return keep.reshape(scores.shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainedMagnitude(rules.ScoreRule):
    """|w| of the trained weights: layer-wise magnitude pruning written as a score rule."""

    at_init: bool = False

    def score(self, ctx):
        return jax.tree.map(jnp.abs, ctx.params)


def one_shot(rule, trained=False):
    """The rule's to_level_ctx, jitted with everything (the level value too) as arguments."""
    def f(init, tr, masks, x, y, value):
        return rule.to_level_ctx(NET, context(init, masks, x, y, trained=tr if trained else None), value)

    return jax.jit(f)


def one_round(rule, trained=False):
    def f(init, tr, masks, x, y):
        return rule.step_ctx(NET, context(init, masks, x, y, trained=tr if trained else None))

    return jax.jit(f)


snip_level = one_shot(rules.SNIP())


def test_snip_keeps_the_weights_with_the_largest_grad_times_weight():
    """Checked against a hand computation: jax.grad of the loss at the initial weights, numpy argsort."""
    init, (x, y) = draw_params(SIZES, seed=1, bias_std=0.1), batch()
    masks = snip_level(init, None, ones(init), x, y, jnp.float32(50.0))

    g = jax.grad(cross_entropy)(init, x, y)
    # 50% kept: hidden 24 -> 12; output at half the rate (25% of 18 = 4.5, rounded to even) -> 14.
    for name, k in (("Dense_0", 12), ("Dense_1", 14)):
        s = np.abs(np.asarray(g[name]["kernel"]) * init[name]["kernel"])
        np.testing.assert_array_equal(np.asarray(masks[name]["kernel"]), top_k(s, k), err_msg=name)
        assert np.asarray(masks[name]["bias"]).all()


def test_exact_survivor_counts_per_layer_with_the_output_layer_at_half_the_rate():
    init, (x, y) = draw_params(SIZES, seed=2), batch(1)
    rule = rules.SNIP()
    for value in (80.0, 51.3, 7.0):
        r = np.float32(1) - np.float32(value) / np.float32(100)
        expected = {"Dense_0": 24 - int(np.round(24 * r)), "Dense_1": 18 - int(np.round(18 * r * np.float32(0.5)))}
        assert rule.counts(NET, value=value) == expected
        masks = snip_level(init, None, ones(init), x, y, jnp.float32(value))
        assert {n: int(k.sum()) for n, k in kernels(masks).items()} == expected, value

    step, masks = one_round(rule), ones(init)
    for r in range(1, 4):
        new = step(init, None, masks, x, y)
        assert not np.any(kernels(new)["Dense_0"] & ~kernels(masks)["Dense_0"])  # the dead stay dead
        masks = new
        assert {n: int(k.sum()) for n, k in kernels(masks).items()} == rule.counts(NET, rounds=r)
    assert rule.counts(NET, rounds=3) == {"Dense_0": 12, "Dense_1": 13}  # 24 -> 19 -> 15 -> 12; 18 -> 16 -> 14 -> 13
    assert rule.value_after(3) == 51.2


def test_global_scope_pools_the_layers():
    """One threshold across layers: with the output layer's initial weights all larger, the 17
    survivors of 40% of 42 weights are all output weights, and the mask is global magnitude's."""
    init = draw_params(SIZES, seed=3)
    w = init["Dense_1"]["kernel"]
    init["Dense_1"]["kernel"] = np.sign(w) * (1 + np.abs(w))  # |w| >= 1 > every hidden |w| (at most 0.2)
    rule = rules.MagnitudeAtInit(scope="global")
    x, y = batch()
    masks = one_shot(rule)(init, None, ones(init), x, y, jnp.float32(40.0))
    assert {n: int(k.sum()) for n, k in kernels(masks).items()} == {"Dense_0": 0, "Dense_1": 17}
    assert rule.counts(NET, value=40.0) == {"Dense_0+Dense_1": 17}
    want = jax.jit(pruning.global_magnitude)(init, ones(init), jnp.float32(1) - jnp.float32(40.0) / 100)
    for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_score_of_the_trained_weights_magnitude_is_layerwise_magnitude_pruning_bit_for_bit():
    init, (x, y) = draw_params(SIZES, seed=4), batch()
    trained = jax.tree.map(lambda w: np.round(w * 20) / 20, draw_params(SIZES, seed=5))  # many ties
    partial = jax.jit(rules.LayerwiseMagnitude().step, static_argnums=0)(NET, trained, ones(trained))
    for twin, rule in ((rules.LayerwiseMagnitude(), TrainedMagnitude()),
                       (rules.GlobalMagnitude(), TrainedMagnitude(scope="global"))):
        level = jax.jit(lambda p, m, v, twin=twin: twin.to_level(NET, p, m, v))
        step = jax.jit(lambda p, m, twin=twin: twin.step(NET, p, m))
        for value in (64.0, 33.3):
            got = one_shot(rule, trained=True)(init, trained, ones(init), x, y, jnp.float32(value))
            assert _same(got, level(trained, ones(trained), jnp.float32(value)))
            assert rule.counts(NET, value=value) == twin.counts(NET, value=value)
        assert _same(one_round(rule, trained=True)(init, trained, partial, x, y), step(trained, partial))
        assert rule.counts(NET, rounds=4) == twin.counts(NET, rounds=4)


def _same(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.asarray(u).dtype == np.asarray(v).dtype and np.array_equal(u, v)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_by_score_of_abs_weights_is_magnitude_bit_for_bit_and_global_likewise():
    params = jax.tree.map(lambda w: np.round(w * 10) / 10, draw_params((7, 9, 5, 3), seed=6, bias_std=0.1))
    rng = np.random.default_rng(0)
    masks = jax.tree.map(lambda w: rng.random(w.shape) < 0.7, params)
    rates = pruning.layer_rates(params, 0.3, 0.15)
    for rate_tree in (rates, jax.tree.map(lambda r: r * 0 + 0.999, rates)):
        got = jax.jit(lambda p, m, r: pruning.by_score(jax.tree.map(jnp.abs, p), m, r))(params, masks, rate_tree)
        assert _same(got, jax.jit(pruning.magnitude)(params, masks, rate_tree))
    for rate in (0.3, 0.95):
        got = jax.jit(lambda p, m, r: pruning.global_by_score(jax.tree.map(jnp.abs, p), m, r))(params, masks, rate)
        assert _same(got, jax.jit(pruning.global_magnitude)(params, masks, rate))


def test_nan_scores_rank_lowest_and_rate_zero_leaves_keep_their_mask():
    scores = {"a": {"kernel": np.array([np.nan, 3.0, -np.inf, 1.0, 2.0], np.float32),
                    "bias": np.full(2, np.nan, np.float32)}}
    masks = {"a": {"kernel": np.array([True, True, True, True, False]), "bias": np.array([True, False])}}
    rates = {"a": {"kernel": np.float32(0.25), "bias": np.float32(0.0)}}
    got = pruning.by_score(scores, masks, rates)
    # 4 alive -> exactly 3 kept: NaN and -inf tie at the bottom of the alive ones, ties by index
    np.testing.assert_array_equal(got["a"]["kernel"], [True, True, False, True, False])
    got = pruning.by_score(scores, masks, {"a": {"kernel": np.float32(0.5), "bias": np.float32(0.0)}})
    np.testing.assert_array_equal(got["a"]["kernel"], [False, True, False, True, False])  # NaN and -inf go first
    np.testing.assert_array_equal(got["a"]["bias"], [True, False])
    got = pruning.global_by_score(scores, masks, 0.25)
    assert int(got["a"]["kernel"].sum()) == 3 and got["a"]["bias"] is masks["a"]["bias"]


def test_score_wraps_a_one_line_function_and_its_name_enters_the_hash():
    smallest = rules.Score("smallest-init", lambda ctx: jax.tree.map(lambda w: -jnp.abs(w), ctx.init))
    init, (x, y) = draw_params(SIZES, seed=7), batch()
    masks = one_shot(smallest)(init, None, ones(init), x, y, jnp.float32(50.0))
    np.testing.assert_array_equal(np.asarray(masks["Dense_0"]["kernel"]), top_k(-np.abs(init["Dense_0"]["kernel"]), 12))

    assert smallest.uses_context and smallest.hashed("oneshot") == {
        "rule": "smallest-init", "scope": "layerwise", "at_init": True, "batch_size": 100, "output_rate_factor": 0.5}
    assert smallest.hashed("iterative")["rate"] == 0.2
    other = rules.Score("largest-init", smallest.fn, scope="global", batch_size=32)
    assert other.hashed("oneshot") != smallest.hashed("oneshot")
    assert rules.SNIP().hashed("oneshot")["rule"] == "snip"
    assert rules.MagnitudeAtInit().name == "magnitudeatinit" and TrainedMagnitude().name == "trainedmagnitude"
    assert hash(smallest) != hash(other) and rules.SNIP() != rules.MagnitudeAtInit()
    with pytest.raises(ValueError, match="non-empty name"):
        rules.Score("", smallest.fn)


@pytest.mark.parametrize("make, match", [
    (lambda: rules.SNIP(rate=1.0), "rate must be in"),
    (lambda: rules.SNIP(output_rate_factor=2.0), "output_rate_factor"),
    (lambda: rules.SNIP(scope="pooled"), "scope must be one of"),
    (lambda: rules.SNIP(batch_size=0), "batch_size"),
    (lambda: rules.ScoreRule(), "defines no score"),
    (lambda: rules.MagnitudeAtInit(at_init=False), "at_init must be True"),
])
def test_bad_fields_are_refused_in_one_line(make, match):
    with pytest.raises(ValueError, match=match) as e:
        make()
    assert "\n" not in str(e.value)


def test_an_old_style_call_without_context_is_refused_in_one_line():
    init = draw_params(SIZES)
    for call in (lambda r: r.to_level(NET, init, ones(init), 50.0), lambda r: r.step(NET, init, ones(init))):
        with pytest.raises(ValueError, match="needs the runner's Context") as e:
            call(rules.SNIP())
        assert "\n" not in str(e.value)
    x, y = batch()
    with pytest.raises(ValueError, match="trained=None"):  # an at-init rule handed trained weights
        rules.SNIP().step_ctx(NET, context(init, ones(init), x, y, trained=init))


def test_to_level_ctx_runs_under_jit_of_vmap_over_three_networks_with_a_traced_value():
    rule = rules.SNIP()
    inits = draw_params(SIZES, seed=8, trials=3)
    xs, ys = (np.stack(a) for a in zip(*(batch(s) for s in range(3)), strict=True))
    values = jnp.array([80.0, 50.0, 20.0], jnp.float32)

    def one(init, x, y, key, value):
        return rule.to_level_ctx(NET, context(init, ones(init), x, y, key=key), value)

    stacked = jax.jit(jax.vmap(one))(inits, xs, ys, jax.random.split(jax.random.key(0), 3), values)
    for i, v in enumerate(np.asarray(values)):
        alone = snip_level(jax.tree.map(lambda a, i=i: a[i], inits), None, ones(draw_params(SIZES)), xs[i], ys[i],
                           jnp.float32(v))
        assert _same(jax.tree.map(lambda a, i=i: a[i], stacked), alone), v
        assert {n: int(k[i].sum()) for n, k in kernels(stacked).items()} == rule.counts(NET, value=float(v))
