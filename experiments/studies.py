"""Section 6 of the paper, the parameter studies (Figures 11-15), as settings of the MNIST experiment.

    python -m experiments.studies --study=all --preset=paper         # every figure of section 6 (a GPU job)
    python -m experiments.studies --study=init_std                    # Figures 11-12, one-shot
    python -m experiments.studies --study=init_std --mode=iterative   # the iterative variant ("similar")
    python -m experiments.studies --study=sizes                       # Figures 13 (one-shot) and 14 (iterative)
    python -m experiments.studies --study=rates                       # Figure 15
    python -m experiments.studies --study=all --preset=cpu --dry_run  # the plan and its estimated cost

Configuration (``experiments/configs/studies.py``: presets, axes, the groups of each study) ->
:func:`lth_jax.runner.run_groups` (groups that share a network shape and schedule train
together, each level one vmapped program, identical trials once, chunks bounded by
``--memory_budget_mb``; each group stored exactly as ``experiments.mnist`` stores the same
settings) -> a manifest naming the runs of the study (read by the report) -> tables and PNGs.
A trial whose loss turns NaN/inf stops updating from that step and is shown as diverged.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments import cli, distributed
from experiments.configs.studies import FIGURES, PAPER_MODES, PRESETS, STUDIES, Axes, Group, study_groups
from experiments.progress import LevelBars
from lth_jax import claims, cost, data, mnist, results, runner, store

FLAGS = cli.FLAGS


def define() -> None:
    cli.define_flag("study", str, "all", "Which parameter study (all: every one).", choices=(*STUDIES, "all"))
    cli.define_preset_flag(PRESETS, "cpu")
    cli.define_flag("mode", str | None, None, "Only this pruning mode (default: the paper's: one-shot stds, both "
                    "for sizes, iterative rates).", choices=("oneshot", "iterative"))
    cli.define_flags(Axes, {**dataclasses.asdict(Axes()), **PRESETS["cpu"]})
    cli.define_flag("memory_budget_mb", int | None, None, "Device memory one training chunk may use (default: 40% "
                    "of an accelerator's, 2048 on CPU).", min=1)
    cli.define_flag("out_dir", str, "runs/studies", "Results root (hashed run directories + manifests/).")
    cli.define_flag("plots_dir", str | None, None, "Where the PNGs go (default: <out_dir>/figures).")
    cli.define_flag("mnist_dir", str | None, None, "Folder with the four MNIST .gz files (default: $LTH_MNIST_DIR, "
                    "else download).", exists="dir")
    cli.define_flag("dry_run", bool, False, "Print the plan and its estimated cost; train nothing.")
    cli.define_flag("progress", bool, True, "Show progress bars.")
    distributed.define_flags()


def jobs(study: str, mode: str | None, preset: str, overrides: dict[str, Any]) -> list[tuple[str, str, list[Group]]]:
    """``(study, mode, groups)`` for every study and mode the selection asks for."""
    out = []
    for st in STUDIES if study == "all" else (study,):
        if st == "rates" and mode == "oneshot":
            if study == "rates":
                raise cli.UsageError("the rates study (Figure 15) is iterative only; drop --mode=oneshot")
            continue
        for md in PAPER_MODES[st] if mode is None else (mode,):
            try:
                out.append((st, md, study_groups(st, md, preset, **overrides)))
            except ValueError as e:
                raise cli.UsageError(str(e)) from None
    return out


def write_manifest(root: str | Path, study: str, mode: str, preset: str, groups: Sequence[Group],
                   command: str) -> Path:
    """Record which stored runs make up a study's figure (read by :func:`lth_jax.results.load_study`)."""
    path = Path(root) / "manifests" / f"{study}-{mode}-{preset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, {
        "study": study, "mode": mode, "preset": preset, "figures": list(FIGURES[(study, mode)]), "command": command,
        "groups": [{"label": g.label, "run": mnist.run_dir(g.settings, ".").name,
                    "settings": dataclasses.asdict(g.settings)} for g in groups]})
    return path


def _describe(level: runner.Level, m: dict[str, Any]) -> str:
    t = m["roles"]["ticket"]
    acc = _fmt(t["final_accuracy"]["mean"], ".4f")
    return (f"  {level.name}: {m['percent_overall']:.2f}% of weights, final acc. {acc}, "
            f"diverged {t['diverged']}/{t['trials']} ({m['seconds']:.1f} s)")


def run() -> None:
    overrides = dataclasses.asdict(cli.settings_from_flags(Axes, {**dataclasses.asdict(Axes()),
                                                                 **cli.preset(PRESETS)}))
    todo = jobs(FLAGS.study, FLAGS.mode, FLAGS.preset, overrides)
    costs = cost.model(FLAGS.out_dir)
    for st, md, groups in todo:
        need = cost.seed_steps([g.settings for g in groups], FLAGS.out_dir)
        cpu, gpu = (cost.seconds(need, costs, d) for d in ("cpu", "gpu"))
        print(f"{st} ({md}, Figure {'/'.join(map(str, FIGURES[(st, md)]))}): {len(groups)} groups x "
              f"{len(groups[0].settings.seeds)} tickets; {need['remaining']:,.0f} of {need['total']:,.0f} "
              f"LeNet seed-steps left: ~{cost.human(cpu)} on this CPU, ~{cost.human(gpu)} on a GPU")
        if st == "rates":
            for g in groups:
                t = mnist.trainings_to(g.settings.min_remaining, g.settings)
                print(f"  {g.label}: {t['trainings']} trainings to {t['percent_overall']:.2f}% of the weights")
    if FLAGS.dry_run:
        return
    count = distributed.start()
    images = mnist.device_data(data.mnist(FLAGS.mnist_dir))
    plots = Path(FLAGS.plots_dir or Path(FLAGS.out_dir) / "figures")
    command = "python -m experiments.studies " + " ".join(sys.argv[1:])
    for st, md, groups in todo:
        print(f"== {st} ({md}): {len(groups)} groups")
        manifest = write_manifest(FLAGS.out_dir, st, md, FLAGS.preset, groups, command)
        depth = max(len(mnist.plan(g.settings)) for g in groups)
        bars = LevelBars(depth, FLAGS.progress, describe=_describe)
        runner.run_groups([g.settings.lottery() for g in groups], images, FLAGS.out_dir, progress=bars,
                          memory_budget_mb=FLAGS.memory_budget_mb, devices=count)
        bars.close()
        study = results.load_study(manifest)
        print(markdown_table(study))
        if st == "sizes":
            for r in claims.ticket_sizes(study):
                print(f"  {r['label']}: ticket size by convergence {_fmt(r['by_convergence'], ',.0f')} weights, "
                      f"by accuracy {_fmt(r['by_accuracy'], ',.0f')} weights (of {r['weights']:,})")
        for p in plot_figures(study, plots):
            print(f"wrote {p}")


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def markdown_table(study: dict[str, Any]) -> str:
    """Every stored level of every group: the numbers behind the study's figure."""
    lines = ["| group | level | % of weights | weights | n | converged | conv. iteration mean [min, max] | "
             "acc. at conv. mean [min, max] | final acc. mean | diverged (first step) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in study["groups"]:
        for r in g["rows"]:
            conv = (f"{_fmt(r['convergence_iteration_mean'], '.0f')} [{_fmt(r['convergence_iteration_min'], '.0f')}, "
                    f"{_fmt(r['convergence_iteration_max'], '.0f')}]")
            acc = (f"{_fmt(r['convergence_accuracy_mean'], '.4f')} [{_fmt(r['convergence_accuracy_min'], '.4f')}, "
                   f"{_fmt(r['convergence_accuracy_max'], '.4f')}]")
            div = (f"**{r['diverged']}/{r['trials']} diverged** (step {r['diverged_first_step']})" if r["diverged"]
                   else "0")
            lines.append(f"| {g['label']} | {r['level']} | {r['percent_overall']:.2f} | {r['weights']:,} | "
                         f"{r['trials']} | {r['converged']} | {conv} | {acc} | "
                         f"{_fmt(r['final_accuracy_mean'], '.4f')} | {div} |")
        if not g["rows"]:
            lines.append(f"| {g['label']} | (nothing stored) | | | | | | | | |")
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


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


if __name__ == "__main__":
    cli.main("studies", run, define)
