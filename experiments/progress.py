"""Progress bars for every driver: one bar over a run's levels, one over each level's steps."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from lth_jax import runner


class LevelBars(runner.Progress):
    """tqdm bars for :func:`lth_jax.runner.run_groups`, a line per stored level (``describe``
    says what; default: the tickets' final accuracy), and a tally of what was trained now."""

    def __init__(self, total: int, enabled: bool = True,
                 describe: Callable[[runner.Level, dict[str, Any]], str] | None = None) -> None:
        self.enabled = enabled
        self.describe = describe or _final_accuracy
        self.levels = tqdm(total=total, desc="levels", unit="level", disable=not enabled, position=0, file=sys.stderr)
        self.bar: Any = None
        self.trained_now = 0  # trainings run now (identical trials counted once)
        self.seconds = 0.0    # their training time

    def level_start(self, index: int, depth: int, runs: int, trials: int, steps: int) -> None:
        self.levels.set_postfix_str(f"level {index + 1}/{depth}: {trials} networks" + (f" of {runs} runs"
                                                                                        if runs > 1 else ""))
        self.bar = tqdm(total=steps, desc="  steps", unit="step", leave=False, disable=not self.enabled,
                        position=1, file=sys.stderr)

    def steps(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def level_end(self, index: int, stored: list[tuple[str, runner.Level, dict[str, Any]]]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.levels.update(1)
        for _, level, metrics in stored:
            line = self.describe(level, metrics)
            if line:
                self.levels.write(line, file=sys.stderr)

    def trained(self, trials: int, seconds: float) -> None:
        self.trained_now += trials
        self.seconds += seconds

    def note(self, message: str) -> None:
        self.levels.write(message, file=sys.stderr)

    def close(self) -> None:
        self.levels.close()


def _final_accuracy(level: runner.Level, metrics: dict[str, Any]) -> str:
    ticket = metrics["roles"].get("ticket", {})
    mean = ticket.get("final_accuracy", {}).get("mean") if isinstance(ticket.get("final_accuracy"), dict) else None
    acc = "-" if mean is None else f"{mean:.4f}"
    return (f"{level.name}: {metrics['percent_overall']:.2f}% of weights, tickets final accuracy {acc}, "
            f"{metrics['seconds']:.1f} s")
