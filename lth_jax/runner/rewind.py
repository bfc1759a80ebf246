"""Late rewinding: the base run whose trained originals and snapshots a late-rewound run shares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lth_jax import devices as devices_lib
from lth_jax import programs, store
from lth_jax.runner.plan import Job
from lth_jax.runner.spec import INIT, Level, Lottery, Progress, run_dir
from lth_jax.runner.tickets import ticket_masks
from lth_jax.runner.trials import build_trials, report_problem, stored_init, stored_init_state
from lth_jax.store import ondisk


def base_lottery(lottery: Lottery) -> Lottery:
    """The lottery whose level 0 (the trained originals and their snapshots) a late-rewound
    ``lottery`` uses: the same one with ``rewind_step = 0`` (itself when it is 0). Its run
    directory is :func:`run_dir` of it under the same root."""
    if not lottery.procedure.rewind_step:
        return lottery
    # Its originals always train the full length, so a stopping run shares them with one that does not.
    return lottery.replace(procedure=dataclasses.replace(lottery.procedure, rewind_step=0, stop_at_convergence=False))


def _base_path(lottery: Lottery, path: Path) -> Path:
    """The base run's directory (created with its settings file if it is not there yet)."""
    base = base_lottery(lottery)
    bpath = run_dir(base, path.parent)
    if not (bpath / ondisk.SETTINGS).exists():
        devices_lib.written(f"{bpath}/open", lambda: store.open_run(path.parent, base.hashed(),
                                                                      prefix=base.procedure.mode,
                                                                      extra=base.unhashed()))
    return bpath


def original_jobs(lotteries: Sequence[Lottery], paths: list[Path], plans: list[list[Level]], todo: list[int],
                   data: Any, progress: Progress, budget: int,
                   placement: devices_lib.Placement | None = None) -> list[Job]:
    """Level 0 of late-rewound runs: copy each base run's stored original (taking a missing
    snapshot first); the bases whose level 0 is not stored are returned as jobs to train."""
    jobs = []
    for g in todo:
        lt, level = lotteries[g], plans[g][0]
        base, bpath = base_lottery(lt), _base_path(lt, paths[g])
        if store.done(bpath, level.name):
            _add_snapshots(base, bpath, level, data, progress, budget, placement)
            devices_lib.written(f"{paths[g]}/copy", lambda g=g, bpath=bpath, lt=lt, level=level: copy_original(
                bpath, paths[g], level.name, lt.procedure.rewind_step))
        else:
            report_problem(bpath, level.name, progress)
            jobs.append(Job(g, base, bpath, level))
    return jobs


def copy_original(base: Path, path: Path, name: str, step: int) -> None:
    """Make the base run's ``init`` and level-0 record ``name`` (the trained originals) the
    late-rewound run's own: verified on reading, stored with fresh checksums, arrays and metrics
    unchanged except that only the step-``step`` snapshot is kept and ``copied_from`` names the
    source. Nothing is trained."""
    if not store.done(path, INIT):
        rec = store.load_level(base, INIT)
        store.save_level(path, INIT, rec.arrays, rec.metrics)
    rec = store.load_level(base, name)
    keep = ondisk.snapshot(step) + ondisk.SEP
    arrays = {key: a for key, a in rec.arrays.items()
              if not ondisk.is_snapshot(key) or key.startswith(keep)}
    store.save_level(path, name, arrays, {**rec.metrics, "snapshot_steps": [step],
                                          "copied_from": f"{base.name}/{name}"})


def _add_snapshots(lottery: Lottery, path: Path, level: Level, data: Any, progress: Progress, budget: int,
                   placement: devices_lib.Placement | None = None) -> None:
    """Give the stored originals of level 0 the snapshots ``lottery`` asks for that they lack:
    the originals (seeds only, no controls) are trained again from their initial weights with
    their own batch order up to the last missing step, and the record is stored again with
    the new snapshots beside everything it held. On one platform the same programs give the
    same bits as the originals' first training, so this takes k steps of the seeds' networks
    instead of a whole level (vmapped over other trial counts, conv nets may differ in the last
    bits, as tests/test_runner.py measures)."""
    record = store.load_level(path, level.name)
    have = set(record.metrics.get("snapshot_steps", []))
    missing = sorted(set(lottery.procedure.snapshots()) - have)
    if not missing:
        return
    progress.note(f"{path.name}/{level.name} holds no snapshot at step(s) {', '.join(map(str, missing))}: "
                  f"training its originals to step {missing[-1]} to take them")
    init = stored_init(lottery, path, progress)
    alone = lottery.replace(procedure=dataclasses.replace(lottery.procedure, reinit=0, shuffle=0, random=0))
    masks = ticket_masks(alone, path, init, level, None)
    params, tmasks, keys = build_trials(alone, init, masks, level)
    trials = programs.Trials(params, tmasks, keys, model_state=stored_init_state(alone, path))
    how = {} if lottery.pipeline() is None else {"pipeline": lottery.pipeline()}
    (block,) = programs.Program(lottery.trainer, lottery.network, trials, budget, placement).run(
        data, progress, snapshot_steps=tuple(missing), stop_step=missing[-1], **how)
    outputs = block.outputs
    new = {key: v for key, v in outputs.items() if ondisk.is_snapshot(key)}
    devices_lib.written(f"the snapshots of {path}/{level.name}", lambda: store.save_level(
        path, level.name, {**record.arrays, **new}, {**record.metrics, "snapshot_steps": sorted(have | set(missing))}))
