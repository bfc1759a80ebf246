"""The lottery-ticket procedure, generic over model, trainer and pruning rule.

Section 1 of the paper: initialise, train, prune, reset survivors to their
initial values, (repeat). The driver only composes functions you pass it, so
the same code runs XOR unit pruning and MNIST weight pruning, one trial or a
vmapped batch of them (pass vmapped functions and batched trees).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from lth_jax import transforms

PyTree = Any
TrainFn = Callable[[PyTree, PyTree], tuple[PyTree, Any]]   # (params, masks) -> (trained, metrics)
PruneFn = Callable[[PyTree, PyTree, int], PyTree]          # (trained, masks, round) -> masks


class Round(NamedTuple):
    """One training of the procedure: the masks it trained under and its outcome."""

    round: int
    masks: PyTree
    trained: PyTree
    metrics: Any


def iterative(init: PyTree, masks: PyTree, train: TrainFn, prune: PruneFn, rounds: int,
              reset: str = "rewind") -> Iterator[Round]:
    """Train, prune, reset; ``rounds`` prunings, so ``rounds + 1`` trainings.

    Yields after every training, so callers can store each level as soon as it
    exists and stop early. ``reset="rewind"`` is the paper's procedure;
    ``reset="continue"`` is Han et al.'s (keep training the pruned trained weights).
    """
    # Checked here, outside the generator, so a bad value fails at the call.
    if reset not in ("rewind", "continue"):
        raise ValueError(f"reset must be 'rewind' or 'continue', not {reset!r}")
    return _rounds(init, masks, train, prune, rounds, reset)


def _rounds(init: PyTree, masks: PyTree, train: TrainFn, prune: PruneFn, rounds: int,
            reset: str) -> Iterator[Round]:
    params = transforms.rewind(init, masks)[0]
    for r in range(rounds + 1):
        trained, metrics = train(params, masks)
        yield Round(r, masks, trained, metrics)
        if r == rounds:
            return
        masks = prune(trained, masks, r)
        start = init if reset == "rewind" else trained
        params = transforms.rewind(start, masks)[0]


def one_shot(init: PyTree, masks: PyTree, train: TrainFn,
             prune_to: Callable[[PyTree, PyTree, Any], PyTree], levels: list[Any]
             ) -> tuple[Round, list[PyTree]]:
    """Train once, then prune the trained network to each of ``levels`` in one step.

    Returns the original run and the winning-ticket masks per level; training the
    tickets (and their controls) is left to the caller so it can batch them.
    """
    trained, metrics = train(transforms.rewind(init, masks)[0], masks)
    return Round(0, masks, trained, metrics), [prune_to(trained, masks, lv) for lv in levels]
