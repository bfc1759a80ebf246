"""Presets of ``python -m experiments.examine`` (section 5, Figures 9-10): fields of
:class:`lth_jax.reproduction.mnist.Settings` for an iterative chain of tickets without controls
(``seeds`` is a count: seeds ``first_seed .. first_seed + seeds - 1``)."""

from __future__ import annotations

from typing import Any

from lth_jax.reproduction import paper

PRESETS: dict[str, dict[str, Any]] = {
    # "across ten iterative pruning runs", 50,000 iterations a round (a GPU job)
    "paper": {"iterations": paper.MNIST.iterations, "eval_every": paper.MNIST.eval_every,
              "seeds": paper.SECTION5_RUNS},
    # the CPU version: masks of much shorter trainings; accuracy is only a sanity check
    "cpu": {"iterations": 500, "eval_every": 500, "seeds": paper.SECTION5_RUNS},
}


def window(eval_every: int) -> int:
    """Footnote 5's windows (``average_over``, ``stable_for``) for this chain: about 1000
    iterations, a multiple of ``eval_every`` (convergence is not used by section 5; the
    windows only have to be valid)."""
    return max(1000 // eval_every, 1) * eval_every
