"""The mini-batch trainer (MNIST, sections 3-6; any Flax model through the training contract).

:class:`Minibatch` is a small frozen value (hashable, so every run with the same training
settings shares one compiled program) whose ``__call__(network, params, masks, keys, data,
on_steps)`` trains trials laid out on a leading axis and returns ``(trained, outputs)``,
``outputs`` mapping store keys to per-trial arrays: data on the device, batches drawn in the
compiled program from each trial's key, test accuracy every ``eval_every`` steps, run in
segments of ``chunk_steps`` for progress (the result does not depend on the chunking).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import conv, devices, optimizers
from lth_jax.store import ondisk
from lth_jax.trainers import step as train_step

PyTree = Any


def positive(name: str, value: float) -> None:
    """Refuse a setting that is not a positive finite number, naming it."""
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, not {value}")

@dataclasses.dataclass(frozen=True)
class Minibatch:
    """Mini-batch training with test curves (the paper's MNIST: SGD 0.05, batch 100, 50,000 iterations).

    ``optimizer`` is a name of :data:`lth_jax.optimizers.NAMES` (with ``lr`` a rate or a schedule
    spec such as ``optimizers.Cosine(0.1, 30_000)``), a spec of :mod:`lth_jax.optimizers`
    (``optimizers.SGD(optimizers.Warmup(...), momentum=0.9, nesterov=True)``, which carries its
    own rate: leave ``lr`` unset), or any ``optax.GradientTransformation`` together with
    ``optimizer_name`` (which enters the run's hash, as a custom rule's name does). Masks are
    exact under any of them (:func:`lth_jax.trainers.step.stateful_step` masks gradients, updates and
    weights).
    """

    optimizer: Any = "sgd"
    lr: Any = None  # named optimisers: a rate or a schedule spec (None: 0.05, the paper's)
    batch_size: int = 100
    iterations: int = 50_000
    eval_every: int = 100
    chunk_steps: int | None = None  # steps per compiled call (progress only; results do not change)
    optimizer_name: str | None = None  # names an optax transformation in the hash
    # How a conv net's trials are laid out (lth_jax.conv; not hashed: it changes speed and, at
    # most, the last bits): "vmap" (XLA's batching, a while loop over steps), "unrolled" or
    # "grouped" (the trial-batched convolution and fast max pooling, steps_per_program steps a
    # compiled call driven from Python), or "auto": "unrolled" for a network that convolves,
    # on a CPU (benchmarks/conv_throughput.json), "vmap" otherwise.
    conv_layout: str = "auto"
    steps_per_program: int | None = None  # the fast layouts' steps a call (None: a divisor of eval_every <= 5)

    def __post_init__(self) -> None:
        named = isinstance(self.optimizer, str)
        if named and self.optimizer not in optimizers.NAMES:
            raise ValueError(f"optimizer must be one of {', '.join(optimizers.NAMES)}, not {self.optimizer!r}")
        if named and self.lr is None:
            object.__setattr__(self, "lr", 0.05)
        if isinstance(self.lr, int | float):
            positive("lr", self.lr)
        optimizers.resolve(self.optimizer, self.lr, self.optimizer_name)  # one line for any bad combination
        for name in ("batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.iterations < 1 or self.iterations % self.eval_every:
            raise ValueError(f"iterations ({self.iterations}) must be a positive multiple of eval_every "
                             f"({self.eval_every})")
        if self.conv_layout not in ("auto", "vmap", *conv.BATCHED):
            raise ValueError(f"conv_layout must be auto, vmap, {' or '.join(conv.BATCHED)}, not {self.conv_layout!r}")
        if self.steps_per_program is not None and (self.steps_per_program < 1 or
                                                   self.eval_every % self.steps_per_program):
            raise ValueError(f"steps_per_program ({self.steps_per_program}) must divide eval_every ({self.eval_every})")
        c = self.steps_per_call()
        if c < 1 or self.iterations % c or c % self.eval_every:
            raise ValueError(f"chunk_steps ({self.chunk_steps}) must divide iterations ({self.iterations}) "
                             f"and be a positive multiple of eval_every ({self.eval_every})")

    def optimizer_fn(self) -> Any:
        """The optax transformation this trainer steps with."""
        return optimizers.resolve(self.optimizer, self.lr, self.optimizer_name)[0]

    def hashed(self) -> dict[str, Any]:
        return {**optimizers.resolve(self.optimizer, self.lr, self.optimizer_name)[1],
                "batch_size": self.batch_size, "iterations": self.iterations, "eval_every": self.eval_every}

    def signature(self) -> tuple:
        """Trainers with equal signatures train in one program: equal hashed settings, and the same
        transformation object when it is the user's own."""
        return (json.dumps(self.hashed(), sort_keys=True), None if isinstance(self.optimizer, str) else self.optimizer,
                self.conv_layout, self.steps_per_program)

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
        slots = optimizers.state_floats(self.optimizer_fn(), shapes)  # momentum 1x params, Adam 2x, ...
        return int(4 * (3 * params + slots) + params + 4 * units * (test_examples + 3 * self.batch_size))

    # ---- late rewinding (lth_jax.runner): stop at snapshot steps, restart from one

    def check_snapshot_steps(self, steps: Sequence[int]) -> None:
        """Steps this trainer can stop at and restart from: multiples of ``eval_every`` (the
        curves' grid) below ``iterations``. Raises ``ValueError`` naming the others."""
        bad = [k for k in steps if k < 0 or k >= self.iterations or k % self.eval_every]
        if bad:
            raise ValueError(f"snapshot_steps must be multiples of eval_every ({self.eval_every}) below iterations "
                             f"({self.iterations}), not {', '.join(map(str, bad))}")

    def init_state(self, params: PyTree) -> PyTree:
        """One trial's fresh optimiser state (traceable; its structure is what snapshots store)."""
        return self.optimizer_fn().init(params)

    def segments(self, start: int = 0, stop: int | None = None, snapshot_steps: Sequence[int] = (),
                 every: int | None = None) -> list[tuple[int, int]]:
        """The ``(begin, end)`` steps of each compiled call: the ``steps_per_call`` grid (or
        ``every`` steps), also cut at ``start``, ``stop`` and every snapshot step between them.
        From 0 without snapshots it is the grid itself (each call's result does not depend on
        the cuts: :func:`lth_jax.trainers.step.minibatch_segment`)."""
        stop = self.iterations if stop is None else stop
        c = every or self.steps_per_call()
        grid = range(c * (start // c + 1), stop, c)
        cuts = sorted({start, stop, *grid, *(k for k in snapshot_steps if start < k < stop)})
        return list(zip(cuts[:-1], cuts[1:], strict=True))

    def __call__(self, network: Any, params: PyTree, masks: PyTree, keys: jax.Array, data: tuple,
                 on_steps: Callable[[int], None] | None = None, *, start_step: int = 0,
                 opt_state: PyTree | None = None, snapshot_steps: Sequence[int] = (),
                 stop_step: int | None = None, placement: devices.Placement | None = None,
                 stop: Any = None, stoppable: np.ndarray | None = None, model_state: PyTree = None,
                 pipeline: Any = None) -> tuple[PyTree, dict[str, np.ndarray]]:
        """Returns the trained params and ``curves/accuracy``, ``curves/loss`` (T, evals) and
        ``curves/diverged_at`` (T,).

        A module with state (:mod:`lth_jax.contract`) starts from ``model_state`` (per trial) and
        its trained state comes back as ``state/<collection>/...`` (T, ...). ``pipeline``
        (:class:`lth_jax.datasets.Pipeline`) augments and normalises each batch inside the step
        (its key: stream ``augment`` of the step's key) and normalises the test set.

        ``placement`` splits the trials (a multiple of its devices) across its devices; ``data``
        must then be replicated there (:meth:`lth_jax.devices.Placement.replicate`).

        Late rewinding: ``start_step=k`` with ``opt_state`` (one optimiser state per trial, e.g.
        a snapshot's) continues the trials from step ``k``; the batch of step ``t`` is drawn from
        ``(key, t)`` as for a trial trained from 0, so a ticket that carries its original's key
        sees the original's batches from ``k`` on. Curves keep absolute steps: the evaluations
        up to step ``k`` are NaN and ``curves/start_step`` (T,) holds ``k`` (only when ``k > 0``).
        ``snapshot_steps`` adds ``snapshots/<step>/params/<layer>/<name>`` and
        ``snapshots/<step>/opt/<i>`` (the i-th leaf of the optimiser state) after each of those
        steps; ``stop_step`` ends training there (to take snapshots only; the curves end there).

        Stopping at convergence: ``stop`` (:class:`lth_jax.judges.Stop`) is checked on each
        trial's curve every ``stop.every`` steps; a ``stoppable`` trial (default: every one)
        found settled at a check stops there (its weights are those of that step), so where a
        trial stops depends on its own curve alone, not on the other trials of the program; the
        program ends when every trial has stopped or at ``iterations``. Stopped curves are NaN
        after the stop; ``curves/stop_step`` (T,) holds it (``iterations`` if it ran to the end).
        """
        train_data, test_data = data
        if placement is not None:
            params, masks, keys, opt_state, model_state = placement.shard(
                (params, masks, keys, opt_state, model_state))
        programs = functools.partial(self._programs, network, pipeline=pipeline)
        if start_step or opt_state is not None:
            if opt_state is None:
                raise ValueError("start_step needs the optimiser states to start from (opt_state)")
            self.check_snapshot_steps([start_step])
            n = keys.shape[0]
            counters = (np.full((n,), -1, np.int32), np.full((n,), start_step, np.int32),
                        np.full((n,), train_step.NEVER, np.int32))
            if placement is not None:
                counters = placement.shard(counters)
            state = train_step.TrainState(params, opt_state, *(jnp.asarray(c) for c in counters), model_state)
        else:
            state = programs(self.steps_per_call())[0](params, masks, model_state)
        if stop is not None:
            if snapshot_steps:
                raise ValueError("a training that stops at convergence takes no snapshots")
            return self._until_settled(programs, state, masks, keys, data, on_steps, start_step, stop,
                                       np.ones(keys.shape[0], bool) if stoppable is None else np.asarray(stoppable),
                                       placement)
        wanted = {int(k) for k in snapshot_steps if k > start_step}
        curves, snaps, pending = [], {}, None
        for begin, end in self.segments(start_step, stop_step, sorted(wanted)):
            state, curve = programs(end - begin)[1](state, masks, keys, train_data, test_data)
            if end in wanted:
                snaps[end] = (state.params, state.opt_state, state.model_state)
            if pending is not None:  # dispatch the next segment before waiting on the last
                curves.append(devices.host(pending[0]))
                if on_steps:
                    on_steps(pending[1])
            pending = (curve, end - begin)
        curves.append(devices.host(pending[0]))
        if on_steps:
            on_steps(pending[1])
        outputs = {**self._outputs(curves, start_step), **_state_outputs(state.model_state, ondisk.STATE)}
        for step, (p, s, ms) in sorted(snaps.items()):
            outputs.update(_flat(devices.host(p), ondisk.snapshot(step, "params")))
            outputs.update({ondisk.snapshot_opt(step, i): np.asarray(leaf)
                            for i, leaf in enumerate(jax.tree.leaves(devices.host(s)))})
            outputs.update(_state_outputs(ms, ondisk.snapshot(step, ondisk.STATE)))
        return state.params, outputs

    def _until_settled(self, programs: Callable, state: train_step.TrainState, masks: PyTree, keys: jax.Array,
                       data: tuple, on_steps: Callable[[int], None] | None, start_step: int, stop: Any,
                       stoppable: np.ndarray, placement: devices.Placement | None
                       ) -> tuple[PyTree, dict[str, np.ndarray]]:
        """Train in segments of ``stop.every`` steps; after each, every ``stoppable`` trial that
        ``stop`` finds settled on its curve so far stops there (frozen in the program, its weights
        kept as they are at that step). Once at most half of a program's trials still train,
        those are moved into a narrower program, so the cost follows the trials still training
        (rows never interact, so no trial's numbers depend on which others share its program)."""
        n, ev = keys.shape[0], self.eval_every
        evals = self.iterations // ev
        acc = np.full((n, evals), np.nan, np.float32)
        loss = np.full((n, evals), np.nan, np.float32)
        diverged = np.full(n, -1, np.int32)
        stopped = np.full(n, self.iterations, np.int32)
        done = np.zeros(n, bool)
        final = jax.tree.map(lambda x: np.empty(x.shape, x.dtype),
                             jax.eval_shape(lambda p: p, (state.params, state.model_state)))
        rows = np.arange(n)  # the trials in the program, in its row order (a padded program repeats rows[0])
        width = n

        def outputs(sel: np.ndarray) -> dict[str, np.ndarray]:
            out = {ondisk.ACCURACY: acc[sel], ondisk.LOSS: loss[sel], ondisk.DIVERGED_AT: diverged[sel]}
            if start_step:
                out[ondisk.START_STEP] = np.full(sel.size, start_step, np.int32)
            return out

        def keep(tree: PyTree, take: np.ndarray) -> None:  # rows of the program -> the host copy
            jax.tree.map(lambda dst, src: dst.__setitem__(rows[take], np.asarray(src)[take]), final,
                         devices.host(tree))

        for begin, end in self.segments(start_step, None, (), stop.every):
            state, curve = programs(end - begin)[1](state, masks, keys, *data)
            c = devices.host(curve)
            live = slice(0, rows.size)  # the padding of a narrowed program is dropped
            acc[rows, begin // ev:end // ev] = np.asarray(c.accuracy)[live]
            loss[rows, begin // ev:end // ev] = np.asarray(c.loss)[live]
            diverged[rows] = np.asarray(c.diverged_at)[live]
            if on_steps:
                on_steps(end - begin)
            if end == self.iterations:
                break
            settled = stoppable[rows] & ~done[rows] & stop.settled(outputs(rows))
            if settled.any():
                done[rows[settled]] = True
                stopped[rows[settled]] = end
                keep((state.params, state.model_state), np.flatnonzero(settled))
                at = np.where(done[rows], end, train_step.NEVER).astype(np.int32)
                if at.size < width:
                    at = np.concatenate([at, np.full(width - at.size, end, np.int32)])
                state = state._replace(stop_at=placement.shard(at) if placement is not None else jnp.asarray(at))
            if done.all():
                break
            still = np.flatnonzero(~done[rows])
            size = devices.padded(max(still.size, NARROWEST), placement)
            if still.size <= width // 2 and size < width:  # narrow the program to the trials still training
                take = np.concatenate([still, np.full(size - still.size, still[0])])
                state, masks, keys = _narrow(state, masks, keys, take, placement)
                rows, width = rows[still], take.size
        left = np.flatnonzero(~done[rows])
        if left.size:
            keep((state.params, state.model_state), left)
        trained = np.arange(evals)[None] < (stopped // ev)[:, None]  # the evaluations before each stop
        return final[0], {**_state_outputs(final[1], ondisk.STATE), ondisk.ACCURACY: np.where(trained, acc, np.nan),
                       ondisk.LOSS: np.where(trained, loss, np.nan),
                       ondisk.DIVERGED_AT: diverged, ondisk.STOP_STEP: stopped,
                       **({ondisk.START_STEP: np.full(n, start_step, np.int32)} if start_step else {})}

    def _outputs(self, curves: list[Any], start_step: int) -> dict[str, np.ndarray]:
        """The curves so far as stored: accuracy and loss per evaluation (NaN before a late
        rewinding's start), the divergence step."""
        acc = np.concatenate([c.accuracy for c in curves], axis=1).astype(np.float32)
        loss = np.concatenate([c.loss for c in curves], axis=1).astype(np.float32)
        outputs = {ondisk.DIVERGED_AT: np.asarray(curves[-1].diverged_at, np.int32)}
        if start_step:  # the evaluations before the start were never made
            before = np.full((acc.shape[0], start_step // self.eval_every), np.nan, np.float32)
            acc, loss = np.concatenate([before, acc], axis=1), np.concatenate([before, loss], axis=1)
            outputs[ondisk.START_STEP] = np.full(acc.shape[0], start_step, np.int32)
        return {ondisk.ACCURACY: acc, ondisk.LOSS: loss, **outputs}

    def layout(self, network: Any) -> str:
        """The conv layout this trainer uses for ``network`` (``conv_layout``, "auto" resolved)."""
        if self.conv_layout != "auto":
            return self.conv_layout
        return "unrolled" if network.contract().convolutional and jax.default_backend() == "cpu" else "vmap"

    def _programs(self, network: Any, steps: int, pipeline: Any = None) -> tuple[Callable, Callable]:
        # Trainers that differ only in chunk_steps share their programs.
        trainer = dataclasses.replace(self, chunk_steps=None, conv_layout=self.layout(network))
        return _minibatch_programs(network.contract(), trainer, steps, pipeline)


NARROWEST = 2
"""Rows of the narrowest program a stopping training moves into: XLA compiles a one-row program
without its batch dimension, to other kernels whose float sums differ in the last bits (measured:
tests/test_stop_at_convergence.py), so a trial left alone would not train as it does beside others."""


def _narrow(state: train_step.TrainState, masks: PyTree, keys: jax.Array, take: np.ndarray,
            placement: devices.Placement | None) -> tuple[train_step.TrainState, PyTree, jax.Array]:
    """Rows ``take`` of a program's state, masks and keys, placed as a program's inputs are."""
    state_h, masks_h, kd = devices.host((state, masks, jax.random.key_data(keys)))
    state_n, masks_n, kd_n = jax.tree.map(lambda x: np.asarray(x)[take], (state_h, masks_h, kd))
    keys_n = jax.random.wrap_key_data(jnp.asarray(kd_n), impl=jax.random.key_impl(keys))
    if placement is not None:
        return placement.shard((state_n, masks_n, keys_n))
    return jax.tree.map(jnp.asarray, state_n), jax.tree.map(jnp.asarray, masks_n), keys_n


def _flat(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """A params tree as ``prefix/<key>/.../<name>`` arrays (the store's layout)."""
    if not isinstance(tree, dict):
        return {prefix: np.asarray(tree)}
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}/{key}"))
    return out


def _state_outputs(model_state: PyTree, prefix: str) -> dict[str, np.ndarray]:
    """A stack of model states as stored arrays (none for a stateless module)."""
    return _flat(devices.host(model_state), prefix) if model_state else {}


@functools.lru_cache(maxsize=32)
def _minibatch_programs(contract: Any, trainer: Minibatch, chunk_steps: int,
                        pipeline: Any) -> tuple[Callable, Callable]:
    """Jitted, vmapped (start, segment), shared by every run with the same training settings."""
    opt = trainer.optimizer_fn()
    start = jax.jit(jax.vmap(functools.partial(train_step.start, opt)))
    if trainer.conv_layout == "vmap":
        segment = train_step.minibatch_segment(*contract.losses(pipeline), opt, chunk_steps, trainer.batch_size,
                                          trainer.eval_every, stateful=True)
        return start, jax.jit(jax.vmap(segment, in_axes=(0, 0, 0, None, None)))
    k = trainer.steps_per_program or max(d for d in range(1, 6) if trainer.eval_every % d == 0)
    advance, evaluate = train_step.minibatch_steps(*contract.losses(pipeline, trainer.conv_layout), opt, k,
                                              trainer.batch_size)
    per_trial = jax.jit(jax.vmap(advance, in_axes=(0, 0, 0, None, None)))
    shared = jax.jit(jax.vmap(advance, in_axes=(0, 0, None, None, None)))  # one batch for every trial
    grouped = jax.jit(jax.vmap(jax.vmap(advance, in_axes=(0, 0, None, None, None)), in_axes=(0, 0, 0, None, None)))
    evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))

    def segment(state, masks, keys, train_data, test_data):  # driven from Python: no loop in the programs
        groups = _batch_groups(keys)
        first = int(np.asarray(devices.host(state.step)).reshape(-1)[0])  # the trials move in step
        if groups is None:
            def run(st, t, m=masks, kk=keys):
                return per_trial(st, m, kk, train_data, t)
        else:  # trials that draw the same batches train as groups: a batch shared inside a group
            order, size = groups
            state, masks = _take((state, masks), order)
            if size == order.size:
                def run(st, t, m=masks, kk=keys[order[0]]):
                    return shared(st, m, kk, train_data, t)
            else:
                state, masks = _split_rows((state, masks), size)

                def run(st, t, m=masks, kk=keys[order[::size]]):
                    return grouped(st, m, kk, train_data, t)
        acc, loss = [], []
        for _ in range(chunk_steps // trainer.eval_every):
            for _ in range(trainer.eval_every // k):
                state, last = run(state, jnp.int32(first))
                first += k
            acc.append(evaluate(_merge_rows(state) if groups and size < order.size else state, test_data))
            loss.append(last.reshape(-1))
        if groups is not None:
            if size < order.size:
                state = _merge_rows(state)
            inverse = np.argsort(order)
            state, acc, loss = _take((state, acc, loss), inverse)
        return state, train_step.Curve(jnp.stack(acc, axis=1), jnp.stack(loss, axis=1), state.diverged_at)

    return start, segment


def _batch_groups(keys: jax.Array) -> tuple[np.ndarray, int] | None:
    """``(order, size)`` when the trials fall into groups of equal size (> 1) that share their batch
    key: the rows group by group; None when every trial has its own (or the groups differ in size)."""
    data = np.asarray(devices.host(jax.random.key_data(keys))).reshape(keys.shape[0], -1)
    rows: dict[bytes, list[int]] = {}
    for i, row in enumerate(data):
        rows.setdefault(row.tobytes(), []).append(i)
    sizes = {len(r) for r in rows.values()}
    if len(rows) == data.shape[0] or len(sizes) != 1:
        return None
    return np.concatenate([np.asarray(r) for r in rows.values()]), sizes.pop()


def _take(tree: PyTree, rows: np.ndarray) -> PyTree:
    return jax.tree.map(lambda a: a[jnp.asarray(rows)], tree)


def _split_rows(tree: PyTree, size: int) -> PyTree:
    return jax.tree.map(lambda a: a.reshape((-1, size, *a.shape[1:])), tree)


def _merge_rows(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), tree)


