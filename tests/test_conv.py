"""Conv nets over a stack of trials (lth_jax.conv, issue 20): the trial-batched convolution and the
max-pooling rewrite compute what the model says, for one network and under vmap, and the trainer's
fast layouts train what the stock layout trains."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import conv, runner, trainers


class SmallConv(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.relu(nn.Conv(4, (3, 3), strides=2)(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(3)(x.reshape((x.shape[0], -1)))


NET = SmallConv()
X = jnp.asarray(np.random.default_rng(0).random((6, 8, 8, 2)), jnp.float32)
PARAMS = jax.vmap(lambda k: NET.init(k, X)["params"])(jax.random.split(jax.random.key(0), 3))


def loss(p, x):
    return jnp.mean((NET.apply({"params": p}, x) - 1.0) ** 2)


def max_error(a, b) -> float:
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_one_network_s_loss_and_gradient_are_exactly_those_of_the_model_as_written():
    one = jax.tree.map(lambda a: a[0], PARAMS)
    want = jax.value_and_grad(loss)(one, X)
    for layout in conv.BATCHED:
        got = jax.value_and_grad(conv.rewrite(loss, layout))(one, X)
        assert max_error(want, got) == 0.0, layout


@pytest.mark.parametrize("layout", conv.BATCHED)
@pytest.mark.parametrize("shared", [True, False], ids=["shared batch", "own batches"])
def test_vmapped_trials_get_what_xla_s_batching_gives_to_float_rounding(layout, shared):
    xs = X if shared else jnp.stack([X + i for i in range(3)])
    axes = (0, None if shared else 0)
    want = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=axes))(PARAMS, xs)
    got = jax.jit(jax.vmap(jax.value_and_grad(conv.rewrite(loss, layout)), in_axes=axes))(PARAMS, xs)
    assert max_error(want, got) < 1e-5


def test_a_shared_input_is_one_wide_convolution_and_no_convolution_is_grouped():
    text = str(jax.make_jaxpr(jax.vmap(jax.grad(conv.rewrite(loss)), in_axes=(0, None)))(PARAMS, X))
    assert "feature_group_count=3" not in text  # XLA's batching would group the 3 trials
    assert "rhs:f32[3,3,2,12]" in text or "f32[3,3,2,12]" in text  # the first layer: 3 trials x 4 filters at once
    assert "select_and_scatter" not in text and "reduce_window" not in text  # max pooling as reshape + max


def test_groups_of_trials_sharing_a_batch_inside_a_vmap_over_groups():
    xs = jnp.stack([X, X + 1.0])
    grouped = jax.tree.map(lambda a: jnp.stack([a, a * 0.5]), PARAMS)  # 2 groups x 3 trials
    inner = (0, None)
    want = jax.jit(jax.vmap(jax.vmap(jax.value_and_grad(loss), in_axes=inner)))(grouped, xs)
    fn = jax.vmap(jax.vmap(jax.value_and_grad(conv.rewrite(loss)), in_axes=inner))
    assert max_error(want, jax.jit(fn)(grouped, xs)) < 1e-5  # jitted: one program each, not one per operation
    assert "feature_group_count=2" not in str(jax.make_jaxpr(fn)(grouped, xs))


def test_only_networks_that_convolve_or_pool_are_rewritten():
    assert conv.uses_convolutions(loss, jax.tree.map(lambda a: a[0], PARAMS), X)
    dense = nn.Dense(3)
    p = dense.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
    assert not conv.uses_convolutions(lambda q: dense.apply({"params": q}, jnp.ones((2, 4))), p)
    assert runner.Network(SmallConv(), (8, 8, 2)).contract().convolutional
    assert not runner.Network(dense, (4,)).contract().convolutional


def test_the_fast_layouts_train_what_the_stock_layout_trains_with_masks_exact():
    net = runner.Network(SmallConv(), (8, 8, 2))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.random((64, 8, 8, 2)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 64), jnp.int32)
    data = ((x, y), (x[:16], y[:16]))
    masks = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(2).random(p.shape) < 0.5) if p.ndim > 2 else
                         jnp.ones(p.shape, bool), PARAMS)
    paired = jnp.stack([jax.random.key(5)] * 2 + [jax.random.key(6)] * 1)  # two trials share a batch order
    outs = {}
    for layout in ("vmap", "unrolled", "grouped"):
        trainer = trainers.Minibatch("adam", 1e-3, 8, 20, 10, conv_layout=layout)
        outs[layout] = trainer(net, PARAMS, masks, paired, data)
    for layout in ("unrolled", "grouped"):
        assert max_error(outs["vmap"][0], outs[layout][0]) < 1e-4
        np.testing.assert_allclose(outs[layout][1]["curves/loss"], outs["vmap"][1]["curves/loss"], rtol=1e-4)
    for p, m in zip(jax.tree.leaves(outs["unrolled"][0]), jax.tree.leaves(masks), strict=True):
        assert np.all(np.where(np.asarray(m), 0.0, np.asarray(p)) == 0.0)  # pruned weights stay exactly 0


def test_a_bad_layout_is_refused_in_one_line():
    with pytest.raises(ValueError, match="conv_layout must be"):
        trainers.Minibatch(conv_layout="sideways")
    with pytest.raises(ValueError, match="steps_per_program"):
        trainers.Minibatch(iterations=100, eval_every=10, steps_per_program=3)
