"""The instability experiment (Frankle et al. 2020) on a stored lottery run: at each chosen level,
two copies of every chosen trial (the ticket, its random-mask control, ...) trained from the
same start with different data orders, and the test error along the straight line between them.

A trial's start is the runner's own (:func:`lth_jax.runner.build_trials`, or
:func:`lth_jax.runner.rewound_trials` at the run's ``rewind_step`` k: the step-k snapshot under
the trial's mask with its optimiser state there), so the pair of a level is "the ticket of that
level rewound to step k, trained twice". The two copies:

- copy **a** trains with the trial's own batch key K: it *is* the run's training of that trial.
  For tickets the run stored the result (``trained``), so it is read, not retrained
  (tests/test_instability_runs.py checks that retraining gives it bit for bit). Controls are
  built here, one of each chosen role per ticket, as a run with ``--controls=1,1,1`` builds
  them (:func:`pairing`; the run itself needs none), and both copies train here.
- copy **b** draws its batches from ``fold_in(K, COPY_B)``. Copy a's batch of step t comes
  from ``fold_in(K, t)`` with ``t < iterations < COPY_B``, so the two never share a batch key.

All copies of a level train in one vmapped program (identical rows once, such as the
random-mask control of the unpruned level, which is its ticket; chunks bounded by the memory
budget), and every pair's path is one batched evaluation
(:func:`lth_jax.instability.path_errors`). A pair whose copy diverged (NaN/inf) is kept in the
record with ``diverged: true`` and left out of the statistics.

Stored like a run (:mod:`lth_jax.store`): ``root/instability-<hash>/<level>-<role>.{json,npz}``
with the hash of the lottery's hashed settings and the analysis's (:meth:`Analysis.hashed`: the
path's grid and copy b's stream, not the roles); each level's roles are stored as soon as they
are evaluated, so a killed analysis resumes, a later one with more roles adds only theirs, and
a record that fails verification is named and recomputed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import devices as devices_lib
from lth_jax import instability, programs, runner, store
from lth_jax import masks as masks_lib
from lth_jax.store import ondisk

PyTree = Any
PREFIX = "instability"
COPY_B = 2**31 - 1  # copy b's batch stream: fold_in(K, COPY_B); training steps are below it
MASKED_ROLES = tuple(r for r in runner.ROLES if r != "continue")  # the roles that start from a level's masks


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What the instability experiment measures on top of a lottery run.

    ``roles``: which trials of a level get a pair (default: tickets and random-mask controls);
    ``alphas``: points of the path (evenly spaced from 0 to 1); ``every``: analyse every
    ``every``-th level of the plan and the last (1: all). ``chunk`` (test examples at a time) and
    ``alpha_batch`` change memory and speed, not numbers; ``every`` only which levels exist.
    """

    roles: tuple[str, ...] = dataclasses.field(default=("ticket", "random"), metadata={
        "help": "Trials that get a pair of copies: ticket and controls built for the pairs (one per ticket).",
        "choices": MASKED_ROLES, "unique": True})
    alphas: int = dataclasses.field(default=instability.ALPHAS, metadata={
        "help": "Points of the path between the two copies, evenly spaced from 0 to 1.", "min": 2})
    every: int = dataclasses.field(default=1, metadata={
        "help": "Analyse every N-th level of the run's plan, and its last (1: all).", "min": 1})
    chunk: int | None = dataclasses.field(default=2000, metadata={
        "help": "Test examples evaluated at a time along a path (memory only; the errors do not change).", "min": 1})
    alpha_batch: int | None = dataclasses.field(default=None, metadata={
        "help": "Alphas evaluated at a time (speed only; default: the whole path in one vmap).", "min": 1})

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(self.roles))
        bad = [r for r in self.roles if r not in MASKED_ROLES]
        if not self.roles or bad or len(set(self.roles)) != len(self.roles):
            raise ValueError(f"roles must be distinct names among {', '.join(MASKED_ROLES)}, "
                             f"not {', '.join(self.roles)}")
        if self.alphas < 2:
            raise ValueError(f"a path needs at least its two endpoints, not {self.alphas} alphas")
        if self.every < 1:
            raise ValueError(f"every must be a positive number of levels, not {self.every}")
        for name in ("chunk", "alpha_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")

    def hashed(self) -> dict[str, Any]:
        """What the stored numbers depend on beyond the lottery (not the roles: each role of a
        level is its own record, so asking for more roles later adds records)."""
        return {"alphas": self.alphas, "copy_b": COPY_B}

    def levels(self, plan: Sequence[runner.Level]) -> list[runner.Level]:
        """The levels analysed: every ``every``-th of ``plan`` from the first, and the last."""
        return [lv for i, lv in enumerate(plan) if i % self.every == 0 or i == len(plan) - 1]


def pairing(lottery: runner.Lottery) -> runner.Lottery:
    """The lottery whose trials the pairs start from: ``lottery`` with one control of each kind at
    every level, so a control's pair starts exactly where that control of a run with
    ``--controls=1,1,1`` starts (its masks, weights and batch key). Only its trial layout is
    used; the run itself needs no controls."""
    p = lottery.procedure
    if p.mode == "han":
        raise ValueError("instability analysis applies to one-shot and iterative runs, not han")
    if p.stop_at_convergence:  # copy a is the run's own training: it must have run the full length, as copy b does
        raise ValueError("instability analysis needs full-length trainings: run without stop_at_convergence")
    return lottery.replace(procedure=dataclasses.replace(p, control_levels=None, reinit=1, shuffle=1, random=1))


def record_name(level: runner.Level | str, role: str) -> str:
    """The record of one role's pairs at ``level`` (a level or its name): ``<level>-<role>``
    (e.g. ``r07-random``)."""
    return f"{level if isinstance(level, str) else level.name}-{role}"


def analysis_dir(lottery: runner.Lottery, analysis: Analysis, root: str | Path) -> Path:
    """Where :func:`run` stores the analysis of ``lottery`` under ``root``."""
    return store.run_dir(root, _hashed(lottery, analysis), prefix=PREFIX)


def _hashed(lottery: runner.Lottery, analysis: Analysis) -> dict[str, Any]:
    return {"lottery": lottery.hashed(), **analysis.hashed()}


def run(lottery: runner.Lottery, analysis: Analysis, data: Any, root: str | Path, *,
        progress: runner.Progress | None = None, memory_budget_mb: int | None = None,
        after_level: Callable[[runner.Level, dict[str, Any]], None] | None = None,
        command: str | None = None, devices: int | Sequence[Any] | None = None) -> Path:
    """Run (or resume) ``lottery`` under ``root`` (:func:`lth_jax.runner.run`), then the instability
    analysis of its chosen levels; returns the analysis directory. ``data``: the trainer's
    ``(train, test)`` pair; the path is evaluated on the test set. ``after_level(level, metrics)``
    is called after each newly stored level; ``command`` (the driver's command line) is added to
    the commands that wrote to this analysis (``settings.json``'s extras, not hashed); ``devices``
    splits every program's trial axis across them (:func:`lth_jax.runner.run_groups`)."""
    pairing(lottery)  # refuses han runs before anything trains
    progress = progress or runner.Progress()
    budget = memory_budget_mb or runner.default_budget_mb()
    placement = devices_lib.split(devices)
    if placement is not None:
        data = placement.replicate(data)  # once, for the run and the pairs
    run_path = runner.run(lottery, data, root, progress=progress, memory_budget_mb=budget, devices=placement)
    path = analysis_dir(lottery, analysis, root)
    with store.locked(path) if devices_lib.is_writer() else contextlib.nullcontext():
        commands = _commands(path)
        extra = {"run": run_path.name, "commands": sorted({*commands, *([command] if command else [])})}
        devices_lib.written(f"{path}/open", lambda: store.open_run(root, _hashed(lottery, analysis), prefix=PREFIX,
                                                                   extra=extra))
        chosen = analysis.levels(runner.plan(lottery))
        for index, level in enumerate(chosen):
            todo = [role for role in analysis.roles if not store.done(path, record_name(level, role))]
            for role in todo:
                problem = store.problem(path, record_name(level, role))
                if problem:
                    progress.note(f"recomputing {record_name(level, role)}: {problem}")
            if todo:
                for role, (arrays, metrics) in level_pairs(lottery, analysis, run_path, level, data, progress,
                                                           budget, tuple(todo), index, len(chosen),
                                                           placement).items():
                    devices_lib.written(f"{path}/{record_name(level, role)}",
                                        lambda level=level, role=role, arrays=arrays, metrics=metrics: store.save_level(
                                            path, record_name(level, role), arrays, metrics))
                    if after_level:
                        after_level(level, metrics)
            progress.level_end(index, [])
    return path


def _commands(path: Path) -> list[str]:
    """The commands an earlier analysis of ``path`` recorded (none when its settings are not
    stored, or damaged: they are written again)."""
    try:
        found = store.load_settings(path)["extra"].get("commands", [])
    except store.StoreError:
        return []
    return [c for c in found if isinstance(c, str)] if isinstance(found, list) else []


def _start(lottery: runner.Lottery, run_path: Path, level: runner.Level) -> tuple[PyTree, PyTree, jax.Array, PyTree]:
    """Params, masks, batch keys and optimiser states (or None) of every trial of ``level``,
    as the run started them (a late-rewound run: from the step-k snapshot, level 0 included)."""
    masks = runner.stored_masks(store.subtree(store.load_level(run_path, level.name).arrays, ondisk.MASKS))
    k = lottery.procedure.rewind_step
    if k:
        level0 = store.load_level(run_path, runner.plan(lottery)[0].name)
        return runner.rewound_trials(lottery, runner.original_snapshot(lottery, level0, k), masks, level)
    init = runner.stored_init(lottery, run_path)
    return (*runner.build_trials(lottery, init, masks, level), None)


def level_pairs(lottery: runner.Lottery, analysis: Analysis, run_path: Path, level: runner.Level, data: Any,
                progress: runner.Progress, budget_mb: int, roles: Sequence[str] | None = None, index: int = 0,
                depth: int = 1, placement: devices_lib.Placement | None = None
                ) -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Train the copies of one level's trials of ``roles`` (default: the analysis's) in one
    program and evaluate their paths in one more: ``{role: (arrays, metrics)}``, each role's record."""
    if lottery.network.stateful:  # an interpolated network needs its statistics recomputed (not done yet)
        raise ValueError(f"the instability analysis does not take modules with state "
                         f"({', '.join(lottery.network.contract().collections)}) yet")
    roles = tuple(analysis.roles if roles is None else roles)
    record = store.load_level(run_path, level.name)
    pairs_of = pairing(lottery)
    params, masks, keys, states = _start(pairs_of, run_path, level)
    trials = runner.layout(pairs_of.procedure, level)
    rows = [i for i, t in enumerate(trials) if t.role in roles and t.replicate == 0]
    retrain = [i for i in rows if trials[i].role != "ticket"]  # a ticket's copy a is the run's stored training
    take = np.asarray(retrain + rows, np.int32)
    keys_b = jax.vmap(lambda key: jax.random.fold_in(key, COPY_B))(keys[jnp.asarray(rows)])
    job = (_rows(params, take), _rows(masks, take),
           jnp.concatenate([keys[jnp.asarray(retrain, jnp.int32)], keys_b]) if retrain else keys_b,
           None if states is None else _rows(states, take))
    k = lottery.procedure.rewind_step
    how = {"start_step": k} if k else {}
    progress.level_start(index, depth, 1, int(take.size), lottery.trainer.iterations - k)
    t0 = time.perf_counter()
    trained, outputs = programs.train_trials(lottery.trainer, lottery.network, job, data, progress, budget_mb,
                                           placement, **how)
    seconds_train = time.perf_counter() - t0
    stored = store.subtree(record.arrays, ondisk.TRAINED)
    copy_a, diverged_a, curves_a = [], [], []  # per chosen row, in row order
    by_row = {row: j for j, row in enumerate(retrain)}
    for i in rows:
        if trials[i].role == "ticket":  # tickets are the first rows of both layouts, seed by seed
            copy_a.append(jax.tree.map(lambda x, i=i: jnp.asarray(x[i]), stored))
            diverged_a.append(int(record.arrays[ondisk.DIVERGED_AT][i]))
            curves_a.append(record.arrays[ondisk.ACCURACY][i])
        else:
            copy_a.append(jax.tree.map(lambda x, j=by_row[i]: x[j], trained))
            diverged_a.append(int(outputs[ondisk.DIVERGED_AT][by_row[i]]))
            curves_a.append(outputs[ondisk.ACCURACY][by_row[i]])
    pair_masks = _rows(masks, np.asarray(rows))
    a = masks_lib.apply(jax.tree.map(lambda *xs: jnp.stack(xs), *copy_a), pair_masks)
    b = masks_lib.apply(jax.tree.map(lambda x: x[len(retrain):], trained), pair_masks)
    t0 = time.perf_counter()
    barrier = _paths(lottery, analysis, a, b, data, budget_mb)
    seconds_path = time.perf_counter() - t0
    diverged_b = np.asarray(outputs[ondisk.DIVERGED_AT][len(retrain):], np.int64)
    m = record.metrics
    out = {}
    for role in roles:
        js = [j for j, i in enumerate(rows) if trials[i].role == role]
        pairs = [{"seed": trials[rows[j]].seed, "barrier": float(barrier.barrier[j]),
                  "error_a": float(barrier.endpoints[j, 0]), "error_b": float(barrier.endpoints[j, 1]),
                  "diverged": bool(diverged_a[j] >= 0 or diverged_b[j] >= 0)} for j in js]
        metrics = {"order": level.order * len(MASKED_ROLES) + MASKED_ROLES.index(role), "plan_level": level.name,
                   "role": role,
                   "level_id": level.level_id, "percent_nominal": m["percent_nominal"],
                   "percent_overall": m["percent_overall"], "percent_hidden": m["percent_hidden"],
                   "rewind_step": k, "alphas": analysis.alphas, "pairs": pairs, "summary": summarize(pairs),
                   "trained_copies_of_level": int(take.size), "seconds_train_of_level": seconds_train,
                   "seconds_path_of_level": seconds_path, "device": str(jax.devices()[0].platform)}
        sel = np.asarray(js, np.int64)
        arrays = {"alphas": np.asarray(barrier.alphas), "errors": np.asarray(barrier.errors)[sel],
                  "barrier": np.asarray(barrier.barrier)[sel], "endpoints": np.asarray(barrier.endpoints)[sel],
                  "curves_a/accuracy": np.stack([curves_a[j] for j in js]).astype(np.float32),
                  "curves_b/accuracy": np.asarray(outputs[ondisk.ACCURACY][len(retrain):])[sel]}
        out[role] = (arrays, metrics)
    return out


def _paths(lottery: runner.Lottery, analysis: Analysis, a: PyTree, b: PyTree, data: Any,
           budget_mb: int) -> instability.Barrier:
    """Every pair's path, as many pairs a program as the memory budget allows."""
    test_x, test_y = data[1]
    alphas = instability.grid(analysis.alphas)
    pairs = jax.tree.leaves(a)[0].shape[0]
    per_network = 4 * sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(a))
    per_network += 4 * (analysis.chunk or int(test_x.shape[0])) * _units(lottery)
    per_pair = per_network * (analysis.alphas if analysis.alpha_batch is None else analysis.alpha_batch)
    size = max(1, min(pairs, budget_mb * 2**20 // max(1, per_pair)))
    parts = []
    for start in range(0, pairs, size):
        piece = np.arange(start, min(pairs, start + size))
        if piece.size < size:  # pad to one program shape
            piece = np.concatenate([piece, np.full(size - piece.size, piece[0])])
        pa, pb = (_rows(tree, piece) for tree in (a, b))
        out = instability.path_errors(lottery.network.module.apply, pa, pb, alphas, test_x, test_y,
                                      chunk=analysis.chunk, alpha_batch=analysis.alpha_batch)
        parts.append(jax.device_get(out))
    cat = [np.concatenate([getattr(p, f) for p in parts])[:pairs] for f in ("errors", "endpoints", "barrier")]
    return instability.Barrier(np.asarray(alphas), *cat)


def _rows(tree: PyTree, rows: np.ndarray) -> PyTree:
    take = jnp.asarray(rows)
    return jax.tree.map(lambda x: x[take], tree)


def _units(lottery: runner.Lottery) -> int:
    """Activations per example of one forward pass (the sum of every layer's output width)."""
    return sum(int(x.shape[-1]) for x in jax.tree.leaves(lottery.network.shapes()) if x.ndim == 1)


def mean_se(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, standard error of the mean (None for one value), min and max; all None for none."""
    if not len(values):
        return {"mean": None, "se": None, "min": None, "max": None}
    v = np.asarray(values, np.float64)
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None
    return {"mean": float(v.mean()), "se": se, "min": float(v.min()), "max": float(v.max())}


def summarize(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of a role's pairs (diverged ones left out, and counted): barrier and endpoint
    error mean, standard error of the mean, min and max, with the number of pairs."""
    good = [p for p in pairs if not p["diverged"]]
    return {"pairs": len(good), "diverged": len(pairs) - len(good),
            "barrier": mean_se([p["barrier"] for p in good]),
            "error": mean_se([e for p in good for e in (p["error_a"], p["error_b"])])}


# ---------------------------------------------------------------- reading results back


def records(path: str | Path, arrays: bool = False) -> Iterator[store.Record]:
    """The stored levels of an analysis in plan order (largest first)."""
    for name in store.levels(path):
        yield store.load_level(path, name, arrays=arrays)


def table(path: str | Path) -> list[dict[str, Any]]:
    """One row per stored level and role: percent remaining, pairs, barrier and error statistics."""
    rows = []
    for rec in records(path):
        m, s = rec.metrics, rec.metrics["summary"]
        rows.append({"level": m["plan_level"], "percent_overall": m["percent_overall"], "rewind_step": m["rewind_step"],
                     "role": m["role"], "pairs": s["pairs"], "diverged": s["diverged"],
                     **{f"barrier_{k}": v for k, v in s["barrier"].items()},
                     **{f"error_{k}": v for k, v in s["error"].items()}})
    return rows
