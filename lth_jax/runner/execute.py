"""Execution: levels trained program by program under the run's lock, each stored the moment it is done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lth_jax import datasets, programs, store
from lth_jax import devices as devices_lib
from lth_jax.runner.check import check, check_named_data, data_fingerprint, data_for
from lth_jax.runner.plan import Job, depends_on, next_program, plan, signature, stoppable
from lth_jax.runner.rewind import base_lottery, copy_original, original_jobs
from lth_jax.runner.spec import INIT, STATE, Level, Lottery, Progress, run_dir
from lth_jax.runner.stored import diverged_sources, level_arrays, level_metrics
from lth_jax.runner.tickets import ticket_masks
from lth_jax.runner.trials import (
    build_trials,
    concat_trials,
    original_snapshot,
    record_tree,
    report_problem,
    rewound_trials,
    snapshot_model_state,
    stored_init,
    stored_init_state,
    trial_states,
)
from lth_jax.store import ondisk


def default_budget_mb() -> int:
    """Device memory the training chunks may use: 40% of an accelerator's, 2 GB on a CPU."""
    dev = jax.devices()[0]
    try:
        limit = (dev.memory_stats() or {}).get("bytes_limit")
    except Exception:  # backends without memory_stats
        limit = None
    return int(0.4 * limit / 2**20) if limit and dev.platform != "cpu" else 2048


def run(lottery: Lottery, data: Any = None, root: str | Path = "runs", **kw: Any) -> Path:
    """Run (or resume) one lottery; returns its run directory under ``root``. See :func:`run_groups`."""
    return run_groups([lottery], data, root, **kw)[0]


def run_groups(lotteries: Sequence[Lottery], data: Any, root: str | Path, *, progress: Progress | None = None,
               memory_budget_mb: int | None = None,
               after_level: Callable[[Level, dict[str, Any]], None] | None = None,
               devices: int | Sequence[Any] | devices_lib.Placement | None = None,
               merge_levels: bool | None = None) -> list[Path]:
    """Run (or resume) several lotteries, level by level: those that share :func:`signature`
    train together, the others group by group. Every level whose source level is stored
    (:func:`depends_on`) trains in the next program (:func:`next_program`): all one-shot levels
    after the originals in one, iterative rounds one after another; ``merge_levels=False``
    trains one program per position of the plan instead (same numbers). The default merges on
    an accelerator and not on a CPU, where a program of 35 LeNets already fills the cores and
    wider ones ran slower (benchmarks/merged_levels.json: 0.76x on 2 cores). Each is stored exactly
    as if run alone (same directory, records, arrays and metrics, plus a ``group`` entry saying
    what trained with it when there were several). Returns the run directories, in the order
    given.

    ``data`` is what the trainer takes (e.g. :func:`lth_jax.reproduction.mnist.device_data`'s pair). Levels
    already stored are skipped; each new level is stored before the next starts. A late-rewound
    lottery takes its level 0 from its :func:`base_lottery`'s run under the same ``root``
    (trained there first if it is not stored). ``after_level`` is called after each newly
    stored level (tests use it to simulate a kill).

    ``devices`` (a count, devices, or a :class:`lth_jax.devices.Placement`; default: every
    device): each program is cut into chunks of at most ``memory_budget_mb`` exactly as one
    device cuts it, and every device trains whole chunks, so what is stored is bit for bit what
    one device stores (XLA's sums depend on a program's width: :mod:`lth_jax.devices`); a
    program of one chunk trains on one device, so a smaller budget buys parallel devices.
    """
    if not lotteries:
        return []
    data = data_for(lotteries, data)
    for lt in lotteries:  # before any folder, record or lock is written
        check(lt, data)
    named = [lt for lt in lotteries if not datasets.is_dataset(lt.data)]
    fingerprint = data_fingerprint(data) if named else None
    for lt in named:
        check_named_data(lt, root, fingerprint)
    progress = progress or Progress()
    if memory_budget_mb is not None and memory_budget_mb <= 0:
        raise ValueError(f"memory_budget_mb must be positive, not {memory_budget_mb}")
    budget = (memory_budget_mb or default_budget_mb()) * 2**20
    placement = devices_lib.split(devices)
    if placement is not None:
        data = placement.replicate(data)  # once: every trial reads the whole data set
    if merge_levels is None:
        merge_levels = jax.devices()[0].platform != "cpu"
    dirs = [run_dir(lt, root) for lt in lotteries]
    # A late-rewound run whose level 0 is not stored yet reads (or trains) its base run's.
    dirs += [run_dir(base_lottery(lt), root) for lt, d in zip(lotteries, list(dirs), strict=True)
             if lt.procedure.rewind_step and not store.done(d, plan(lt)[0].name)]
    for d in dirs:
        if store.is_export(d):  # its records hold no weights to prune or rewind from
            raise store.StoreError(f"{d} is an exported copy of a run (curves and metrics, no weights): "
                                   "train in another folder")
    # The lock comes before open_run, so a second run waiting for it cannot rewrite the
    # running one's settings file; a second run of *other* settings has its own directory.
    with _locks(dirs, progress):
        paths = [run_dir(lt, root) for lt in lotteries]
        devices_lib.written(f"{root}/open", lambda: [
            store.open_run(root, lt.hashed(), prefix=lt.procedure.mode, extra={
                **lt.unhashed(), **({} if datasets.is_dataset(lt.data) else {"data_fingerprint": fingerprint})})
            for lt in lotteries])
        classes: dict[tuple, dict[Path, Lottery]] = {}
        for lt, path in zip(lotteries, paths, strict=True):
            classes.setdefault(signature(lt), {})[path] = lt  # the same lottery twice runs once
        for members in classes.values():
            _run_locked(list(members.values()), list(members), data, progress, budget, after_level, placement,
                        merge_levels)
    return paths


class _locks:
    """Hold every run directory's lock for the whole run (in a fixed order: no deadlock)."""

    def __init__(self, paths: Sequence[Path], progress: Progress) -> None:
        self.paths, self.progress, self.held = sorted(set(paths)), progress, []

    def __enter__(self) -> _locks:
        if not devices_lib.is_writer():  # the other processes of a multi-host run write nothing
            return self
        for p in self.paths:
            cm = store.locked(p, wait=True, on_wait=self.progress.note)
            cm.__enter__()
            self.held.append(cm)
        return self

    def __exit__(self, *exc: Any) -> None:
        for cm in reversed(self.held):
            cm.__exit__(*exc)


def _run_locked(lotteries: Sequence[Lottery], paths: list[Path], data: Any, progress: Progress, budget: int,
                after_level: Callable[[Level, dict[str, Any]], None] | None,
                placement: devices_lib.Placement | None = None, merge: bool = True) -> None:
    plans = [plan(lt) for lt in lotteries]
    inits: list[Any] = [None] * len(lotteries)
    snapshots: list[Any] = [None] * len(lotteries)
    for g, (lt, path) in enumerate(zip(lotteries, paths, strict=True)):
        if store.problem(path, INIT):  # every record is verified on resume, the initial weights too
            inits[g] = stored_init(lt, path, progress)
    stored = set()
    for g, p in enumerate(plans):
        for i, level in enumerate(p):
            if store.done(paths[g], level.name):
                stored.add((g, i))
            else:
                report_problem(paths[g], level.name, progress)
    depth = max(len(p) for p in plans)
    announced: set[int] = set()
    news: dict[int, list[tuple[str, Level, dict[str, Any]]]] = {}

    def announce() -> None:  # a position of the plan is reported once all runs have stored it
        for i in range(depth):
            if i not in announced and all((g, i) in stored for g, p in enumerate(plans) if i < len(p)):
                announced.add(i)
                progress.level_end(i, news.pop(i, []))

    announce()
    while todo := next_program(lotteries, plans, stored, merge):
        k = lotteries[todo[0][0]].procedure.rewind_step  # one rewind step per class (signature)
        if k and todo[0][1] == 0:
            jobs = original_jobs(lotteries, paths, plans, [g for g, _ in todo], data, progress, budget, placement)
            stored |= {(g, 0) for g, _ in todo} - {(job.g, 0) for job in jobs}  # copied from their base runs
        else:
            jobs = [Job(g, lotteries[g], paths[g], plans[g][i]) for g, i in todo]
        if jobs:
            for g, i in _train_program(jobs, lotteries, paths, plans, inits, snapshots, data, progress, budget,
                                       after_level, placement, depth, news):
                stored.add((g, i))
        announce()


def _train_program(jobs: list[Job], lotteries: Sequence[Lottery], paths: list[Path], plans: list[list[Level]],
                   inits: list[Any], snapshots: list[Any], data: Any, progress: Progress, budget: int,
                   after_level: Callable[[Level, dict[str, Any]], None] | None,
                   placement: devices_lib.Placement | None, depth: int,
                   news: dict[int, list[tuple[str, Level, dict[str, Any]]]]) -> Iterator[tuple[int, int]]:
    """Train ``jobs`` (levels of one class) as one :class:`lth_jax.programs.Program`, storing
    each level the moment its trials are trained; yields ``(lottery, level index)`` of each."""
    first = jobs[0].lottery
    k = lotteries[jobs[0].g].procedure.rewind_step  # a base run's job (level 0) has rewind step 0
    index = [plans[job.g].index(job.level) for job in jobs]
    rewound = bool(k and index[0])
    parts = []
    for job, i in zip(jobs, index, strict=True):
        lt, level, g = job.lottery, job.level, job.g
        if job.path != paths[g]:  # a base run's level 0
            init = stored_init(lt, job.path, progress)
        else:
            if inits[g] is None:
                inits[g] = stored_init(lt, paths[g], progress)
            init = inits[g]
        previous = plans[g][depends_on(lt, i)] if i else None
        masks = ticket_masks(lt, job.path, init, level, previous, data)
        if rewound:
            if snapshots[g] is None:
                level0 = store.load_level(paths[g], plans[g][0].name)
                snapshots[g] = (*original_snapshot(lt, level0, k), snapshot_model_state(lt, level0, k))
            states = trial_states(lt, snapshots[g][2], level)
            parts.append((job, masks, programs.Trials(*rewound_trials(lt, snapshots[g][:2], masks, level),
                                                      model_state=states)))
            continue
        chain = chain_state = None
        start_state = stored_init_state(lt, job.path)
        if lt.procedure.mode == "han":
            prev = None if previous is None else store.load_level(job.path, previous.name)
            chain = init if prev is None else record_tree(prev, ondisk.CHAIN)
            if start_state is not None and prev is not None:
                rows = slice(-len(lt.procedure.seeds), None)  # the chain's rows are the level's last
                chain_state = jax.tree.map(lambda a, rows=rows: a[rows], record_tree(prev, STATE))
        states = trial_states(lt, start_state, level, chain_state)
        parts.append((job, masks, programs.Trials(*build_trials(lt, init, masks, level, chain), model_state=states)))
    sizes = [int(p[2].keys.shape[0]) for p in parts]
    stops = np.concatenate([stoppable(job.lottery, plans[job.g], i) for job, i in zip(jobs, index, strict=True)])
    stacked = [None if parts[0][2][f] is None else concat_trials([p[2][f] for p in parts]) for f in range(6)]
    stacked[4] = stops if stops.any() else None
    trials = programs.Trials(*stacked)
    program = programs.Program(first.trainer, first.network, trials, budget, placement, sizes)
    how: dict[str, Any] = {"start_step": k} if rewound else {}
    if first.pipeline() is not None:
        how["pipeline"] = first.pipeline()
    if stops.any():
        how["stop"] = first.judge.stop(first.procedure.stop_every)
    steps = sorted({s for job in jobs for s in job.lottery.procedure.snapshots()}) if index[0] == 0 else []
    if steps:
        how["snapshot_steps"] = tuple(steps)
    progress.level_start(min(index), depth, len({job.path for job in jobs}), program.rows,
                         (first.trainer.iterations - (k if rewound else 0)) * len(program.pieces))
    group = None
    if len(parts) > 1:  # what trained with each level (cost.py adds a program's levels up)
        members = [f"{job.path.name}/{job.level.name}" for job in jobs]
        group = {"program": hashlib.sha256("|".join(members).encode()).hexdigest()[:16],
                 "runs": len({job.path for job in jobs}), "levels": len(parts), "trials": program.rows,
                 "unique_trials": int(program.unique.size), "chunks": len(program.pieces),
                 "trained_trials": program.trained_trials, "members": members}
    seconds = 0.0
    for block in program.run(data, progress, **how):
        job, masks, _ = parts[block.index]
        lt, level, i = job.lottery, job.level, index[block.index]
        seconds += block.seconds
        judged = {key: v for key, v in block.outputs.items() if not ondisk.is_snapshot(key)}
        metrics = level_metrics(lt, level, masks, judged, block.seconds,
                                diverged_sources(lt, job.path, plans[job.g], i))
        if rewound:
            metrics["rewind_step"] = k
        if i and getattr(lt.prune, "at_init", False):  # masks from the initial weights, not from a training
            metrics["pruned_at_init"] = True
        if steps:
            metrics["snapshot_steps"] = steps
        if group is not None:
            metrics["group"] = group
        arrays = level_arrays(lt, masks, block.trained, block.outputs)
        devices_lib.written(f"{job.path}/{level.name}",
                            lambda job=job, level=level, arrays=arrays, metrics=metrics: store.save_level(
                                job.path, level.name, arrays, metrics))
        news.setdefault(i, []).append((job.path.name, level, metrics))
        if after_level:
            after_level(level, metrics)
        if job.path != paths[job.g]:  # the base's original, stored: now the rewound run's level 0
            devices_lib.written(f"{paths[job.g]}/copy", lambda job=job, level=level: copy_original(
                job.path, paths[job.g], level.name, k))
        yield job.g, i
    progress.trained(int(program.unique.size), seconds)
