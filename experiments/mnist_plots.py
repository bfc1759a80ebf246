"""Figures 3-8 and 16 of the paper, and its numeric claims, from stored MNIST runs.

    python -m experiments.mnist_plots --runs_dir=runs/mnist [--out_dir=...]
    python -m experiments.mnist_plots --oneshot=runs/mnist/oneshot-<hash> --iterative=... --han=...

Without explicit run directories it takes, for each mode, the most recently
started run under ``--runs_dir`` that has stored levels. It draws whatever the
runs allow (Figures 3-6 need a one-shot run, 7-8 an iterative one as well, 16
an iterative and a han run), marks the values the paper's text reports (as
markers relative to *our* unpruned network, since the paper states them as
relative speed-ups and accuracy gaps), and writes ``claims.json`` and
``claims.md``: each claim of sections 3-4 with the paper's value, ours and the
number of trials behind ours. Nothing here trains; it reads JSON and npz only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from experiments import cli

_fail = cli.failer("mnist_plots")
_parse = cli.flags_parser("mnist_plots")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags are defined only when run as a program, so the drivers can be imported together."""
    flags.DEFINE_string("runs_dir", "runs/mnist", "Results root written by experiments.mnist.")
    flags.DEFINE_string("oneshot", None, "One-shot run directory (default: the latest under --runs_dir).")
    flags.DEFINE_string("iterative", None, "Iterative run directory (default: the latest under --runs_dir).")
    flags.DEFINE_string("han", None, "Han et al. run directory (default: the latest under --runs_dir).")
    flags.DEFINE_string("out_dir", None, "Where the PNGs and claims go (default: <runs_dir>/figures).")

TICKET, REINIT, SHUFFLE = "#1f77b4", "#ff7f0e", "#2ca02c"
PAPER_MARK = dict(marker="*", s=140, color="crimson", edgecolor="black", zorder=6)
ACC_GAP = 0.0015  # "within 0.15% of the original network's accuracy"


# ---------------------------------------------------------------- reading runs


class Run:
    """A stored run: its level metrics (JSON) in plan order, curves loaded on demand."""

    def __init__(self, path: str | Path):
        from lth_jax import store

        self.store = store
        self.path = Path(path)
        self.settings = store.load_settings(self.path)["settings"]
        self.levels = [store.load_level(self.path, n, arrays=False).metrics
                       for n in store.levels(self.path) if n != "init"]
        if not self.levels:
            raise ValueError(f"{self.path}: no stored levels")

    @property
    def mode(self) -> str:
        return self.settings["mode"]

    def percents(self) -> list[float]:
        return [m["percent_nominal"] for m in self.levels]

    def stat(self, role: str, metric: str, stat: str = "mean") -> list[float]:
        out = []
        for m in self.levels:
            r = m["roles"].get(role)
            v = None if r is None else r[metric][stat]
            out.append(math.nan if v is None else v)
        return out

    def n(self, role: str, metric: str = "convergence_iteration") -> list[int]:
        return [m["roles"][role][metric]["n"] if role in m["roles"] else 0 for m in self.levels]

    def at(self, percent: float, tol: float = 0.03) -> dict[str, Any] | None:
        """The level whose nominal percent is within ``tol`` (relative) of ``percent``."""
        best = min(self.levels, key=lambda m: abs(math.log(m["percent_nominal"] / percent)))
        return best if abs(math.log(best["percent_nominal"] / percent)) <= tol else None

    def value(self, percent: float, role: str, metric: str, stat: str = "mean") -> float:
        m = self.at(percent)
        if m is None or role not in m["roles"] or m["roles"][role][metric][stat] is None:
            return math.nan
        return m["roles"][role][metric][stat]

    def curves(self, level: dict[str, Any], role: str) -> Any:
        import numpy as np

        arrays = self.store.load_level(self.path, level["level"]).arrays
        idx = [i for i, t in enumerate(level["trials"]) if t["role"] == role]
        return np.asarray(arrays["curves/accuracy"])[idx]

    def trials(self, role: str) -> int:
        return self.levels[0]["roles"][role]["trials"] if role in self.levels[0]["roles"] else 0

    @property
    def original(self) -> dict[str, float]:
        top = self.levels[0]
        t = top["roles"]["ticket"]
        return {"conv": _num(t["convergence_iteration"]["mean"]), "acc": _num(t["convergence_accuracy"]["mean"]),
                "final": _num(t["final_accuracy"]["mean"])}


def _num(v: float | None) -> float:
    return math.nan if v is None else v


def latest(runs_dir: str | Path, mode: str) -> Path | None:
    from lth_jax import store

    found = []
    for p in store.find_runs(runs_dir, mode=mode):
        if any(n != "init" for n in store.levels(p)):
            found.append(p)
    return max(found, key=lambda p: (p / "settings.json").stat().st_mtime) if found else None


# ---------------------------------------------------------------- drawing helpers


def _errorbars(ax, x, mean, lo, hi, color, label, **kw):
    import numpy as np

    x, mean, lo, hi = (np.asarray(v, float) for v in (x, mean, lo, hi))
    ok = np.isfinite(mean)
    ax.errorbar(x[ok], mean[ok], yerr=[mean[ok] - lo[ok], hi[ok] - mean[ok]], color=color, label=label,
                marker="o", ms=4, capsize=3, lw=1.5, **kw)


def _role(ax, run: Run, role: str, metric: str, color: str, label: str, **kw) -> None:
    _errorbars(ax, run.percents(), run.stat(role, metric), run.stat(role, metric, "min"),
               run.stat(role, metric, "max"), color, f"{label} (n={run.trials(role)}/level)", **kw)


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
    acc = run.original[key]
    if math.isfinite(acc):
        ax.axhline(acc, color="gray", lw=0.8, ls="--", label="our original network")
        ax.axhline(acc - ACC_GAP, color="crimson", lw=0.8, ls="--", label="original - 0.15% (paper's threshold)")


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
    axes[2].set_ylabel(f"test accuracy after {run.settings['iterations']:,} iterations")
    return fig, axes


def _note_unconverged(axes, *runs: Run) -> None:
    for ax in axes[:2]:
        if not any(sum(r.n(role)) for r in runs for role in ("ticket", "reinit", "shuffle")):
            ax.text(0.5, 0.5, "no trial converged under footnote 5\nwithin the iterations trained",
                    transform=ax.transAxes, ha="center", va="center", color="gray")


def _legends(axes) -> None:
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


def _subtitle(run: Run) -> str:
    s = run.settings
    return (f"{run.mode}: {len(s['seeds'])} seeds, {s['iterations']:,} iterations, lr {s['lr']}, std {s['std']}, "
            f"hidden {tuple(s['hidden'])} [{run.path.name}]")


# ---------------------------------------------------------------- figures


def figure3(run: Run, out: Path) -> None:
    """Test accuracy while training, tickets at several one-shot levels (mean, min-max band, convergence dots)."""
    import matplotlib.pyplot as plt
    import numpy as np

    left = [m for m in run.levels if m["percent_nominal"] >= 50]
    right = [run.levels[0]] + [m for m in run.levels if 5 <= m["percent_nominal"] < 50]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    every = run.settings["eval_every"]
    lows = []
    for ax, group in zip(axes, (left, right), strict=True):
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(group), 2)))
        for color, m in zip(colors, group, strict=False):
            acc = run.curves(m, "ticket")
            x = (np.arange(acc.shape[1]) + 1) * every
            mean = np.nanmean(acc, axis=0)
            ax.plot(x, mean, color=color, lw=1.2, label=f"{m['percent_nominal']:g}%")
            ax.fill_between(x, np.nanmin(acc, axis=0), np.nanmax(acc, axis=0), color=color, alpha=0.15)
            lows.append(np.nanpercentile(mean[len(mean) // 5:], 5) if len(mean) > 5 else np.nanmin(mean))
            c = m["roles"]["ticket"]["convergence_iteration"]
            if c["mean"] is not None:
                y = float(np.interp(c["mean"], x, mean))
                ax.errorbar([c["mean"]], [y], xerr=[[c["mean"] - c["min"]], [c["max"] - c["mean"]]], fmt="o",
                            color=color, ms=6, capsize=3, mec="black")
        ax.set_xlabel("training iteration")
        ax.grid(alpha=0.3)
    conv = run.original["conv"]
    if math.isfinite(conv) and run.at(25):
        axes[1].axvline(0.62 * conv, color="crimson", ls=":", lw=1)
        axes[1].annotate("paper: the 25% ticket converges 38% faster than the original", (0.62 * conv, 0.03),
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
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.8))
    every = run.settings["eval_every"]
    pruned = run.levels[1:]
    chosen = [run.levels[0]]
    for target in (75, 35):  # the paper's two ticket sizes, or the nearest distinct ones we have
        left = [m for m in pruned if m not in chosen]
        if left:
            chosen.append(min(left, key=lambda m: abs(math.log(m["percent_nominal"] / target))))
    colors = plt.cm.tab10(np.arange(len(chosen)))
    lows = []
    for color, m in zip(colors, chosen, strict=True):
        roles = [("ticket", "-", "ticket")] + ([("reinit", "--", "reinit control")] if m["percent_nominal"] < 100
                                               and "reinit" in m["roles"] else [])
        for role, ls, name in roles:
            acc = run.curves(m, role)
            x = (np.arange(acc.shape[1]) + 1) * every
            mean = np.nanmean(acc, axis=0)
            lows.append(np.nanpercentile(mean[len(mean) // 5:], 5) if len(mean) > 5 else np.nanmin(mean))
            ax.plot(x, mean, color=color, ls=ls, label=f"{m['percent_nominal']:g}% {name} (n={acc.shape[0]})")
            ax.fill_between(x, np.nanmin(acc, axis=0), np.nanmax(acc, axis=0), color=color, alpha=0.1)
    if lows:
        ax.set_ylim(max(min(lows) - 0.005, 0), None)
    ax.set_xlabel("training iteration")
    ax.set_ylabel("test accuracy (mean; band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, out / "figure4.png", "Figure 4: winning tickets and randomly reinitialised controls (control 1)\n"
            + _subtitle(run))


def figure5(run: Run, out: Path) -> None:
    """Convergence and accuracy vs. percent remaining: tickets, and each ticket's reinit controls."""
    import matplotlib.pyplot as plt
    import numpy as np

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
    o = run.original
    _mark(a, 25, 0.62 * o["conv"], "paper: 25% ticket 38% faster")
    _mark(a, 35, 1.27 * o["conv"], "paper: 35% controls 27% slower")
    _mark(a, 35, 1.91 * run.value(35, "ticket", "convergence_iteration"), "paper: controls 1.91x the 35% ticket")
    _mark(a, 25, 2.28 * run.value(25, "ticket", "convergence_iteration"), "paper: controls 2.28x the 25% ticket")
    _acc_line(b, run)
    _vline(b, 15, "paper: tickets within 0.15% down to 15%")
    _mark(b, 15, o["acc"] - 0.006, "paper: controls 0.6% below at 15%")
    _acc_line(c, run, "final")
    _note_unconverged((a, b, c), run)
    _legends((a, b, c))
    _finish(fig, out / "figure5.png", "Figure 5: one-shot tickets (blue) and their reinitialised controls\n"
            + _subtitle(run))


def figure6(run: Run, out: Path) -> None:
    """Tickets, reinit controls and shuffle controls vs. percent remaining (one-shot)."""
    fig, (a, b, c) = _panels(run)
    for ax, metric in zip((a, b, c), METRICS, strict=True):
        _role(ax, run, "ticket", metric, TICKET, "winning tickets", zorder=4)
        if run.trials("reinit"):
            _role(ax, run, "reinit", metric, REINIT, "reinit (control 1)")
        if run.trials("shuffle"):
            _role(ax, run, "shuffle", metric, SHUFFLE, "shuffle (control 2)")
        _axes_percent(ax, False, run)
    _acc_line(b, run)
    _acc_line(c, run, "final")
    _note_unconverged((a, b, c), run)
    _legends((a, b, c))
    _finish(fig, out / "figure6.png", "Figure 6: one-shot tickets and both controls\n" + _subtitle(run))


def figure7(oneshot: Run, iterative: Run, out: Path) -> None:
    """One-shot vs iterative winning tickets (log x)."""
    fig, (a, b, c) = _panels(iterative)
    for ax, metric in zip((a, b, c), METRICS, strict=True):
        _role(ax, iterative, "ticket", metric, TICKET, "iterative pruning")
        _role(ax, oneshot, "ticket", metric, REINIT, "one-shot pruning")
        _axes_percent(ax, True, oneshot, iterative)
    o = iterative.original
    _mark(a, 41, 0.64 * o["conv"], "paper: iterative 36% faster at 41%")
    _mark(a, 8.5, 0.62 * o["conv"], "paper: iterative 38% faster at 8.5%")
    _mark(a, 1.8, o["conv"], "paper: iterative back to original at 1.8%")
    _mark(a, 55, 0.56 * oneshot.original["conv"], "paper: one-shot 44% faster at 55%")
    _mark(a, 40, 0.59 * oneshot.original["conv"], "paper: one-shot 41% faster at 40%")
    _acc_line(b, iterative)
    _mark(b, 2.8, o["acc"], "paper: iterative back to original accuracy at 2.8%")
    _vline(b, 15, "paper: one-shot drops off at 15%")
    _acc_line(c, iterative, "final")
    _note_unconverged((a, b, c), oneshot, iterative)
    _legends((a, b, c))
    _finish(fig, out / "figure7.png", "Figure 7: one-shot vs iterative winning tickets\n" + _subtitle(iterative))


def figure8(oneshot: Run | None, iterative: Run, out: Path) -> None:
    """Iterative tickets, both controls, one-shot tickets (log x); lines end where trials stop converging."""
    fig, (a, b, c) = _panels(iterative)
    for ax, metric in zip((a, b, c), METRICS, strict=True):
        _role(ax, iterative, "ticket", metric, TICKET, "iterative tickets", zorder=4)
        if iterative.trials("reinit"):
            _role(ax, iterative, "reinit", metric, REINIT, "reinit (control 1)")
        if iterative.trials("shuffle"):
            _role(ax, iterative, "shuffle", metric, SHUFFLE, "shuffle (control 2)")
        if oneshot is not None:
            _role(ax, oneshot, "ticket", metric, "#d62728", "one-shot tickets")
        _axes_percent(ax, True, oneshot, iterative)
    _acc_line(b, iterative)
    _vline(b, 31, "paper: reinit drops 0.15% below at ~31%")
    _vline(b, 51.2, "paper: shuffle drops at 51.2%")
    _vline(b, 1.5, "paper: tickets drop at 1.5%")
    _acc_line(c, iterative, "final")
    _note_unconverged((a, b, c), iterative)
    _legends((a, b, c))
    _finish(fig, out / "figure8.png", "Figure 8: iterative tickets and both controls\n" + _subtitle(iterative))


def figure16(iterative: Run, han: Run, out: Path) -> None:
    """Resetting between rounds (ours) vs continuing from trained weights (Han et al.); the reset copy is measured."""
    fig, (a, b, c) = _panels(han)
    for ax, metric in zip((a, b, c), METRICS, strict=True):
        _role(ax, iterative, "ticket", metric, TICKET, "reset every round (ours)")
        _role(ax, han, "ticket", metric, REINIT, "continue training (Han et al.), reset copy")
        _axes_percent(ax, True, iterative, han)
    _acc_line(b, iterative)
    _acc_line(c, iterative, "final")
    _note_unconverged((a, b, c), iterative, han)
    _legends((a, b, c))
    _finish(fig, out / "figure16.png", "Figure 16: weight resetting vs Han et al.\n" + _subtitle(han))


# ---------------------------------------------------------------- claims


def _first_below(run: Run, role: str, threshold: float, metric: str = "convergence_accuracy") -> float | str:
    """Largest percent (scanning down from 100) where the role's mean ``metric`` falls below
    ``threshold`` or none of its trials converge any more (the paper's cut-off)."""
    for m in run.levels[1:]:
        r = m["roles"].get(role)
        v = None if r is None else r[metric]["mean"]
        if v is None or v < threshold:
            return round(m["percent_nominal"], 4)
    return f"no drop down to {run.levels[-1]['percent_nominal']:.4g}% (smallest level run)"


def _last_within(run: Run, metric: str, reference: float, better: str) -> float | str | None:
    """Smallest percent, scanning down from 100 without a break, at which the tickets are still at least
    as good as ``reference`` (accuracy >=, or convergence iteration <=)."""
    last: float | str | None = None
    for m in run.levels[1:]:
        v = m["roles"]["ticket"][metric]["mean"]
        if v is None or (v < reference if better == "higher" else v > reference):
            if last is None:
                last = f"none of ours (already not at {m['percent_nominal']:g}%)"
            break
        last = round(m["percent_nominal"], 4)
    else:
        if last is not None:
            last = f"at least down to {last:g}% (smallest level run)"
    return last


def _conv_or_bound(run: Run, percent: float, role: str) -> tuple[float, bool]:
    """Mean convergence iteration of ``role`` at ``percent``; where none of its trials converged,
    the latest iteration the rule could have reported (iterations - stable_for) as a lower bound."""
    v = run.value(percent, role, "convergence_iteration")
    m = run.at(percent)
    if math.isfinite(v) or m is None or role not in m["roles"] or m["roles"][role]["converged"]:
        return v, False
    return float(run.settings["iterations"] - run.levels[0]["convergence_rule"]["stable_for"]), True


def claims(oneshot: Run | None, iterative: Run | None) -> list[dict[str, Any]]:
    """Every numeric claim of sections 3-4 we can check, with the paper's value and ours."""
    out: list[dict[str, Any]] = []

    def add(claim, figure, paper, ours, n, run, how):
        out.append({"claim": claim, "figure": figure, "paper": paper,
                    "ours": None if ours is None or (isinstance(ours, float) and not math.isfinite(ours)) else ours,
                    "n": n, "run": run.path.name, "how": how})

    def pct(x):
        return None if x is None or not math.isfinite(x) else round(100 * x, 1)

    if oneshot is not None:
        o, n_t = oneshot.original, oneshot.trials("ticket")
        for p, paper in ((25, 38.0), (55, 44.0), (40, 41.0)):
            add(f"one-shot: the {p}% ticket converges faster than the original (%)", "3/7", paper,
                pct(1 - oneshot.value(p, "ticket", "convergence_iteration") / o["conv"]), n_t, oneshot,
                "1 - mean conv. iteration of tickets at p / at 100%")
        rng = [m for m in oneshot.levels if 25 <= m["percent_nominal"] <= 75]
        if rng:
            speed = [1 - _num(m["roles"]["ticket"]["convergence_iteration"]["mean"]) / o["conv"] for m in rng]
            gap = [abs(_num(m["roles"]["ticket"]["convergence_accuracy"]["mean"]) - o["acc"]) for m in rng]
            add("one-shot: tickets between 75% and 25% converge at least 25% faster (smallest speed-up, %)", "3",
                25.0, pct(min(speed)), n_t, oneshot, "min over levels in [25, 75] of the mean speed-up")
            add("one-shot: ... while accuracy stays within 0.15% of the original (largest gap, %)", "3", 0.15,
                pct(max(gap)), n_t, oneshot, "max over levels in [25, 75] of |mean acc. at conv. - original|")
        add("one-shot: tickets stay within 0.15% of the original's accuracy down to (percent)", "5", 15.0,
            _last_within(oneshot, "convergence_accuracy", o["acc"] - ACC_GAP, "higher"), n_t, oneshot,
            "smallest level, contiguous from 100%, with mean acc. at conv. >= original - 0.15%")
        add("one-shot: tickets' final accuracy stays within 0.15% of the original's down to (percent)", "5*",
            15.0, _last_within(oneshot, "final_accuracy", o["final"] - ACC_GAP, "higher"), n_t, oneshot,
            "as above with the accuracy at the end of training (supplementary: our tickets converge early)")
        if oneshot.trials("reinit"):
            n_c = oneshot.trials("reinit")
            for p, paper in ((35, 1.91), (25, 2.28)):
                t = oneshot.value(p, "ticket", "convergence_iteration")
                c, bound = _conv_or_bound(oneshot, p, "reinit")
                ratio = c / t
                add(f"one-shot: the {p}% ticket converges this many times as fast as its reinit controls", "4/5",
                    paper, (f"> {ratio:.2f} (no control converged)" if bound else round(ratio, 2))
                    if math.isfinite(ratio) else None, n_c, oneshot,
                    "mean conv. iteration of reinit controls / of tickets (converged trials)")
            c, bound = _conv_or_bound(oneshot, 35, "reinit")
            slower = pct(c / o["conv"] - 1)
            add("one-shot: the average 35% reinit control converges slower than the original (%)", "4", 27.0,
                f"> {slower} (no control converged)" if bound and slower is not None else slower, n_c, oneshot,
                "mean conv. iteration of reinit controls at 35% / original's - 1")
            add("one-shot: reinit controls' accuracy at 15%, below the original (%)", "5", 0.6,
                pct(o["acc"] - oneshot.value(15, "reinit", "convergence_accuracy")), n_c, oneshot,
                "original's mean acc. at conv. - controls' mean at 15%")
            add("one-shot: reinit controls' final accuracy at 15%, below the original's (%)", "5*", 0.6,
                pct(o["final"] - oneshot.value(15, "reinit", "final_accuracy")), n_c, oneshot,
                "as above with the accuracy at the end of training (supplementary)")
    if iterative is not None:
        o, n_t = iterative.original, iterative.trials("ticket")
        for p, paper in ((41, 36.0), (8.5, 38.0)):
            add(f"iterative: the {p}% ticket converges faster than the original (%)", "7", paper,
                pct(1 - iterative.value(p, "ticket", "convergence_iteration", "mean") / o["conv"]), n_t, iterative,
                "1 - mean conv. iteration of tickets at p / at 100%")
        add("iterative: tickets converge at least as fast as the original down to (percent)", "7", 1.8,
            _last_within(iterative, "convergence_iteration", o["conv"], "lower"), n_t, iterative,
            "smallest level, contiguous from 100%, with mean conv. iteration <= original's")
        add("iterative: tickets keep the original's accuracy down to (percent)", "7", 2.8,
            _last_within(iterative, "convergence_accuracy", o["acc"], "higher"), n_t, iterative,
            "smallest level, contiguous from 100%, with mean acc. at conv. >= original's")
        add("iterative: tickets keep the original's final accuracy down to (percent)", "7*", 2.8,
            _last_within(iterative, "final_accuracy", o["final"], "higher"), n_t, iterative,
            "as above with the accuracy at the end of training (supplementary)")
        for role, paper in (("ticket", 1.5), ("reinit", 31.0), ("shuffle", 51.2)):
            if iterative.trials(role):
                add(f"iterative: {role}s fall more than 0.15% below the original's accuracy at (percent)", "8",
                    paper, _first_below(iterative, role, o["acc"] - ACC_GAP), iterative.trials(role), iterative,
                    "first level below 100% whose mean acc. at conv. < original - 0.15% (or none converge)")
                add(f"iterative: {role}s' final accuracy falls more than 0.15% below the original's at (percent)",
                    "8*", paper, _first_below(iterative, role, o["final"] - ACC_GAP, "final_accuracy"),
                    iterative.trials(role), iterative, "as above with the accuracy at the end of training")
    return out


def write_claims(rows: list[dict[str, Any]], out: Path) -> None:
    from lth_jax import store

    store.write_json(out / "claims.json", rows)
    lines = ["| claim | fig. | paper | ours | n | run |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['claim']} | {r['figure']} | {r['paper']} | "
                     f"{'-' if r['ours'] is None else r['ours']} | {r['n']} | {r['run']} |")
    (out / "claims.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# ---------------------------------------------------------------- main


def make_all(runs_dir: str | Path, out: str | Path, oneshot: str | Path | None = None,
             iterative: str | Path | None = None, han: str | Path | None = None) -> list[str]:
    """Draw every figure the available runs allow; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for mode, given in (("oneshot", oneshot), ("iterative", iterative), ("han", han)):
        path = given or latest(runs_dir, mode)
        runs[mode] = Run(path) if path else None
    one, it, hn = runs["oneshot"], runs["iterative"], runs["han"]
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
        write_claims(claims(one, it), out)
    return sorted(p.name for p in out.iterdir())


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # jax's INFO lines (e.g. no TPU) are noise here
    out = FLAGS.out_dir or str(Path(FLAGS.runs_dir) / "figures")
    for name in ("oneshot", "iterative", "han"):
        given = getattr(FLAGS, name)
        if given and not (Path(given) / "settings.json").exists():
            _fail(f"--{name}={given} is not a run directory (no settings.json)")
    if not any(getattr(FLAGS, n) for n in ("oneshot", "iterative", "han")) and not Path(FLAGS.runs_dir).is_dir():
        _fail(f"--runs_dir={FLAGS.runs_dir} does not exist; run experiments.mnist first")
    try:
        made = make_all(FLAGS.runs_dir, out, FLAGS.oneshot, FLAGS.iterative, FLAGS.han)
    except ValueError as e:
        _fail(str(e))
    if not made:
        _fail(f"no stored runs under {FLAGS.runs_dir}")
    print(f"wrote {', '.join(made)} to {out}")




if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=_parse)
