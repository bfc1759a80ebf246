"""One training program over a stack of trials: identical rows once, in budgeted chunks.

The runner hands every level it can train now (:func:`lth_jax.runner.run_groups`) to one
:class:`Program`: the trial rows of all those levels stacked on one leading axis (params,
masks, batch keys, optimiser states or None). The program

- trains each distinct row once (rows are identified by a digest of everything that
  determines their training, e.g. the unpruned originals shared by several lines);
- splits the distinct rows into equal chunks of at most ``budget`` bytes of estimated device
  memory per device (:func:`chunks`; equal sizes so one compiled program serves them all), each
  a whole multiple of the devices the trial axis is split across;
- yields each *block* of rows (one level of one run) the moment its last row is trained, so a
  run killed mid-program keeps every level already complete.

Rows never interact inside a vmapped program, so which other rows share a chunk does not change
a row's result for the dense networks of the paper (tests/test_programs.py: one-shot levels
trained in one program store what they store trained level by level); a vmapped convolution is
one grouped convolution whose CPU kernel may sum in another order at another width, which can
change the last bits (tests/test_runner.py measures it).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator, Sequence
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


def chunks(n: int, per_chunk: int, multiple: int = 1) -> list[np.ndarray]:
    """``range(n)`` split into equal-size chunks of at most ``per_chunk`` (the last padded by
    repeating its first index, so every chunk compiles to the same program), each a multiple of
    ``multiple`` rows (the devices the trial axis is split across; at least one row each)."""
    per_chunk = max(multiple, per_chunk // multiple * multiple)
    k = max(1, math.ceil(n / per_chunk))
    size = multiple * math.ceil(math.ceil(n / k) / multiple)
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


class Program:
    """The distinct rows of ``trials`` in chunks of at most ``budget`` bytes a device, split
    across ``placement``'s devices; ``blocks`` are the sizes of consecutive row blocks (default:
    one block of every row)."""

    def __init__(self, trainer: Any, network: Any, trials: Trials, budget: int,
                 placement: devices_lib.Placement | None = None, blocks: Sequence[int] | None = None) -> None:
        self.trainer, self.network, self.trials, self.placement = trainer, network, Trials(*trials), placement
        self.rows = int(self.trials.keys.shape[0])
        self.blocks = list(blocks) if blocks is not None else [self.rows]
        if sum(self.blocks) != self.rows:
            raise ValueError(f"blocks of {sum(self.blocks)} rows for a stack of {self.rows}")
        self.unique, self.inverse = unique_rows(row_digests(self.trials))
        count = placement.count if placement is not None else 1
        self.pieces = chunks(self.unique.size, count * (budget // trainer.trial_bytes(network)), count)

    @property
    def trained_trials(self) -> int:
        """Rows the chunks train, padding included."""
        return int(sum(p.size for p in self.pieces))

    def run(self, data: Any, progress: Any, **how: Any) -> Iterator[Block]:
        """Train chunk by chunk; yield every block once all its rows are trained (in the order
        they complete). ``how`` goes to the trainer (``start_step``, ``snapshot_steps``, ...)."""
        trainer, network, t = self.trainer, self.network, self.trials
        n_unique = self.unique.size
        done = np.zeros(n_unique, bool)
        row_seconds = np.zeros(n_unique)
        refs = np.bincount(self.inverse, minlength=n_unique)  # rows sharing each trained row share its time
        starts = np.cumsum([0, *self.blocks])
        pending = list(range(len(self.blocks)))
        trained: list[np.ndarray] | None = None
        outputs: dict[str, np.ndarray] = {}
        treedef = None
        for piece in self.pieces:
            rows = self.unique[piece]
            if rows.size == self.rows and np.array_equal(rows, np.arange(self.rows)):
                p, m, k, s, ms = (*t[:4], t.model_state)  # every row once, in order: nothing to gather
            else:
                p, m, k, s, ms = _gather((*t[:4], t.model_state), jnp.asarray(rows))
            extra = dict(how, opt_state=s) if s is not None else dict(how)
            if ms is not None:
                extra["model_state"] = ms
            if t.stoppable is not None:
                extra["stoppable"] = np.asarray(t.stoppable)[rows]
            if self.placement is not None:  # trainers that split the trial axis across devices take it
                extra["placement"] = self.placement
            t0 = time.perf_counter()
            out_params, out = trainer(network, p, m, k, data, on_steps=progress.steps, **extra)
            leaves, treedef = jax.tree.flatten(devices_lib.host(out_params))
            np.add.at(row_seconds, piece, (time.perf_counter() - t0) / piece.size)  # padding's time too
            if trained is None:
                trained = [np.empty((n_unique, *np.shape(x)[1:]), np.asarray(x).dtype) for x in leaves]
                outputs = {key: np.empty((n_unique, *np.shape(v)[1:]), np.asarray(v).dtype) for key, v in out.items()}
            for acc, x in zip(trained, leaves, strict=True):
                acc[piece] = np.asarray(x)
            for key, v in out.items():
                outputs[key][piece] = np.asarray(v)
            done[piece] = True
            for b in list(pending):
                at = self.inverse[starts[b]:starts[b + 1]]
                if done[at].all():
                    pending.remove(b)
                    yield Block(b, treedef.unflatten([x[at] for x in trained]),
                                {key: v[at] for key, v in outputs.items()}, float(np.sum(row_seconds[at] / refs[at])))


def train_trials(trainer: Any, network: Any, trials: tuple, data: Any, progress: Any, budget_mb: int,
                 placement: devices_lib.Placement | None = None, **how: Any) -> tuple[PyTree, dict[str, np.ndarray]]:
    """Train every row of ``trials`` (:class:`Trials`) as the runner trains a level: identical
    rows once, in chunks of at most ``budget_mb`` of estimated device memory a device, split
    across ``placement``'s devices (``data`` replicated there). Returns the trained params and
    the trainer's outputs of every row, in order. ``how`` goes to the trainer."""
    (block,) = Program(trainer, network, Trials(*trials), budget_mb * 2**20, placement).run(data, progress, **how)
    return block.trained, block.outputs
