"""The paper's procedure on networks the project does not ship: masks, pruning, controls and
connectivity work on any Flax params tree (conv kernels, user-named layers, nested modules), with
the layer order read from the model's forward pass.

Params are numpy draws in the shapes ``jax.eval_shape`` gives for ``module.init``: nothing is
compiled to build them.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import masks, models, pruning, transforms
from lth_jax.reproduction import analysis, connectivity


class ConvNet(nn.Module):
    """Two conv layers and a dense head (the README's example network)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.relu(nn.Conv(6, (3, 3))(x))
        return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))


class Named(nn.Module):
    """User names that sort against the call order: z_first runs before a_second."""

    def setup(self):
        self.z_first = nn.Dense(4)
        self.a_second = nn.Dense(1)

    def __call__(self, x):
        return self.a_second(nn.relu(self.z_first(x)))


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(8)(x))
        return nn.relu(nn.Dense(6)(x))


class InsideOut(nn.Module):
    """Flax numbers auto-names when a module is *constructed*: the outer Dense is Dense_0."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.relu(nn.Dense(3)(x)))


class Nested(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="head")(Encoder(name="encoder")(x))


IMAGE = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)
VECTOR = jax.ShapeDtypeStruct((1, 5), jnp.float32)
CONV_ORDER = (("Conv_0",), ("Conv_1",), ("head",))
NESTED_ORDER = (("encoder", "Dense_0"), ("encoder", "Dense_1"), ("head",))


def draw(module, sample, seed=0):
    """Params of ``module`` in the shapes its init gives, drawn with numpy (biases nonzero too)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), sample)["params"]
    return jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes)


# ------------------------------------------------------------------ layer order


def test_layer_order_follows_the_forward_pass_not_the_names():
    assert models.layer_order(Named(), VECTOR) == (("z_first",), ("a_second",))
    # Sorting names would put a_second first: the default order is only right for Flax auto-names.
    assert masks.layer_paths(draw(Named(), VECTOR)) == (("a_second",), ("z_first",))


def test_layer_order_follows_calls_even_where_flax_auto_names_do_not():
    assert models.layer_order(InsideOut(), VECTOR) == (("Dense_1",), ("Dense_0",))
    params = draw(InsideOut(), VECTOR)
    assert params["Dense_1"]["kernel"].shape == (5, 3)   # called first, on the inputs
    rates = pruning.layer_rates(params, 0.2, 0.1, order=models.layer_order(InsideOut(), VECTOR))
    assert float(rates["Dense_0"]["kernel"]) == pytest.approx(0.1)


def test_layer_order_of_a_conv_net_a_nested_model_and_the_papers_mlps():
    assert models.layer_order(ConvNet(), IMAGE) == CONV_ORDER
    assert models.layer_order(Nested(), VECTOR) == NESTED_ORDER
    assert models.layer_order(models.lenet(), jnp.zeros((1, 784))) == (("Dense_0",), ("Dense_1",), ("Dense_2",))


def test_default_order_is_natural_at_every_nesting_level_and_matches_flax_auto_names():
    deep = models.MLP(hidden=(3,) * 11, outputs=2)       # Dense_0 .. Dense_11: "Dense_10" sorts before "Dense_2"
    sample = jax.ShapeDtypeStruct((1, 4), jnp.float32)
    params = draw(deep, sample)
    assert masks.layer_paths(params) == models.layer_order(deep, sample)
    assert models.layer_names(params)[-3:] == ["Dense_9", "Dense_10", "Dense_11"]
    tree = {"b": {"Dense_10": {"kernel": 0}, "Dense_2": {"kernel": 0}}, "a_10": {"kernel": 0}, "a_9": {"kernel": 0}}
    assert masks.layer_paths(tree) == (("a_9",), ("a_10",), ("b", "Dense_2"), ("b", "Dense_10"))


def test_an_order_must_name_every_layer_once():
    params = draw(Nested(), VECTOR)
    assert masks.layer_paths(params, ["encoder/Dense_0", ("encoder", "Dense_1"), "head"]) == NESTED_ORDER
    for bad in (NESTED_ORDER[:2], NESTED_ORDER + (("tail",),), NESTED_ORDER + NESTED_ORDER[:1]):
        with pytest.raises(ValueError, match="every layer"):
            masks.layer_paths(params, bad)


def test_layers_are_reported_by_slash_joined_name():
    params = draw(Nested(), VECTOR)
    assert models.layer_names(params) == ["encoder/Dense_0", "encoder/Dense_1", "head"]
    assert models.param_counts(params) == {"encoder/Dense_0": 5 * 8, "encoder/Dense_1": 8 * 6, "head": 6 * 3}
    assert masks.kernel_paths(params)[0] == ("encoder", "Dense_0", "kernel")
    np.testing.assert_array_equal(masks.get(params, "encoder/Dense_1/bias"), params["encoder"]["Dense_1"]["bias"])


# ------------------------------------------------------------------ masks of any rank


def test_masks_and_kernel_density_on_conv_kernels():
    params = draw(ConvNet(), IMAGE)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    flags = {masks.layer_name(masks.keys(p)): masks.is_kernel(p) for p, _ in leaves}
    assert flags == {f"{layer}/{leaf}": leaf == "kernel" for layer in ("Conv_0", "Conv_1", "head")
                     for leaf in ("bias", "kernel")}
    assert params["Conv_1"]["kernel"].shape == (3, 3, 4, 6)
    m = masks.replace(masks.ones_like(params), {"Conv_1/kernel": lambda k: k.at[0].set(False)})
    weights = 3 * 3 * 1 * 4 + 3 * 3 * 4 * 6 + 8 * 8 * 6 * 10
    np.testing.assert_allclose(masks.kernel_density(m), (weights - 3 * 4 * 6) / weights, rtol=1e-6)
    np.testing.assert_array_equal(masks.apply(params, m)["Conv_1"]["kernel"][0], 0.0)


# ------------------------------------------------------------------ weight pruning


def test_layer_rates_give_the_output_rate_to_the_inferred_or_named_output_layer():
    conv = pruning.layer_rates(draw(ConvNet(), IMAGE), 0.2, 0.1)          # default order ends at "head"
    chex.assert_trees_all_close(conv, {name: {"kernel": 0.1 if name == "head" else 0.2, "bias": 0.0}
                                       for name in ("Conv_0", "Conv_1", "head")})
    named = draw(Named(), VECTOR)
    order = models.layer_order(Named(), VECTOR)
    expected = {"z_first": {"kernel": 0.2, "bias": 0.0}, "a_second": {"kernel": 0.1, "bias": 0.0}}
    chex.assert_trees_all_close(pruning.layer_rates(named, 0.2, 0.1, order=order), expected)
    chex.assert_trees_all_close(pruning.layer_rates(named, 0.2, 0.1, output="a_second"), expected)
    nested = pruning.layer_rates(draw(Nested(), VECTOR), 0.2, 0.1, output=("head",))
    assert float(nested["head"]["kernel"]) == pytest.approx(0.1)
    assert float(nested["encoder"]["Dense_1"]["kernel"]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="not a layer"):
        pruning.layer_rates(named, 0.2, 0.1, output="encoder")


def test_magnitude_pruning_keeps_exact_counts_of_the_largest_weights_in_each_conv_kernel():
    params = draw(ConvNet(), IMAGE, seed=1)
    prune = jax.jit(lambda p, m, rate: pruning.magnitude(p, m, pruning.layer_rates(p, rate, rate / 2)))
    mask = masks.ones_like(params)
    for _ in range(2):
        new = jax.device_get(prune(params, mask, 0.3))
        for name in ("Conv_0", "Conv_1", "head"):
            old_k, new_k, w = np.asarray(mask[name]["kernel"]), new[name]["kernel"], np.abs(params[name]["kernel"])
            rate = 0.15 if name == "head" else 0.3
            assert new_k.shape == w.shape
            assert old_k.sum() - new_k.sum() == round(old_k.sum() * rate), name
            assert w[new_k].min() >= w[old_k & ~new_k].max(), f"{name}: a larger weight was pruned first"
            assert new[name]["bias"].all()
        mask = new


# ------------------------------------------------------------------ units


def test_unit_pruning_on_user_named_layers_follows_the_given_order():
    params = draw(Named(), VECTOR, seed=2)
    order = models.layer_order(Named(), VECTOR)
    as_mlp = {"Dense_0": params["z_first"], "Dense_1": params["a_second"]}
    full, full_mlp = masks.ones_like(params), masks.ones_like(as_mlp)
    for heuristic in pruning.HEURISTICS:
        np.testing.assert_array_equal(pruning.unit_scores(params, full, heuristic, order=order),
                                      pruning.unit_scores(as_mlp, full_mlp, heuristic))
        np.testing.assert_array_equal(pruning.unit_scores(params, full, heuristic, "z_first", order=order),
                                      pruning.unit_scores(as_mlp, full_mlp, heuristic))
        cut = pruning.units(params, full, 2, heuristic, order=order)
        ref = pruning.units(as_mlp, full_mlp, 2, heuristic)
        chex.assert_trees_all_equal(cut, {"z_first": ref["Dense_0"], "a_second": ref["Dense_1"]})
    two = pruning.first_units(full, 2, order=order)
    np.testing.assert_array_equal(pruning.alive_units(two, order=order), [True, True, False, False])
    np.testing.assert_array_equal(two["z_first"]["kernel"], np.arange(4) < 2 + np.zeros((5, 1)))
    np.testing.assert_array_equal(two["a_second"]["kernel"][:, 0], np.arange(4) < 2)
    assert two["a_second"]["bias"].all()
    # Without the order, names sort a_second first: its one unit feeds nothing and is not z_first's.
    with pytest.raises(ValueError, match="do not feed"):
        pruning.first_units(full, 2)


def test_units_of_a_conv_layer_are_its_output_channels_feeding_the_next_conv():
    params = draw(ConvNet(), IMAGE, seed=3)
    full = masks.ones_like(params)
    w_in, w_out = np.abs(params["Conv_0"]["kernel"]), np.abs(params["Conv_1"]["kernel"])   # (3,3,1,4), (3,3,4,6)
    np.testing.assert_allclose(pruning.unit_scores(params, full, "input"), w_in.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(pruning.unit_scores(params, full, "output"), w_out.sum(axis=(0, 1, 3)), rtol=1e-6)
    cut = jax.device_get(pruning.units(params, full, 1, "input"))
    gone = int(np.argmin(w_in.mean(axis=(0, 1, 2))))
    assert not cut["Conv_0"]["kernel"][..., gone].any() and not cut["Conv_0"]["bias"][gone]
    assert not cut["Conv_1"]["kernel"][:, :, gone, :].any()
    assert cut["Conv_1"]["kernel"].sum() == 3 * 3 * 3 * 6 and cut["head"]["kernel"].all()
    # Conv_1's channels are flattened with the positions into head's inputs: not a unit chain.
    with pytest.raises(ValueError, match="do not feed"):
        pruning.units(params, full, 1, "output", layer="Conv_1")


# ------------------------------------------------------------------ controls


def test_ticket_and_controls_on_a_conv_net_keep_each_kernels_survivor_count():
    init, trained = draw(ConvNet(), IMAGE, seed=4), draw(ConvNet(), IMAGE, seed=5)
    mask = jax.device_get(pruning.magnitude(trained, masks.ones_like(trained), pruning.layer_rates(trained, 0.5)))
    ticket, _ = transforms.rewind(init, mask)
    shuffled, new_mask = jax.device_get(jax.jit(transforms.shuffle)(jax.random.key(0), init, mask))
    for name in ("Conv_0", "Conv_1", "head"):
        m, k = mask[name]["kernel"], init[name]["kernel"]
        np.testing.assert_array_equal(np.asarray(ticket[name]["kernel"])[m], k[m])
        assert new_mask[name]["kernel"].sum() == m.sum()
        np.testing.assert_array_equal(np.sort(shuffled[name]["kernel"][new_mask[name]["kernel"]]), np.sort(k[m]))
        np.testing.assert_array_equal(new_mask[name]["bias"], mask[name]["bias"])


# ------------------------------------------------------------------ connectivity and analysis


def test_footnote_7_and_figure_9_on_a_nested_model_match_the_flat_mlp():
    rng = np.random.default_rng(6)
    params = draw(Nested(), VECTOR)
    nested = jax.tree.map(lambda p: rng.random(p.shape) < 0.3, params)
    flat = {f"Dense_{i}": masks.get(nested, path) for i, path in enumerate(NESTED_ORDER)}
    names = {"Dense_0": "encoder/Dense_0", "Dense_1": "encoder/Dense_1", "Dense_2": "head"}
    out, ref = connectivity.remove_disconnected(nested), connectivity.remove_disconnected(flat)
    for i, path in enumerate(NESTED_ORDER):
        chex.assert_trees_all_equal(masks.get(out, path), ref[f"Dense_{i}"])
    counts = analysis.sorted_incoming(nested, order=NESTED_ORDER)
    assert list(counts) == list(names.values())
    for flat_name, name in names.items():
        np.testing.assert_array_equal(counts[name], analysis.sorted_incoming(flat)[flat_name])
    values = analysis.survivor_initial_values(params, nested)
    np.testing.assert_array_equal(values["encoder/Dense_1"],
                                  params["encoder"]["Dense_1"]["kernel"][nested["encoder"]["Dense_1"]["kernel"]])
