"""Instability analysis of iterative LeNet tickets (Frankle et al. 2020) at several rewind steps.

    python -m experiments.instability --preset=cpu                  # k = 0, 100, 500, 2000 (CPU size)
    python -m experiments.instability --preset=cpu --rewind_steps=0 --roles=ticket,reinit,shuffle,random
    python -m experiments.instability --preset=paper                # 50,000 iterations, 5 seeds (a GPU job)
    python -m experiments.instability --preset=smoke                # a few minutes on 2 CPU cores

Configuration (flags generated from :class:`lth_jax.mnist.Settings` and
:class:`lth_jax.instability_runs.Analysis`, presets in ``experiments/configs/instability.py``) ->
for each ``--rewind_steps`` k, :func:`lth_jax.instability_runs.run` (the late-rewound lottery run,
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

from matplotlib.figure import Figure  # the object API needs no backend (no display, no pyplot state)

from experiments import cli, distributed
from experiments.configs.instability import PRESETS
from experiments.progress import LevelBars
from lth_jax import data, instability_runs, mnist, runner, store

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
    cli.define_flag("memory_budget_mb", int | None, None, "Device memory one program may use (default: 40% of an "
                    "accelerator's, 2048 on CPU).", min=1)
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


if __name__ == "__main__":
    cli.main("instability", run, define)
