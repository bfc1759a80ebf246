"""Presets of ``python -m experiments.examine`` (section 5, Figures 9-10): fields of
:class:`lth_jax.mnist.Settings` for an iterative chain of tickets without controls."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # "across ten iterative pruning runs", 50,000 iterations a round (a GPU job)
    "paper": {"iterations": 50_000, "eval_every": 100, "seeds": 10},
    # the CPU version: masks of much shorter trainings; accuracy is only a sanity check
    "cpu": {"iterations": 500, "eval_every": 500, "seeds": 10},
}
