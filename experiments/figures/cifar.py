"""The conv nets' figure as the paper draws it: test accuracy and convergence iteration against
the percent of weights remaining, tickets beside their controls (rows of
:func:`lth_jax.reproduction.mnist.table`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API needs no backend (no display, no pyplot state)

STYLE = {"ticket": ("-", "o"), "reinit": (":", "s"), "shuffle": ("-.", "^"), "random": ("--", "x")}
PANELS = (("convergence_iteration", "convergence iteration"), ("final_accuracy", "final test accuracy"))


def plot(rows: list[dict[str, Any]], out: Path, title: str) -> Path:
    """Both panels of every role in ``rows`` (mean with the min-max range), a log x-axis
    running from 100% down; ``title`` says what was trained on (synthetic data says so)."""
    fig = Figure(figsize=(10, 4))
    for ax, (key, label) in zip(fig.subplots(1, 2), PANELS, strict=True):
        for role, (line, marker) in STYLE.items():
            mine = sorted((r for r in rows if r["role"] == role and r[f"{key}_mean"] is not None),
                          key=lambda r: -r["percent_overall"])
            if not mine:
                continue
            x = [r["percent_overall"] for r in mine]
            mean = [r[f"{key}_mean"] for r in mine]
            err = [[m - r[f"{key}_min"] for m, r in zip(mean, mine, strict=True)],
                   [r[f"{key}_max"] - m for m, r in zip(mean, mine, strict=True)]]
            ax.errorbar(x, mean, yerr=err, linestyle=line, marker=marker, capsize=3, label=role)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
