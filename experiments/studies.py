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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments import cli, distributed
from experiments.configs.studies import FIGURES, PAPER_MODES, PRESETS, STUDIES, Axes, Group, study_groups
from experiments.figures.studies import format_value, markdown_table, plot_figures
from experiments.progress import LevelBars
from lth_jax import data, runner, store
from lth_jax.reproduction import claims, cost, mnist, results

FLAGS = cli.FLAGS


def define() -> None:
    cli.define_flag("study", str, "all", "Which parameter study (all: every one).", choices=(*STUDIES, "all"))
    cli.define_preset_flag(PRESETS, "cpu")
    cli.define_flag("mode", str | None, None, "Only this pruning mode (default: the paper's: one-shot stds, both "
                    "for sizes, iterative rates).", choices=("oneshot", "iterative"))
    cli.define_flags(Axes, {**dataclasses.asdict(Axes()), **PRESETS["cpu"]})
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
    """Record which stored runs make up a study's figure (read by :func:`lth_jax.reproduction.results.load_study`)."""
    path = Path(root) / "manifests" / f"{study}-{mode}-{preset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, {
        "study": study, "mode": mode, "preset": preset, "figures": list(FIGURES[(study, mode)]), "command": command,
        "groups": [{"label": g.label, "run": mnist.run_dir(g.settings, ".").name,
                    "settings": dataclasses.asdict(g.settings)} for g in groups]})
    return path


def _describe(level: runner.Level, m: dict[str, Any]) -> str:
    t = m["roles"]["ticket"]
    acc = format_value(t["final_accuracy"]["mean"], ".4f")
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
            for r in claims.study_ticket_sizes(study):
                print(f"  {r['label']}: ticket size by convergence "
                      f"{format_value(r['by_convergence'], ',.0f')} weights, "
                      f"by accuracy {format_value(r['by_accuracy'], ',.0f')} weights (of {r['weights']:,})")
        for p in plot_figures(study, plots):
            print(f"wrote {p}")


if __name__ == "__main__":
    cli.main("studies", run, define)
