"""The paper's networks (section 2's XOR net, section 3.1's LeNet): ReLU's slope at exactly 0 as
a field of the module, and the XOR sweep's trial-axis-last fast path as one library function that
computes what ``MLP.apply`` computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import datasets, models

X, Y = datasets.xor_points()
EPS = np.finfo(np.float32).eps


def trials_last(sizes, trials, seed=0, std=0.5, bias_std=0.1):
    """A stack of ``trials`` MLPs (layer widths ``sizes``), every leaf ending in the trial axis."""
    rng = np.random.default_rng(seed)
    return {f"Dense_{i}": {"kernel": rng.normal(0, std, (a, b, trials)).astype(np.float32),
                           "bias": rng.normal(0, bias_std, (b, trials)).astype(np.float32)}
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))}


def stored_formula(params, x, act):
    """The 2-H-1 forward pass that computed the stored XOR sweep, operation by operation."""
    k, b = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    h = act(x[:, 0].reshape((-1,) + (1,) * b.ndim) * k[0] + x[:, 1].reshape((-1,) + (1,) * b.ndim) * k[1] + b)
    return jnp.sum(h * params["Dense_1"]["kernel"][:, 0], axis=1) + params["Dense_1"]["bias"][0]


# ------------------------------------------------------------------ ReLU's derivative at 0


@pytest.mark.parametrize("slope", [0.0, 0.5, 1.0])
def test_relu_has_the_chosen_derivative_at_exactly_zero_and_is_relu_elsewhere(slope):
    z = jnp.array([-1.0, 0.0, 2.0])
    act = models.relu(slope)
    np.testing.assert_array_equal(act(z), [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(jax.vmap(jax.grad(act))(z), [0.0, slope, 1.0])


def test_slope_zero_is_jax_nn_relu_itself():
    """So LeNet and every stored MNIST number are computed exactly as before the field existed."""
    assert models.relu(0.0) is jax.nn.relu
    assert models.MLP(hidden=(3,), outputs=1).relu_grad_at_zero == 0.0


@pytest.mark.parametrize("slope", [0.0, 1.0])
def test_xor_net_slope_decides_whether_input_00_moves_the_hidden_biases(params_like, slope):
    """Zero biases put every hidden unit at exactly 0 on input (0, 0): its gradient flows through
    ReLU'(0) alone (section 2's XOR net, trained from zero biases)."""
    params = params_like([2, 4, 1], seed=1)
    net = models.xor_net(4, relu_grad_at_zero=slope)
    grad = jax.grad(lambda p: net.apply({"params": p}, X[:1]).sum())(params)
    expected = slope * params["Dense_1"]["kernel"][:, 0]
    np.testing.assert_array_equal(grad["Dense_0"]["bias"], expected)


# ------------------------------------------------------------------ the trial-axis-last fast path


@pytest.mark.parametrize("slope", [0.0, 1.0])
@pytest.mark.parametrize("hidden", [10, 2])
def test_fast_path_is_the_xor_sweeps_network_bit_for_bit_forward_and_backward(hidden, slope):
    params = trials_last([2, hidden, 1], trials=64, seed=hidden)
    fast = jax.jit(lambda p: models.mlp_logits_trials_last(p, X, slope))(params)
    assert fast.shape == (4, 1, 64)
    np.testing.assert_array_equal(fast[:, 0], jax.jit(lambda p: stored_formula(p, X, models.relu(slope)))(params))

    def loss(p):   # the sweep's sigmoid cross-entropy, summed over trials
        z = models.mlp_logits_trials_last(p, X, slope)[:, 0]
        return jnp.sum(jnp.mean(jax.nn.softplus(z) - Y[:, None] * z, axis=0))

    ours = jax.jit(jax.grad(loss))(params)
    def stored_loss(p):  # the stored sweep's loss, written with the frozen formula
        z = stored_formula(p, X, models.relu(slope))
        return jnp.sum(jnp.mean(jax.nn.softplus(z) - Y[:, None] * z, axis=0))

    theirs = jax.jit(jax.grad(stored_loss))(params)
    jax.tree.map(np.testing.assert_array_equal, ours, theirs)
    assert np.any(np.asarray(ours["Dense_0"]["kernel"]) != 0)


def summation_bound(params, x):
    """Worst-case difference of two summation orders (float64 reference): a layer summing n
    products differs by at most 2 (n - 1) eps sum |terms|, plus what it inherits from below."""
    h = np.asarray(x, np.float64)[:, :, None]                     # (rows, in, trials)
    err = np.zeros_like(h)
    names = sorted(params, key=lambda n: int(n.split("_")[1]))
    for i, name in enumerate(names):
        k = np.asarray(params[name]["kernel"], np.float64)
        terms = h[:, :, None, :] * k[None]                          # (rows, in, out, trials)
        scale = np.abs(terms).sum(1) + np.abs(params[name]["bias"])
        err = (err[:, :, None, :] * np.abs(k)[None]).sum(1) + 2 * max(k.shape[0] - 1, 1) * EPS * scale
        z = terms.sum(1) + params[name]["bias"]
        h = np.maximum(z, 0) if i < len(names) - 1 else z
    return err


@pytest.mark.parametrize("sizes", [[2, 10, 1], [2, 8, 6, 3]])
def test_fast_path_equals_mlp_apply_of_each_trial_up_to_summation_order(sizes):
    params = trials_last(sizes, trials=256, seed=len(sizes))
    net = models.MLP(hidden=tuple(sizes[1:-1]), outputs=sizes[-1])
    per_trial = jax.jit(jax.vmap(lambda p: net.apply({"params": p}, X), in_axes=-1, out_axes=-1))(params)
    fast = jax.jit(lambda p: models.mlp_logits_trials_last(p, X))(params)
    assert fast.shape == per_trial.shape == (4, sizes[-1], 256)
    diff = np.abs(np.asarray(fast, np.float64) - np.asarray(per_trial, np.float64))
    assert np.all(diff <= summation_bound(params, X))
    # The hidden layer alone: products with XOR's inputs 0 and 1 are exact, so no difference at all.
    first = {"Dense_0": params["Dense_0"]}
    alone = models.MLP(hidden=(), outputs=sizes[1])
    np.testing.assert_array_equal(
        jax.jit(lambda p: models.mlp_logits_trials_last(p, X))(first),
        jax.jit(jax.vmap(lambda p: alone.apply({"params": p}, X), in_axes=-1, out_axes=-1))(first))


def test_fast_path_without_a_trial_axis_is_one_network(params_like):
    params = params_like([2, 5, 1], seed=2, bias_std=0.1)
    out = models.mlp_logits_trials_last(params, X)
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out, models.xor_net(5).apply({"params": params}, X), rtol=1e-6, atol=1e-7)
