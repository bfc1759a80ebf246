"""Masked training: a pruned weight is removed from the network for good (it is exactly 0 before
and after every step, whatever the optimiser), trials are independent, and a diverging trial is
flagged without touching its siblings.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax import datasets, masks, models, optimizers, pruning
from lth_jax.trainers import step as train_step

XOR_NET = models.xor_net(10)
MLP = models.MLP(hidden=(16,), outputs=3)
STEPS, BATCH, EVAL_EVERY = 200, 8, 20
LEARNING_RATE = {"sgd": 0.5, "momentum": 0.1, "adam": 0.02, "adam_tf1": 0.02}


def classification_data(n=256, seed=0):
    """A linearly separable 3-class problem on 8 features (stand-in for MNIST)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    y = np.argmax(x @ rng.standard_normal((8, 3)), axis=-1).astype(np.int32)
    return x, y


def sparse_mask(params, seed=0):
    """30% of each hidden kernel pruned at random, one bias entry per layer, and hidden unit 1
    entirely (the output layer otherwise intact, so every surviving unit gets gradient)."""
    rng = np.random.default_rng(seed)
    last = models.layer_names(params)[-1]
    mask = {name: {"kernel": (rng.random(leaf["kernel"].shape) < 0.7) | (name == last),
                   "bias": np.arange(leaf["bias"].shape[-1]) != 0}
            for name, leaf in params.items()}
    mask["Dense_0"]["kernel"][:, 1] = mask["Dense_0"]["bias"][1] = mask["Dense_1"]["kernel"][1, :] = False
    return mask


def poison_pruned(params, mask):
    """Large values in every pruned position: training must start from (and keep) zeros there."""
    return jax.tree.map(lambda p, m: np.where(m, p, np.float32(3.0)), params, mask)


@functools.cache
def compiled(kind, opt, batched=False):
    """One compile per (trainer, optimiser, vmapped or not), shared by every spec here.

    Full batch: ``(params, masks, data)`` on the XOR net. Mini-batch:
    ``(params, masks, key, train_data, test_data)`` on a small MLP; vmapped, each trial has its
    own params, masks, key and training set, and all share the test set."""
    optimizer = train_step.make_optimizer(opt, LEARNING_RATE[opt])
    if kind == "full_batch":
        fn = train_step.full_batch(train_step.sigmoid_bce(XOR_NET.apply), optimizer, STEPS)
        return jax.jit(jax.vmap(fn, in_axes=(0, 0, None)) if batched else fn)
    fn = train_step.minibatch(train_step.softmax_ce(MLP.apply), train_step.accuracy(MLP.apply), optimizer, STEPS,
                              BATCH, EVAL_EVERY)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, 0, None)) if batched else fn)


def run_alone(kind, opt, params, mask, key):
    if kind == "full_batch":
        return jax.device_get(compiled(kind, opt)(params, mask, datasets.xor_points()))
    data = classification_data()
    return jax.device_get(compiled(kind, opt)(params, mask, key, data, data))


SIZES = {"full_batch": [2, 10, 1], "minibatch": [8, 16, 3]}


@pytest.mark.parametrize("opt", optimizers.NAMES)
@pytest.mark.parametrize("kind", ["full_batch", "minibatch"])
def test_pruned_weights_stay_exactly_zero_and_survivors_train(kind, opt, params_like):
    params = params_like(SIZES[kind], seed=1, std=0.5, bias_std=0.1)
    mask = sparse_mask(params)
    trained, _ = run_alone(kind, opt, poison_pruned(params, mask), mask, jax.random.key(0))
    chex.assert_tree_all_finite(trained)
    for (path, p), m, start in zip(jax.tree_util.tree_leaves_with_path(trained), jax.tree.leaves(mask),
                                   jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(p[~m], 0.0, err_msg=f"{opt}: pruned {jax.tree_util.keystr(path)} moved")
        if masks.is_kernel(path):
            # Survivors that feed or leave a live unit get gradient, so most of them must move.
            assert np.mean(p[m] != start[m]) > 0.5, f"{opt}: survivors of {jax.tree_util.keystr(path)} barely trained"


def test_no_optimiser_can_move_a_pruned_weight_even_one_that_perturbs_every_parameter(params_like):
    """Masking gradients is not enough in general: an optimiser may move weights with zero gradient
    (noise, weight decay of a nonzero value). Updates and weights are masked too."""
    noisy = optax.chain(optax.sgd(0.1), optax.add_noise(0.1, 0.0, 0))
    fn = jax.jit(train_step.full_batch(train_step.sigmoid_bce(XOR_NET.apply), noisy, 50))
    params = params_like([2, 10, 1], seed=6, std=0.5)
    mask = sparse_mask(params)
    trained, _ = jax.device_get(fn(poison_pruned(params, mask), mask, datasets.xor_points()))
    for p, m, start in zip(jax.tree.leaves(trained), jax.tree.leaves(mask), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(p[~m], 0.0)
        assert np.all(p[m] != start[m])  # the noise reached every survivor


def tree_at(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def test_vmapped_full_batch_trial_equals_the_same_trial_run_alone(params_like):
    """Trials of different widths (first_units) and inits, trained together, each give what they
    give alone (to 1e-6; on CPU with jax 0.10 it is in fact bitwise)."""
    params = params_like([2, 10, 1], seed=2, trials=4)
    widths = jnp.array([10, 6, 4, 2])
    mask = jax.device_get(jax.vmap(pruning.first_units, in_axes=(None, 0))(masks.ones_like(tree_at(params, 0)),
                                                                          widths))
    batched = jax.device_get(compiled("full_batch", "sgd", batched=True)(params, mask, datasets.xor_points()))
    for i in range(4):
        alone = run_alone("full_batch", "sgd", tree_at(params, i), tree_at(mask, i), None)
        chex.assert_trees_all_close(tree_at(batched, i), alone, atol=1e-6, rtol=0)


def test_vmapped_minibatch_trial_equals_the_same_trial_run_alone(params_like):
    """Each trial draws its own batches from its key; on CPU with jax 0.10 params and accuracies
    come out bitwise equal, the recorded losses within an ulp (a differently ordered mean)."""
    params = params_like(SIZES["minibatch"], seed=3, trials=3)
    mask = jax.tree.map(lambda *m: np.stack(m), *[sparse_mask(tree_at(params, i), seed=i) for i in range(3)])
    keys = jax.random.split(jax.random.key(0), 3)
    x, y = classification_data()
    batched = jax.device_get(compiled("minibatch", "sgd", batched=True)(
        params, mask, keys, (np.stack([x] * 3), np.stack([y] * 3)), (x, y)))
    for i in range(3):
        alone = run_alone("minibatch", "sgd", tree_at(params, i), tree_at(mask, i), keys[i])
        chex.assert_trees_all_close(tree_at(batched, i), alone, atol=1e-6, rtol=0)


def test_diverging_trial_is_flagged_and_frozen_while_its_sibling_is_unaffected(params_like):
    """Trial 0 is healthy; trial 1 starts with a NaN weight; trial 2's training set holds one NaN
    example, so it diverges at the first step whose batch draws it."""
    params = params_like(SIZES["minibatch"], seed=4, trials=3)
    params["Dense_0"]["kernel"][1, 0, 0] = np.nan
    mask = jax.device_get(masks.ones_like(params))
    x, y = classification_data()
    xs = np.stack([x, x, x])
    xs[2, 88] = np.nan  # an example this trial's key first draws mid-run (any step would do)
    keys = jax.random.split(jax.random.key(0), 3)
    run = compiled("minibatch", "sgd", batched=True)
    trained, curve = jax.device_get(run(params, mask, keys, (xs, np.stack([y, y, y])), (x, y)))

    # The healthy sibling never diverged, has a finite curve, and is the run it would be alone.
    assert curve.diverged_at[0] == -1
    assert np.all(np.isfinite(curve.accuracy[0])) and np.all(np.isfinite(curve.loss[0]))
    alone = run_alone("minibatch", "sgd", tree_at(params, 0), tree_at(mask, 0), keys[0])
    chex.assert_trees_all_close((tree_at(trained, 0), tree_at(curve, 0)), alone, atol=1e-6, rtol=0)

    # NaN weight: its very first loss is NaN; it never updates; every accuracy is NaN.
    assert curve.diverged_at[1] == 0
    assert np.all(np.isnan(curve.accuracy[1]))
    chex.assert_trees_all_equal(tree_at(trained, 1), tree_at(params, 1))

    # NaN example: flagged at the step that first drew it; evaluations before that step's block are
    # finite, all from it on are NaN; the weights are frozen at their last finite values.
    d = int(curve.diverged_at[2])
    assert 0 <= d < STEPS
    first_bad_eval = d // EVAL_EVERY
    assert np.all(np.isfinite(curve.accuracy[2, :first_bad_eval]))
    assert np.all(np.isnan(curve.accuracy[2, first_bad_eval:]))
    chex.assert_tree_all_finite(tree_at(trained, 2))


def test_full_batch_loss_curve_is_the_loss_before_each_step(params_like):
    params = params_like([2, 10, 1], seed=5, std=0.5)
    mask = sparse_mask(params)
    _, losses = run_alone("full_batch", "sgd", poison_pruned(params, mask), mask, None)
    assert losses.shape == (STEPS,)
    # Before the first step the network is the masked start (the poisoned pruned values play no part).
    loss_fn = train_step.sigmoid_bce(XOR_NET.apply)
    np.testing.assert_allclose(losses[0], loss_fn(masks.apply(params, mask), datasets.xor_points()), rtol=1e-6)
    assert losses[-1] < losses[0]


def test_bad_training_settings_are_rejected():
    with pytest.raises(ValueError, match="optimizer"):
        train_step.make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="multiple"):
        train_step.minibatch(train_step.softmax_ce(MLP.apply), train_step.accuracy(MLP.apply),
                             train_step.make_optimizer("sgd", 0.1), num_steps=250, batch_size=10, eval_every=100)
