"""Masked training: one pure step, and whole runs as a single ``lax.scan``.

Masks are applied to the gradients (so optimiser state never sees a pruned
weight), to the updates (so no optimiser can move one, e.g. via weight decay)
and to the weights after the update (so a pruned weight is exactly 0 before and
after every step). Everything here is per-trial; vmap it over a leading trial
axis to train many networks in one program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lth_jax import masks as masks_lib
from lth_jax import optimizers

PyTree = Any
LossFn = Callable[[PyTree, Any], jax.Array]
# (params, model_state, batch, key) -> (loss, new model_state)
StatefulLoss = Callable[[PyTree, PyTree, Any, jax.Array], tuple[jax.Array, PyTree]]
# (params, model_state, data) -> accuracy
StatefulEval = Callable[[PyTree, PyTree, Any], jax.Array]


def masked_step(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Callable:
    """``step(params, opt_state, masks, batch) -> (params, opt_state, loss)``."""

    def step(params, opt_state, masks, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        params, opt_state = _masked_update(optimizer, grads, opt_state, params, masks)
        return params, opt_state, loss

    return step


def stateful_step(loss_fn: StatefulLoss, optimizer: optax.GradientTransformation) -> Callable:
    """``step(params, opt_state, masks, model_state, batch, key) -> (params, opt_state, model_state, loss)``:
    :func:`masked_step` for a model with state (BatchNorm's statistics) and randomness (dropout).
    The state is never masked: it is not a weight."""

    def step(params, opt_state, masks, model_state, batch, key):
        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, model_state, batch, key)
        params, opt_state = _masked_update(optimizer, grads, opt_state, params, masks)
        return params, opt_state, model_state, loss

    return step


def _masked_update(optimizer: optax.GradientTransformation, grads: PyTree, opt_state: PyTree,
                   params: PyTree, masks: PyTree) -> tuple[PyTree, PyTree]:
    grads = masks_lib.apply(grads, masks)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, masks_lib.apply(updates, masks))
    return masks_lib.apply(params, masks), opt_state


def full_batch(loss_fn: LossFn, optimizer: optax.GradientTransformation, num_steps: int,
               unroll: int = 1, *, loss_every: int = 1, batched: bool = False,
               loss_takes_trials: bool = False) -> Callable:
    """``train(params, masks, data) -> (params, loss_curve)``: full-batch gradient
    descent for ``num_steps`` steps as one scan (the XOR setting).

    ``loss_curve`` is the training loss before each step (with ``loss_every=k``:
    before steps 0, k, 2k, ..., so a long run of many trials need not store
    every step).

    ``batched=True`` trains a whole stack of trials (params and masks with a
    leading trial axis, ``data`` shared; the curve gets a leading trial axis too)
    and gives the same numbers as ``jax.vmap`` of the unbatched trainer for
    per-coordinate optimisers (SGD, momentum, Adam; not ones that mix trials,
    such as global-norm clipping or shared noise). It exists for speed: inside,
    the trial axis is laid out last, so each elementwise op and each reduction
    over a tiny layer runs as one vector loop across trials. ``loss_takes_trials=True``
    says ``loss_fn`` already accepts params whose leaves end in the trial axis and
    returns one loss per trial (written with broadcasting, as the XOR sweep's loss
    is); it is then called as is instead of through ``jax.vmap``, whose batching
    rules would put transposes into every step. For the 2-10-1 XOR net on a CPU
    the two together train 2-4x as many trial-steps per second as vmap.
    """
    if loss_every < 1 or num_steps % loss_every:
        raise ValueError(f"num_steps={num_steps} must be a positive multiple of loss_every={loss_every}")

    if loss_takes_trials and not batched:
        raise ValueError("loss_takes_trials=True needs batched=True")
    if batched:
        per_trial = loss_fn if loss_takes_trials else jax.vmap(loss_fn, in_axes=(-1, None))

        def step(params, opt_state, masks, batch):
            # A vjp with unit cotangents gives every trial its own gradient with no
            # reduction across trials (a sum-of-losses would add one per step).
            loss, vjp = jax.vjp(lambda p: per_trial(p, batch), params)
            (grads,) = vjp(jnp.ones_like(loss))
            params, opt_state = _masked_update(optimizer, grads, opt_state, params, masks)
            return params, opt_state, loss
    else:
        step = masked_step(loss_fn, optimizer)

    def run(params, masks, data):
        params = masks_lib.apply(params, masks)

        def one(carry, _):
            p, s, loss = step(*carry, masks, data)
            return (p, s), loss

        def block(carry, _):
            # Only the loss before the block's first step is kept.
            p, s, first = step(*carry, masks, data)
            (p, s), _ = jax.lax.scan(lambda c, x: (one(c, x)[0], None), (p, s), None,
                                     length=loss_every - 1, unroll=unroll)
            return (p, s), first

        body, length = (one, num_steps) if loss_every == 1 else (block, num_steps // loss_every)
        (params, _), losses = jax.lax.scan(body, (params, optimizer.init(params)), None, length=length,
                                           unroll=unroll if loss_every == 1 else 1)
        return params, losses

    if not batched:
        return run

    def train(params, masks, data):
        last = lambda tree: jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), tree)  # noqa: E731
        params, losses = run(last(params), last(masks), data)
        return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), params), jnp.moveaxis(losses, -1, 0)

    return train


class Curve(NamedTuple):
    """What a mini-batch run records (per trial)."""

    accuracy: jax.Array      # (num_evals,) test accuracy after every eval_every steps
    loss: jax.Array          # (num_evals,) training loss of the last batch before each eval
    diverged_at: jax.Array   # int32: first step whose loss was NaN/inf, or -1


NEVER = 2**31 - 1  # a stop step no training reaches (the largest int32)


class TrainState(NamedTuple):
    """Where a mini-batch run stands between segments (per trial)."""

    params: PyTree
    opt_state: PyTree
    diverged_at: jax.Array   # int32: first step whose loss was NaN/inf, or -1
    step: jax.Array          # int32: steps taken so far (batches are keyed on it)
    stop_at: jax.Array = NEVER  # int32: from this step on the trial is frozen (stopped at convergence)
    model_state: PyTree = None  # the module's other collections (batch_stats, ...); None: it has none


def start(optimizer: optax.GradientTransformation, params: PyTree, masks: PyTree,
          model_state: PyTree = None) -> TrainState:
    """The state before the first step: masked params, fresh optimiser state, step 0, never stopped."""
    params = masks_lib.apply(params, masks)
    return TrainState(params, optimizer.init(params), jnp.int32(-1), jnp.int32(0), jnp.int32(NEVER), model_state)


def stateless(loss_fn: LossFn, eval_fn: Callable[[PyTree, Any], jax.Array]) -> tuple[StatefulLoss, StatefulEval]:
    """A model without state or randomness in the form :func:`minibatch_segment` takes."""
    return (lambda params, state, batch, key: (loss_fn(params, batch), state),
            lambda params, state, data: eval_fn(params, data))


def minibatch_segment(loss_fn: LossFn | StatefulLoss, eval_fn: Callable, optimizer: optax.GradientTransformation,
                      num_steps: int, batch_size: int, eval_every: int, *, stateful: bool = False) -> Callable:
    """``segment(state, masks, key, train_data, test_data) -> (state, Curve)``: ``num_steps``
    more steps of :func:`minibatch` from ``state`` (see :func:`start`).

    Running a long training as several segments gives exactly the same result as
    one call (batches depend on ``key`` and the global step only), so a driver can
    report progress between segments while each segment stays one compiled program.
    From step ``state.stop_at`` on a trial is frozen: its weights and optimiser state no
    longer change (a driver stops trials that have converged this way, between segments).

    ``stateful=True``: ``loss_fn(params, model_state, batch, key) -> (loss, model_state)`` and
    ``eval_fn(params, model_state, test_data)`` (:func:`lth_jax.model.Model.losses`); the step
    of ``t`` gets the key ``fold_in(key, t)`` that draws its batch, from which the model derives
    its own streams. Otherwise ``loss_fn(params, batch)`` and ``eval_fn(params, test_data)``.
    """
    if num_steps % eval_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of eval_every={eval_every}")
    if not stateful:
        loss_fn, eval_fn = stateless(loss_fn, eval_fn)
    step = stateful_step(loss_fn, optimizer)

    def segment(state, masks, key, train_data, test_data):
        one_step = _one_step(step, state, masks, key, train_data, batch_size)

        def one_eval(carry, e):
            ts = state.step + e * eval_every + jnp.arange(eval_every)
            carry, losses = jax.lax.scan(one_step, carry, ts)
            acc = eval_fn(carry[0], carry[2], test_data)
            acc = jnp.where(carry[3] < 0, acc, jnp.nan)
            return carry, (acc, losses[-1])

        init = (state.params, state.opt_state, state.model_state, state.diverged_at)
        (params, opt_state, model_state, diverged_at), (acc, loss) = jax.lax.scan(
            one_eval, init, jnp.arange(num_steps // eval_every))
        return (TrainState(params, opt_state, diverged_at, state.step + num_steps, state.stop_at, model_state),
                Curve(acc, loss, diverged_at))

    return segment


def _one_step(step: Callable, state: TrainState, masks: PyTree, key: jax.Array, train_data: Any,
              batch_size: int) -> Callable:
    """``one_step((params, opt_state, model_state, diverged_at), t) -> (carry, loss)``: step ``t`` on
    the batch drawn from ``fold_in(key, t)``; a diverged or stopped trial keeps its values."""
    # jnp, so host (numpy) data can be indexed by the traced batch indices.
    x_all, y_all = jnp.asarray(train_data[0]), jnp.asarray(train_data[1])
    n = x_all.shape[0]

    def one_step(carry, t):
        p, s, ms, diverged_at = carry
        step_key = jax.random.fold_in(key, t)
        idx = jax.random.randint(step_key, (batch_size,), 0, n)
        new_p, new_s, new_ms, loss = step(p, s, masks, ms, (x_all[idx], y_all[idx]), step_key)
        live = t < state.stop_at
        bad = ~jnp.isfinite(loss)
        diverged_at = jnp.where((diverged_at < 0) & bad & live, t, diverged_at)
        ok = (diverged_at < 0) & live
        keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(ok, x, y), a, b)  # noqa: E731
        return (keep(new_p, p), keep(new_s, s), keep(new_ms, ms), diverged_at), loss

    return one_step


def minibatch_steps(loss_fn: StatefulLoss, eval_fn: StatefulEval, optimizer: optax.GradientTransformation,
                    num_steps: int, batch_size: int) -> tuple[Callable, Callable]:
    """``(advance, evaluate)``, the pieces of :func:`minibatch_segment` for a driver that loops in
    Python: ``advance(state, masks, key, train_data, first) -> (state, loss)`` takes ``num_steps`` steps
    from step ``first`` (the driver's count: every trial of a program is at the same step, and a
    step number shared by the trials lets trials that share a key share their batch too),
    written out one after another (no loop in the program: XLA's CPU backend runs a convolution
    inside a while loop several times slower, benchmarks/conv_throughput.py), ``loss`` that of
    the last; ``evaluate(state, test_data)`` is the test accuracy, NaN once diverged. Batches and
    rng streams are those of :func:`minibatch_segment` (they depend on the key and step only)."""
    step = stateful_step(loss_fn, optimizer)

    def advance(state, masks, key, train_data, first):
        one_step = _one_step(step, state, masks, key, train_data, batch_size)
        carry = (state.params, state.opt_state, state.model_state, state.diverged_at)
        (params, opt_state, model_state, diverged_at), losses = jax.lax.scan(
            one_step, carry, first + jnp.arange(num_steps), unroll=num_steps)
        return state._replace(params=params, opt_state=opt_state, model_state=model_state, diverged_at=diverged_at,
                              step=state.step + num_steps), losses[-1]

    def evaluate(state, test_data):
        return jnp.where(state.diverged_at < 0, eval_fn(state.params, state.model_state, test_data), jnp.nan)

    return advance, evaluate


def minibatch(loss_fn: LossFn, eval_fn: Callable[[PyTree, Any], jax.Array],
              optimizer: optax.GradientTransformation, num_steps: int, batch_size: int,
              eval_every: int) -> Callable:
    """``train(params, masks, key, train_data, test_data) -> (params, Curve)``.

    The whole dataset stays on the device; each step draws ``batch_size``
    examples uniformly at random inside the compiled program (no host round
    trip). A trial whose loss goes non-finite stops updating from that step on
    and reports the step, so it cannot poison anything else in the program.
    """
    segment = minibatch_segment(loss_fn, eval_fn, optimizer, num_steps, batch_size, eval_every)

    def train(params, masks, key, train_data, test_data):
        state, curve = segment(start(optimizer, params, masks), masks, key, train_data, test_data)
        return state.params, curve

    return train


def sigmoid_bce(apply_fn: Callable) -> LossFn:
    """Mean binary cross-entropy of a one-logit network, computed from logits."""

    def loss(params, batch):
        x, y = batch
        logits = apply_fn({"params": params}, x)[..., 0]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

    return loss


def softmax_ce(apply_fn: Callable) -> LossFn:
    """Mean softmax cross-entropy against integer labels."""

    def loss(params, batch):
        x, y = batch
        logits = apply_fn({"params": params}, x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return loss


def accuracy(apply_fn: Callable) -> Callable[[PyTree, Any], jax.Array]:
    """Fraction of ``(x, y)`` classified correctly (argmax of the logits)."""

    def acc(params, data):
        x, y = data
        return jnp.mean(jnp.argmax(apply_fn({"params": params}, x), axis=-1) == y)

    return acc


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9) -> optax.GradientTransformation:
    """The optimisers the experiments offer by name (:func:`lth_jax.optimizers.make`)."""
    return optimizers.make(name, learning_rate, momentum=momentum)

