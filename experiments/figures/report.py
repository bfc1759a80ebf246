"""The report's markdown: every figure's section, the claims table, what is missing and how to make it,
from a loaded :class:`lth_jax.reproduction.results.View` (:func:`write`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments import cli
from experiments.configs import reproduce_paper as plan
from experiments.configs import studies as study_config
from experiments.figures import mnist as mnist_figures
from experiments.figures.beyond import section as beyond_section
from experiments.figures.studies import markdown_table, plot_figures, settings_note
from lth_jax import store
from lth_jax.reproduction import claims, cost, mnist, paper, results
from lth_jax.reproduction import xor as xor_experiment

_cell = claims.cell
FIGS_OF_MODE = {"oneshot": (3, 4, 5, 6, 7), "iterative": (7, 8, 16), "han": (16,)}


STUDY_OF_FIGURE = {11: ("init_std", "oneshot"), 12: ("init_std", "oneshot"), 13: ("sizes", "oneshot"),
                   14: ("sizes", "iterative"), 15: ("rates", "iterative")}


MNIST_FLAGS = ("iterations", "eval_every", "std", "rate", "output_rate_factor", "min_remaining", "lr", "optimizer",
               "batch_size", "average_over", "stable_for", "tolerance")


def _norm(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def unhashed_flags(s: dict[str, Any], ref: mnist.Settings) -> str:
    """Flags for what a run was extended by beyond its preset (not hashed: the same run grows),
    the levels of a one-shot run and the last level of an iterative one."""
    if s["mode"] == "oneshot":
        levels = tuple(map(float, s.get("levels", ref.levels)))
        return "" if levels == tuple(map(float, ref.levels)) else " --levels=" + ",".join(f"{p:g}" for p in levels)
    floor = float(s.get("min_remaining", ref.min_remaining))
    return "" if floor == ref.min_remaining else f" --min_remaining={floor:g}"


def mnist_command(run: results.Run) -> str:
    """The ``experiments.mnist`` command that produces ``run`` (a preset where one matches, else
    the paper preset plus every flag that differs)."""
    root, s = run.trained_in.parent, run.settings
    for preset in results.PRESET_ORDER:
        for controls in (None, (0, 0)):
            try:
                ref = plan.mnist_settings(preset, s["mode"], controls)
            except (KeyError, ValueError):
                continue
            if store.settings_hash(ref.hashed()) == store.settings_hash(run.hashed):
                extra = " --controls=0,0" if controls else ""
                extra += unhashed_flags(s, ref)
                return f"python -m experiments.mnist --preset={preset} --mode={s['mode']}{extra} --out_dir={root}"
    ref = plan.mnist_settings("paper", s["mode"])
    flags = [f"--preset=paper --mode={s['mode']}"]
    seeds = tuple(s["seeds"])
    if seeds != ref.seeds:
        flags.append(f"--seeds={len(seeds)}" + (f" --first_seed={seeds[0]}" if seeds[0] else ""))
    if (s["reinit"], s["shuffle"]) != (ref.reinit, ref.shuffle):
        flags.append(f"--controls={s['reinit']},{s['shuffle']}")
    for name in [n for n in MNIST_FLAGS if n in s and _norm(s[n]) != getattr(ref, n)]:
        flags.append(f"--{name}={s[name]:g}" if isinstance(s[name], float) else f"--{name}={s[name]}")
    if tuple(s["hidden"]) != ref.hidden:
        flags.append("--hidden=" + ",".join(map(str, s["hidden"])))
    for name in ("stop_at_convergence", "paired_batches"):  # hashed only when on
        if s.get(name):
            flags.append(f"--{name}")
    if s.get("stop_at_convergence") and s.get("stop_every", ref.stop_every) != ref.stop_every:
        flags.append(f"--stop_every={s['stop_every']}")
    if s["mode"] == "oneshot" and (levels := unhashed_flags(s, ref)):  # min_remaining: in MNIST_FLAGS above
        flags.append(levels.strip())
    return "python -m experiments.mnist " + " ".join(flags) + f" --out_dir={root}"


def xor_command(xor: dict[str, Any]) -> str:
    """The experiments.xor_sweep command that made ``xor`` (flags that differ from its defaults; a
    result stored under the old flag names, e.g. ``steps``, is read with today's)."""
    defaults = dataclasses.asdict(xor_experiment.Settings())
    renamed = cli.OLD_NAMES.get("xor_sweep", {})
    given = {renamed.get(k, k): v for k, v in xor.get("settings", {}).items()}
    flags = [f"--{k}=" + (",".join(map(str, v)) if isinstance(v, list | tuple) else str(v))
             for k, v in given.items()
             if k in defaults and k != "hidden" and json.dumps(_norm(v)) != json.dumps(_norm(defaults[k]))]
    out = store.exported_from(xor["_dir"]) or xor["_dir"]  # a copy's command writes where the sweep ran
    return " ".join(["python -m experiments.xor_sweep", *flags, f"--out_dir={out}"])


def claim_command(claim: paper.Claim, ours: claims.Ours) -> str:
    o = ours.origin
    if claim.source in ("oneshot", "iterative", "han"):
        return mnist_command(o)
    if claim.source == "xor":
        return xor_command(o)
    if claim.source == "examine":
        return o.get("command", "python -m experiments.examine")
    if claim.source == "rates_rule":
        return f"python -m experiments.studies --study=rates --rates={o} --dry_run"
    study, mode = claims.STUDY_OF_SOURCE[claim.source]
    return o.get("command") or f"python -m experiments.studies --study={study} --mode={mode}"


def claim_rows(view: results.View) -> list[dict[str, Any]]:
    """:func:`lth_jax.reproduction.claims.table` with the command behind each of our values."""
    return [{**row, "command": None if o is None else claim_command(c, o)} for c, o, row in claims.table(view)]


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def figures(view: results.View, fig_dir: Path) -> dict[int, list[Path]]:
    """Every figure's PNGs: MNIST's and the studies' drawn here (:mod:`experiments.figures`),
    section 5's and XOR's as their drivers drew them."""
    made: dict[int, list[Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if view.mnist:
            out = Path(tmp) / "out"
            try:
                mnist_figures.draw(view.mnist, out, echo=False)
            except Exception as e:  # a figure that cannot be drawn leaves the rest of the report standing
                sys.stderr.write(f"report: warning: the MNIST figures failed: {type(e).__name__}: {e}\n")
            for fig in (3, 4, 5, 6, 7, 8, 16):
                if (out / f"figure{fig}.png").is_file():
                    made[fig] = [_copy(out / f"figure{fig}.png", fig_dir / f"figure{fig:02d}.png")]
        for _key, st in sorted(view.studies.items()):
            for p in plot_figures(st, Path(tmp) / "studies"):
                name = f"figure{int(p.stem[6:8]):02d}" + ("-iterative" if p.stem.endswith("-iterative") else "")
                made.setdefault(int(p.stem[6:8]), []).append(_copy(p, fig_dir / f"{name}.png"))
    for fig in (9, 10) if view.examine is not None else ():
        if (Path(view.examine["_dir"]) / f"figure{fig}.png").is_file():
            made[fig] = [_copy(Path(view.examine["_dir"]) / f"figure{fig}.png", fig_dir / f"figure{fig:02d}.png")]
    for i, src in enumerate(view.xor["_pngs"] if view.xor is not None else ()):
        made.setdefault(1, []).append(_copy(Path(src), fig_dir / f"figure01-02{'-' + str(i) if i else ''}.png"))
    return made


def _esc(text: str) -> str:
    """A table cell: a literal '|' would end it."""
    return str(text).replace("|", "\\|")


def _figures_words(figs: Sequence[int]) -> str:
    return ("Figure " if len(figs) == 1 else "Figures ") + ", ".join(map(str, figs))


def describe(run: results.Run) -> str:
    s = run.settings
    controls = f" + {s['reinit']} reinit + {s['shuffle']} shuffle controls each" if s["reinit"] or s["shuffle"] else ""
    stop = (f", measured trainings stopped at convergence (checked every {s.get('stop_every')} iterations; final "
            "accuracy is the one at the stop)") if s.get("stop_at_convergence") else ""
    copy = ", an exported copy (curves and metrics, no weights)" if store.EXPORT in s else ""  # its settings' extras
    return (f"{s['mode']}: {len(s['seeds'])} tickets{controls}, {s['iterations']:,} iterations (paper: "
            f"{paper.MNIST.iterations:,}){stop}, std {s['std']}, lr {s['lr']}, footnote-5 windows {s['average_over']}/"
            f"{s['stable_for']}, {len(run.levels)} levels stored, on {run.device()} [{run.path.name}{copy}]")


def _short_settings(s: dict[str, Any]) -> str:
    return ", ".join(f"{k} {s[k]}" for k in ("iterations", "eval_every", "hidden", "std", "rate", "seeds") if k in s)


def _short_xor(xor: dict[str, Any]) -> str:
    s, secs = xor.get("settings", {}), xor.get("seconds", {}).get("total")
    keys = ("trials", "iterations", "steps", "optimizer", "lr", "learning_rate", "relu_grad_at_zero", "loss",
            "zero_loss", "db_rule")  # today's names and the old ones (steps, learning_rate) of older results
    where = f"; whole sweep {secs:.0f} s on {xor.get('platform', {}).get('backend', '?')}" if secs is not None else ""
    return ", ".join(f"{k} {s[k]}" for k in keys if k in s) + where


def _study_for_figure(view: results.View, fig: int) -> dict[str, Any] | None:
    key = STUDY_OF_FIGURE.get(fig)
    if key is None:
        return None
    return view.studies.get(key) or (view.studies.get(("init_std", "iterative")) if fig in (11, 12) else None)


def _subset(st: dict[str, Any], fig: int) -> dict[str, Any]:
    if fig not in (11, 12):
        return st
    pick = (lambda s: s >= 0.1) if fig == 11 else (lambda s: s <= 0.1)
    return {**st, "groups": [g for g in st["groups"] if pick(g["settings"]["std"])]}


def _divergence_line(st: dict[str, Any]) -> str:
    """Trials that produced NaN/inf, per group, from the stored levels."""
    parts = []
    for g in st["groups"]:
        n, k = sum(r["trials"] for r in g["rows"]), sum(r["diverged"] for r in g["rows"])
        first = [r["diverged_first_step"] for r in g["rows"] if r["diverged"]]
        parts.append(f"{g['label']}: {k} of {n}" + (f" (first at step {min(first)})" if first else ""))
    return "Trials that diverged (loss NaN/inf; counted over all stored levels): " + "; ".join(parts) + "."


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |"
                                                                         for r in rows]


def _ticket_sizes(st: dict[str, Any]) -> list[str]:
    na = lambda v: _cell(v) if v is not None else "n/a"  # noqa: E731
    return ["Winning-ticket size by section 6.2's two definitions (weights; accuracy drop: 0.15% below the "
            "unpruned network's mean accuracy at convergence):", ""] + _table(
        ("network", "weights", "levels", "tickets", "by convergence (fastest, smallest)", "fastest conv. iteration",
         "by accuracy (last before the drop)"),
        [(r["label"], f"{r['weights']:,}", r["levels"], r["trials"], na(r["by_convergence"]),
          na(r["min_convergence"]), f"{_cell(r['by_accuracy'])} ({r['accuracy']})")
         for r in claims.study_ticket_sizes(st)]
    ) + [""]


def _rates_rule() -> list[str]:
    rule = [claims.trainings_to_about_5(r) for r in paper.FIGURE15_RATES]
    return ["Trainings needed to extract a ticket of about 5% (LeNet-300-100, exact survivor counts, first level "
            f"under {claims.ABOUT_5_PERCENT}% of all weights; the paper: 20% -> {paper.CLAIM['it_trainings'].value}, "
            f"10% -> {paper.CLAIM['rate_10_trainings'].value}):", ""] + _table(
        ("rate per round", "trainings", "% of weights then", "% of hidden-layer weights"),
        [(f"{t['rate']:.0%}", t["trainings"], f"{t['percent_overall']:.2f}", f"{t['percent_hidden']:.2f}")
         for t in rule]) + [""]


def _pc(v: Any, se: Any = None) -> str:
    return "-" if v is None else (f"{v:.1f} ± {se:.1f}" if se is not None else f"{v:.1f}")


def _xor_section(xor: dict[str, Any], fig: int) -> list[str]:
    """Figure 1 or 2 as the paper prints it, ours (± binomial SE) beside the paper's."""
    words = {"figure2": ["Paper's form: % of all trials in which the original network and the ticket both "
                         "succeeded.", ""],
             "conditional": ["Conditional (footnote 4): % of the trials whose original succeeded; reinitialised "
                             "tickets and random networks of the same width beside (the paper column divides its "
                             "joint rate by its original's).", ""]}
    L = [f"Settings: {_short_xor(xor)}. Command: `{xor_command(xor)}`.", ""]
    for table in ("figure1",) if fig == 1 else ("figure2", "conditional"):
        L += words.get(table, []) + _table(
            ("setting", "DB % ours", "DB % paper", "ZL % ours", "ZL % paper", "n (DB / ZL)"),
            [(_esc(r["setting"]), _pc(r["db"], r["db_se"]), _pc(r["paper_db"]), _pc(r["zl"], r["zl_se"]),
              _pc(r["paper_zl"]), f"{r['n_db']} / {r['n_zl']}") for r in xor["rows"] if r.get("table") == table])
        L.append("")
    fid = xor.get("fidelity") or xor_experiment.fidelity(xor["rows"])  # older sweeps stored no fidelity
    if fig == 2:
        L += [f"Fidelity: {fid['within']} of the paper's {fid['total']} cells of Figures 1-2 lie within "
              f"{fid.get('limit_se', xor_experiment.FIDELITY_SE):g} combined binomial SEs of ours; outside: "
              + "; ".join(f"{c['metric']} {_esc(c['setting'])} {c['ours']:.1f} vs {c['paper']:.1f} "
                          f"({c['gap_in_se']:+.1f} SE)" for c in fid["cells"] if not c["within"])
              + ". Their measured causes: WORKSPACE.md, benchmarks/xor_causes.md.", ""]
    if fig == 2 and xor.get("claims"):
        holds = {True: "yes", False: "**no**", None: "n/a"}
        L += ["The paper's qualitative claims (a vs b, gap in combined standard errors):", ""] + _table(
            ("claim", "metric", "a", "b", "gap (SE)", "holds"),
            [(_esc(c["claim"]), c["metric"], _pc(c["a"]), _pc(c["b"]),
              "-" if c.get("gap_in_se") is None else f"{c['gap_in_se']:+.1f}", holds[c["holds"]])
             for c in xor["claims"]]) + [""]
    return L


def _examine_section(ex: dict[str, Any], fig: int) -> list[str]:
    if fig == 9:
        L = ["Share of surviving weights whose initial value lies within 1 std of 0 (truncated normal: "
             f"{ex.get('normal_share_within_1_std', float('nan')):.4f}); ratio < 1: the centre is hollowed out:", ""]
        L += _table(("level", "layer", "survivors", "within 1 std", "± se", "ratio to the normal"),
                    [(f"{100 * lv['remaining']:.1f}%", name, f"{d['n']:,}", f"{d['fraction_within']:.3f}",
                      f"{d['se']:.3f}", f"{d['ratio']:.2f}") for lv in ex.get("figure9", [])
                     for name, d in lv["layers"].items()])
    else:
        L = ["Units with no surviving incoming connection after footnote 7's removal of edges with no path to an "
             "output:", ""]
        L += _table(("level", "layer", "units", "disconnected", "fraction ± se"),
                    [(f"{100 * lv['remaining']:.1f}%", name, d["units"], d["disconnected"],
                      f"{d['fraction']:.3f} ± {d['se']:.3f}") for lv in ex.get("figure10", [])
                     for name, d in lv["layers"].items()])
    return L + ["", f"Command: `{ex.get('command')}`.", ""]


def _missing_rows(view: results.View, present: set[int], costs: dict[str, Any]) -> list[dict[str, Any]]:
    """What is still to run: every step of the paper preset with training left (its state: no results
    at all, or only smaller CPU-sized results), and the cpu preset's steps for figures with no results."""
    out = []
    source = store.exported_from(view.runs_dir)  # copies: the commands write where the results were made
    for preset in ("paper", "cpu"):
        commands = {st.name: st.command for st in plan.steps(preset, str(source or view.runs_dir))}
        for s in plan.steps(preset, str(view.runs_dir)):
            figs = [f for f in s.figures if f not in present]
            if preset == "cpu" and not figs:
                continue
            est = plan.estimate(s, costs)
            if est["cpu"] <= 0:
                continue
            state = "no results yet" if len(figs) == len(s.figures) else (
                "only smaller (CPU-sized) results stored" if not figs else
                f"Figures {', '.join(map(str, figs))} have no results; the others only smaller ones")
            run = view.mnist.get(s.name)  # the MNIST steps are named for their mode
            if run is not None and not figs and run.scale() == results.PAPER_SETTINGS:
                state = "stored at the paper's settings" + (
                    " with measured trainings stopped at convergence; this trains them in full"
                    if run.settings.get("stop_at_convergence") else "")
            out.append({"preset": preset, "figures": list(s.figures), "missing": figs, "state": state,
                        "command": commands[s.name], "cpu": est["cpu"], "gpu": est["gpu"]})
    return out


def _missing_text(fig: int, missing: list[dict[str, Any]]) -> list[str]:
    return ["**Missing.**"] + [f"- {m['preset']} preset: `{m['command']}` (about {cost.human(m['cpu'])} "
                               f"on this CPU, {cost.human(m['gpu'])} on a GPU)"
                               for m in missing if fig in m["missing"]] + [""]


def _decisions() -> list[str]:
    sizes = ", ".join("-".join(map(str, h)) for h in study_config.SIZES)
    return [
        f"- Figures 13-14 sizes: {sizes} (k x 300-100, k = 1..5), std {paper.SIZES_STD}: the text says "
        "\"multiples of the original network size\"; its one \"LeNet-600-300\" is read as 600-200.",
        f"- Figure 15: rates {', '.join(f'{r:.0%}' for r in paper.FIGURE15_RATES)}; each chain stops at the first "
        f"level under {claims.ABOUT_5_PERCENT}% of all weights, whose round number is the number of trainings "
        "(20% -> 14 and 10% -> 28, as the paper states; reading \"about 5%\" as \"first level under 5%\" would give "
        "14 and 29).",
        "- Divergence: a trial whose loss turns NaN/inf stops updating at that step and is stored with it "
        "(`curves/diverged_at`); tables count such trials and name the first step, plots mark their levels with a "
        "red x; the other trials of the same vmapped program are unaffected (tests/test_studies.py).",
        "- Convergence: footnote 5 (1000-iteration moving average of test accuracy, changed by less than 0.002 "
        "for 1000 iterations), as implemented in `lth_jax.criteria.convergence`; CPU presets scale the windows "
        "down with the iterations and say so in their settings line.",
        "- Accuracy thresholds: \"drops off\" = mean accuracy at convergence more than 0.15% (0.0015) below the "
        "unpruned network's; a level where no trial converged counts as dropped.",
        f"- Levels: a claim about \"the p% level\" reads the stored level nearest p in ratio, within "
        f"{results.TOLERANCE:g} in log (`lth_jax.reproduction.results.Run.at`), for the report and the plots alike.",
    ]


def write(view: results.View, out: str | Path, command: str | None = None) -> Path:
    """:func:`build` from a loaded :class:`lth_jax.reproduction.results.View`."""
    runs_dir, out = view.runs_dir, Path(out)
    fig_dir = out / "figures"
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):  # the report shows only what is stored now
            old.unlink()
    figs = figures(view, fig_dir)
    present = set(figs) | ({1, 2} if view.xor is not None else set()) | ({9, 10} if view.examine is not None else set())
    rows = claim_rows(view)
    costs = cost.model(runs_dir)
    missing = _missing_rows(view, present, costs)
    n_ours = sum(r["ours"] is not None for r in rows)
    L = ["# Reproduction report: *The Lottery Ticket Hypothesis: Training Pruned Neural Networks* "
         "(Frankle & Carbin, arXiv v1)", "",
         f"Built by `{command or 'python -m experiments.report'}` from the results stored under `{runs_dir}/`. "
         "Every number in the *ours* columns is read from those stored results by `lth_jax/reproduction/claims.py`; "
         "the paper's values are the constants of `lth_jax/reproduction/paper.py`, each with its section. "
         "Nothing here is typed by hand.", "",
         f"**Status:** {len(present)} of 16 figures have results of ours; {n_ours} of {len(rows)} numeric claims "
         f"have a value of ours, {sum(r['settings'] == results.PAPER_SETTINGS for r in rows)} of them from runs at "
         "the paper's settings. Each figure and claim states the settings it came from: CPU-sized runs use "
         f"far fewer iterations and tickets than the paper ({paper.MNIST.iterations:,} iterations, "
         f"{paper.MNIST.tickets} tickets), so their numbers check the pipeline and the direction of effects, not the "
         "paper's values.", "", "## Settings of the stored runs", ""]
    L += [f"- MNIST {mode} ({_figures_words(FIGS_OF_MODE.get(mode, ()))}): {describe(run)}; command: "
          f"`{mnist_command(run)}`" for mode, run in sorted(view.mnist.items())]
    L += [f"- study {study} ({mode}, {_figures_words(st['figures'])}): {settings_note(st)}; command: "
          f"`{st['command']}`" for (study, mode), st in sorted(view.studies.items())]
    if view.examine is not None:
        L.append(f"- section 5 (Figures 9-10): {view.examine.get('runs')} iterative runs, settings "
                 f"{_short_settings(view.examine.get('settings', {}))}; command: `{view.examine.get('command')}`")
    if view.xor is not None:
        L.append(f"- XOR (Figures 1-2): {_short_xor(view.xor)}; command: `{xor_command(view.xor)}`")
    if view.empty():
        L.append("- nothing is stored yet")
    L += ["", f"Time estimates: CPU {costs['source']['cpu']}; GPU {costs['source']['gpu']}.", "",
          "## Claims of the text", "",
          "*ours*: **missing** = the results it needs are not stored (see *Missing results*); **n/a** = they are "
          "stored but do not determine it (e.g. no trial converged under footnote 5 in a short CPU run). The "
          "settings of each run are listed above; *settings* says whether ours came from a run at the paper's "
          "settings or a CPU-sized one; *details* names the run and the values behind ours.", ""]
    L += _table(("§", "fig.", "claim", "paper", "ours", "n", "settings", "details", "command"),
                [(r["section"], r["figure"], r["claim"], _cell(r["paper"]),
                  _esc("missing" if not r["stored"] else ("n/a" if r["ours"] is None else _cell(r["ours"]))),
                  r["n"] or "-", r["settings"] or "-", _esc(r["details"] or "-"),
                  f"`{r['command']}`" if r["command"] else "-")
                 for r in rows]) + ["", "## Figures", ""]
    for fig in range(1, 17):
        L += [f"### Figure {fig}: {paper.FIGURE_TITLES[fig]}", ""]
        if fig in (1, 2) and view.xor is not None:
            L += _xor_section(view.xor, fig)
        for p in figs.get(fig, []):
            L += [f"![Figure {fig}](figures/{p.name})", ""]
        drawn = [f"the {mode} run at {run.scale()} ({describe(run)})" for mode, run in sorted(view.mnist.items())
                 if fig in figs and fig in FIGS_OF_MODE.get(mode, ())]
        if drawn:
            L += ["Drawn from " + "; ".join(drawn) + ".", ""]
        if fig in (9, 10) and view.examine is not None:
            L += _examine_section(view.examine, fig)
        st = _study_for_figure(view, fig)
        if st is not None:
            L += [f"Settings: {settings_note(st)}. Command: `{st['command']}`.", "",
                  markdown_table(_subset(st, fig)), "", _divergence_line(_subset(st, fig)), ""]
            L += _ticket_sizes(st) if fig in (13, 14) else _rates_rule() if fig == 15 else []
        if fig not in present:
            L += _missing_text(fig, missing)
        L.append("")
    L += beyond_section(runs_dir, fig_dir)  # the follow-up experiments, when any are stored
    L += ["## Missing results", "",
          "Still to run, with the estimated time left (stored levels count as done; runs resume). The paper "
          "preset rows are what a reproduction at the paper's settings needs; cpu rows only cover figures with "
          "no results at all.", ""]
    if missing:
        L += _table(("preset", "figures", "state", "command", "est. CPU", "est. GPU"),
                    [(m["preset"], ", ".join(map(str, m["figures"])), m["state"], f"`{m['command']}`",
                      cost.human(m["cpu"]), cost.human(m["gpu"])) for m in missing])
        L += ["", "`python -m experiments.reproduce_paper --preset=paper` runs every step that is not complete, "
              "then rebuilds this report (`--dry_run` prints the plan)."]
    else:
        L.append("Nothing: every step of the paper preset is stored.")
    L += ["", "## Decisions", ""] + _decisions()
    out.mkdir(parents=True, exist_ok=True)
    store.write_json(out / "claims.json", rows)
    path = out / "REPORT.md"
    store.atomic_write(path, lambda f: f.write(("\n".join(L) + "\n").encode()))
    return path
