"""Presets of ``python -m experiments.instability`` (fields of ``lth_jax.reproduction.mnist.Settings`` and
``lth_jax.reproduction.instability_runs.Analysis``, plus ``rewind_steps``, the k of each run).

Every key can be overridden by the flag of the same name; ``seeds`` is a count and ``controls``
the run's own ``(reinit, shuffle[, random])`` (the pairs build their own controls: ``roles``).
"""

from __future__ import annotations

from typing import Any

from experiments.configs.mnist import PAPER as MNIST_PAPER

# Frankle et al. 2020 (section 4) study LeNet-300-100 with IMP at 20% a round and rewind steps
# chosen after the fact; the paper's training (50,000 iterations, 5 seeds) as in experiments.mnist.
PAPER: dict[str, Any] = {
    **MNIST_PAPER, "mode": "iterative", "controls": (0, 0), "min_remaining": 5.0,
    "rewind_steps": (0, 100, 500, 2000), "roles": ("ticket", "random"), "alphas": 31, "every": 1,
}

# The largest that fits about an hour and a half of 2 CPU cores (LeNet iterative to about 5%,
# three seeds, 5,000 iterations a round): 15 levels a chain (100% .. 4.4% of weights),
# pairs at every 7th level (100%, 21%, 4.4%); measured 12-15 minutes a chain and 12 minutes of
# pairs per k here (WORKSPACE.md, Benchmarks).
CPU: dict[str, Any] = {
    **PAPER, "iterations": 5000, "seeds": 3, "rewind_steps": (0, 100, 500, 2000), "every": 7,
}

# A pipeline check in a few minutes: 2 seeds, 1000 iterations, footnote 5's windows at 300.
SMOKE: dict[str, Any] = {
    **PAPER, "iterations": 1000, "seeds": 2, "min_remaining": 45.0, "average_over": 300, "stable_for": 300,
    "rewind_steps": (0, 200), "alphas": 11, "every": 2,
}

PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER, "cpu": CPU, "smoke": SMOKE}
