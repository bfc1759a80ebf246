"""Figures 3-8 and 16 of the paper from stored MNIST runs (:class:`lth_jax.reproduction.results.Run`), the
paper's values marked beside ours, and the claims they answer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lth_jax import store
from lth_jax.reproduction import claims, paper, results
from lth_jax.reproduction.results import Run

MODES = ("oneshot", "iterative", "han")
TICKET, REINIT, SHUFFLE, RANDOM = "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"
PAPER_MARK = dict(marker="*", s=140, color="crimson", edgecolor="black", zorder=6)
METRIC_OF = {"acc": "convergence_accuracy", "conv": "convergence_iteration", "final": "final_accuracy"}


def _orig(run: Run, key: str) -> float:
    """The unpruned tickets' mean ``conv`` / ``acc`` / ``final`` (NaN where not stored)."""
    return run.value(run.original, "ticket", METRIC_OF[key])


def _faster(key: str, conv: float) -> tuple[float, float]:
    """Where the paper's "the p% ticket converges X% faster" puts the tickets, against our original's ``conv``."""
    c = paper.CLAIM[key]
    return c.percent, (1 - c.value / 100) * conv


def _errorbars(ax, x, mean, lo, hi, color, label, **kw):
    x, mean, lo, hi = (np.asarray(v, float) for v in (x, mean, lo, hi))
    ok = np.isfinite(mean)
    ax.errorbar(x[ok], mean[ok], yerr=[mean[ok] - lo[ok], hi[ok] - mean[ok]], color=color, label=label,
                marker="o", ms=4, capsize=3, lw=1.5, **kw)


def _role(ax, run: Run, role: str, metric: str, color: str, label: str, **kw) -> None:
    _errorbars(ax, run.percents(), run.column(role, metric), run.column(role, metric, "min"),
               run.column(role, metric, "max"), color, f"{label} (n={run.trials(role)}/level)", **kw)


def _axes_percent(ax, log: bool, *runs: Run | None) -> None:
    """Percent remaining, decreasing to the right as in the paper, limited to the levels we have."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    pcts = [p for r in runs if r is not None for p in r.percents()]
    if log:
        ax.set_xscale("log")
        lo, hi = min(pcts) / 1.3, max(pcts) * 1.3
        ax.set_xlim(hi, lo)
        ticks = [t for t in (100, 51.2, 26.2, 13.4, 6.9, 3.5, 1.8, 0.9) if lo <= t <= hi]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        span = max(pcts) - min(pcts) or 1.0
        ax.set_xlim(max(pcts) + 0.05 * span, min(pcts) - 0.05 * span)
    ax.set_xlabel("percent of weights remaining" + (" (log scale)" if log else ""))
    ax.grid(alpha=0.3, which="both")


def _inside(ax, x: float) -> bool:
    lo, hi = sorted(ax.get_xlim())
    return lo <= x <= hi


def _mark(ax, x: float, y: float, text: str) -> None:
    if math.isfinite(x) and math.isfinite(y) and _inside(ax, x):
        ax.scatter([x], [y], **PAPER_MARK)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=7, color="crimson")


def _vline(ax, x: float, text: str) -> None:
    if not _inside(ax, x):
        return
    ax.axvline(x, color="crimson", ls=":", lw=1)
    ax.annotate(text, (x, 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="crimson", rotation=90,
                xytext=(3, 0), textcoords="offset points")


def _acc_line(ax, run: Run, key: str = "acc") -> None:
    acc = _orig(run, key)
    if math.isfinite(acc):
        ax.axhline(acc, color="gray", lw=0.8, ls="--", label="our original network")
        ax.axhline(acc - paper.ACCURACY_GAP, color="crimson", lw=0.8, ls="--",
                   label="original - 0.15% (paper's threshold)")


def _finish(fig, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


METRICS = ("convergence_iteration", "convergence_accuracy", "final_accuracy")


def _panels(run: Run):
    """Convergence iteration and accuracy at convergence (the paper's two panels), plus the
    accuracy at the end of training (defined even where a short run never converges)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    axes[0].set_ylabel("convergence iteration (footnote 5)")
    axes[1].set_ylabel("test accuracy at convergence")
    axes[2].set_ylabel("final test accuracy (controls and pruned tickets: at their stop)"
                       if run.settings.get("stop_at_convergence") else
                       f"test accuracy after {run.settings['iterations']:,} iterations")
    return fig, axes


def _note_unconverged(axes, *runs: Run) -> None:
    for ax in axes[:2]:
        if not any(np.nansum(r.column(role, "convergence_iteration", "n")) for r in runs
                   for role in ("ticket", "reinit", "shuffle", "random")):
            ax.text(0.5, 0.5, "no trial converged under footnote 5\nwithin the iterations trained",
                    transform=ax.transAxes, ha="center", va="center", color="gray")


def _legends(axes) -> None:
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


def _subtitle(run: Run) -> str:
    s = run.settings
    stop = "\nstopped at convergence: a mean curve ends at its first stop" if s.get("stop_at_convergence") else ""
    return (f"{run.mode}: {len(s['seeds'])} seeds, {s['iterations']:,} iterations, lr {s['lr']}, std {s['std']}, "
            f"hidden {tuple(s['hidden'])}{stop} [{run.path.name}]")


def _done(fig, axes, reference: Run, runs: tuple, path: Path, title: str) -> None:
    """The common end of Figures 3-8 and 16: the final-accuracy reference line, unconverged notes,
    legends, and the PNG."""
    _acc_line(axes[2], reference, "final")
    _note_unconverged(axes, *runs)
    _legends(axes)
    _finish(fig, path, title)


def _two_kinds_of_tickets(first: Run, first_label: str, second: Run, second_label: str, panels: Run):
    """Three panels (log x) with the tickets of two runs side by side (Figures 7 and 16)."""
    fig, axes = _panels(panels)
    for ax, metric in zip(axes, METRICS, strict=True):
        _role(ax, first, "ticket", metric, TICKET, first_label)
        _role(ax, second, "ticket", metric, REINIT, second_label)
        _axes_percent(ax, True, first, second)
    return fig, axes


def _tickets_and_controls(ax, run: Run, metric: str, label: str) -> None:
    """A run's tickets and whichever controls it has, on one panel."""
    _role(ax, run, "ticket", metric, TICKET, label, zorder=4)
    if run.trials("reinit"):
        _role(ax, run, "reinit", metric, REINIT, "reinit (control 1)")
    if run.trials("shuffle"):
        _role(ax, run, "shuffle", metric, SHUFFLE, "shuffle (control 2)")
    if run.trials("random"):  # not in the paper: open_lth's random-mask control
        _role(ax, run, "random", metric, RANDOM, "random mask (control 3)")


def mean_curve(run: Run, level: dict, role: str, acc: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The trials' mean accuracy at each evaluation, ending where the first of them stopped at
    convergence (after it, a mean of the slower trials alone would not be the role's mean)."""
    mean = np.nanmean(acc, axis=0)
    stops = run.stop_steps(level, role)
    return mean if stops is None else np.where(x <= stops.min(), mean, np.nan)


def _shown_until(run: Run, levels: list, roles: tuple[str, ...]) -> float:
    """The last training step the curves of ``levels`` show: the last stop of a stopped run's
    pruned levels (the originals, trained to the end, are cut there too), else the whole run."""
    last = [float(st.max()) for m in levels if m["percent_nominal"] < 100 for r in roles
            if r in m["roles"] and (st := run.stop_steps(m, r)) is not None]
    return min(run.settings["iterations"], 1.1 * max(last)) if last else run.settings["iterations"]


def _low(mean: np.ndarray, x: np.ndarray, until: float) -> float:
    """A y-axis floor that shows a curve past its first rise: its 5th percentile after a fifth of the range."""
    seen = mean[(x >= until / 5) & (x <= until)]
    return float(np.nanpercentile(seen, 5)) if np.isfinite(seen).sum() > 5 else float(np.nanmin(mean))


def figure3(run: Run, out: Path) -> None:
    """Test accuracy while training, tickets at several one-shot levels (mean, min-max band, convergence dots)."""
    import matplotlib.pyplot as plt

    left = [m for m in run.levels if m["percent_nominal"] >= 50]
    right = [run.levels[0]] + [m for m in run.levels if 5 <= m["percent_nominal"] < 50]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    every = run.settings["eval_every"]
    until = _shown_until(run, run.levels, ("ticket",))
    lows = []
    for ax, group in zip(axes, (left, right), strict=True):
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(group), 2)))
        for color, m in zip(colors, group, strict=False):
            acc = run.curves(m, "ticket")
            x = (np.arange(acc.shape[1]) + 1) * every
            mean = mean_curve(run, m, "ticket", acc, x)
            ax.plot(x, mean, color=color, lw=1.2, label=f"{m['percent_nominal']:g}%")
            ax.fill_between(x, np.nanmin(acc, axis=0), np.nanmax(acc, axis=0), color=color, alpha=0.15)
            lows.append(_low(mean, x, until))
            c = m["roles"]["ticket"]["convergence_iteration"]
            if c["mean"] is not None:
                y = float(np.interp(c["mean"], x, mean))
                ax.errorbar([c["mean"]], [y], xerr=[[c["mean"] - c["min"]], [c["max"] - c["mean"]]], fmt="o",
                            color=color, ms=6, capsize=3, mec="black")
        ax.set_xlabel("training iteration")
        ax.set_xlim(0, until)
        ax.grid(alpha=0.3)
    c = paper.CLAIM["os_25_faster"]
    x = _faster(c.key, _orig(run, "conv"))[1]
    if math.isfinite(x) and run.at(c.percent):
        axes[1].axvline(x, color="crimson", ls=":", lw=1)
        axes[1].annotate(f"paper: the {c.percent:g}% ticket converges {c.value:g}% faster than the original", (x, 0.03),
                         xycoords=("data", "axes fraction"), fontsize=7, color="crimson", rotation=90)
    if lows:
        top = np.nanmax([np.nanmax(run.curves(m, "ticket")) for m in left + right])
        axes[0].set_ylim(max(min(lows) - 0.002, 0), top + 0.002)
    axes[0].set_ylabel("test accuracy (mean of tickets; band: min-max)")
    for ax in axes:
        ax.legend(fontsize=8, title="remaining", loc="lower right")
    _finish(fig, out / "figure3.png", "Figure 3: one-shot winning tickets while training; dots: convergence "
            "(mean, min-max)\n" + _subtitle(run))


def figure4(run: Run, out: Path) -> None:
    """Tickets vs their reinitialised controls while training (100%, ~75%, ~35%)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    every = run.settings["eval_every"]
    pruned = run.levels[1:]
    chosen = [run.levels[0]]
    for target in (75, 35):  # the paper's two ticket sizes, or the nearest distinct ones we have
        left = [m for m in pruned if m not in chosen]
        if left:
            chosen.append(min(left, key=lambda m: abs(math.log(m["percent_nominal"] / target))))
    colors = plt.cm.tab10(np.arange(len(chosen)))
    until = _shown_until(run, chosen, ("ticket", "reinit"))
    lows = []
    for color, m in zip(colors, chosen, strict=True):
        roles = [("ticket", "-", "ticket")] + ([("reinit", "--", "reinit control")] if m["percent_nominal"] < 100
                                               and "reinit" in m["roles"] else [])
        for role, ls, name in roles:
            acc = run.curves(m, role)
            x = (np.arange(acc.shape[1]) + 1) * every
            mean = mean_curve(run, m, role, acc, x)
            lows.append(_low(mean, x, until))
            ax.plot(x, mean, color=color, ls=ls, label=f"{m['percent_nominal']:g}% {name} (n={acc.shape[0]})")
            ax.fill_between(x, np.nanmin(acc, axis=0), np.nanmax(acc, axis=0), color=color, alpha=0.1)
    if lows:
        ax.set_ylim(max(min(lows) - 0.005, 0), None)
    ax.set_xlim(0, until)
    ax.set_xlabel("training iteration")
    ax.set_ylabel("test accuracy (mean; band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, out / "figure4.png", "Figure 4: winning tickets and randomly reinitialised controls (control 1)\n"
            + _subtitle(run))


def figure5(run: Run, out: Path) -> None:
    """Convergence and accuracy vs. percent remaining: tickets, and each ticket's reinit controls."""
    import matplotlib.pyplot as plt

    fig, (a, b, c) = _panels(run)
    for ax, metric in zip((a, b, c), METRICS, strict=True):
        _role(ax, run, "ticket", metric, TICKET, "winning tickets", zorder=4)
        seeds = run.settings["seeds"]
        colors = plt.cm.Set2(np.linspace(0, 1, max(len(seeds), 2)))
        for color, seed in zip(colors, seeds, strict=False):
            means, los, his = [], [], []
            for m in run.levels:
                v = [t[metric] for t in m["trials"] if t["role"] == "reinit" and t["seed"] == seed]
                v = [x for x in v if x is not None and math.isfinite(x)]
                means.append(np.mean(v) if v else np.nan)
                los.append(np.min(v) if v else np.nan)
                his.append(np.max(v) if v else np.nan)
            if any(math.isfinite(x) for x in means):
                _errorbars(ax, run.percents(), means, los, his, color, f"reinit controls of seed {seed}", alpha=0.8)
        _axes_percent(ax, False, run)
    conv, pc = _orig(run, "conv"), paper.CLAIM
    _mark(a, *_faster("os_25_faster", conv), f"paper: {pc['os_25_faster'].percent:g}% ticket "
          f"{pc['os_25_faster'].value:g}% faster")
    slower = pc["os_ctrl35_slower"]
    _mark(a, slower.percent, (1 + slower.value / 100) * conv, f"paper: {slower.percent:g}% controls "
          f"{slower.value:g}% slower")
    for ratio in (pc["os_ratio35"], pc["os_ratio25"]):
        _mark(a, ratio.percent, ratio.value * run.value_at(ratio.percent, "ticket", "convergence_iteration"),
              f"paper: controls {ratio.value:g}x the {ratio.percent:g}% ticket")
    _acc_line(b, run)
    _vline(b, pc["os_acc_to"].value, f"paper: tickets within 0.15% down to {pc['os_acc_to'].value:g}%")
    gap = pc["os_ctrl15_gap"]
    _mark(b, gap.percent, _orig(run, "acc") - gap.value / 100, f"paper: controls {gap.value:g}% below at "
          f"{gap.percent:g}%")
    _acc_line(c, run, "final")
    _note_unconverged((a, b, c), run)
    _legends((a, b, c))
    _finish(fig, out / "figure5.png", "Figure 5: one-shot tickets (blue) and their reinitialised controls\n"
            + _subtitle(run))


def figure6(run: Run, out: Path) -> None:
    """Tickets, reinit controls and shuffle controls vs. percent remaining (one-shot)."""
    fig, (a, b, c) = _panels(run)
    for ax, metric in zip((a, b, c), METRICS, strict=True):
        _tickets_and_controls(ax, run, metric, "winning tickets")
        _axes_percent(ax, False, run)
    _acc_line(b, run)
    _done(fig, (a, b, c), run, (run,), out / "figure6.png",
          "Figure 6: one-shot tickets and both controls\n" + _subtitle(run))


def figure7(oneshot: Run, iterative: Run, out: Path) -> None:
    """One-shot vs iterative winning tickets (log x)."""
    fig, (a, b, c) = _two_kinds_of_tickets(iterative, "iterative pruning", oneshot, "one-shot pruning", iterative)
    pc = paper.CLAIM
    for key, run, who in (("it_41_faster", iterative, "iterative"), ("it_8.5_faster", iterative, "iterative"),
                          ("os_55_faster", oneshot, "one-shot"), ("os_40_faster", oneshot, "one-shot")):
        _mark(a, *_faster(key, _orig(run, "conv")), f"paper: {who} {pc[key].value:g}% faster at {pc[key].percent:g}%")
    back = pc["it_back_conv"].value
    _mark(a, back, _orig(iterative, "conv"), f"paper: iterative back to original at {back:g}%")
    _acc_line(b, iterative)
    back = pc["it_acc_back"].value
    _mark(b, back, _orig(iterative, "acc"), f"paper: iterative back to original accuracy at {back:g}%")
    _vline(b, pc["os_acc_to"].value, f"paper: one-shot drops off at {pc['os_acc_to'].value:g}%")
    _done(fig, (a, b, c), iterative, (oneshot, iterative,), out / "figure7.png",
          "Figure 7: one-shot vs iterative winning tickets\n" + _subtitle(iterative))


def figure8(oneshot: Run | None, iterative: Run, out: Path) -> None:
    """Iterative tickets, both controls, one-shot tickets (log x); lines end where trials stop converging."""
    fig, (a, b, c) = _panels(iterative)
    for ax, metric in zip((a, b, c), METRICS, strict=True):
        _tickets_and_controls(ax, iterative, metric, "iterative tickets")
        if oneshot is not None:
            _role(ax, oneshot, "ticket", metric, "#d62728", "one-shot tickets")
        _axes_percent(ax, True, oneshot, iterative)
    _acc_line(b, iterative)
    for role in ("reinit", "shuffle", "ticket"):
        drop = paper.CLAIM[f"it_{role}_drop"].value
        _vline(b, drop, f"paper: {role}s drop 0.15% below at {drop:g}%")
    _done(fig, (a, b, c), iterative, (iterative,), out / "figure8.png",
          "Figure 8: iterative tickets and both controls\n" + _subtitle(iterative))


def figure16(iterative: Run, han: Run, out: Path) -> None:
    """Resetting between rounds (ours) vs continuing from trained weights (Han et al.); the reset copy is measured."""
    fig, (a, b, c) = _two_kinds_of_tickets(iterative, "reset every round (ours)", han,
                                           "continue training (Han et al.), reset copy", han)
    _acc_line(b, iterative)
    _done(fig, (a, b, c), iterative, (iterative, han,), out / "figure16.png",
          "Figure 16: weight resetting vs Han et al.\n" + _subtitle(han))


def claim_rows(runs: dict[str, Run]) -> list[dict[str, Any]]:
    """The claims of sections 3, 4 and 6.4 that ``runs`` answer (:func:`lth_jax.reproduction.claims.table`)."""
    view = results.View(Path("."), runs, None, None, {})
    return [row for _, _, row in claims.table(view, sources=MODES) if row["stored"]]


def write_claims(rows: list[dict[str, Any]], out: Path, echo: bool = True) -> None:
    store.write_json(out / "claims.json", rows)
    lines = ["| claim | fig. | paper | ours | n | details |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['figure']} | {claims.cell(r['paper'])} | "
              f"{'n/a' if r['ours'] is None else claims.cell(r['ours'])} | {r['n']} | {r['details']} |" for r in rows]
    store.atomic_write(out / "claims.md", lambda f: f.write(("\n".join(lines) + "\n").encode()))
    if echo:
        print("\n".join(lines))


def find(runs_dir: str | Path, oneshot: str | Path | None = None, iterative: str | Path | None = None,
         han: str | Path | None = None) -> dict[str, Run]:
    """The runs to draw: each given directory, else the latest of its mode under ``runs_dir``.
    Raises :class:`lth_jax.store.StoreError` on a damaged record, ``ValueError`` on a run with no levels."""
    runs: dict[str, Run] = {}
    for mode, given in zip(MODES, (oneshot, iterative, han), strict=True):
        path = given or (results.latest_run(runs_dir, mode) if Path(runs_dir).is_dir() else None)
        if path:
            runs[mode] = Run(path)
            if not runs[mode].levels:
                raise ValueError(f"{path}: no stored levels")
    return runs


def draw(runs: dict[str, Run], out: str | Path, echo: bool = True) -> list[str]:
    """Every figure ``runs`` allow, and the claims they answer, into ``out``; returns the files there."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    one, it, hn = (runs.get(m) for m in MODES)
    if one:
        figure3(one, out)
        figure4(one, out)
        figure5(one, out)
        figure6(one, out)
    if it:
        if one:
            figure7(one, it, out)
        figure8(one, it, out)
        if hn:
            figure16(it, hn, out)
    if one or it:
        write_claims(claim_rows(runs), out, echo)
    return sorted(p.name for p in out.iterdir())


def make_all(runs_dir: str | Path, out: str | Path, oneshot: str | Path | None = None,
             iterative: str | Path | None = None, han: str | Path | None = None) -> list[str]:
    """:func:`draw` of :func:`find`: every figure the available runs allow; returns the files written."""
    return draw(find(runs_dir, oneshot, iterative, han), out)
