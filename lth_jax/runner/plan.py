"""Planning: the levels of a lottery (:func:`plan`), the trial axis of a level (:func:`layout`), which
levels train together (:func:`depends_on`, :func:`next_program`), which trials may stop at convergence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lth_jax.runner.spec import MAX_ROUNDS, Level, Lottery, Procedure, Trial, frozen


def plan(lottery: Lottery) -> list[Level]:
    """The levels a run trains, in order. One-shot levels always start with the full one (the
    originals, whose trained weights every other level prunes)."""
    p, rule, net = lottery.procedure, lottery.prune, lottery.network
    if p.mode == "oneshot":
        values = sorted({float(rule.full), *p.levels}, reverse=True)
        return [Level(f"p{v:g}", -round(v * 1000), round(v * 1000), v, rule.counts(net, value=v)) for v in values]
    total = sum(net.weight_counts().values())
    out = []
    for r in range(MAX_ROUNDS + 1):
        counts = rule.counts(net, rounds=r)
        out.append(Level(f"r{r:02d}", r, r, rule.value_after(r), counts))
        if p.rounds is not None:
            if r >= p.rounds:
                break
        elif counts is None:
            raise ValueError("this pruning rule cannot predict its sizes: give the procedure a number of rounds")
        elif 100.0 * sum(counts.values()) / total < p.min_remaining:
            break
    return out


def layout(procedure: Procedure, level: Level | None = None) -> list[Trial]:
    """The trial axis of a level: tickets, reinit controls, shuffle controls, random-mask
    controls, (continue)."""
    s = procedure.seeds
    controls = level is None or procedure.controls_at(level.value)
    out = [Trial("ticket", x, 0) for x in s]
    if controls:
        out += [Trial("reinit", x, j) for x in s for j in range(procedure.reinit)]
        out += [Trial("shuffle", x, j) for x in s for j in range(procedure.shuffle)]
        out += [Trial("random", x, j) for x in s for j in range(procedure.random)]
    if procedure.mode == "han":
        out += [Trial("continue", x, 0) for x in s]
    return out


def signature(lottery: Lottery) -> tuple:
    """Lotteries that can share one compiled program: same forward pass and trainer, the same
    rewind step and the same stopping rule (each keeps its own mode, plan and pruning rule)."""
    p = lottery.procedure
    stop = (p.stop_every, frozen(lottery.judge.extra())) if p.stop_at_convergence else None
    return (lottery.network.program(), lottery.trainer.signature(), p.rewind_step, stop, lottery.pipeline())


def stoppable(lottery: Lottery, plan_: Sequence[Level], index: int) -> np.ndarray:
    """Per trial of level ``index`` (:func:`layout` order): whether it stops at convergence.
    Only with ``stop_at_convergence``, and only trainings whose weights no later level is pruned
    from: every control, and the tickets of a level nothing is pruned from (every one-shot level
    after the originals, a chain's last round; han's measured tickets, not its chain). The
    paper prunes after the full training."""
    p = lottery.procedure
    roles = [t.role for t in layout(p, plan_[index])]
    if not p.stop_at_convergence:
        return np.zeros(len(roles), bool)
    source = any(depends_on(lottery, j) == index for j in range(len(plan_)))
    return np.asarray([not (source and role == source_role(lottery)) for role in roles])


class Job(NamedTuple):
    """One level of one run to train: the run's lottery and directory (a late-rewound run's
    level 0 is its base run's) and the index of the lottery it serves."""

    g: int
    lottery: Lottery
    path: Path
    level: Level


def depends_on(lottery: Lottery, index: int) -> int | None:
    """The level whose stored training level ``index`` of the plan is pruned from (None for the
    first): the originals for every one-shot level, the previous round otherwise."""
    if index == 0:
        return None
    return 0 if lottery.procedure.mode == "oneshot" else index - 1


def source_role(lottery: Lottery) -> str:
    """The trials of a level whose trained weights the next level is pruned from: the tickets,
    or Han et al.'s continuing chain."""
    return "continue" if lottery.procedure.mode == "han" else "ticket"


def next_program(lotteries: Sequence[Lottery], plans: Sequence[Sequence[Level]], stored: set[tuple[int, int]],
                 merge: bool = True) -> list[tuple[int, int]]:
    """The ``(lottery, level index)`` pairs to train in the next program: every level not
    ``stored`` whose source level is. Levels 0 (the originals, which take the snapshots) train
    in a program of their own; with ``merge=False`` only the shallowest ready levels train
    together (one program per level of the plan, as before levels merged)."""
    ready = [(g, i) for g, p in enumerate(plans) for i in range(len(p)) if (g, i) not in stored
             and (depends_on(lotteries[g], i) is None or (g, depends_on(lotteries[g], i)) in stored)]
    if not ready:
        return []
    if any(i == 0 for _, i in ready) or not merge:
        low = min(i for _, i in ready)
        return [(g, i) for g, i in ready if i == low]
    return ready
