"""One training program over a stack of trials: identical rows once, in budgeted chunks.

The runner hands every level it can train now (:func:`lth_jax.runner.run_groups`) to one
:class:`Program`: the trial rows of all those levels stacked on one leading axis (params,
masks, batch keys, optimiser states or None). The program

- trains each distinct row once (rows are identified by a digest of everything that
  determines their training, e.g. the unpruned originals shared by several lines);
- splits the distinct rows into equal chunks of at most ``budget`` bytes of estimated device
  memory (:func:`chunks`; equal sizes so one compiled program serves them all). The chunks do
  not depend on the devices: a run on several devices cuts exactly the chunks a one-device run
  cuts, and the devices train whole chunks at the same time, each its own (:mod:`lth_jax.devices`);
- yields each *block* of rows (one level of one run) the moment its last row is trained, in the
  order a one-device run yields them, so a run killed mid-program keeps every level already
  complete, and what is stored does not depend on which device finished first.

Why whole chunks: XLA's kernels may sum in another order at another vmap width (and, for tiny
layers, at another row position inside a width), so a trial's last bits can depend on the width
of the program it trains in. Every chunk trains as the same program, on one device, whatever
the device count, so the stored numbers are those of a one-device run bit for bit. The price: a
program of one chunk (the common case for small runs) trains on one device; a smaller memory
budget (``memory_budget_mb`` of :func:`lth_jax.runner.run_groups`) makes more chunks and keeps
more devices busy.

Which other rows share a chunk does not change a row's result for the dense networks of the
paper (tests/test_programs.py: one-shot levels trained in one program store what they store
trained level by level); a vmapped convolution is one grouped convolution whose CPU kernel may
sum in another order at another width, which can change the last bits (tests/test_runner.py
measures it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import devices as devices_lib

PyTree = Any


class Trials(NamedTuple):
    """A stack of trials: every leaf has the same leading trial axis (``states``: optimiser
    states of late-rewound trials, else None; ``stoppable``: (T,) bool, the trials that may
    stop at convergence, when the program stops any; ``model_state``: the state each trial's
    module starts from, None for a stateless module)."""

    params: PyTree
    masks: PyTree
    keys: jax.Array
    states: PyTree = None
    stoppable: np.ndarray | None = None
    model_state: PyTree = None


class Block(NamedTuple):
    """One block of rows, trained: its index, params, trainer outputs and its share of seconds."""

    index: int
    trained: PyTree
    outputs: dict[str, np.ndarray]
    seconds: float


class Trained(NamedTuple):
    """One chunk, trained (on the host): params, trainer outputs, wall seconds, and the steps it
    reported to the progress callback."""

    params: PyTree
    outputs: dict[str, np.ndarray]
    seconds: float
    steps: int


def chunks(n: int, per_chunk: int) -> list[np.ndarray]:
    """``range(n)`` split into equal-size chunks of at most ``per_chunk`` rows (at least one;
    the last padded by repeating its first index, so every chunk compiles to the same program)."""
    per_chunk = max(1, per_chunk)
    k = max(1, math.ceil(n / per_chunk))
    size = math.ceil(n / k)
    out = []
    for c in range(k):
        idx = np.arange(c * size, min(n, (c + 1) * size))
        out.append(np.concatenate([idx, np.full(size - idx.size, idx[0])]) if idx.size < size else idx)
    return out


def row_digests(trials: Trials) -> list[str]:
    """One digest per trial row of everything that determines its training."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get((trials.params, trials.masks)))]
    leaves.append(np.asarray(jax.device_get(jax.random.key_data(trials.keys))))
    leaves += [np.asarray(x) for x in jax.tree.leaves(jax.device_get((trials.states, trials.model_state)))]
    if trials.stoppable is not None:  # a trial that may stop is not the same training as one that may not
        leaves.append(np.asarray(trials.stoppable, bool))
    out = []
    for i in range(leaves[0].shape[0]):
        h = hashlib.sha256()
        for leaf in leaves:
            h.update(np.ascontiguousarray(leaf[i]).tobytes())
        out.append(h.hexdigest())
    return out


def unique_rows(digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(unique, inverse)``: the first row of each distinct digest, in order, and for every
    row the position of its digest's row in ``unique``."""
    first_row: dict[str, int] = {}
    for row, d in enumerate(digests):
        first_row.setdefault(d, row)
    unique = np.asarray(sorted(first_row.values()))
    return unique, np.searchsorted(unique, [first_row[d] for d in digests])


@jax.jit
def _gather(tree: PyTree, rows: jax.Array) -> PyTree:
    return jax.tree.map(lambda x: x[rows], tree)


class _Steps:
    """``progress.steps`` for the threads that train chunks: one call at a time."""

    def __init__(self, steps: Callable[[int], None] | None) -> None:
        self.steps, self.lock = steps, threading.Lock()

    def __call__(self, n: int) -> None:
        if self.steps is not None:
            with self.lock:
                self.steps(n)


class Program:
    """The distinct rows of ``trials`` in chunks of at most ``budget`` bytes, the chunks trained
    whole on ``placement``'s devices (several at once; one device without a placement);
    ``blocks`` are the sizes of consecutive row blocks (default: one block of every row)."""

    def __init__(self, trainer: Any, network: Any, trials: Trials, budget: int,
                 placement: devices_lib.Placement | None = None, blocks: Sequence[int] | None = None) -> None:
        self.trainer, self.network, self.trials, self.placement = trainer, network, Trials(*trials), placement
        self.rows = int(self.trials.keys.shape[0])
        self.blocks = list(blocks) if blocks is not None else [self.rows]
        if sum(self.blocks) != self.rows:
            raise ValueError(f"blocks of {sum(self.blocks)} rows for a stack of {self.rows}")
        self.unique, self.inverse = unique_rows(row_digests(self.trials))
        # The one-device cut whatever the devices: a chunk's numbers depend on its width.
        self.pieces = chunks(self.unique.size, int(budget // trainer.trial_bytes(network)))

    @property
    def trained_trials(self) -> int:
        """Rows the chunks train, padding included."""
        return int(sum(p.size for p in self.pieces))

    def run(self, data: Any, progress: Any, **how: Any) -> Iterator[Block]:
        """Train chunk by chunk; yield every block once all its rows are trained (in the order
        a one-device run yields them). ``how`` goes to the trainer (``start_step``,
        ``snapshot_steps``, ...)."""
        n_unique = self.unique.size
        done = np.zeros(n_unique, bool)
        row_seconds = np.zeros(n_unique)
        refs = np.bincount(self.inverse, minlength=n_unique)  # rows sharing each trained row share its time
        starts = np.cumsum([0, *self.blocks])
        pending = list(range(len(self.blocks)))
        trained: list[np.ndarray] | None = None
        outputs: dict[str, np.ndarray] = {}
        treedef = None
        for c, result in self._trained(data, _Steps(getattr(progress, "steps", None)), how):
            piece = self.pieces[c]
            leaves, treedef = jax.tree.flatten(result.params)
            np.add.at(row_seconds, piece, result.seconds / piece.size)  # padding's time too
            if trained is None:
                trained = [np.empty((n_unique, *np.shape(x)[1:]), np.asarray(x).dtype) for x in leaves]
                outputs = {key: np.empty((n_unique, *np.shape(v)[1:]), np.asarray(v).dtype)
                           for key, v in result.outputs.items()}
            for acc, x in zip(trained, leaves, strict=True):
                acc[piece] = np.asarray(x)
            for key, v in result.outputs.items():
                outputs[key][piece] = np.asarray(v)
            done[piece] = True
            for b in list(pending):
                at = self.inverse[starts[b]:starts[b + 1]]
                if done[at].all():
                    pending.remove(b)
                    yield Block(b, treedef.unflatten([x[at] for x in trained]),
                                {key: v[at] for key, v in outputs.items()}, float(np.sum(row_seconds[at] / refs[at])))

    # ---- where the chunks train

    def _trained(self, data: Any, steps: _Steps, how: dict[str, Any]) -> Iterator[tuple[int, Trained]]:
        """``(chunk, trained)`` of every chunk, in chunk order."""
        if self.placement is None:  # one device: the chunks one after another, as they always were
            for c in range(len(self.pieces)):
                yield c, self._train(c, data, steps, how)
        elif jax.process_count() == 1:
            yield from self._on_devices(self.placement.devices, range(len(self.pieces)), data, steps, how)
        else:
            yield from self._across_processes(data, steps, how)

    def _train(self, c: int, data: Any, steps: _Steps, how: dict[str, Any], device: Any = None) -> Trained:
        """Chunk ``c`` trained by the one-device program (on ``device``: inputs committed there)."""
        t, rows = self.trials, self.unique[self.pieces[c]]
        if rows.size == self.rows and np.array_equal(rows, np.arange(self.rows)):
            p, m, k, s, ms = (*t[:4], t.model_state)  # every row once, in order: nothing to gather
        else:
            p, m, k, s, ms = _gather((*t[:4], t.model_state), jnp.asarray(rows))
        if device is not None:  # gathered where the trials are (one compiled gather), then moved
            p, m, k, s, ms = jax.device_put((p, m, k, s, ms), device)
        extra = dict(how, opt_state=s) if s is not None else dict(how)
        if ms is not None:
            extra["model_state"] = ms
        if t.stoppable is not None:
            extra["stoppable"] = np.asarray(t.stoppable)[rows]
        count = [0]

        def on_steps(n: int) -> None:
            count[0] += n
            steps(n)

        t0 = time.perf_counter()
        where = contextlib.nullcontext() if device is None else jax.default_device(device)
        with where:  # the arrays the trainer makes land on the chunk's device too
            out_params, out = self.trainer(self.network, p, m, k, data, on_steps=on_steps, **extra)
        out_params = devices_lib.host(out_params)
        out = {key: np.asarray(devices_lib.host(v)) for key, v in out.items()}
        return Trained(out_params, out, time.perf_counter() - t0, count[0])

    def _on_devices(self, devices: Sequence[Any], which: Sequence[int], data: Any, steps: _Steps,
                    how: dict[str, Any]) -> Iterator[tuple[int, Trained]]:
        """Chunks ``which`` trained on ``devices`` of this process, one thread a device: the
        ``j``-th chunk on device ``j mod len(devices)``, each device's in order; yielded in the
        order of ``which``. A chunk that fails raises when its turn comes, after the chunks
        before it (as on one device); closing the iterator starts no other chunk."""
        which = list(which)
        slots = [concurrent.futures.Future() for _ in which]
        closed = threading.Event()

        def work(first: int, device: Any) -> None:
            for j in range(first, len(which), len(devices)):
                if closed.is_set():
                    slots[j].cancel()
                    continue
                try:
                    slots[j].set_result(self._train(which[j], devices_lib.on_device(data, device), steps, how,
                                                    device))
                except BaseException as e:  # handed to the consumer, raised in its turn
                    slots[j].set_exception(e)

        threads = [threading.Thread(target=work, args=(i, d), name=f"chunks-{d.id}", daemon=True)
                   for i, d in enumerate(devices[:len(which)])]
        for thread in threads:
            thread.start()
        try:
            for c, slot in zip(which, slots, strict=True):
                yield c, slot.result()
        finally:  # the chunks running finish; no other starts
            closed.set()
            for thread in threads:
                thread.join()

    def _across_processes(self, data: Any, steps: _Steps, how: dict[str, Any]) -> Iterator[tuple[int, Trained]]:
        """Several processes: rounds of one chunk a device of the placement (chunk ``i`` of a
        round on its ``i``-th device's process); each process trains its own with threads, then
        every process receives every chunk of the round (:func:`lth_jax.devices.share`)."""
        devs, me = self.placement.devices, jax.process_index()
        mine = [d for d in devs if d.process_index == me]
        n = len(devs)
        for first in range(0, len(self.pieces), n):
            which = [c for c in range(first, min(len(self.pieces), first + n)) if devs[c - first].process_index == me]
            local = dict(self._on_devices(mine, which, data, steps, how)) if which else {}
            for c, result in sorted(devices_lib.share(local).items()):
                if c not in local:  # trained elsewhere: its steps count here too
                    steps(result.steps)
                yield c, result


def train_trials(trainer: Any, network: Any, trials: tuple, data: Any, progress: Any, budget_mb: int,
                 placement: devices_lib.Placement | None = None, **how: Any) -> tuple[PyTree, dict[str, np.ndarray]]:
    """Train every row of ``trials`` (:class:`Trials`) as the runner trains a level: identical
    rows once, in chunks of at most ``budget_mb`` of estimated device memory, trained whole on
    ``placement``'s devices. Returns the trained params and the trainer's outputs of every row,
    in order. ``how`` goes to the trainer."""
    (block,) = Program(trainer, network, Trials(*trials), budget_mb * 2**20, placement).run(data, progress, **how)
    return block.trained, block.outputs
