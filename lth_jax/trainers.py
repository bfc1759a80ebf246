"""Trainers as the runner uses them: a stack of trials in, trained weights and outputs out.

Each is a small frozen value (hashable, so every run with the same training settings
shares one compiled program) whose ``__call__(network, params, masks, keys, data,
on_steps)`` trains trials laid out on a leading axis and returns ``(trained, outputs)``,
``outputs`` mapping store keys to per-trial arrays.

- :class:`Minibatch` (MNIST, sections 3-6): data on the device, batches drawn in the
  compiled program from each trial's key, test accuracy every ``eval_every`` steps, run in
  segments of ``chunk_steps`` for progress (the result does not depend on the chunking).
- :class:`FullBatch` (XOR, section 2): full-batch steps on a small dataset, trial axis laid
  out last inside (:func:`lth_jax.train.full_batch`), in fixed-size chunks of trials.
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

from lth_jax import models, train

PyTree = Any


def _positive(name: str, value: float) -> None:
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, not {value}")


@dataclasses.dataclass(frozen=True)
class Minibatch:
    """Mini-batch training with test curves (the paper's MNIST: SGD 0.05, batch 100, 50,000 iterations)."""

    optimizer: str = "sgd"
    lr: float = 0.05
    batch_size: int = 100
    iterations: int = 50_000
    eval_every: int = 100
    chunk_steps: int | None = None  # steps per compiled call (progress only; results do not change)

    def __post_init__(self) -> None:
        if self.optimizer not in train.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(train.OPTIMIZERS)}, not {self.optimizer!r}")
        _positive("lr", self.lr)
        for name in ("batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.iterations < 1 or self.iterations % self.eval_every:
            raise ValueError(f"iterations ({self.iterations}) must be a positive multiple of eval_every "
                             f"({self.eval_every})")
        c = self.steps_per_call()
        if c < 1 or self.iterations % c or c % self.eval_every:
            raise ValueError(f"chunk_steps ({self.chunk_steps}) must divide iterations ({self.iterations}) "
                             f"and be a positive multiple of eval_every ({self.eval_every})")

    def hashed(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size,
                "iterations": self.iterations, "eval_every": self.eval_every}

    def signature(self) -> tuple:
        return tuple(self.hashed().values())

    def steps_per_call(self, target_calls: int = 10) -> int:
        """``chunk_steps``, or a multiple of ``eval_every`` dividing ``iterations`` that makes
        about ``target_calls`` compiled calls (progress without a host round trip per step)."""
        if self.chunk_steps is not None:
            return self.chunk_steps
        evals = self.iterations // self.eval_every
        best = max(d for d in range(1, evals + 1) if evals % d == 0 and d <= max(1, evals // target_calls))
        return best * self.eval_every

    def trial_bytes(self, network: Any, test_examples: int = 10_000) -> int:
        """Estimated device bytes one trial needs while training: weights, gradients and updates
        (+ optimiser slots) in float32, its masks, and the activations of a test-set evaluation."""
        shapes = network.shapes()
        params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes))
        units = sum(int(a.shape[-1]) for a in jax.tree.leaves(shapes) if a.ndim == 1)
        slots = {"sgd": 0, "momentum": 1, "adam": 2}[self.optimizer]
        return int(4 * params * (3 + slots) + params + 4 * units * (test_examples + 3 * self.batch_size))

    def __call__(self, network: Any, params: PyTree, masks: PyTree, keys: jax.Array, data: tuple,
                 on_steps: Callable[[int], None] | None = None) -> tuple[PyTree, dict[str, np.ndarray]]:
        """Returns the trained params and ``curves/accuracy``, ``curves/loss`` (T, evals) and
        ``curves/diverged_at`` (T,)."""
        train_data, test_data = data
        chunk = self.steps_per_call()
        start, segment = _minibatch_programs(network.module, self.optimizer, self.lr, self.batch_size,
                                             self.eval_every, chunk)
        state = start(params, masks)
        curves, pending = [], None
        for _ in range(self.iterations // chunk):
            state, curve = segment(state, masks, keys, train_data, test_data)
            if pending is not None:  # dispatch the next segment before waiting on the last
                curves.append(jax.device_get(pending))
                if on_steps:
                    on_steps(chunk)
            pending = curve
        curves.append(jax.device_get(pending))
        if on_steps:
            on_steps(chunk)
        return state.params, {
            "curves/accuracy": np.concatenate([c.accuracy for c in curves], axis=1).astype(np.float32),
            "curves/loss": np.concatenate([c.loss for c in curves], axis=1).astype(np.float32),
            "curves/diverged_at": np.asarray(curves[-1].diverged_at, np.int32)}


@functools.lru_cache(maxsize=8)
def _minibatch_programs(module: Any, optimizer: str, lr: float, batch_size: int, eval_every: int,
                        chunk_steps: int) -> tuple[Callable, Callable]:
    """Jitted, vmapped (start, segment), shared by every run with the same training settings."""
    opt = train.make_optimizer(optimizer, lr)
    segment = train.minibatch_segment(train.softmax_ce(module.apply), train.accuracy(module.apply), opt,
                                      chunk_steps, batch_size, eval_every)
    return (jax.jit(jax.vmap(functools.partial(train.start, opt))),
            jax.jit(jax.vmap(segment, in_axes=(0, 0, 0, None, None))))


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

    def __post_init__(self) -> None:
        if self.optimizer not in train.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(train.OPTIMIZERS)}, not {self.optimizer!r}")
        _positive("lr", self.lr)
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, not {self.iterations}")
        if self.loss not in ("mean", "sum"):
            raise ValueError(f"loss must be mean or sum, not {self.loss!r}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {self.chunk}")

    def hashed(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "lr": self.lr, "iterations": self.iterations, "loss": self.loss}

    def signature(self) -> tuple:
        return (*self.hashed().values(), self.chunk)

    def trial_bytes(self, network: Any) -> int:
        params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(network.shapes()))
        return 4 * params * 8

    def compiled(self, network: Any, data: tuple) -> tuple[Callable, float]:
        """The compiled chunk program for ``data`` and its compile seconds (the first call compiles).

        The data are constants of the program (four XOR points), as they were when the
        defaults were calibrated, so XLA sees exactly the program the stored numbers came from.
        """
        x, y = (np.asarray(a, np.float32) for a in data)
        return _full_batch_program(network.module, network.input_shape, self,
                                   (x.shape, x.tobytes(), y.shape, y.tobytes()))

    def __call__(self, network: Any, params: PyTree, masks: PyTree, keys: jax.Array, data: tuple,
                 on_steps: Callable[[int], None] | None = None) -> tuple[PyTree, dict[str, np.ndarray]]:
        """Train a stack of any length: padded to whole chunks, one compiled call per chunk.
        ``data`` is ``(x, y)``, shared by every trial; ``keys`` are unused (no batches)."""
        program, _ = self.compiled(network, data)
        params, masks = jax.device_get((params, masks))  # slicing on the host compiles nothing
        total = jax.tree.leaves(params)[0].shape[0]
        n = self.chunk
        out_params, out_logits = [], []
        for start in range(0, total, n):
            take = min(n, total - start)

            def piece(a, start=start, take=take):
                # The last chunk is padded with copies of one trial (trials never interact).
                return np.concatenate([a[start:start + take], np.repeat(a[start:start + 1], n - take, 0)])

            p, z = program(jax.tree.map(piece, params), jax.tree.map(piece, masks))
            out_params.append(jax.tree.map(lambda a, take=take: np.asarray(a)[:take], p))
            out_logits.append(np.asarray(z)[:take])
        if on_steps:
            on_steps(self.iterations)
        return jax.tree.map(lambda *a: np.concatenate(a), *out_params), {"logits": np.concatenate(out_logits)}


def sigmoid_ce_trials_last(module: Any, reduction: str = "mean") -> train.LossFn:
    """Sigmoid cross-entropy from logits (softplus(z) - y z), mean or sum over the examples, of an
    MLP whose params leaves end in a trial axis: one loss per trial."""
    reduce = {"mean": jnp.mean, "sum": jnp.sum}[reduction]

    def loss(params, batch):
        x, y = batch
        z = models.mlp_logits_trials_last(params, x, module.relu_grad_at_zero)[:, 0]  # (rows, *trials)
        y = y.reshape((-1,) + (1,) * (z.ndim - 1))
        return reduce(jax.nn.softplus(z) - y * z, axis=0)

    return loss


@functools.lru_cache(maxsize=8)
def _full_batch_program(module: Any, input_shape: tuple[int, ...], trainer: FullBatch,
                        data_bytes: tuple) -> tuple[Callable, float]:
    x_shape, x_bytes, y_shape, y_bytes = data_bytes
    data = (jnp.asarray(np.frombuffer(x_bytes, np.float32).reshape(x_shape)),
            jnp.asarray(np.frombuffer(y_bytes, np.float32).reshape(y_shape)))
    optimizer = train.make_optimizer(trainer.optimizer, trainer.lr)
    fit = train.full_batch(sigmoid_ce_trials_last(module, trainer.loss), optimizer, trainer.iterations,
                           loss_every=trainer.iterations, batched=True, loss_takes_trials=True)
    act = models.mlp_logits_trials_last

    def run(params, masks):
        trained, _ = fit(params, masks, data)
        logits = jax.vmap(lambda p: act(p, data[0], module.relu_grad_at_zero)[:, 0])(trained)
        return trained, logits

    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *input_shape)))["params"])
    n = trainer.chunk
    stack = lambda dtype: jax.tree.map(lambda a: jax.ShapeDtypeStruct((n, *a.shape), dtype), shapes)  # noqa: E731
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(stack(jnp.float32), stack(bool)).compile()
    return compiled, time.perf_counter() - t0
