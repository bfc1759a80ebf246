"""One Markdown report of the whole reproduction, built from whatever results are stored.

    python -m experiments.report                                   # runs/ -> results/REPORT.md + PNGs
    python -m experiments.report --runs_dir=runs --out=results --preset=paper

It reads (never trains):

- XOR (Figures 1-2): the JSON + PNG ``experiments.xor_sweep`` wrote to ``--xor_dir``;
- MNIST (Figures 3-8, 16): the best stored one-shot, iterative and han runs of
  LeNet-300-100 at the paper's initialisation anywhere under ``--runs_dir`` (most
  iterations, then most tickets), drawn by ``experiments.mnist_plots``;
- section 5 (Figures 9-10): ``examine.json`` and its PNGs in ``--examine_dir``;
- section 6 (Figures 11-15): the study manifests ``experiments.studies`` wrote under
  ``--runs_dir`` (``manifests/<study>-<mode>-<preset>.json``; paper > cpu > smoke).

Every number of ours in the report is computed here from those stored results; the
paper's values are the constants of :data:`CLAIMS`, each with its section. What is not
stored yet is listed with the command that produces it and its estimated time on this
CPU and on a GPU (:mod:`experiments.reproduce_paper`'s cost model).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from experiments import cli

_fail = cli.failer("report")
_parse = cli.flags_parser("report")

ACC_GAP = 0.0015  # "within 0.15% of the original network's accuracy" (sections 3.2, 4.2)
PRESET_ORDER = ("paper", "cpu", "smoke")

# ---------------------------------------------------------------- the paper's claims


class Claim(NamedTuple):
    key: str
    section: str
    figure: str
    text: str
    paper: Any            # the paper's value (a number, or words where the text gives none)
    source: str           # which stored result ours comes from: xor | oneshot | iterative | han | examine | <study>


CLAIMS: tuple[Claim, ...] = (
    # section 2 (XOR)
    Claim("xor_random2_db", "2", "1", "random 2-unit networks: found the decision boundary (%)", 49.1, "xor"),
    Claim("xor_random2_zl", "1, 2", "1", "random 2-unit networks: reached zero loss (%)", 17.6, "xor"),
    Claim("xor_random10_db", "2", "1", "random 10-unit networks: found the decision boundary (%)", 98.5, "xor"),
    Claim("xor_random10_zl", "2", "1", "random 10-unit networks: reached zero loss (%)", 92.9, "xor"),
    Claim("xor_oneshot2_db", "2.2", "2", "one-shot product, 2-unit tickets: decision boundary (% of all trials)",
          82.4, "xor"),
    Claim("xor_oneshot2_zl", "2.2", "2", "one-shot product, 2-unit tickets: zero loss (% of all trials)", 65.3, "xor"),
    Claim("xor_iter2_zl", "1, 2.2", "2", "iterative product, 2-unit tickets: original and ticket reach zero loss "
          "(% of all trials)", 79.4, "xor"),
    Claim("xor_iter2_zl_cond", "2.2", "2", "... of the 10-unit networks that reached zero loss (%, footnote 4)",
          84.9, "xor"),
    Claim("xor_iter2_db_cond", "2.2", "2", "iterative product, 2-unit tickets: decision boundary, of the 10-unit "
          "networks that found it (%)", 92.8, "xor"),
    # section 3 (one-shot MNIST)
    Claim("os_25_faster", "1, 3.2", "3", "one-shot: the 25% ticket converges faster than the original (%)", 38.0,
          "oneshot"),
    Claim("os_range_faster", "3.2", "3", "one-shot: tickets of 75%..25% converge at least this much faster (smallest "
          "speed-up, %)", 25.0, "oneshot"),
    Claim("os_range_acc", "3.2", "3", "one-shot: ... with accuracy within this of the original (largest gap, "
          "percentage points)", 0.15, "oneshot"),
    Claim("os_back_conv", "3.2; 4.1", "3, 7", "one-shot: tickets return to the original's convergence time at "
          "(percent remaining)", "10-15 (3.2); 5-10 (4.1)", "oneshot"),
    Claim("os_acc_to", "3.2, 4.1", "5", "one-shot: tickets stay within 0.15% of the original's accuracy down to "
          "(percent)", 15.0, "oneshot"),
    Claim("os_gain", "3.2 fn. 5", "3", "one-shot tickets: test accuracy gained after convergence (mean, "
          "percentage points)", 0.19, "oneshot"),
    Claim("os_ratio35", "3.2", "4", "one-shot: the 35% ticket converges this many times as fast as its reinit "
          "controls", 1.91, "oneshot"),
    Claim("os_ratio25", "3.2", "4", "one-shot: the 25% ticket converges this many times as fast as its reinit "
          "controls", 2.28, "oneshot"),
    Claim("os_ctrl35_slower", "3.2", "4", "one-shot: the 35% reinit controls converge slower than the original (%)",
          27.0, "oneshot"),
    Claim("os_ctrl15_gap", "3.2", "5", "one-shot: reinit controls at 15% fall below the original's accuracy by "
          "(percentage points)", 0.6, "oneshot"),
    Claim("os_55_faster", "4.1", "7", "one-shot: the 55% ticket converges faster than the original (%)", 44.0,
          "oneshot"),
    Claim("os_40_faster", "4.1", "7", "one-shot: the 40% ticket converges faster than the original (%)", 41.0,
          "oneshot"),
    # section 4 (iterative MNIST)
    Claim("it_41_faster", "4.1", "7", "iterative: the 41% ticket converges faster than the original (%)", 36.0,
          "iterative"),
    Claim("it_9_faster", "1", "7", "iterative: tickets 91% smaller (8.6%) converge faster than the original (%)",
          39.0, "iterative"),
    Claim("it_8.5_faster", "4.1", "7", "iterative: the 8.5% ticket converges faster than the original (%)", 38.0,
          "iterative"),
    Claim("it_back_conv", "1, 4.1", "7", "iterative: tickets return to the original's convergence time at (percent)",
          1.8, "iterative"),
    Claim("it_acc_back", "4.1", "7", "iterative: tickets are still as accurate as the original down to (percent)",
          2.8, "iterative"),
    Claim("it_trainings", "4.1", "-", "iterative at 20%: trainings to extract a ticket of about 5% (computed from "
          "the exact survivor counts)", 14, "rates_rule"),
    Claim("it_ticket_drop", "4.2", "8", "iterative tickets fall more than 0.15% below the original's accuracy at "
          "(percent)", 1.5, "iterative"),
    Claim("it_reinit_drop", "4.2", "8", "iterative reinit controls fall more than 0.15% below at (percent)", 31.0,
          "iterative"),
    Claim("it_shuffle_drop", "4.2", "8", "iterative shuffle controls fall more than 0.15% below at (percent)", 51.2,
          "iterative"),
    # section 5
    Claim("ex_dead_hidden2", "5", "10", "second hidden layer: units fully disconnected at 5.5% (%)",
          "nearly a third", "examine"),
    Claim("ex_dead_hidden1", "5", "10", "first hidden layer: units fully disconnected at 5.5% (%)",
          "a small fraction", "examine"),
    Claim("ex_bimodal", "5", "9", "hidden layers' surviving initial values at 51.2%: share within 1 std of 0, "
          "relative to the normal's (1 = no selection)", "bimodal: centre hollowed", "examine"),
    # section 6
    Claim("std_fastest", "6.1", "11-12", "initialisation std whose tickets converge fastest", 0.1, "init_std"),
    Claim("std_accurate", "6.1", "12", "initialisation std whose tickets reach the highest accuracy", 0.025,
          "init_std"),
    Claim("std_large_slower", "6.1", "11", "std 0.1 -> 0.2 -> 0.4 -> 0.8: fastest convergence iteration of each",
          "increases with std", "init_std"),
    Claim("std_large_less_acc", "6.1", "11", "std 0.1 -> 0.2 -> 0.4 -> 0.8: best accuracy at convergence of each",
          "decreases with std", "init_std"),
    Claim("size_conv_300", "6.2", "13", "one-shot 300-100: ticket size by convergence (weights)", 140_000,
          "sizes_oneshot"),
    Claim("size_conv_600", "6.2", "13", "one-shot 600-x: ticket size by convergence (weights)", 200_000,
          "sizes_oneshot"),
    Claim("size_min_conv", "6.2", "13", "one-shot: lowest convergence iteration of each size (smaller to larger "
          "network)", "decreases with size", "sizes_oneshot"),
    Claim("size_acc_oneshot", "6.2", "13", "one-shot: ticket size by accuracy (last before the 0.15% drop; weights) "
          "per network size", "about 150,000, nearly uniform", "sizes_oneshot"),
    Claim("size_acc_iter", "6.2", "14", "iterative: ticket size by accuracy (weights) per network size",
          "tens of thousands", "sizes_iterative"),
    Claim("rate_10_trainings", "6.3", "15", "iterative at 10%: trainings to extract a ticket of 5% (computed)", 28,
          "rates_rule"),
    Claim("rate_best", "6.3", "15", "pruning rate per round with the fastest and the most accurate tickets",
          "10% (both)", "rates"),
    Claim("han_acc_to", "6.4", "16", "smallest percent within 0.15% of the original's accuracy: reset every round "
          "vs Han et al.", "reset lasts slightly longer", "han"),
)

FIGURE_TITLES: dict[int, str] = {
    1: "Success rates of 1000 random XOR networks by hidden units",
    2: "XOR success rates of pruning strategies (1000 trials each)",
    3: "Test accuracy while training, one-shot winning tickets",
    4: "Winning tickets vs randomly reinitialised controls while training",
    5: "One-shot: convergence and accuracy vs percent remaining, tickets and reinit controls",
    6: "One-shot: tickets, reinit controls and shuffle controls",
    7: "One-shot vs iterative pruning",
    8: "Iterative pruning with both controls and one-shot",
    9: "Initial values of weights surviving iterative pruning",
    10: "Incoming connections per unit of iterative winning tickets",
    11: "Winning tickets initialised with std >= 0.1",
    12: "Winning tickets initialised with std <= 0.1",
    13: "One-shot winning tickets of networks of several sizes",
    14: "Iterative winning tickets of networks of several sizes",
    15: "Iterative pruning at several rates per round",
    16: "Weight resetting vs Han et al.'s continued training",
}
STEP_OF_FIGURE = {1: "xor", 2: "xor", 3: "oneshot", 4: "oneshot", 5: "oneshot", 6: "oneshot", 7: "iterative",
                  8: "iterative", 9: "examine", 10: "examine", 11: "studies", 12: "studies", 13: "studies",
                  14: "studies", 15: "studies", 16: "han"}


# ---------------------------------------------------------------- reading stored MNIST runs


class RunView:
    """A stored MNIST run: settings and every level's metrics (largest level first)."""

    def __init__(self, path: str | Path):
        from lth_jax import experiment

        self.path = Path(path)
        self.settings = experiment.load_settings(self.path)
        self.levels = [r.metrics for r in experiment.records(self.path)]

    @property
    def mode(self) -> str:
        return self.settings.mode

    def value(self, m: dict[str, Any] | None, role: str, metric: str, stat: str = "mean") -> float:
        if m is None or role not in m["roles"]:
            return math.nan
        v = m["roles"][role][metric][stat]
        return math.nan if v is None else float(v)

    def at(self, percent: float, tol: float = 0.1) -> dict[str, Any] | None:
        """The level whose nominal percent is nearest ``percent`` (within ``tol``, relative)."""
        if not self.levels:
            return None
        best = min(self.levels, key=lambda m: abs(math.log(m["percent_nominal"] / percent)))
        return best if abs(math.log(best["percent_nominal"] / percent)) <= tol else None

    @property
    def original(self) -> dict[str, Any] | None:
        return self.levels[0] if self.levels and self.levels[0]["percent_nominal"] == 100 else None

    def trials(self, role: str = "ticket") -> int:
        m = self.levels[0] if self.levels else None
        return int(m["roles"][role]["trials"]) if m and role in m["roles"] else 0

    def series(self, role: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray([m["percent_nominal"] for m in self.levels], float)
        return p, np.asarray([self.value(m, role, metric) for m in self.levels], float)

    def device(self) -> str:
        return sorted({m.get("device", "?") for m in self.levels})[0] if self.levels else "?"

    def describe(self) -> str:
        s = self.settings
        controls = f" + {s.reinit} reinit + {s.shuffle} shuffle controls each" if s.reinit or s.shuffle else ""
        return (f"{s.mode}: {len(s.seeds)} tickets{controls}, {s.iterations:,} iterations (paper: 50,000), "
                f"std {s.std}, lr {s.lr}, footnote-5 windows {s.average_over}/{s.stable_for}, "
                f"{len(self.levels)} levels stored, on {self.device()} [{self.path.name}]")


def mnist_command(settings: Any, root: str | Path) -> str:
    """The ``experiments.mnist`` command that produces ``settings`` (a preset where one matches,
    else the paper preset plus every flag that differs)."""
    from experiments import reproduce_paper

    for preset in PRESET_ORDER:
        for controls in (None, (0, 0)):
            try:
                ref = reproduce_paper.mnist_settings(preset, settings.mode, controls)
            except (KeyError, ValueError):
                continue
            if ref.hashed() == settings.hashed():
                extra = " --controls=0,0" if controls else ""
                return f"python -m experiments.mnist --preset={preset} --mode={settings.mode}{extra} --out_dir={root}"
    ref = reproduce_paper.mnist_settings("paper", settings.mode)
    flags = [f"--preset=paper --mode={settings.mode}"]
    seeds = settings.seeds
    if seeds != ref.seeds:
        flags.append(f"--seeds={len(seeds)}" + (f" --first_seed={seeds[0]}" if seeds[0] else ""))
    if (settings.reinit, settings.shuffle) != (ref.reinit, ref.shuffle):
        flags.append(f"--controls={settings.reinit},{settings.shuffle}")
    for name in ("iterations", "eval_every", "std", "rate", "output_rate_factor", "min_remaining", "lr", "optimizer",
                 "batch_size", "average_over", "stable_for", "tolerance"):
        if getattr(settings, name) != getattr(ref, name):
            flags.append(f"--{name}={getattr(settings, name):g}" if isinstance(getattr(settings, name), float)
                         else f"--{name}={getattr(settings, name)}")
    if settings.hidden != ref.hidden:
        flags.append("--hidden=" + ",".join(map(str, settings.hidden)))
    if settings.mode == "oneshot" and settings.levels != ref.levels:
        flags.append("--levels=" + ",".join(f"{p:g}" for p in settings.levels))
    return "python -m experiments.mnist " + " ".join(flags) + f" --out_dir={root}"


def find_mnist_runs(runs_dir: str | Path) -> dict[str, Path]:
    """The best stored run per mode of LeNet-300-100 at the paper's init, SGD 0.05, batch 100
    (iterative/han: 20% a round): most iterations, then most tickets, then most levels."""
    from lth_jax import store

    best: dict[str, tuple] = {}
    root = Path(runs_dir)
    if not root.is_dir():
        return {}
    for f in root.rglob("settings.json"):
        try:
            s = store.read_json(f)["settings"]
        except (ValueError, OSError, KeyError):
            continue
        if not isinstance(s, dict) or s.get("data") != "mnist":
            continue
        mode = s.get("mode")
        if (tuple(s.get("hidden", ())) != (300, 100) or s.get("std") != 0.1 or s.get("lr") != 0.05
                or s.get("optimizer") != "sgd" or s.get("batch_size") != 100 or s.get("output_rate_factor") != 0.5):
            continue
        if mode in ("iterative", "han") and s.get("rate") != 0.2:
            continue
        if mode in ("oneshot", "iterative") and not (s.get("reinit") or s.get("shuffle")):
            continue  # the main experiments carry controls; tickets-only runs belong to other figures
        levels = [n for n in store.levels(f.parent) if n != "init"]
        if not levels:
            continue
        rank = (s["iterations"], len(s["seeds"]), len(levels))
        if mode not in best or rank > best[mode][0]:
            best[mode] = (rank, f.parent)
    return {mode: v[1] for mode, v in best.items()}


# ---------------------------------------------------------------- XOR and section 5 outputs


def load_xor(xor_dir: str | Path) -> dict[str, Any] | None:
    """``xor_sweep.json`` (+ its PNG) as experiments.xor_sweep wrote it to ``xor_dir``, or None."""
    f = Path(xor_dir) / "xor_sweep.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (ValueError, OSError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return None
    data["_path"], data["_dir"] = str(f), str(Path(xor_dir))
    data["_pngs"] = [str(p) for p in sorted(Path(xor_dir).glob("*.png"))]
    return data


def xor_command(xor: dict[str, Any]) -> str:
    """The experiments.xor_sweep command that made ``xor`` (flags that differ from its defaults)."""
    import dataclasses

    from experiments import xor_sweep

    given = xor.get("settings", {})
    defaults = dataclasses.asdict(xor_sweep.Settings())
    flags = []
    for k, v in given.items():
        if k in defaults and k != "hidden" and _jsonish(v) != _jsonish(defaults[k]):
            flags.append(f"--{k}=" + (",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)))
    return " ".join(["python -m experiments.xor_sweep", *flags, f"--out_dir={xor['_dir']}"])


def _jsonish(v: Any) -> str:
    return json.dumps(list(v) if isinstance(v, tuple) else v)


def xor_row(xor: dict[str, Any], **match: Any) -> dict[str, Any] | None:
    for r in xor["rows"]:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def load_examine(examine_dir: str | Path) -> dict[str, Any] | None:
    f = Path(examine_dir) / "examine.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (ValueError, OSError):
        return None
    data["_dir"] = str(Path(examine_dir))
    return data


# ---------------------------------------------------------------- context


class Context(NamedTuple):
    runs_dir: Path
    mnist: dict[str, RunView]
    xor: dict[str, Any] | None
    examine: dict[str, Any] | None
    studies: dict[tuple[str, str], dict[str, Any]]   # (study, mode) -> load_study(...) of the chosen manifest


def load_context(runs_dir: str | Path, xor_dir: str | Path, examine_dir: str | Path) -> Context:
    from experiments import studies

    mnist = {mode: RunView(p) for mode, p in find_mnist_runs(runs_dir).items()}
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    if Path(runs_dir).is_dir():
        for f in studies.find_manifests(runs_dir):
            try:
                st = studies.load_study(f)
            except (ValueError, OSError, KeyError):
                continue
            if not any(g["rows"] for g in st["groups"]):
                continue
            key = (st["study"], st["mode"])
            rank = PRESET_ORDER.index(st["preset"]) if st["preset"] in PRESET_ORDER else 99
            if key not in chosen or rank < chosen[key]["_rank"]:
                st["_rank"], st["_manifest"] = rank, str(f)
                chosen[key] = st
    return Context(Path(runs_dir), mnist, load_xor(xor_dir), load_examine(examine_dir), chosen)


# ---------------------------------------------------------------- our value of each claim


class Ours(NamedTuple):
    value: Any          # number or words; None: cannot be computed from what is stored
    n: str              # sample size behind it
    settings: str       # what produced it
    command: str


def _pct(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(100 * x, 2)


def _speedup(run: RunView, percent: float, tol: float = 0.1) -> float | None:
    o, m = run.original, run.at(percent, tol)
    if o is None or m is None or m is o:
        return None
    return _pct(1 - run.value(m, "ticket", "convergence_iteration") / run.value(o, "ticket", "convergence_iteration"))


def _back_to_original_conv(run: RunView) -> float | None:
    """First level, pruning further past the fastest one, whose mean convergence iteration is
    back at or above the original's (None: not within the stored levels)."""
    p, c = run.series("ticket", "convergence_iteration")
    if len(p) < 3 or not np.isfinite(c[0]) or not np.isfinite(c[1:]).any():
        return None
    fastest = 1 + int(np.nanargmin(c[1:]))
    for i in range(fastest + 1, len(p)):
        if not np.isfinite(c[i]) or c[i] >= c[0]:
            return float(p[i])
    return None


def _drop(run: RunView, role: str, tolerance: float = ACC_GAP) -> dict[str, Any] | None:
    from lth_jax import analysis

    o = run.original
    if o is None or role not in o["roles"] or len(run.levels) < 2:
        return None
    p, a = run.series(role, "convergence_accuracy")
    ref = run.value(o, "ticket", "convergence_accuracy")
    if not math.isfinite(ref):
        return None
    return analysis.accuracy_drop(p, a, tolerance, reference=ref)


def _study_pick(groups: list[dict[str, Any]], key: str, best: Callable) -> tuple[Any, list[tuple[str, float]]]:
    """Per group, the best (``best`` = np.nanmin / np.nanmax) mean of ``key`` over its levels."""
    vals = []
    for g in groups:
        v = np.asarray([r[f"{key}_mean"] for r in g["rows"]], float)
        vals.append((g["label"], float(best(v)) if np.isfinite(v).any() else math.nan))
    finite = [(lab, v) for lab, v in vals if math.isfinite(v)]
    if not finite:
        return None, vals
    pick = (min if best is np.nanmin else max)(finite, key=lambda t: t[1])
    return pick[0], vals


def _fmt_vals(vals: list[tuple[str, float]], spec: str) -> str:
    return "; ".join(f"{lab}: {'-' if not math.isfinite(v) else format(v, spec)}" for lab, v in vals)


def _monotone(vals: list[tuple[str, float]], increasing: bool) -> str:
    v = [x for _, x in vals]
    if len(v) < 2 or not all(math.isfinite(x) for x in v):
        return "undetermined"
    ok = all((b > a) if increasing else (b < a) for a, b in zip(v[:-1], v[1:], strict=False))
    return ("yes: " if ok else "no: not ") + ("increasing" if increasing else "decreasing") + " throughout"


def compute_claim(claim: Claim, ctx: Context) -> Ours | None:
    """Our value of ``claim`` from the stored results, or None when they are not stored."""
    src = claim.source
    if src == "rates_rule":
        from experiments import studies

        rate = 0.2 if claim.key == "it_trainings" else 0.1
        t = studies.trainings_to_about_5(rate)
        return Ours(t["trainings"], "-", f"LeNet-300-100, {rate:.0%} a round (output layer at half), first level "
                    f"under {studies.ABOUT_5_PERCENT}% of all weights: {t['percent_overall']:.2f}%",
                    f"python -m experiments.studies --study=rates --rates={rate} --dry_run")
    if src in ("oneshot", "iterative"):
        run = ctx.mnist.get(src)
        return None if run is None else _mnist_claim(claim, run, ctx)
    if src == "han":
        it, han = ctx.mnist.get("iterative"), ctx.mnist.get("han")
        if it is None or han is None:
            return None
        a, b = _drop(it, "ticket"), _drop(han, "ticket")
        if a is None or b is None:
            return None
        cmd = mnist_command(han.settings, han.path.parent)
        return Ours(f"reset: {a['last_before_drop']:g}%, Han et al.: {b['last_before_drop']:g}%",
                    f"{it.trials()} + {han.trials()} tickets/level", f"runs {it.path.name}, {han.path.name}", cmd)
    if src == "examine":
        return _examine_claim(claim, ctx.examine)
    if src == "xor":
        return _xor_claim(claim, ctx.xor)
    return _study_claim(claim, ctx)


def _mnist_claim(claim: Claim, run: RunView, ctx: Context) -> Ours | None:
    k = claim.key
    n_t, n_r = run.trials("ticket"), run.trials("reinit")
    value: Any = None
    n = f"{n_t} tickets/level"
    o = run.original
    if o is None:
        return None
    conv0 = run.value(o, "ticket", "convergence_iteration")
    acc0 = run.value(o, "ticket", "convergence_accuracy")
    if k.endswith("_faster") and k != "os_range_faster":
        pct = {"os_25_faster": 25, "os_55_faster": 55, "os_40_faster": 40, "it_41_faster": 41, "it_9_faster": 8.6,
               "it_8.5_faster": 8.5}[k]
        value = _speedup(run, pct)
    elif k == "os_range_faster" or k == "os_range_acc":
        rng = [m for m in run.levels[1:] if 25 <= m["percent_nominal"] <= 75]
        if rng:
            if k == "os_range_faster":
                value = _pct(min(1 - run.value(m, "ticket", "convergence_iteration") / conv0 for m in rng))
            else:
                gaps = [abs(run.value(m, "ticket", "convergence_accuracy") - acc0) for m in rng]
                value = None if not all(map(math.isfinite, gaps)) else round(100 * max(gaps), 3)
            n += f", {len(rng)} levels"
    elif k in ("os_back_conv", "it_back_conv"):
        value = _back_to_original_conv(run)
    elif k == "os_acc_to":
        d = _drop(run, "ticket")
        value = None if d is None else d["last_before_drop"]
    elif k == "it_acc_back":
        d = _drop(run, "ticket", 0.0)
        value = None if d is None else d["smallest_within"]
    elif k == "os_gain":
        gains = [t["gain_after_convergence"] for m in run.levels[1:] for t in m["trials"]
                 if t["role"] == "ticket" and t["gain_after_convergence"] is not None
                 and math.isfinite(t["gain_after_convergence"])]
        if gains:
            sd = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0
            value = f"{100 * np.mean(gains):.3f} (sd {100 * sd:.3f})"
            n = f"{len(gains)} converged ticket trials"
        else:
            n = "0 converged ticket trials"
    elif k in ("os_ratio35", "os_ratio25"):
        m = run.at(35 if k == "os_ratio35" else 25)
        t, c = run.value(m, "ticket", "convergence_iteration"), run.value(m, "reinit", "convergence_iteration")
        value = round(c / t, 2) if math.isfinite(c / t) else None
        n = f"{n_t} tickets, {n_t * run.settings.reinit} controls"
    elif k == "os_ctrl35_slower":
        value = _pct(run.value(run.at(35), "reinit", "convergence_iteration") / conv0 - 1)
        n = f"{n_t * run.settings.reinit} controls"
    elif k == "os_ctrl15_gap":
        value = _pct(acc0 - run.value(run.at(15), "reinit", "convergence_accuracy"))
        n = f"{n_t * run.settings.reinit} controls"
    elif k in ("it_ticket_drop", "it_reinit_drop", "it_shuffle_drop"):
        role = k.split("_")[1]
        if role != "ticket" and not run.trials(role):
            return None
        d = _drop(run, role)
        value = None if d is None else (d["first_below"] if d["first_below"] is not None else
                                        f"none down to {run.levels[-1]['percent_nominal']:.3g}%")
        n = f"{run.trials(role)} {role} trials/level"
    if n_r == 0 and k.startswith("os_ctrl"):
        return None
    return Ours(value, n, f"{run.mode} run {run.path.name}", mnist_command(run.settings, run.path.parent))


def _examine_claim(claim: Claim, ex: dict[str, Any] | None) -> Ours | None:
    if ex is None:
        return None
    settings = ex.get("settings", {})
    note = (f"iterative, {ex.get('runs')} runs, {settings.get('iterations', '?'):,} iterations/round (paper: 50,000)"
            if isinstance(settings.get("iterations"), int) else f"{ex.get('runs')} runs")
    cmd = ex.get("command", "python -m experiments.examine")
    if claim.key.startswith("ex_dead"):
        lv = min(ex.get("figure10", []), key=lambda e: abs(e["target"] - 0.055), default=None)
        if lv is None:
            return None
        name = "Dense_1" if claim.key == "ex_dead_hidden2" else "Dense_0"
        d = lv["layers"].get(name)
        if d is None:
            return None
        return Ours(f"{100 * d['fraction']:.1f} ± {100 * d['se']:.1f}", f"{d['units']} units "
                    f"({ex.get('runs')} runs)", note + f", level {100 * lv['remaining']:.1f}%", cmd)
    lv = min(ex.get("figure9", []), key=lambda e: abs(e["target"] - 0.512), default=None)
    if lv is None:
        return None
    parts = [f"{name}: {d['ratio']:.2f}" for name, d in lv["layers"].items()]
    n = ", ".join(f"{d['n']:,}" for d in lv["layers"].values())
    return Ours("; ".join(parts), f"{n} weights", note + f", level {100 * lv['remaining']:.1f}%", cmd)


def _xor_claim(claim: Claim, xor: dict[str, Any] | None) -> Ours | None:
    if xor is None:
        return None
    table, match, metric = XOR_MATCH[claim.key]
    row = xor_row(xor, table=table, **match)
    if row is None:
        return None
    v = row[metric]
    se = row[f"{metric}_se"]
    value = None if v is None else f"{v:.1f} ± {se:.1f}"
    return Ours(value, f"{row[f'n_{metric}']} of {row['trials']} trials", row["setting"], xor_command(xor))


# Which row of xor_sweep.json answers each XOR claim: (table, row fields, metric).
XOR_MATCH: dict[str, tuple[str, dict[str, Any], str]] = {
    "xor_random2_db": ("figure1", {"units": 2}, "db"), "xor_random2_zl": ("figure1", {"units": 2}, "zl"),
    "xor_random10_db": ("figure1", {"units": 10}, "db"), "xor_random10_zl": ("figure1", {"units": 10}, "zl"),
    "xor_oneshot2_db": ("figure2", {"strategy": "one-shot product", "units": 2}, "db"),
    "xor_oneshot2_zl": ("figure2", {"strategy": "one-shot product", "units": 2}, "zl"),
    "xor_iter2_zl": ("figure2", {"strategy": "iterative product", "units": 2}, "zl"),
    "xor_iter2_zl_cond": ("conditional", {"strategy": "iterative product", "units": 2, "kind": "ticket"}, "zl"),
    "xor_iter2_db_cond": ("conditional", {"strategy": "iterative product", "units": 2, "kind": "ticket"}, "db"),
}


def _acc_key(groups: list[dict[str, Any]]) -> tuple[str, str]:
    """Accuracy at convergence where any level converged, else final accuracy (said in the details)."""
    if any(math.isfinite(r["convergence_accuracy_mean"]) for g in groups for r in g["rows"]):
        return "convergence_accuracy", "accuracy at convergence"
    return "final_accuracy", "FINAL accuracy (no trial converged)"


def _study_claim(claim: Claim, ctx: Context) -> Ours | None:
    from experiments import studies

    key = {"init_std": ("init_std", "oneshot"), "sizes_oneshot": ("sizes", "oneshot"),
           "sizes_iterative": ("sizes", "iterative"), "rates": ("rates", "iterative")}[claim.source]
    st = ctx.studies.get(key)
    if st is None:
        return None
    groups = [g for g in st["groups"] if g["rows"]]
    cmd = st.get("command") or f"python -m experiments.studies --study={key[0]} --mode={key[1]}"
    n = f"{groups[0]['rows'][0]['trials']} tickets/group/level" if groups else "0"
    where = f"{key[0]} ({key[1]}, preset {st['preset']})"
    k = claim.key
    acc_key, acc_words = _acc_key(groups)
    tag = "" if acc_key == "convergence_accuracy" else " (by final accuracy)"
    conv = ("convergence_iteration", np.nanmin)
    if k == "rate_best":
        fast, fv = _study_pick(groups, *conv)
        acc, av = _study_pick(groups, acc_key, np.nanmax)
        value = f"fastest: {fast or 'n/a'}; most accurate: {acc or 'n/a'}{tag}"
        return Ours(value, n, f"{where}; fastest conv. iteration per rate: {_fmt_vals(fv, '.0f')}; best "
                    f"{acc_words}: {_fmt_vals(av, '.4f')}", cmd)
    if k in ("std_fastest", "std_accurate"):
        metric, best, words = (conv[0], conv[1], "fastest conv. iteration") if k == "std_fastest" else (
            acc_key, np.nanmax, "best " + acc_words)
        pick, vals = _study_pick(groups, metric, best)
        if pick is None:
            value = None
        elif k == "std_accurate" and tag:
            value = pick.replace("std ", "") + tag
        else:
            value = float(pick.replace("std ", ""))
        return Ours(value, n, f"{where}; {words} per std: {_fmt_vals(vals, '.0f' if 'iteration' in metric else '.4f')}",
                    cmd)
    if k in ("std_large_slower", "std_large_less_acc"):
        big = sorted((g for g in groups if g["settings"]["std"] >= 0.1), key=lambda g: g["settings"]["std"])
        metric, best, words = (conv[0], conv[1], "fastest conv. iteration") if k == "std_large_slower" else (
            acc_key, np.nanmax, "best " + acc_words)
        _, vals = _study_pick(big, metric, best)
        if len(vals) < 2:
            return None
        verdict = _monotone(vals, increasing=k == "std_large_slower")
        verdict += tag if k == "std_large_less_acc" else ""
        return Ours(None if verdict.startswith("undetermined") else verdict, n,
                    f"{where}; {words}: {_fmt_vals(vals, '.0f' if 'iteration' in metric else '.4f')}", cmd)
    table = studies.ticket_size_table(st)
    if k in ("size_conv_300", "size_conv_600"):
        want = "300-100" if k == "size_conv_300" else "600-"
        row = next((r for r in table if r["label"].startswith(want)), None)
        if row is None:
            return None
        return Ours(row["by_convergence"], n, f"{where}; {row['label']}: {row['weights']:,} weights, "
                    f"{row['levels']} levels", cmd)
    if k == "size_min_conv":
        vals = [(r["label"], r["min_convergence"] if r["min_convergence"] is not None else math.nan) for r in table]
        if len(vals) < 2:
            return None
        verdict = _monotone(vals, increasing=False)
        return Ours(None if verdict == "undetermined" else verdict, n, f"{where}; {_fmt_vals(vals, '.0f')}", cmd)
    if k in ("size_acc_oneshot", "size_acc_iter"):
        if not table:
            return None
        final = any(r["accuracy"].startswith("final") for r in table)
        return Ours("; ".join(f"{r['label']}: {_cell(r['by_accuracy'])}" for r in table)
                    + (" (by final accuracy)" if final else ""), n,
                    f"{where}; by {table[0]['accuracy']}", cmd)
    return None


def claim_rows(ctx: Context) -> list[dict[str, Any]]:
    out = []
    for c in CLAIMS:
        ours = compute_claim(c, ctx)
        out.append({"key": c.key, "section": c.section, "figure": c.figure, "claim": c.text, "paper": c.paper,
                    "stored": ours is not None, "ours": None if ours is None else ours.value,
                    "n": None if ours is None else ours.n, "details": None if ours is None else ours.settings,
                    "command": None if ours is None else ours.command, "source": c.source})
    return out


# ---------------------------------------------------------------- figures


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def mnist_figures(ctx: Context, fig_dir: Path) -> dict[int, Path]:
    """Figures 3-8 and 16 via experiments.mnist_plots on the chosen runs (a subprocess: its
    flags live in its own process)."""
    runs = ctx.mnist
    if not runs:
        return {}
    made: dict[int, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        empty, out = Path(tmp) / "empty", Path(tmp) / "out"
        empty.mkdir()
        args = [sys.executable, "-m", "experiments.mnist_plots", f"--runs_dir={empty}", f"--out_dir={out}"]
        args += [f"--{mode}={run.path}" for mode, run in runs.items()]
        root = Path(__file__).resolve().parents[1]
        res = subprocess.run(args, cwd=root, capture_output=True, text=True)
        if res.returncode:
            sys.stderr.write(f"report: warning: mnist_plots failed: {(res.stderr or res.stdout).strip()[-300:]}\n")
        for fig in (3, 4, 5, 6, 7, 8, 16):
            src = out / f"figure{fig}.png"
            if src.is_file():
                made[fig] = _copy(src, fig_dir / f"figure{fig:02d}.png")
    return made


def study_figures(ctx: Context, fig_dir: Path) -> dict[int, list[Path]]:
    from experiments import studies

    made: dict[int, list[Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _key, st in sorted(ctx.studies.items()):
            for p in studies.plot_figures(st, tmp):
                fig = int(p.stem[6:8])
                name = f"figure{fig:02d}" + ("-iterative" if p.stem.endswith("-iterative") else "") + ".png"
                made.setdefault(fig, []).append(_copy(p, fig_dir / name))
    return made


def other_figures(ctx: Context, fig_dir: Path) -> dict[int, list[Path]]:
    made: dict[int, list[Path]] = {}
    if ctx.examine is not None:
        for fig in (9, 10):
            src = Path(ctx.examine["_dir"]) / f"figure{fig}.png"
            if src.is_file():
                made[fig] = [_copy(src, fig_dir / f"figure{fig:02d}.png")]
    if ctx.xor is not None:
        for i, src in enumerate(ctx.xor["_pngs"]):
            made.setdefault(1, []).append(_copy(Path(src), fig_dir / f"figure01-02{'-' + str(i) if i else ''}.png"))
    return made


# ---------------------------------------------------------------- the document


def _cell(v: Any) -> str:
    if v is None:
        return "missing"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "/")


def _missing_rows(ctx: Context, present: set[int], costs: dict[str, Any]) -> list[dict[str, Any]]:
    """What is still to run: every step of the paper preset with training left (its state: no results
    at all, or only smaller CPU-sized results), and the cpu preset's steps for figures with no results."""
    from experiments import reproduce_paper

    out = []
    for preset in ("paper", "cpu"):
        for s in reproduce_paper.steps(preset, str(ctx.runs_dir)):
            figs = [f for f in s.figures if f not in present]
            if preset == "cpu" and not figs:
                continue
            est = reproduce_paper.estimate(s, costs)
            if est["cpu"] <= 0:
                continue
            state = "no results yet" if len(figs) == len(s.figures) else (
                "only smaller (CPU-sized) results stored" if not figs else
                f"Figures {', '.join(map(str, figs))} have no results; the others only smaller ones")
            out.append({"preset": preset, "figures": list(s.figures), "missing": figs, "state": state,
                        "command": s.command, "cpu": est["cpu"], "gpu": est["gpu"]})
    return out


def build(runs_dir: str | Path = "runs", out: str | Path = "results", xor_dir: str | Path | None = None,
          examine_dir: str | Path | None = None, command: str | None = None) -> Path:
    """Write ``out/REPORT.md`` and its PNGs (``out/figures/``) from what is stored; returns the report path."""
    from experiments import reproduce_paper, studies

    runs_dir, out = Path(runs_dir), Path(out)
    xor_dir = Path(xor_dir) if xor_dir else runs_dir / "xor"
    if not examine_dir:  # reproduce_paper's place, else experiments.examine's own default
        examine_dir = next((d for d in (runs_dir / "examine" / "figures", Path("results") / "examine")
                            if (d / "examine.json").is_file()), runs_dir / "examine" / "figures")
    examine_dir = Path(examine_dir)
    fig_dir = out / "figures"
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):  # the report shows only what is stored now
            old.unlink()
    ctx = load_context(runs_dir, xor_dir, examine_dir)
    figs: dict[int, list[Path]] = {k: [v] for k, v in mnist_figures(ctx, fig_dir).items()}
    for src in (study_figures(ctx, fig_dir), other_figures(ctx, fig_dir)):
        for k, v in src.items():
            figs.setdefault(k, []).extend(v)
    present = set(figs)
    if ctx.xor is not None:
        present |= {1, 2}
    if ctx.examine is not None:
        present |= {9, 10}
    rows = claim_rows(ctx)
    costs = reproduce_paper.cost_model(runs_dir)
    missing = _missing_rows(ctx, present, costs)

    L: list[str] = []
    L += ["# Reproduction report: *The Lottery Ticket Hypothesis: Training Pruned Neural Networks* "
          "(Frankle & Carbin, arXiv v1)", "",
          f"Built by `{command or 'python -m experiments.report'}` from the results stored under `{runs_dir}/`. "
          "Every number in the *ours* columns is read from those stored results by `experiments/report.py`; "
          "the paper's values are constants in its `CLAIMS` table, each with its section. Nothing here is typed "
          "by hand.", ""]
    n_ours = sum(r["ours"] is not None for r in rows)
    L += [f"**Status:** {len(present)} of 16 figures have results of ours; {n_ours} of {len(rows)} numeric claims "
          "have a value of ours. Each figure and claim states the settings it came from: runs made on a CPU use "
          "far fewer iterations and tickets than the paper (50,000 iterations, 5 tickets), so their numbers "
          "check the pipeline and the direction of effects, not the paper's values.", ""]
    L += ["## Settings of the stored runs", ""]
    for mode, run in sorted(ctx.mnist.items()):
        L.append(f"- MNIST {mode} ({_figures_words(_figs_of(mode))}): {run.describe()}; command: "
                 f"`{mnist_command(run.settings, run.path.parent)}`")
    for (study, mode), st in sorted(ctx.studies.items()):
        L.append(f"- study {study} ({mode}, {_figures_words(st['figures'])}): "
                 f"{studies.settings_note(st)}; command: `{st['command']}`")
    if ctx.examine is not None:
        L.append(f"- section 5 (Figures 9-10): {ctx.examine.get('runs')} iterative runs, settings "
                 f"{_short_settings(ctx.examine.get('settings', {}))}; command: `{ctx.examine.get('command')}`")
    if ctx.xor is not None:
        L.append(f"- XOR (Figures 1-2): {_short_xor(ctx.xor)}; command: `{xor_command(ctx.xor)}`")
    if not (ctx.mnist or ctx.studies or ctx.examine or ctx.xor):
        L.append("- nothing is stored yet")
    L += ["", f"Time estimates: CPU {costs['source']['cpu']}; GPU {costs['source']['gpu']}.", ""]

    L += ["## Claims of the text", "",
          "*ours*: **missing** = the results it needs are not stored (see *Missing results*); **n/a** = they are "
          "stored but do not determine it (e.g. no trial converged under footnote 5 in a short CPU run). The "
          "settings of each run are listed above; *details* names the run and the values behind ours.", "",
          "| § | fig. | claim | paper | ours | n | details | command |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = "missing" if not r["stored"] else ("n/a" if r["ours"] is None else _cell(r["ours"]))
        L.append(f"| {r['section']} | {r['figure']} | {r['claim']} | {_cell(r['paper'])} | {_esc(ours)} | "
                 f"{r['n'] or '-'} | {_esc(r['details'] or '-')} | "
                 f"{('`' + r['command'] + '`') if r['command'] else '-'} |")
    L += [""]

    L += ["## Figures", ""]
    for fig in range(1, 17):
        L += [f"### Figure {fig}: {FIGURE_TITLES[fig]}", ""]
        if fig in (1, 2) and ctx.xor is not None:
            L += _xor_section(ctx.xor, fig)
        if fig in figs:
            for p in figs[fig]:
                L += [f"![Figure {fig}](figures/{p.name})", ""]
        if fig in (9, 10) and ctx.examine is not None:
            L += _examine_section(ctx.examine, fig)
        st = _study_for_figure(ctx, fig)
        if st is not None:
            L += [f"Settings: {studies.settings_note(st)}. Command: `{st['command']}`.", "",
                  studies.markdown_table(_subset(st, fig)), "", _divergence_line(_subset(st, fig)), ""]
            if fig in (13, 14):
                L += _ticket_sizes(st)
            if fig == 15:
                L += _rates_rule(st)
        if fig not in present:
            L += _missing_text(fig, missing)
        L.append("")
    L += ["## Missing results", "",
          "Still to run, with the estimated time left (stored levels count as done; runs resume). The paper "
          "preset rows are what a reproduction at the paper's settings needs; cpu rows only cover figures with "
          "no results at all.", ""]
    if missing:
        L += ["| preset | figures | state | command | est. CPU | est. GPU |", "|---|---|---|---|---|---|"]
        for m in missing:
            L.append(f"| {m['preset']} | {', '.join(map(str, m['figures']))} | {m['state']} | `{m['command']}` | "
                     f"{reproduce_paper.human(m['cpu'])} | {reproduce_paper.human(m['gpu'])} |")
        L += ["", "`python -m experiments.reproduce_paper --preset=paper` runs every step that is not complete, "
              "then rebuilds this report (`--dry_run` prints the plan)."]
    else:
        L.append("Nothing: every step of the paper preset is stored.")
    L += ["", "## Decisions", ""] + _decisions()
    out.mkdir(parents=True, exist_ok=True)
    from lth_jax import store

    store.write_json(out / "claims.json", rows)
    path = out / "REPORT.md"
    store.atomic_write(path, lambda f: f.write(("\n".join(L) + "\n").encode()))
    return path


def _figures_words(figs: Sequence[int]) -> str:
    return ("Figure " if len(figs) == 1 else "Figures ") + ", ".join(map(str, figs))


def _figs_of(mode: str) -> tuple[int, ...]:
    return {"oneshot": (3, 4, 5, 6, 7), "iterative": (7, 8, 16), "han": (16,)}.get(mode, ())


def _short_settings(s: dict[str, Any]) -> str:
    keys = ("iterations", "eval_every", "hidden", "std", "rate", "seeds")
    return ", ".join(f"{k} {s[k]}" for k in keys if k in s)


def _study_for_figure(ctx: Context, fig: int) -> dict[str, Any] | None:
    key = {11: ("init_std", "oneshot"), 12: ("init_std", "oneshot"), 13: ("sizes", "oneshot"),
           14: ("sizes", "iterative"), 15: ("rates", "iterative")}.get(fig)
    if key is None:
        return None
    return ctx.studies.get(key) or (ctx.studies.get(("init_std", "iterative")) if fig in (11, 12) else None)


def _subset(st: dict[str, Any], fig: int) -> dict[str, Any]:
    if fig not in (11, 12):
        return st
    pick = (lambda s: s >= 0.1) if fig == 11 else (lambda s: s <= 0.1)
    return {**st, "groups": [g for g in st["groups"] if pick(g["settings"]["std"])]}


def _divergence_line(st: dict[str, Any]) -> str:
    """Trials that produced NaN/inf, per group, from the stored levels."""
    parts = []
    for g in st["groups"]:
        n = sum(r["trials"] for r in g["rows"])
        k = sum(r["diverged"] for r in g["rows"])
        first = [r["diverged_first_step"] for r in g["rows"] if r["diverged"]]
        parts.append(f"{g['label']}: {k} of {n}" + (f" (first at step {min(first)})" if first else ""))
    return "Trials that diverged (loss NaN/inf; counted over all stored levels): " + "; ".join(parts) + "."


def _ticket_sizes(st: dict[str, Any]) -> list[str]:
    from experiments import studies

    L = ["Winning-ticket size by section 6.2's two definitions (weights; accuracy drop: 0.15% below the "
         "unpruned network's mean accuracy at convergence):", "",
         "| network | weights | levels | tickets | by convergence (fastest, smallest) | fastest conv. iteration | "
         "by accuracy (last before the drop) |", "|---|---|---|---|---|---|---|"]
    for r in studies.ticket_size_table(st):
        L.append(f"| {r['label']} | {r['weights']:,} | {r['levels']} | {r['trials']} | "
                 f"{_cell(r['by_convergence']) if r['by_convergence'] is not None else 'n/a'} | "
                 f"{_cell(r['min_convergence']) if r['min_convergence'] is not None else 'n/a'} | "
                 f"{_cell(r['by_accuracy'])} ({r['accuracy']}) |")
    return L + [""]


def _rates_rule(st: dict[str, Any]) -> list[str]:
    from experiments import studies

    L = ["Trainings needed to extract a ticket of about 5% (LeNet-300-100, exact survivor counts, first level "
         f"under {studies.ABOUT_5_PERCENT}% of all weights; the paper: 20% -> 14, 10% -> 28):", "",
         "| rate per round | trainings | % of weights then | % of hidden-layer weights |", "|---|---|---|---|"]
    for r in studies.RATES:
        t = studies.trainings_to_about_5(r)
        L.append(f"| {r:.0%} | {t['trainings']} | {t['percent_overall']:.2f} | {t['percent_hidden']:.2f} |")
    return L + [""]


def _xor_section(xor: dict[str, Any], fig: int) -> list[str]:
    """Figure 1 or 2 as the paper prints it, ours (± binomial SE) beside the paper's."""
    def pc(v: Any, se: Any = None) -> str:
        return "-" if v is None else (f"{v:.1f} ± {se:.1f}" if se is not None else f"{v:.1f}")

    tables = ("figure1",) if fig == 1 else ("figure2", "conditional")
    L = [f"Settings: {_short_xor(xor)}. Command: `{xor_command(xor)}`.", ""]
    for table in tables:
        if table == "figure2":
            L += ["Paper's form: % of all trials in which the original network and the ticket both succeeded.", ""]
        if table == "conditional":
            L += ["Conditional (footnote 4): % of the trials whose original succeeded; reinitialised tickets and "
                  "random networks of the same width beside (the paper column divides its joint rate by its "
                  "original's).", ""]
        L += ["| setting | DB % ours | DB % paper | ZL % ours | ZL % paper | n (DB / ZL) |",
              "|---|---|---|---|---|---|"]
        for r in xor["rows"]:
            if r.get("table") == table:
                L.append(f"| {_esc(r['setting'])} | {pc(r['db'], r['db_se'])} | {pc(r['paper_db'])} | "
                         f"{pc(r['zl'], r['zl_se'])} | {pc(r['paper_zl'])} | {r['n_db']} / {r['n_zl']} |")
        L.append("")
    if fig == 2 and xor.get("claims"):
        L += ["The paper's qualitative claims (a vs b, gap in combined standard errors):", "",
              "| claim | metric | a | b | gap (SE) | holds |", "|---|---|---|---|---|---|"]
        for c in xor["claims"]:
            gap = "-" if c.get("gap_in_se") is None else f"{c['gap_in_se']:+.1f}"
            L.append(f"| {_esc(c['claim'])} | {c['metric']} | {pc(c['a'])} | {pc(c['b'])} | {gap} | "
                     f"{ {True: 'yes', False: '**no**', None: 'n/a'}[c['holds']]} |")
        L.append("")
    return L


def _esc(text: str) -> str:
    """A table cell: a literal '|' would end it."""
    return str(text).replace("|", "\\|")


def _short_xor(xor: dict[str, Any]) -> str:
    s = xor.get("settings", {})
    secs = xor.get("seconds", {}).get("total")
    keys = ("trials", "steps", "optimizer", "learning_rate", "relu_grad_at_zero", "loss", "zero_loss", "db_rule")
    return ", ".join(f"{k} {s[k]}" for k in keys if k in s) + (f"; whole sweep {secs:.0f} s on "
                                                             f"{xor.get('platform', {}).get('backend', '?')}"
                                                             if secs is not None else "")


def _examine_section(ex: dict[str, Any], fig: int) -> list[str]:
    if fig == 9:
        L = ["Share of surviving weights whose initial value lies within 1 std of 0 (truncated normal: "
             f"{ex.get('normal_share_within_1_std', float('nan')):.4f}); ratio < 1: the centre is hollowed out:", "",
             "| level | layer | survivors | within 1 std | ± se | ratio to the normal |", "|---|---|---|---|---|---|"]
        for lv in ex.get("figure9", []):
            for name, d in lv["layers"].items():
                L.append(f"| {100 * lv['remaining']:.1f}% | {name} | {d['n']:,} | {d['fraction_within']:.3f} | "
                         f"{d['se']:.3f} | {d['ratio']:.2f} |")
    else:
        L = ["Units with no surviving incoming connection after footnote 7's removal of edges with no path to an "
             "output:", "", "| level | layer | units | disconnected | fraction ± se |", "|---|---|---|---|---|"]
        for lv in ex.get("figure10", []):
            for name, d in lv["layers"].items():
                L.append(f"| {100 * lv['remaining']:.1f}% | {name} | {d['units']} | {d['disconnected']} | "
                         f"{d['fraction']:.3f} ± {d['se']:.3f} |")
    return L + ["", f"Command: `{ex.get('command')}`.", ""]


def _missing_text(fig: int, missing: list[dict[str, Any]]) -> list[str]:
    from experiments import reproduce_paper

    L = ["**Missing.**"]
    for m in missing:
        if fig in m["missing"]:
            L.append(f"- {m['preset']} preset: `{m['command']}` (about {reproduce_paper.human(m['cpu'])} on this "
                     f"CPU, {reproduce_paper.human(m['gpu'])} on a GPU)")
    return L + [""]


def _decisions() -> list[str]:
    from experiments import studies

    sizes = ", ".join("-".join(map(str, h)) for h in studies.SIZES)
    return [
        f"- Figures 13-14 sizes: {sizes} (k x 300-100, k = 1..5), std {studies.SIZES_STD}: the text says "
        "\"multiples of the original network size\"; its one \"LeNet-600-300\" is read as 600-200.",
        f"- Figure 15: rates {', '.join(f'{r:.0%}' for r in studies.RATES)}; each chain stops at the first level "
        f"under {studies.ABOUT_5_PERCENT}% of all weights, whose round number is the number of trainings (20% -> 14 "
        "and 10% -> 28, as the paper states; reading \"about 5%\" as \"first level under 5%\" would give 14 and 29).",
        "- Divergence: a trial whose loss turns NaN/inf stops updating at that step and is stored with it "
        "(`curves/diverged_at`); tables count such trials and name the first step, plots mark their levels with a "
        "red x; the other trials of the same vmapped program are unaffected (tests/test_studies.py).",
        "- Convergence: footnote 5 (1000-iteration moving average of test accuracy, changed by less than 0.002 "
        "for 1000 iterations), as implemented in `lth_jax.metrics.convergence`; CPU presets scale the windows "
        "down with the iterations and say so in their settings line.",
        "- Accuracy thresholds: \"drops off\" = mean accuracy at convergence more than 0.15% (0.0015) below the "
        "unpruned network's; a level where no trial converged counts as dropped.",
    ]


# ---------------------------------------------------------------- CLI


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("runs_dir", "runs", "Root of the stored runs (searched at any depth).")
    flags.DEFINE_string("xor_dir", None, "Where experiments.xor_sweep wrote its JSON/PNG (default: <runs_dir>/xor).")
    flags.DEFINE_string("examine_dir", None, "Where experiments.examine wrote examine.json and its PNGs "
                        "(default: <runs_dir>/examine/figures).")
    flags.DEFINE_string("out", "results", "Output folder: REPORT.md, claims.json, figures/*.png.")
    flags.DEFINE_enum("preset", None, list(PRESET_ORDER), "Unused by the report itself (kept so reproduce_paper "
                      "can pass its preset through).")


def main(argv: Sequence[str]) -> None:
    from absl import flags, logging

    F = flags.FLAGS
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    if not Path(F.runs_dir).is_dir():
        _fail(f"--runs_dir={F.runs_dir} does not exist")
    command = "python -m experiments.report " + " ".join(sys.argv[1:])
    path = build(F.runs_dir, F.out, F.xor_dir, F.examine_dir, command.strip())
    print(f"wrote {path} (+ {path.parent / 'claims.json'}, {path.parent / 'figures'}/)")




if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main, flags_parser=_parse)
