"""Instability figures and tables of stored analyses (:mod:`lth_jax.reproduction.instability_runs`): error
barriers and paths against weights remaining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API needs no backend (no display, no pyplot state)

from lth_jax import store
from lth_jax.reproduction import instability_runs


def _fmt(stats: dict[str, Any], scale: float = 100.0) -> str:
    if stats["mean"] is None:
        return "-"
    se = f" ± {scale * stats['se']:.2f}" if stats["se"] is not None else ""
    return f"{scale * stats['mean']:5.2f}{se} [{scale * stats['min']:.2f}, {scale * stats['max']:.2f}]"


def format_table(paths: dict[int, Path]) -> str:
    """Barrier and endpoint error (percentage points; mean ± SE [min, max] over n pairs) per k, level and role."""
    lines = [f"{'k':>5} {'level':>6} {'%left':>7} {'role':>8} {'n':>3}  {'error barrier (pp)':>28}  "
             f"{'test error of the copies (%)':>30}"]
    for k, path in sorted(paths.items()):
        for rec in instability_runs.records(path):
            m, s = rec.metrics, rec.metrics["summary"]
            lines.append(f"{k:>5} {m['plan_level']:>6} {m['percent_overall']:7.2f} {m['role']:>8} {s['pairs']:3d}  "
                         f"{_fmt(s['barrier']):>28}  {_fmt(s['error']):>30}"
                         + (f"  diverged {s['diverged']}" if s["diverged"] else ""))
    return "\n".join(lines)


STYLE = {"ticket": ("-", "o"), "reinit": (":", "s"), "shuffle": ("-.", "^"), "random": ("--", "x")}
TICKS = (100, 50, 20, 10, 5, 2, 1)


def plot(paths: dict[int, Path], out: Path) -> list[Path]:
    """Barrier against weights remaining (a colour per k, a line style per role) and the mean error
    along the path at the first, middle and last analysed level of each k."""
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for c, (k, path) in enumerate(sorted(paths.items())):
        recs = [r.metrics for r in instability_runs.records(path)]
        for role in [r for r in STYLE if any(m["role"] == r for m in recs)]:
            pts = [(m["percent_overall"], 100 * m["summary"]["barrier"]["mean"]) for m in recs
                   if m["role"] == role and m["summary"]["barrier"]["mean"] is not None]
            ax.plot(*zip(*pts, strict=True), color=f"C{c}", linestyle=STYLE[role][0], marker=STYLE[role][1],
                    label=f"{role}, k={k}")
    percent_axis(ax)
    ax.set_ylabel("error barrier (percentage points)")
    ax.set_title("Instability of iterative LeNet tickets and controls against sparsity")
    ax.legend(fontsize=7, ncol=2)
    barrier_png = out / "instability_barrier.png"
    _save(fig, barrier_png)
    fig = Figure(figsize=(4.5 * len(paths), 4))
    axes = fig.subplots(1, len(paths), squeeze=False, sharey=True)
    for ax, (k, path) in zip(axes[0], sorted(paths.items()), strict=True):
        recs = list(instability_runs.records(path, arrays=True))
        levels = list(dict.fromkeys(r.metrics["plan_level"] for r in recs))  # plan order
        shown = [levels[0], levels[len(levels) // 2], levels[-1]]
        for rec in (r for r in recs if r.metrics["plan_level"] in shown):
            good = [j for j, p in enumerate(rec.metrics["pairs"]) if not p["diverged"]]
            if good:
                m = rec.metrics
                ax.plot(rec.arrays["alphas"], 100 * rec.arrays["errors"][good].mean(axis=0),
                        color=f"C{shown.index(m['plan_level'])}", linestyle=STYLE[m["role"]][0],
                        label=f"{m['role']}, {m['percent_overall']:.1f}%")
        ax.set_title(f"k = {k}")
        ax.set_xlabel("alpha (0: copy a, 1: copy b)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test error (%), mean over pairs")
    path_png = out / "instability_path.png"
    _save(fig, path_png)
    return [barrier_png, path_png]


def percent_axis(ax: Any) -> None:
    ax.set_xscale("log")
    ax.set_xticks(TICKS, [f"{t:g}" for t in TICKS])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")


def _save(fig: Figure, path: Path) -> None:
    store.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
