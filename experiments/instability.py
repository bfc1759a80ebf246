"""Instability analysis of iterative LeNet tickets (Frankle et al. 2020) at several rewind steps.

    python -m experiments.instability --preset=cpu                  # k = 0, 100, 500, 2000 (CPU size)
    python -m experiments.instability --preset=cpu --rewind_steps=0 --roles=ticket,reinit,shuffle,random
    python -m experiments.instability --preset=paper                # 50,000 iterations, 5 seeds (a GPU job)
    python -m experiments.instability --preset=smoke                # a few minutes on 2 CPU cores

Configuration (flags generated from :class:`lth_jax.reproduction.mnist.Settings` and
:class:`lth_jax.reproduction.instability_runs.Analysis`, presets in ``experiments/configs/instability.py``) ->
for each ``--rewind_steps`` k, :func:`lth_jax.reproduction.instability_runs.run` (the late-rewound lottery run,
stored and resumed as ``experiments.mnist`` stores it, its originals trained once for every k;
then, at the chosen levels, two copies of each ticket and of a control per chosen role trained
with different data orders in one vmapped program and the error along the path between them in
one batched evaluation, stored under ``--out_dir/instability-<hash>/``) -> the barrier per level,
role and k -> ``instability_barrier.png`` (barrier against weights remaining) and
``instability_path.png`` (error along the path).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from experiments import cli, distributed
from experiments.configs.instability import PRESETS
from experiments.figures.instability import format_table, plot
from experiments.progress import LevelBars
from lth_jax import data, runner
from lth_jax.reproduction import instability_runs, mnist

FLAGS = cli.FLAGS
DRIVER = ("seeds", "reinit", "shuffle", "random", "rewind_step")
ANALYSIS = instability_runs.Analysis
ANALYSIS_FIELDS = tuple(f.name for f in dataclasses.fields(ANALYSIS))


def _lottery_part(preset: dict[str, Any]) -> dict[str, Any]:
    """The preset's keys that are the lottery's (its analysis keys and rewind steps left out)."""
    return {k: v for k, v in preset.items() if k not in ANALYSIS_FIELDS and k != "rewind_steps"}


def _analysis_part(preset: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in preset.items() if k in ANALYSIS_FIELDS}


def define() -> None:
    p = PRESETS["cpu"]
    cli.define_preset_flag(PRESETS, "cpu")
    cli.define_flags(mnist.Settings, _lottery_part(p), skip=DRIVER + ("controls",))
    cli.define_flags(ANALYSIS, _analysis_part(p))
    cli.define_seed_flags(p["seeds"])
    cli.define_flag("controls", tuple[int, ...], p["controls"], "The run's own controls per ticket: "
                    "reinit,shuffle[,random] (the pairs' controls come from --roles).", min=0)
    cli.define_flag("rewind_steps", tuple[int, ...], p["rewind_steps"], "Late rewinding's k of each run (0: the "
                    "initialisation); every k is a snapshot of the same stored originals.", min=0, unique=True)
    cli.define_flag("out_dir", str, "runs/mnist", "Results root: the runs (as experiments.mnist stores them) and "
                    "their analyses.")
    cli.define_flag("plots_dir", str | None, None, "Where the PNGs go (default: <out_dir>/figures).")
    cli.define_flag("mnist_dir", str | None, None,
                    "Folder of the four MNIST .gz files (default: $LTH_MNIST_DIR, else downloads).", exists="dir")
    cli.define_flag("progress", bool, True, "Show progress bars.")
    distributed.define_flags()


def settings_from_flags() -> tuple[list[mnist.Settings], instability_runs.Analysis]:
    """One lottery setting per rewind step (snapshots at every k) and the analysis, validated."""
    p = cli.preset(PRESETS)
    controls = tuple(cli.given("controls", p["controls"]))
    cli.check(len(controls) in (2, 3), "controls", f"takes 2 or 3 comma-separated values, not {len(controls)}")
    reinit, shuffle, random = (*controls, 0)[:3]
    ks = tuple(cli.given("rewind_steps", p["rewind_steps"]))
    base = cli.settings_from_flags(mnist.Settings, _lottery_part(p), skip=DRIVER + ("controls",), values={
        "seeds": cli.seeds_from_flags(p["seeds"]), "reinit": reinit, "shuffle": shuffle, "random": random})
    cli.check(base.mode in ("oneshot", "iterative"), "mode", f"must be oneshot or iterative, not {base.mode}")
    steps = tuple(sorted({*base.snapshot_steps, *ks}))
    try:
        runs = [base.replace(snapshot_steps=steps, rewind_step=k) for k in ks]
    except ValueError as e:
        raise cli.UsageError(f"--rewind_steps: {e}") from None
    return runs, cli.settings_from_flags(ANALYSIS, _analysis_part(p))


def run() -> None:
    runs, analysis = settings_from_flags()
    command = " ".join(["python -m experiments.instability", *sys.argv[1:]])
    count = distributed.start()
    images = mnist.device_data(data.mnist(FLAGS.mnist_dir))
    plan = mnist.plan(runs[0])
    chosen = analysis.levels(plan)
    print(f"{runs[0].mode} LeNet {'-'.join(map(str, runs[0].hidden))}: {len(plan)} levels, pairs at "
          f"{', '.join(lv.name for lv in chosen)}; {len(runs[0].seeds)} seeds x {', '.join(analysis.roles)}; "
          f"rewind steps {', '.join(str(s.rewind_step) for s in runs)}; {runs[0].iterations:,} iterations")
    paths: dict[int, Path] = {}
    t0 = time.perf_counter()
    for s in runs:
        bars = LevelBars(len(plan), FLAGS.progress)
        lottery = s.lottery()
        paths[s.rewind_step] = instability_runs.run(lottery, analysis, images, FLAGS.out_dir, progress=bars,
                                                    memory_budget_mb=FLAGS.memory_budget_mb, command=command,
                                                    devices=count)
        bars.close()
        print(f"k={s.rewind_step}: run {runner.run_dir(lottery, FLAGS.out_dir)}, analysis {paths[s.rewind_step]}")
    print(f"done in {time.perf_counter() - t0:.1f} s\n")
    print(format_table(paths))
    out = Path(FLAGS.plots_dir or Path(FLAGS.out_dir) / "figures")
    written = plot(paths, out)
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    cli.main("instability", run, define)
