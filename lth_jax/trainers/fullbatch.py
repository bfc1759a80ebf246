"""The full-batch trainer (XOR, section 2): many small MLPs, the trial axis laid out last.

:class:`FullBatch` trains full-batch (or stochastic) steps on a small dataset inside
(:func:`lth_jax.trainers.step.full_batch`), in fixed-size chunks of trials, and returns each trial's
final logits.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lth_jax import devices, models, optimizers, store
from lth_jax import masks as masks_lib
from lth_jax.store import ondisk
from lth_jax.trainers import step as train_step
from lth_jax.trainers.minibatch import positive

PyTree = Any

@dataclasses.dataclass(frozen=True)
class FullBatch:
    """Full-batch training of many small MLPs (the paper's XOR: 10,000 iterations), one compiled
    program of ``chunk`` stacked trials; outputs the final ``logits`` (T, examples).

    The network must be a :class:`lth_jax.models.MLP`: inside, the trial axis is laid out last
    and the forward pass is :func:`lth_jax.models.mlp_logits_trials_last`, the same function
    as ``MLP.apply`` (tested), 2-4x as many trial-steps per second as ``vmap`` on a CPU.
    """

    optimizer: str = "adam"
    lr: float = 0.001
    iterations: int = 10_000
    loss: str = "mean"   # cross-entropy over the examples: mean or sum
    chunk: int = 2500
    eps: float = optimizers.ADAM_EPS      # Adam's epsilon
    lr_schedule: str = "constant"         # or decaying to 0 over the run: cosine, linear
    # Examples per step: None = every example (full batch); k = stochastic steps on k examples,
    # each trial going through its own random permutation of the examples every epoch.
    examples_per_step: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in optimizers.NAMES:
            raise ValueError(f"optimizer must be one of {', '.join(optimizers.NAMES)}, not {self.optimizer!r}")
        positive("lr", self.lr)
        positive("eps", self.eps)
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, not {self.iterations}")
        if self.loss not in ("mean", "sum"):
            raise ValueError(f"loss must be mean or sum, not {self.loss!r}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {self.chunk}")
        if self.lr_schedule not in optimizers.SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(optimizers.SCHEDULES)}, not {self.lr_schedule!r}")
        if self.examples_per_step is not None and self.examples_per_step < 1:
            raise ValueError(f"examples_per_step must be at least 1, not {self.examples_per_step}")

    def hashed(self) -> dict[str, Any]:
        out = {"optimizer": self.optimizer, "lr": self.lr, "iterations": self.iterations, "loss": self.loss}
        return {**out, **store.added_later(
            {"eps": self.eps, "lr_schedule": self.lr_schedule, "examples_per_step": self.examples_per_step},
            {"eps": optimizers.ADAM_EPS, "lr_schedule": "constant", "examples_per_step": None})}

    def stochastic(self, examples: int) -> bool:
        return self.examples_per_step is not None and self.examples_per_step < examples

    def optimizer_fn(self) -> Any:
        return optimizers.make(self.optimizer, self.lr, eps=self.eps, lr_schedule=self.lr_schedule,
                               steps=self.iterations)

    def signature(self) -> tuple:
        return (*self.hashed().values(), self.chunk)

    def trial_bytes(self, network: Any) -> int:
        params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(network.shapes()))
        return 4 * params * 8

    def compiled(self, network: Any, data: tuple, placement: devices.Placement | None = None
                 ) -> tuple[Callable, float]:
        """The compiled chunk program for ``data`` and its compile seconds (the first call compiles).

        The data are constants of the program (four XOR points), as they were when the
        defaults were calibrated, so XLA sees exactly the program the stored numbers came from.
        With ``placement`` the chunk's trials are split across its devices (the chunk rounded
        up to a multiple of them: :meth:`chunk_for`).
        """
        x, y = (np.asarray(devices.host(a), np.float32) for a in data)
        return _full_batch_program(network.module, network.input_shape, self,
                                   (x.shape, x.tobytes(), y.shape, y.tobytes()), placement)

    def chunk_for(self, placement: devices.Placement | None) -> int:
        """Trials a compiled call takes: ``chunk``, a multiple of the placement's devices."""
        return devices.padded(self.chunk, placement)

    def __call__(self, network: Any, params: PyTree, masks: PyTree, keys: jax.Array, data: tuple,
                 on_steps: Callable[[int], None] | None = None,
                 placement: devices.Placement | None = None) -> tuple[PyTree, dict[str, np.ndarray]]:
        """Train a stack of any length: padded to whole chunks, one compiled call per chunk
        (split across ``placement``'s devices). ``data`` is ``(x, y)``, shared by every trial;
        ``keys`` (one per trial) draw the order of the examples of stochastic steps and are
        unused in full-batch training."""
        program, _ = self.compiled(network, data, placement)
        stochastic = self.stochastic(len(data[1]))
        params, masks = devices.host((params, masks))  # slicing on the host compiles nothing
        key_data = np.asarray(devices.host(jax.random.key_data(keys))) if stochastic else None
        total = jax.tree.leaves(params)[0].shape[0]
        n = self.chunk_for(placement)
        out_params, out_logits = [], []
        for start in range(0, total, n):
            take = min(n, total - start)

            def piece(a, start=start, take=take):
                # The last chunk is padded with copies of one trial (trials never interact).
                return np.concatenate([a[start:start + take], np.repeat(a[start:start + 1], n - take, 0)])

            args = (jax.tree.map(piece, params), jax.tree.map(piece, masks))
            if stochastic:
                args += (jax.random.wrap_key_data(piece(key_data)),)
            if placement is not None:
                args = placement.shard(args)
            p, z = devices.host(program(*args))
            out_params.append(jax.tree.map(lambda a, take=take: np.asarray(a)[:take], p))
            out_logits.append(np.asarray(z)[:take])
        if on_steps:
            on_steps(self.iterations)
        return jax.tree.map(lambda *a: np.concatenate(a), *out_params), {ondisk.LOGITS: np.concatenate(out_logits)}


def sigmoid_ce_trials_last(module: Any, reduction: str = "mean") -> train_step.LossFn:
    """Sigmoid cross-entropy from logits (softplus(z) - y z), mean or sum over the examples, of an
    MLP whose params leaves end in a trial axis: one loss per trial."""
    reduce = {"mean": jnp.mean, "sum": jnp.sum}[reduction]

    def loss(params, batch):
        return reduce(_sigmoid_ce_per_example(module, params, *batch), axis=0)

    return loss


def _sigmoid_ce_per_example(module: Any, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    """softplus(z) - y z of every example (rows, *trials), params leaves ending in the trial axis."""
    z = models.mlp_logits_trials_last(params, x, module.relu_grad_at_zero)[:, 0]  # (rows, *trials)
    return jax.nn.softplus(z) - y.reshape((-1,) + (1,) * (z.ndim - 1)) * z


@functools.lru_cache(maxsize=8)
def _full_batch_program(module: Any, input_shape: tuple[int, ...], trainer: FullBatch,
                        data_bytes: tuple, placement: devices.Placement | None = None) -> tuple[Callable, float]:
    x_shape, x_bytes, y_shape, y_bytes = data_bytes
    data = (jnp.asarray(np.frombuffer(x_bytes, np.float32).reshape(x_shape)),
            jnp.asarray(np.frombuffer(y_bytes, np.float32).reshape(y_shape)))
    optimizer = trainer.optimizer_fn()
    act = models.mlp_logits_trials_last
    n = trainer.chunk_for(placement)
    split = None if placement is None else NamedSharding(placement.mesh, P(devices.AXIS))
    if trainer.stochastic(y_shape[0]):
        fit = _stochastic_fit(module, trainer, optimizer)
        extra = (jax.ShapeDtypeStruct((n,), jax.random.key(0).dtype, sharding=split),)
    else:
        full = train_step.full_batch(sigmoid_ce_trials_last(module, trainer.loss), optimizer, trainer.iterations,
                                loss_every=trainer.iterations, batched=True, loss_takes_trials=True)
        fit = lambda params, masks, data: full(params, masks, data)[0]  # noqa: E731
        extra = ()

    def run(params, masks, *keys):
        trained = fit(params, masks, data, *keys)
        logits = jax.vmap(lambda p: act(p, data[0], module.relu_grad_at_zero)[:, 0])(trained)
        return trained, logits

    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *input_shape)))["params"])
    stack = lambda dtype: jax.tree.map(lambda a: jax.ShapeDtypeStruct((n, *a.shape), dtype, sharding=split),  # noqa: E731
                                       shapes)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(stack(jnp.float32), stack(bool), *extra).compile()
    return compiled, time.perf_counter() - t0


def _stochastic_fit(module: Any, trainer: FullBatch, optimizer: Any) -> Callable:
    """``fit(params, masks, data, keys) -> params``: ``iterations`` steps, each on
    ``examples_per_step`` examples. Every trial walks through its own random permutation of
    the examples each epoch (``permutation(fold_in(key, epoch))``), as a shuffling data loader
    would; the loss of a step is the mean (or sum) over its examples. Trial axis last inside,
    like the full-batch program."""
    b = trainer.examples_per_step
    reduce_mean = trainer.loss == "mean"

    def fit(params, masks, data, keys):
        x, y = data
        m = y.shape[0]
        per_epoch = -(-m // b)  # the last step of an epoch may see fewer examples
        epochs = -(-trainer.iterations // per_epoch)
        perms = jax.vmap(lambda k: jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(k, e), m))(
            jnp.arange(epochs)))(keys).astype(jnp.int8)                       # (T, epochs, m)
        last = lambda tree: jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), tree)  # noqa: E731
        params, masks = last(params), last(masks)
        params = masks_lib.apply(params, masks)

        def loss(p, weights):
            total = jnp.sum(weights * _sigmoid_ce_per_example(module, p, x, y), axis=0)
            return total / jnp.sum(weights, axis=0) if reduce_mean else total

        def step(carry, t):
            p, s = carry
            order = jax.lax.dynamic_index_in_dim(perms, t // per_epoch, axis=1, keepdims=False)  # (T, m)
            slot = jnp.arange(m)[None, :] // b == (t % per_epoch)                 # positions of this step
            weights = jnp.zeros((m, order.shape[0]), jnp.float32).at[order.T, jnp.arange(order.shape[0])].set(
                slot.T.astype(jnp.float32))                                        # (m, T)
            value, vjp = jax.vjp(lambda q: loss(q, weights), p)
            (grads,) = vjp(jnp.ones_like(value))
            p, s = train_step._masked_update(optimizer, grads, s, p, masks)
            return (p, s), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(trainer.iterations))
        return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), params)

    return fit
