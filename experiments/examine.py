"""Figures 9 and 10 (paper section 5): what iteratively pruned winning tickets look like.

    python -m experiments.examine                  # CPU-sized: 10 runs, 500 iterations a round
    python -m experiments.examine --preset=paper   # 10 runs, 50,000 iterations a round (a GPU job)
    python -m experiments.examine --from_run=runs/iterative-<hash>   # analyse a stored iterative run

Configuration (flags from :class:`lth_jax.reproduction.mnist.Settings`, presets in ``experiments/configs/examine.py``)
-> the iterative chain of section 4 through :func:`lth_jax.reproduction.mnist.run` (tickets only, every seed in
one vmapped program, stopped right after the smallest level shown, each round stored and
resumable) -> :func:`lth_jax.reproduction.analysis.section5` (survivors' initial values, connectivity after
footnote 7's removal, with sample sizes) -> ``examine.json``, ``figure9.png``, ``figure10.png``.
Levels are named as in the paper, by the hidden layers' nominal fraction remaining (0.8 ** round).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import cli, distributed
from experiments.configs.examine import PRESETS, window
from experiments.progress import LevelBars
from lth_jax import data, devices, runner, store
from lth_jax.reproduction import analysis, mnist, paper
from lth_jax.store import ondisk

FLAGS = cli.FLAGS
FIXED = ("mode", "seeds", "reinit", "shuffle", "random", "levels", "min_remaining", "average_over", "stable_for",
         "tolerance")


def define() -> None:
    cli.define_preset_flag(PRESETS, "cpu")
    p = PRESETS["cpu"]
    cli.define_flags(mnist.Settings, p, skip=FIXED)
    cli.define_seed_flags(p["seeds"])
    cli.define_flag("fig9_levels", tuple[float, ...], tuple(v / 100 for v in paper.FIGURE9_LEVELS),
                    "Fractions remaining shown in Figure 9.", above=0, max=1)
    cli.define_flag("fig10_levels", tuple[float, ...], tuple(v / 100 for v in paper.FIGURE10_LEVELS),
                    "Fractions remaining shown in Figure 10.", above=0, max=1)
    cli.define_flag("bins", int, 40, "Histogram bins over [-2 std, 2 std].", min=1)
    cli.define_flag("runs_dir", str, "runs", "Where rounds are stored (resumable).")
    cli.define_flag("from_run", str | None, None, "Analyse this stored iterative run directory instead of running "
                    "one (e.g. one written by experiments.mnist); its seeds are the runs.", exists="dir")
    cli.define_flag("out_dir", str, "results/examine", "Where the PNGs and examine.json go.")
    cli.define_flag("mnist_dir", str | None, None, "Folder with the four MNIST .gz files (default $LTH_MNIST_DIR, "
                    "else download).", exists="dir")
    cli.define_flag("analyse_only", bool, False, "Do not train: use the stored rounds (error if some are missing).")
    cli.define_flag("progress", bool, True, "Show progress bars.")
    distributed.define_flags()


def settings_from_flags() -> mnist.Settings:
    """The iterative chain the flags describe: tickets only, no controls; footnote 5's windows are
    multiples of eval_every (convergence is not used here). Validated before any data is read."""
    p = cli.preset(PRESETS)
    w = window(cli.given("eval_every", p["eval_every"]))
    return cli.settings_from_flags(mnist.Settings, p, skip=FIXED, values={
        "mode": "iterative", "seeds": cli.seeds_from_flags(p["seeds"]), "reinit": 0, "shuffle": 0,
        "average_over": w, "stable_for": w})


def stored_round(path: Path, level: runner.Level, arrays: bool = True) -> store.Record:
    """One round of the chain, verified; a round that is not there (or damaged) is one line naming it."""
    try:
        return store.load_level(path, level.name, arrays=arrays)
    except store.NotStored:
        raise store.StoreError(f"{path}: round {level.order} ({level.name}) is not stored; run without "
                               "--analyse_only / --from_run to train it") from None


def run() -> None:
    fig9, fig10 = list(FLAGS.fig9_levels), list(FLAGS.fig10_levels)
    if FLAGS.from_run:
        path = Path(FLAGS.from_run)
        settings = mnist.load_settings(path)
        cli.check(settings.mode == "iterative", "from_run", f"{path} is a {settings.mode!r} run; Figures 9-10 need "
                  "an iterative one")
        _, wanted = mnist.rounds_for(settings, fig9 + fig10)
    else:
        settings, wanted = mnist.rounds_for(settings_from_flags(), fig9 + fig10)
        path = mnist.run_dir(settings, FLAGS.runs_dir)
        if not FLAGS.analyse_only:
            count = distributed.start()
            bars = LevelBars(len(mnist.plan(settings)), FLAGS.progress)
            path = mnist.run(settings, mnist.device_data(data.mnist(FLAGS.mnist_dir)), FLAGS.runs_dir, progress=bars,
                             devices=count, memory_budget_mb=FLAGS.memory_budget_mb)
            bars.close()
            if not devices.is_writer():  # the figures are process 0's to write
                return
    levels = mnist.plan(settings)
    # each wanted round's ticket masks, named by the hidden layers' nominal fraction remaining
    chain = {(1 - settings.rate) ** r: store.subtree(stored_round(path, levels[r]).arrays, ondisk.MASKS)
             for r in wanted}
    init = jax.device_get(mnist.initial_params(settings))
    out_dir = Path(FLAGS.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = analysis.section5(init, chain, fig9, fig10, settings.std, FLAGS.bins)
    plot = summary.pop("_plot")
    runs = len(settings.seeds)
    note = f"{runs} runs, {settings.iterations:,} iterations/round"
    if settings.iterations != paper.MNIST.iterations:
        note += f" (paper: {paper.MNIST.iterations:,})"
    plot_figure9(plot["figure9"], settings.std, out_dir / "figure9.png", note)
    plot_figure10(plot["figure10"], out_dir / "figure10.png", runs, note)
    rounds = []
    for r in range(max(wanted) + 1):
        m = stored_round(path, levels[r], arrays=False).metrics
        rounds.append({"round": r, "remaining_nominal": m["percent_nominal"] / 100,
                       "remaining_overall": m["percent_overall"] / 100,
                       "final_accuracy": m["roles"]["ticket"]["final_accuracy"],
                       "diverged": m["roles"]["ticket"]["diverged"]})
    summary.update({"runs": runs, "settings": settings.hashed(), "run_dir": str(path),
                    "command": "python -m experiments.examine " + " ".join(sys.argv[1:]), "paper": paper.SECTION5,
                    "rounds": rounds, "normal_share_within_1_std": analysis.truncated_normal_share()})
    store.write_json(out_dir / "examine.json", summary)
    _print(summary)
    print(f"wrote {out_dir}/figure9.png, figure10.png, examine.json")


LAYER_LABELS = ("first hidden", "second hidden", "output")


def _label(i: int, n: int) -> str:
    if i == n - 1:
        return "output"
    return LAYER_LABELS[i] if n == 3 else f"hidden {i + 1}"


def plot_figure9(plot: list, std: float, path: Path, note: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (_target, remaining, hists) in zip(axes.ravel(), plot, strict=False):
        names = list(hists)
        for i, (density, edges) in enumerate(hists.values()):
            ax.stairs(density, edges, label=_label(i, len(names)))
        ax.set_title(f"{100 * remaining:.1f}% remaining")
        ax.axvspan(-std, std, color="0.9", zorder=0)
        ax.set_ylabel("density")
    for ax in axes[-1]:
        ax.set_xlabel("initial value of surviving weight")
    axes.ravel()[0].legend()
    fig.suptitle(f"Figure 9: initial values of weights that survive iterative pruning ({note}; "
                 f"shaded: within 1 std of 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_figure10(plot: list, path: Path, runs: int, note: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(plot[0][2])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6))
    for _target, remaining, counts in plot:
        for i, (ax, name) in enumerate(zip(axes, names, strict=True)):
            c = counts[name]
            ax.plot(np.arange(c.size) / runs, c, label=f"{100 * remaining:.1f}%")
            ax.set_title(f"{_label(i, len(names))} layer")
            ax.set_xlabel(f"unit, sorted by connections (pooled over {runs} runs)")
    axes[0].set_ylabel("surviving incoming connections")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Figure 10: incoming connections per unit after removing edges with no path to an output "
                 f"({note})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(summary: dict[str, Any]) -> None:
    print(f"Figure 9: share of survivors within 1 std of 0 (truncated normal: "
          f"{analysis.truncated_normal_share():.4f}); {summary['runs']} runs pooled")
    for lv in summary["figure9"]:
        cells = "  ".join(f"{name}: {v['fraction_within']:.3f}±{v['se']:.3f} (n={v['n']})"
                          for name, v in lv["layers"].items())
        print(f"  {100 * lv['remaining']:5.1f}% ({100 * lv['remaining_overall']:.1f}% overall)  {cells}")
    print("Figure 10: units with no surviving incoming connection (after footnote 7)")
    for lv in summary["figure10"]:
        cells = "  ".join(f"{name}: {v['disconnected']}/{v['units']} = {v['fraction']:.3f}±{v['se']:.3f} "
                          f"({v['disconnected_before_removal']} before)"
                          for name, v in lv["layers"].items())
        print(f"  {100 * lv['remaining']:5.1f}% ({100 * lv['remaining_overall']:.1f}% overall)  {cells}")
    print(f"  paper: {paper.SECTION5['figure10']}")


if __name__ == "__main__":
    cli.main("examine", run, define)
