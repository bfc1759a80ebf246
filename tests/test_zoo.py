"""The model zoo: the conv nets of the lottery-ticket papers have the published sizes, train a
step, and prune each kind of layer at its own rate (the kind read from the kernel, not the name)."""

from __future__ import annotations

import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax import contract, masks, pruning, rules, runner, zoo
from lth_jax.reproduction import published


def weights(model: nn.Module, kernels_only: bool = True) -> int:
    shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3))), jax.random.key(0))["params"]
    return sum(math.prod(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(shapes)
               if not kernels_only or path[-1].key == "kernel")


@pytest.mark.parametrize("name", sorted(published.ZOO_WEIGHTS))
def test_each_model_has_the_weight_count_its_paper_prints(name):
    printed, _ = published.ZOO_WEIGHTS[name]
    if name == "conv6":  # the ICLR table's Conv-6 entry disagrees with its own architecture column
        assert weights(zoo.get(name)) == 64 * 27 + 64 * 576 + 128 * 576 + 128 * 1152 + 256 * 1152 + 256 * 2304 \
            + 4096 * 256 + 256 * 256 + 256 * 10
        return
    # the printed figures are rounded to 2 significant digits (0.27M, 4.3M, 20.0M)
    assert weights(zoo.get(name), kernels_only=False) == pytest.approx(printed, rel=0.02)


def test_the_vgg_and_resnet_counts_are_those_of_open_lth():
    assert weights(zoo.get("vgg19_bn"), kernels_only=False) == 20_035_018
    assert weights(zoo.get("resnet20"), kernels_only=False) == 272_474
    assert weights(zoo.get("resnet56"), kernels_only=False) == 855_770


def test_an_unknown_model_or_depth_is_one_line():
    with pytest.raises(ValueError, match="model must be one of"):
        zoo.get("vgg13")
    with pytest.raises(ValueError, match="6n \\+ 2"):
        zoo.ResNet(depth=21)


# One model a family in the suite (a deep model's step compiles for half a minute on 2 cores);
# LTH_FULL_ZOO=1 runs every model of the zoo (WORKSPACE.md records that run).
STEPPED = zoo.NAMES if os.environ.get("LTH_FULL_ZOO") else ("conv2", "vgg11_bn", "resnet20")


@pytest.mark.parametrize("name", STEPPED)
def test_every_model_takes_one_masked_training_step(name):
    """Through the training contract: BatchNorm statistics are model state, masks stay exact."""
    module = zoo.get(name)
    spec = contract.describe(module, (32, 32, 3))
    variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    mask = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(0).random(p.shape) < 0.5) if p.ndim > 1
                        else jnp.ones(p.shape, bool), params)
    x = jnp.asarray(np.random.default_rng(1).random((4, 32, 32, 3), np.float32))
    y = jnp.arange(4) % 10

    def loss(p):
        flag = {"train": True} if spec.takes_train else {}
        out = module.apply({"params": masks.apply(p, mask), **state}, x, **flag, mutable=list(state) or False)
        logits = out[0] if state else out
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    g = jax.jit(jax.grad(loss))(params)
    stepped = jax.tree.map(lambda p, gr, m: (p - 0.1 * gr) * m, params, g, mask)
    assert bool(spec.collections) == (name.endswith("_bn") or name.startswith("resnet"))
    for leaf, m in zip(jax.tree.leaves(stepped), jax.tree.leaves(mask), strict=True):
        assert np.all(np.asarray(leaf)[~np.asarray(m)] == 0) and np.all(np.isfinite(np.asarray(leaf)))


def conv2_network() -> runner.Network:
    return runner.Network(zoo.ConvNet((8,), dense=(16,)), (32, 32, 3))


def test_a_round_prunes_convolutions_dense_layers_and_the_output_at_their_own_rates():
    """The later versions' rates: convolutions 10%, dense 20%, the output half of that."""
    net = conv2_network()
    rule = rules.LayerwiseMagnitude(rate=0.2, conv_rate=0.1)
    params = net.init(jax.random.key(0))
    kept = jax.jit(lambda p: rule.step(net, p, masks.ones_like(p)))(params)
    counts = rule.counts(net, rounds=1)
    for layer, n in net.weight_counts().items():
        alive = int(np.sum(masks.get(kept, layer)["kernel"]))
        assert alive == counts[layer]
        want = {"Conv_0": 0.9, "Conv_1": 0.9, "Dense_0": 0.8, "Dense_1": 0.9}[layer]
        assert alive == pytest.approx(n * want, abs=1)


def test_the_kind_comes_from_the_kernel_not_the_name():
    class Renamed(nn.Module):  # a convolution named like a dense layer, and the other way round
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), name="dense")(x))
            x = nn.relu(nn.Dense(8, name="conv")(x.reshape((x.shape[0], -1))))
            return nn.Dense(10, name="head")(x)

    net = runner.Network(Renamed(), (8, 8, 3))
    kinds = rules.LayerwiseMagnitude._kinds(net)
    assert kinds == {"dense": "conv", "conv": "dense", "head": "output"}
    assert pruning.layer_kind((3, 3, 3, 4)) == "conv" and pruning.layer_kind((64, 8)) == "dense"


def test_one_shot_levels_prune_convolutions_as_many_rounds_as_the_dense_layers():
    net = conv2_network()
    rule = rules.LayerwiseMagnitude(rate=0.2, conv_rate=0.1)
    params = net.init(jax.random.key(0))
    level = 100 * 0.8 ** 3  # three dense rounds
    kept = jax.jit(lambda p: rule.to_level(net, p, masks.ones_like(p), jnp.float32(level)))(params)
    conv = masks.get(kept, "Conv_1")["kernel"]
    assert np.mean(np.asarray(conv)) == pytest.approx(0.9 ** 3, abs=2 / conv.size)
    assert rule.counts(net, value=level) is None  # the convolutions' rate is computed in the program


def test_without_a_conv_rate_the_rule_and_its_hash_are_the_papers():
    net = conv2_network()
    params = net.init(jax.random.key(0))
    old, new = rules.LayerwiseMagnitude(), rules.LayerwiseMagnitude(conv_rate=None)
    assert old.hashed("iterative") == {"output_rate_factor": 0.5, "rate": 0.2}
    a, b = old.step(net, params, masks.ones_like(params)), new.step(net, params, masks.ones_like(params))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert rules.LayerwiseMagnitude(conv_rate=0.15).hashed("iterative")["conv_rate"] == 0.15


def test_global_pruning_leaves_the_excluded_kinds_and_layers_whole():
    net = conv2_network()
    params = net.init(jax.random.key(0))
    for exclude, whole in ((("output",), {"Dense_1"}), (("conv",), {"Conv_0", "Conv_1"}), (("Conv_0",), {"Conv_0"})):
        rule = rules.GlobalMagnitude(rate=0.5, exclude=exclude)
        kept = jax.jit(lambda p, rule=rule: rule.step(net, p, masks.ones_like(p)))(params)
        counts = net.weight_counts()
        pruned_total = sum(counts[n] for n in counts if n not in whole)
        for layer in counts:
            alive = int(np.sum(masks.get(kept, layer)["kernel"]))
            assert (alive == counts[layer]) == (layer in whole), (exclude, layer)
        assert sum(int(np.sum(masks.get(kept, n)["kernel"])) for n in counts if n not in whole) == \
            list(rule.counts(net, rounds=1).values())[0] == round(pruned_total * 0.5)
    with pytest.raises(ValueError, match="exclude names no layer or kind: fc9"):
        rules.GlobalMagnitude(exclude=("fc9",)).counts(net, rounds=1)
