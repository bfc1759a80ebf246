"""Section 6's study figures (11-15) and tables, from a study manifest (:mod:`experiments.studies`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def format_value(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def markdown_table(study: dict[str, Any]) -> str:
    """Every stored level of every group: the numbers behind the study's figure."""
    lines = ["| group | level | % of weights | weights | n | converged | conv. iteration mean [min, max] | "
             "acc. at conv. mean [min, max] | final acc. mean | diverged (first step) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in study["groups"]:
        for r in g["rows"]:
            conv = (f"{format_value(r['convergence_iteration_mean'], '.0f')} "
                    f"[{format_value(r['convergence_iteration_min'], '.0f')}, "
                    f"{format_value(r['convergence_iteration_max'], '.0f')}]")
            acc = (f"{format_value(r['convergence_accuracy_mean'], '.4f')} "
                   f"[{format_value(r['convergence_accuracy_min'], '.4f')}, "
                   f"{format_value(r['convergence_accuracy_max'], '.4f')}]")
            div = (f"**{r['diverged']}/{r['trials']} diverged** (step {r['diverged_first_step']})" if r["diverged"]
                   else "0")
            lines.append(f"| {g['label']} | {r['level']} | {r['percent_overall']:.2f} | {r['weights']:,} | "
                         f"{r['trials']} | {r['converged']} | {conv} | {acc} | "
                         f"{format_value(r['final_accuracy_mean'], '.4f')} | {div} |")
        if not g["rows"]:
            lines.append(f"| {g['label']} | (nothing stored) | | | | | | | | |")
    return "\n".join(lines)


def plot_study(study: dict[str, Any], out: str | Path, labels: Sequence[str] | None = None, *,
               x: str = "percent", log_x: bool = False, title: str = "") -> Path:
    """Two panels, convergence iteration and accuracy at convergence, of the tickets'
    mean (error bars: min-max over tickets) against ``x`` (``percent`` of weights
    remaining or number of ``weights``). Levels where a trial diverged are marked with
    a red x at the top of both panels and counted in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    groups = [g for g in study["groups"] if g["rows"] and (labels is None or g["label"] in labels)]
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(groups), 2)))
    converged = any(r["converged"] for g in groups for r in g["rows"])
    # Short runs may never converge under footnote 5: then the right panel shows final accuracy, and says so.
    acc_key = "convergence_accuracy" if converged else "final_accuracy"
    for color, g in zip(colors, groups, strict=False):
        rows = g["rows"]
        xs = np.asarray([r["percent_overall"] if x == "percent" else r["weights"] for r in rows], float)
        n_div = sum(r["diverged"] for r in rows)
        n_all = sum(r["trials"] for r in rows)
        label = f"{g['label']} (n={rows[0]['trials']}/level" + (f"; {n_div}/{n_all} diverged)" if n_div else ")")
        for ax, key in zip(axes, ("convergence_iteration", acc_key), strict=True):
            mean = np.asarray([r[f"{key}_mean"] for r in rows], float)
            lo = np.asarray([r[f"{key}_min"] for r in rows], float)
            hi = np.asarray([r[f"{key}_max"] for r in rows], float)
            ok = np.isfinite(mean)
            ax.errorbar(xs[ok], mean[ok], yerr=[mean[ok] - lo[ok], hi[ok] - mean[ok]], color=color, marker="o",
                        ms=4, capsize=2, lw=1.3, label=label)
            bad = np.asarray([r["diverged"] > 0 for r in rows])
            if bad.any():
                ax.scatter(xs[bad], np.full(bad.sum(), 0.97), transform=ax.get_xaxis_transform(), marker="x",
                           color="red", s=60, zorder=5)
    acc_name = "test accuracy at convergence" if converged else "FINAL test accuracy (none converged)"
    for ax, name in zip(axes, ("convergence iteration (footnote 5)", acc_name), strict=True):
        ax.set_ylabel(name)
        if ax is axes[0] and not converged:  # an empty panel: take the other's x axis
            ax.set_xscale(axes[1].get_xscale() if not log_x else "log")
            ax.set_yticks([])
            ax.annotate("no trial converged under footnote 5's rule\nwithin the iterations of this run", (0.5, 0.5),
                        xycoords="axes fraction", ha="center", va="center", fontsize=10, color="gray")
        else:
            if log_x:
                ax.set_xscale("log")
            ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining" if x == "percent" else "weights in the winning ticket")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if not converged:
        axes[0].set_xlim(axes[1].get_xlim())
    if any(r["diverged"] for g in groups for r in g["rows"]):
        axes[0].annotate("red x: a level with diverged (NaN/inf) trials", (0.01, 0.99), xycoords="axes fraction",
                         va="top", fontsize=7, color="red")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def settings_note(study: dict[str, Any]) -> str:
    """One line: the settings every number of the study came from."""
    s = study["groups"][0]["settings"]
    its = sorted({g["settings"]["iterations"] for g in study["groups"]})
    return (f"{study['mode']}, preset {study['preset']}: {len(s['seeds'])} tickets a group, "
            f"{'/'.join(f'{i:,}' for i in its)} iterations (paper: 50,000), SGD lr {s['lr']}, batch {s['batch_size']}, "
            f"test every {s['eval_every']}, footnote-5 windows {s['average_over']}/{s['stable_for']} "
            f"(paper: 1000/1000), tolerance {s['tolerance']}")


def plot_figures(study: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """The study's paper figure(s) as PNGs named ``figureNN[-iterative].png``."""
    out_dir = Path(out_dir)
    mode, kind = study["mode"], study["study"]
    note = settings_note(study)
    suffix = "-iterative" if kind == "init_std" and mode == "iterative" else ""
    made = []
    if kind == "init_std":
        stds = {g["label"]: g["settings"]["std"] for g in study["groups"]}
        for fig, pick, words in ((11, lambda s: s >= 0.1, ">= 0.1"), (12, lambda s: s <= 0.1, "<= 0.1")):
            title = f"Figure {fig}: winning tickets initialised with std {words} ({mode})\n{note}"
            made.append(plot_study(study, out_dir / f"figure{fig}{suffix}.png",
                                   [k for k, s in stds.items() if pick(s)], log_x=mode == "iterative", title=title))
    elif kind == "sizes":
        fig = 13 if mode == "oneshot" else 14
        made.append(plot_study(study, out_dir / f"figure{fig}.png", x="weights", log_x=True,
                               title=f"Figure {fig}: winning tickets of networks of several sizes ({mode}, std "
                                     f"{study['groups'][0]['settings']['std']})\n{note}"))
    else:
        made.append(plot_study(study, out_dir / "figure15.png",
                               title=f"Figure 15: iterative pruning at several rates per round (x not logarithmic)\n"
                                     f"{note}"))
    return made
