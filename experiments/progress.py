"""Progress bars for the MNIST drivers: one bar over levels, one over each level's steps."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from lth_jax import experiment


class LevelBars(experiment.Progress):
    """tqdm bars for :func:`lth_jax.experiment.run`, and a line per level as it is stored."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.levels = tqdm(total=total, desc="levels", unit="level", disable=not enabled, position=0)
        self.bar: Any = None

    def level_start(self, level: experiment.Level, index: int, total: int, steps: int) -> None:
        self.levels.set_postfix_str(f"{level.name} ({level.percent:.3g}%)")
        self.bar = tqdm(total=steps, desc=f"  {level.name}", unit="step", leave=False,
                        disable=not self.enabled, position=1)

    def steps(self, n: int) -> None:
        self.bar.update(n)

    def level_end(self, level: experiment.Level, metrics: dict[str, Any], skipped: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.levels.update(1)
        if not skipped:
            mean = metrics["roles"]["ticket"]["final_accuracy"]["mean"]
            acc = "-" if mean is None else f"{mean:.4f}"
            self.levels.write(f"{level.name}: {metrics['percent_overall']:.2f}% of weights, "
                              f"tickets final accuracy {acc}, {metrics['seconds']:.1f} s")

    def close(self) -> None:
        self.levels.close()
