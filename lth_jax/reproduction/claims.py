"""Our value of each claim of the paper (:data:`lth_jax.reproduction.paper.CLAIMS`), computed from the stored results.

:func:`ours` answers one claim from a :class:`lth_jax.reproduction.results.View`, with the sample size behind
it and the run and numbers it came from; :func:`table` answers them all as rows (what the
report and the plots write to ``claims.json``). A claim whose results are not stored has no
answer (None); one whose results are stored but do not determine it (e.g. no trial converged
under footnote 5 in a short run) has the value None.

The definitions, where the paper leaves room:

- "converges X% faster": 1 - mean convergence iteration of the tickets at the level / at 100%;
- "drops off" / "within 0.15%": mean accuracy at convergence more than
  :data:`lth_jax.reproduction.paper.ACCURACY_GAP` below the unpruned tickets' (a level where no trial
  converged counts as dropped; :func:`lth_jax.reproduction.analysis.accuracy_drop`);
- "returns to the original's convergence time": the first level past the fastest one whose mean
  convergence iteration is back at or above the original's;
- section 6.2's ticket sizes: :func:`study_ticket_sizes`; section 4.1's and 6.3's trainings to about
  5%: :func:`trainings_to_about_5` (the first level under :data:`ABOUT_5_PERCENT` of all weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from lth_jax.reproduction import analysis, mnist, paper
from lth_jax.reproduction.results import CPU_SIZE, PAPER_SETTINGS, Run, View, xor_row

ABOUT_5_PERCENT = 5.5
"""Section 4.1's "about 5%": the first level under 5.5% of all weights (the paper's 5.50% round);
it gives the paper's 14 trainings at 20% a round and 28 at 10%."""


class Ours(NamedTuple):
    """Our answer to one claim."""

    value: Any          # a number or words; None: the stored results do not determine it
    n: str              # the sample size behind it
    details: str        # the run and the numbers it came from
    origin: Any         # what it was computed from: a results.Run (MNIST), the XOR or examine summary,
                        # a study, or the rate per round (rates_rule)


def _pct(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(100 * x, 2)


# ---------------------------------------------------------------- MNIST runs (sections 3, 4, 6.4)


def _speedup(run: Run, percent: float) -> float | None:
    o, m = run.original, run.at(percent)
    if o is None or m is None or m is o:
        return None
    return _pct(1 - run.value(m, "ticket", "convergence_iteration") / run.value(o, "ticket", "convergence_iteration"))


def _back_to_original_conv(run: Run) -> float | None:
    """First level, pruning further past the fastest one, whose mean convergence iteration is
    back at or above the original's (None: not within the stored levels)."""
    p, c = run.percents(), run.column("ticket", "convergence_iteration")
    if len(p) < 3 or not np.isfinite(c[0]) or not np.isfinite(c[1:]).any():
        return None
    fastest = 1 + int(np.nanargmin(c[1:]))
    for i in range(fastest + 1, len(p)):
        if not np.isfinite(c[i]) or c[i] >= c[0]:
            return float(p[i])
    return None


def _drop(run: Run, role: str, tolerance: float = paper.ACCURACY_GAP) -> dict[str, Any] | None:
    """:func:`analysis.accuracy_drop` of ``role``'s mean accuracy at convergence against the
    unpruned tickets' (None without an original or a converged one)."""
    o = run.original
    if o is None or role not in o["roles"] or len(run.levels) < 2:
        return None
    ref = run.value(o, "ticket", "convergence_accuracy")
    if not math.isfinite(ref):
        return None
    return analysis.accuracy_drop(run.percents(), run.column(role, "convergence_accuracy"), tolerance, reference=ref)


def _gain(run: Run) -> tuple[Any, str]:
    gains = [t["gain_after_convergence"] for m in run.levels[1:] for t in m["trials"]
             if t["role"] == "ticket" and t["gain_after_convergence"] is not None
             and math.isfinite(t["gain_after_convergence"])]
    if not gains:
        return None, "0 converged ticket trials"
    sd = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0
    return f"{100 * np.mean(gains):.3f} (sd {100 * sd:.3f})", f"{len(gains)} converged ticket trials"


def _range(run: Run, key: str, conv0: float, acc0: float) -> tuple[Any, str]:
    """Section 3.2's 75%..25% range: the smallest speed-up or the largest accuracy gap."""
    rng = [m for m in run.levels[1:] if 25 <= m["percent_nominal"] <= 75]
    if not rng:
        return None, ""
    more = f", {len(rng)} levels"
    if key == "os_range_faster":
        return _pct(min(1 - run.value(m, "ticket", "convergence_iteration") / conv0 for m in rng)), more
    gaps = [abs(run.value(m, "ticket", "convergence_accuracy") - acc0) for m in rng]
    return (None if not all(map(math.isfinite, gaps)) else round(100 * max(gaps), 3)), more


def _mnist(claim: paper.Claim, run: Run) -> Ours | None:
    k = claim.key
    o = run.original
    if o is None:
        return None
    n_t = run.trials("ticket")
    n_c = n_t * run.settings.get("reinit", 0)
    value: Any = None
    n = f"{n_t} tickets/level"
    conv0 = run.value(o, "ticket", "convergence_iteration")
    acc0 = run.value(o, "ticket", "convergence_accuracy")
    if k.endswith("_faster") and k != "os_range_faster":
        value = _speedup(run, claim.percent)
    elif k in ("os_range_faster", "os_range_acc"):
        value, more = _range(run, k, conv0, acc0)
        n += more
    elif k in ("os_back_conv", "it_back_conv"):
        value = _back_to_original_conv(run)
    elif k == "os_acc_to":
        d = _drop(run, "ticket")
        value = None if d is None else d["last_before_drop"]
    elif k == "it_acc_back":
        d = _drop(run, "ticket", 0.0)
        value = None if d is None else d["smallest_within"]
    elif k == "os_gain":
        value, n = _gain(run)
    elif k in ("os_ratio35", "os_ratio25"):
        m = run.at(claim.percent)
        t, c = run.value(m, "ticket", "convergence_iteration"), run.value(m, "reinit", "convergence_iteration")
        value = round(c / t, 2) if math.isfinite(c / t) else None
        n = f"{n_t} tickets, {n_c} controls"
    elif k == "os_ctrl35_slower":
        value = _pct(run.value_at(claim.percent, "reinit", "convergence_iteration") / conv0 - 1)
        n = f"{n_c} controls"
    elif k == "os_ctrl15_gap":
        value = _pct(acc0 - run.value_at(claim.percent, "reinit", "convergence_accuracy"))
        n = f"{n_c} controls"
    elif k in ("it_ticket_drop", "it_reinit_drop", "it_shuffle_drop"):
        role = k.split("_")[1]
        if role != "ticket" and not run.trials(role):
            return None
        d = _drop(run, role)
        value = None if d is None else (d["first_below"] if d["first_below"] is not None else
                                        f"none down to {run.levels[-1]['percent_nominal']:.3g}%")
        n = f"{run.trials(role)} {role} trials/level"
    if n_c == 0 and k.startswith("os_ctrl"):
        return None
    return Ours(value, n, f"{run.mode} run {run.path.name}", run)


def _han(view: View) -> Ours | None:
    it, han = view.mnist.get("iterative"), view.mnist.get("han")
    if it is None or han is None:
        return None
    a, b = _drop(it, "ticket"), _drop(han, "ticket")
    if a is None or b is None:
        return None
    return Ours(f"reset: {a['last_before_drop']:g}%, Han et al.: {b['last_before_drop']:g}%",
                f"{it.trials()} + {han.trials()} tickets/level", f"runs {it.path.name}, {han.path.name}", han)


# ---------------------------------------------------------------- XOR (section 2) and section 5

# Which row of xor_sweep.json answers each XOR claim: (table, row fields, metric).
XOR_ROWS: dict[str, tuple[str, dict[str, Any], str]] = {
    "xor_random2_db": ("figure1", {"units": 2}, "db"), "xor_random2_zl": ("figure1", {"units": 2}, "zl"),
    "xor_random10_db": ("figure1", {"units": 10}, "db"), "xor_random10_zl": ("figure1", {"units": 10}, "zl"),
    "xor_oneshot2_db": ("figure2", {"strategy": "one-shot product", "units": 2}, "db"),
    "xor_oneshot2_zl": ("figure2", {"strategy": "one-shot product", "units": 2}, "zl"),
    "xor_iter2_zl": ("figure2", {"strategy": "iterative product", "units": 2}, "zl"),
    "xor_iter2_zl_cond": ("conditional", {"strategy": "iterative product", "units": 2, "kind": "ticket"}, "zl"),
    "xor_iter2_db_cond": ("conditional", {"strategy": "iterative product", "units": 2, "kind": "ticket"}, "db"),
    "xor_iter4_db_cond": ("conditional", {"strategy": "iterative product", "units": 4, "kind": "ticket"}, "db"),
    "xor_iter4_zl_cond": ("conditional", {"strategy": "iterative product", "units": 4, "kind": "ticket"}, "zl"),
}


def _xor(claim: paper.Claim, xor: dict[str, Any] | None) -> Ours | None:
    if xor is None:
        return None
    table, match, metric = XOR_ROWS[claim.key]
    row = xor_row(xor, table=table, **match)
    if row is None:
        return None
    v, se = row[metric], row[f"{metric}_se"]
    return Ours(None if v is None else f"{v:.1f} ± {se:.1f}", f"{row[f'n_{metric}']} of {row['trials']} trials",
                row["setting"], xor)


def _nearest(levels: list[dict[str, Any]], percent: float) -> dict[str, Any] | None:
    return min(levels, key=lambda e: abs(e["target"] - percent / 100), default=None)


def _examine(claim: paper.Claim, ex: dict[str, Any] | None) -> Ours | None:
    """Section 5 from examine.json: Figure 10's disconnected units, Figure 9's selection of initial values."""
    if ex is None:
        return None
    settings = ex.get("settings", {})
    note = (f"iterative, {ex.get('runs')} runs, {settings.get('iterations', '?'):,} iterations/round "
            f"(paper: {paper.MNIST.iterations:,})" if isinstance(settings.get("iterations"), int)
            else f"{ex.get('runs')} runs")
    if claim.key.startswith("ex_dead"):
        lv = _nearest(ex.get("figure10", []), claim.percent)
        d = None if lv is None else lv["layers"].get("Dense_1" if claim.key == "ex_dead_hidden2" else "Dense_0")
        if d is None:
            return None
        return Ours(f"{100 * d['fraction']:.1f} ± {100 * d['se']:.1f}", f"{d['units']} units ({ex.get('runs')} runs)",
                    note + f", level {100 * lv['remaining']:.1f}%", ex)
    lv = _nearest(ex.get("figure9", []), claim.percent)
    if lv is None:
        return None
    parts = [f"{name}: {d['ratio']:.2f}" for name, d in lv["layers"].items()]
    n = ", ".join(f"{d['n']:,}" for d in lv["layers"].values())
    return Ours("; ".join(parts), f"{n} weights", note + f", level {100 * lv['remaining']:.1f}%", ex)


# ---------------------------------------------------------------- section 6 studies


def study_ticket_sizes(study: dict[str, Any], tolerance: float = paper.ACCURACY_GAP) -> list[dict[str, Any]]:
    """Section 6.2's two definitions of a winning ticket's size, in weights, per group of a study:
    the smallest network with the lowest mean convergence iteration (None if no level converged),
    and the last size before the mean accuracy at convergence falls ``tolerance`` below the
    unpruned network's. Where no level of a group converged the accuracy definition uses final
    accuracy instead, and ``accuracy`` says so."""
    out = []
    for g in study["groups"]:
        rows = g["rows"]
        if not rows:
            continue
        w = [r["weights"] for r in rows]
        acc = [r["convergence_accuracy_mean"] for r in rows]
        which = "accuracy at convergence"
        if not np.isfinite(acc).any():
            acc, which = [r["final_accuracy_mean"] for r in rows], "final accuracy (no level converged)"
        fast = analysis.fastest_ticket(w, [r["convergence_iteration_mean"] for r in rows])
        out.append({"label": g["label"], "weights": rows[0]["weights"], "levels": len(rows),
                    "trials": rows[0]["trials"], "by_convergence": fast["size"], "min_convergence": fast["convergence"],
                    "by_accuracy": analysis.accuracy_drop(w, acc, tolerance)["last_before_drop"], "accuracy": which})
    return out


def trainings_to_about_5(rate: float, hidden: Sequence[int] = paper.MNIST.hidden,
                         output_rate_factor: float = paper.MNIST.output_rate_factor,
                         target: float = ABOUT_5_PERCENT) -> dict[str, float]:
    """How many trainings iterative pruning at ``rate`` needs to extract a winning ticket of
    about 5% of the network (section 4.1: 20% -> 14; section 6.3: 10% -> 28); see
    :func:`lth_jax.reproduction.mnist.trainings_to`."""
    return mnist.trainings_to(target, mnist.Settings(mode="iterative", hidden=tuple(hidden), rate=rate,
                                                     output_rate_factor=output_rate_factor))


def _rule(claim: paper.Claim) -> Ours:
    rate = paper.RATE_OF_RULE[claim.key]
    t = trainings_to_about_5(rate)
    return Ours(t["trainings"], "-", f"LeNet-300-100, {rate:.0%} a round (output layer at half), first level "
                f"under {ABOUT_5_PERCENT}% of all weights: {t['percent_overall']:.2f}%", rate)


STUDY_OF_SOURCE: dict[str, tuple[str, str]] = {
    "init_std": ("init_std", "oneshot"), "sizes_oneshot": ("sizes", "oneshot"),
    "sizes_iterative": ("sizes", "iterative"), "rates": ("rates", "iterative")}
"""The (study, mode) whose stored groups answer the claims of each section 6 source."""


def _study_pick(groups: list[dict[str, Any]], key: str, best: Callable) -> tuple[Any, list[tuple[str, float]]]:
    """Per group, the best (``best`` = np.nanmin / np.nanmax) mean of ``key`` over its levels,
    and the label of the best group overall."""
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


def _acc_key(groups: list[dict[str, Any]]) -> tuple[str, str]:
    """Accuracy at convergence where any level converged, else final accuracy (said in the details)."""
    if any(math.isfinite(r["convergence_accuracy_mean"]) for g in groups for r in g["rows"]):
        return "convergence_accuracy", "accuracy at convergence"
    return "final_accuracy", "FINAL accuracy (no trial converged)"


def cell(v: Any) -> str:
    """A value as a table cell: thousands separated, no trailing zeros, '-' for NaN."""
    if v is None:
        return "missing"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "/")


def _std_claims(k: str, groups: list[dict[str, Any]], acc_key: str, acc_words: str,
                tag: str) -> tuple[Any, str] | None:
    """Section 6.1: which std converges fastest / is most accurate, and the trend above 0.1."""
    if k in ("std_fastest", "std_accurate"):
        metric, best, words = (("convergence_iteration", np.nanmin, "fastest conv. iteration") if k == "std_fastest"
                               else (acc_key, np.nanmax, "best " + acc_words))
        pick, vals = _study_pick(groups, metric, best)
        if pick is None:
            value = None
        elif k == "std_accurate" and tag:
            value = pick.replace("std ", "") + tag
        else:
            value = float(pick.replace("std ", ""))
        return value, f"{words} per std: {_fmt_vals(vals, '.0f' if 'iteration' in metric else '.4f')}"
    big = sorted((g for g in groups if g["settings"]["std"] >= 0.1), key=lambda g: g["settings"]["std"])
    metric, best, words = (("convergence_iteration", np.nanmin, "fastest conv. iteration") if k == "std_large_slower"
                           else (acc_key, np.nanmax, "best " + acc_words))
    _, vals = _study_pick(big, metric, best)
    if len(vals) < 2:
        return None
    verdict = _monotone(vals, increasing=k == "std_large_slower")
    verdict += tag if k == "std_large_less_acc" else ""
    return (None if verdict.startswith("undetermined") else verdict,
            f"{words}: {_fmt_vals(vals, '.0f' if 'iteration' in metric else '.4f')}")


def _size_claims(k: str, st: dict[str, Any]) -> tuple[Any, str] | None:
    """Section 6.2: ticket sizes by convergence and by accuracy per network size."""
    table = study_ticket_sizes(st)
    if k in ("size_conv_300", "size_conv_600"):
        want = "300-100" if k == "size_conv_300" else "600-"
        row = next((r for r in table if r["label"].startswith(want)), None)
        if row is None:
            return None
        return row["by_convergence"], f"{row['label']}: {row['weights']:,} weights, {row['levels']} levels"
    if k == "size_min_conv":
        vals = [(r["label"], r["min_convergence"] if r["min_convergence"] is not None else math.nan) for r in table]
        if len(vals) < 2:
            return None
        verdict = _monotone(vals, increasing=False)
        return None if verdict == "undetermined" else verdict, _fmt_vals(vals, ".0f")
    if not table:
        return None
    final = any(r["accuracy"].startswith("final") for r in table)
    return ("; ".join(f"{r['label']}: {cell(r['by_accuracy'])}" for r in table) + (" (by final accuracy)" if final
                                                                                   else ""),
            f"by {table[0]['accuracy']}")


def _study(claim: paper.Claim, view: View) -> Ours | None:
    study, mode = STUDY_OF_SOURCE[claim.source]
    st = view.studies.get((study, mode))
    if st is None:
        return None
    groups = [g for g in st["groups"] if g["rows"]]
    n = f"{groups[0]['rows'][0]['trials']} tickets/group/level" if groups else "0"
    where = f"{study} ({mode}, preset {st['preset']})"
    k = claim.key
    acc_key, acc_words = _acc_key(groups)
    tag = "" if acc_key == "convergence_accuracy" else " (by final accuracy)"
    if k == "rate_best":
        fast, fv = _study_pick(groups, "convergence_iteration", np.nanmin)
        acc, av = _study_pick(groups, acc_key, np.nanmax)
        return Ours(f"fastest: {fast or 'n/a'}; most accurate: {acc or 'n/a'}{tag}", n,
                    f"{where}; fastest conv. iteration per rate: {_fmt_vals(fv, '.0f')}; best {acc_words}: "
                    f"{_fmt_vals(av, '.4f')}", st)
    answer = _std_claims(k, groups, acc_key, acc_words, tag) if k.startswith("std_") else _size_claims(k, st)
    if answer is None:
        return None
    return Ours(answer[0], n, f"{where}; {answer[1]}", st)


# ---------------------------------------------------------------- all claims


def ours(claim: paper.Claim, view: View) -> Ours | None:
    """Our value of ``claim`` from the stored results, or None when they are not stored."""
    src = claim.source
    if src == "rates_rule":
        return _rule(claim)
    if src in ("oneshot", "iterative"):
        run = view.mnist.get(src)
        return None if run is None else _mnist(claim, run)
    if src == "han":
        return _han(view)
    if src == "examine":
        return _examine(claim, view.examine)
    if src == "xor":
        return _xor(claim, view.xor)
    return _study(claim, view)


def scale(o: Ours | None) -> str | None:
    """The settings ``o`` came from: "paper settings" or "CPU size" (:meth:`results.Run.scale`;
    XOR: the paper's 1000 trials of 10,000 steps; a study or section 5: its preset), "computed"
    for a claim computed from the pruning rule, None when nothing is stored."""
    if o is None:
        return None
    if isinstance(o.origin, Run):
        return o.origin.scale()
    if isinstance(o.origin, dict):
        s = o.origin.get("settings", {})
        if "rows" in o.origin:  # the XOR sweep
            paper_size = s.get("trials") == paper.XOR.trials and s.get("iterations", s.get("steps")) == paper.XOR.steps
        elif "preset" in o.origin:  # a study
            paper_size = o.origin["preset"] == "paper"
        else:  # section 5
            paper_size = s.get("iterations", s.get("steps")) == paper.MNIST.iterations
        return PAPER_SETTINGS if paper_size else CPU_SIZE
    return "computed"


def table(view: View, sources: Sequence[str] | None = None) -> list[tuple[paper.Claim, Ours | None, dict[str, Any]]]:
    """Every claim (of ``sources``, default all) with our answer and its row for ``claims.json``:
    key, section, figure, claim, paper, stored, ours, n, settings (:func:`scale`), details, source."""
    out = []
    for c in paper.CLAIMS:
        if sources is not None and c.source not in sources:
            continue
        o = ours(c, view)
        out.append((c, o, {"key": c.key, "section": c.section, "figure": c.figure, "claim": c.text,
                           "paper": c.value, "stored": o is not None, "ours": None if o is None else o.value,
                           "n": None if o is None else o.n, "settings": scale(o),
                           "details": None if o is None else o.details,
                           "source": c.source}))
    return out
