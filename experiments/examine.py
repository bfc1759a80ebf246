"""Figures 9 and 10 (paper section 5): what iteratively pruned winning tickets look like.

    python -m experiments.examine                  # CPU-sized: 10 runs, 500 iterations a round
    python -m experiments.examine --preset=paper   # 10 runs, 50,000 iterations a round (a GPU job)
    python -m experiments.examine --from_run=runs/iterative-<hash>   # analyse a stored iterative run

Both figures need only each round's ticket masks and the initial weights, so by
default this runs the iterative pruning chain of section 4 (train, prune 20% of
each hidden layer and 10% of the output layer, rewind) through
:mod:`lth_jax.experiment` for ``--runs`` seeds trained together in one vmapped
program, with no controls, and only down to the smallest level shown (5.5%:
14 trainings). Every round is stored as soon as it is trained (``--runs_dir``),
so a killed run resumes and a later call reuses it. ``--preset=cpu`` trains
500 iterations a round instead of the paper's 50,000: its masks are those of
much shorter trainings, so say so when quoting it.

Writes to ``--out_dir``: ``figure9.png`` (histograms of the initial values of the
surviving weights per layer at 100%, 51.2%, 16.8%, 5.5% remaining, pooled over
runs), ``figure10.png`` (incoming connections per unit, sorted, per layer, at
80%, 16.8%, 5.5%, after footnote 7's removal of edges with no path to an
output) and ``examine.json`` (bimodality and disconnected-unit counts with
sample sizes and standard errors). Levels are named as in the paper, by the
hidden layers' nominal fraction remaining (0.8 ** round); the overall fraction
(output layer included) is reported beside it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import app, flags

from experiments import cli, xla_cpu
from experiments.progress import LevelBars
from lth_jax import analysis, data, experiment, store

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"runs": 10, "steps": 50_000, "eval_every": 100},
    "cpu": {"runs": 10, "steps": 500, "eval_every": 500},   # accuracy here is only a sanity check
}
PAPER = {
    "figure10": "by 5.5% remaining, nearly a third of the units in the second hidden layer are fully disconnected",
    "figure9": "survivors' initial values: first and second hidden layers bimodal (centre hollowed), "
               "the output layer closer to the original normal",
}

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags are defined only when run as a program, so the drivers can be imported together."""
    flags.DEFINE_enum("preset", "cpu", list(PRESETS), "Settings to start from; the flags below override them.")
    flags.DEFINE_integer("runs", None, "Independent iterative pruning runs (the paper: 10). Default: the preset's.")
    flags.DEFINE_integer("steps", None, "Training iterations per round (the paper: 50,000). Default: the preset's.")
    flags.DEFINE_integer("eval_every", None, "Test accuracy every this many iterations. Default: the preset's.")
    flags.DEFINE_list("hidden", ["300", "100"], "Hidden layer widths.")
    flags.DEFINE_float("std", 0.1, "Standard deviation of the (truncated) normal initialisation.")
    flags.DEFINE_float("learning_rate", 0.05, "SGD learning rate.")
    flags.DEFINE_integer("batch_size", 100, "Mini-batch size.")
    flags.DEFINE_float("rate", 0.2, "Fraction of each hidden layer's remaining weights pruned per round.")
    flags.DEFINE_float("output_rate_factor", 0.5, "The output layer is pruned at this fraction of --rate.")
    flags.DEFINE_integer("seed", 0, "First seed; the runs use seeds seed .. seed + runs - 1.")
    flags.DEFINE_list("fig9_levels", ["1.0", "0.512", "0.168", "0.055"], "Fractions remaining shown in Figure 9.")
    flags.DEFINE_list("fig10_levels", ["0.8", "0.168", "0.055"], "Fractions remaining shown in Figure 10.")
    flags.DEFINE_integer("bins", 40, "Histogram bins over [-2 std, 2 std].")
    flags.DEFINE_string("runs_dir", "runs", "Where rounds are stored (resumable).")
    flags.DEFINE_string("from_run", None, "Analyse this stored iterative run directory instead of running one "
                        "(e.g. one written by experiments.mnist); its seeds are the runs.")
    flags.DEFINE_string("out_dir", "results/examine", "Where the PNGs and examine.json go.")
    flags.DEFINE_string("mnist_dir", None, f"Folder with the four MNIST .gz files (default ${data.MNIST_DIR_ENV}, "
                        "else download).")
    flags.DEFINE_bool("analyse_only", False, "Do not train: use the stored rounds (error if some are missing).")


# ------------------------------------------------------------------ settings


def settings_from_flags() -> experiment.Settings:
    """The iterative chain the flags describe: tickets only, no controls."""
    preset = PRESETS[FLAGS.preset]
    runs = FLAGS.runs if FLAGS.runs is not None else preset["runs"]
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    try:
        hidden = tuple(int(h) for h in FLAGS.hidden)
    except ValueError:
        raise ValueError(f"--hidden must be integers, got {','.join(FLAGS.hidden)}") from None
    every = FLAGS.eval_every if FLAGS.eval_every is not None else preset["eval_every"]
    return experiment.Settings(
        mode="iterative", hidden=hidden, std=FLAGS.std, lr=FLAGS.learning_rate, batch_size=FLAGS.batch_size,
        iterations=FLAGS.steps if FLAGS.steps is not None else preset["steps"], eval_every=every,
        seeds=tuple(range(FLAGS.seed, FLAGS.seed + runs)), reinit=0, shuffle=0, rate=FLAGS.rate,
        output_rate_factor=FLAGS.output_rate_factor,
        # footnote 5's windows must be multiples of eval_every; convergence is not used here
        average_over=max(1000 // every, 1) * every, stable_for=max(1000 // every, 1) * every)


def parse_levels(values: Sequence[str], flag: str) -> list[float]:
    try:
        levels = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--{flag} must be fractions remaining in (0, 1], got {','.join(values)}") from None
    if not levels or not all(0.0 < v <= 1.0 for v in levels):
        raise ValueError(f"--{flag} must be fractions remaining in (0, 1], got {','.join(values)}")
    return levels


def plan_rounds(settings: experiment.Settings, targets: Sequence[float]) -> tuple[experiment.Settings, list[int]]:
    """The rounds nearest each target (by the hidden layers' nominal fraction), and
    settings whose ``min_remaining`` stops the chain right after the last of them."""
    smallest = min(targets)
    full = experiment.plan(settings.replace(min_remaining=min(100 * smallest * (1 - settings.rate), 99.0)))
    nominal = [lv.percent / 100 for lv in full]
    wanted = sorted({analysis.nearest_level(nominal, t) for t in targets})
    last = max(wanted[-1], 1)
    total = sum(full[0].counts.values())
    overall = [sum(lv.counts.values()) / total for lv in full]
    # the plan stops after the first level under min_remaining: put it between rounds last-1 and last
    stop = 100 * (overall[last] + overall[last - 1]) / 2
    return settings.replace(min_remaining=stop), wanted



# ------------------------------------------------------------------ the analysis


def examine(init: dict[str, Any], chain: dict[float, dict[str, Any]], fig9: Sequence[float],
            fig10: Sequence[float], std: float, bins: int) -> dict[str, Any]:
    """Figures 9 and 10 from the initial weights and the masks of the chain.

    ``init`` and every mask tree carry a leading run axis; ``chain`` maps each
    level's fraction remaining (the paper's name for it) to its masks; each
    target is shown at the nearest level. This is all the figures need,
    whatever produced the chain. Returns the JSON summary plus the plotted
    arrays (under ``"_plot"``).
    """
    levels = sorted(chain, reverse=True)
    pick = {t: levels[analysis.nearest_level(levels, t)] for t in (*fig9, *fig10)}
    rng = (-2.0 * std, 2.0 * std)
    out: dict[str, Any] = {"figure9": [], "figure10": [], "_plot": {"figure9": [], "figure10": []}}
    runs = int(np.shape(jax.tree.leaves(init)[0])[0])
    for t in fig9:
        d = pick[t]
        values = analysis.survivor_initial_values(init, chain[d])
        layers = {name: analysis.bimodality(v, std) for name, v in values.items()}
        out["figure9"].append({"target": t, "remaining": d, "remaining_overall": kernel_fraction(chain[d]),
                               "runs": runs, "layers": layers})
        out["_plot"]["figure9"].append((t, d, {name: analysis.histogram(v, bins, rng) for name, v in values.items()}))
    for t in fig10:
        d = pick[t]
        layers = analysis.disconnected_summary(chain[d])
        raw = analysis.disconnected_summary(chain[d], disconnect=False)
        counts = analysis.sorted_incoming(chain[d])
        for name, c in counts.items():
            # how many had lost every input to pruning itself, before footnote 7's removal
            layers[name].update({"disconnected_before_removal": raw[name]["disconnected"],
                                 "max_incoming": int(c[0]), "median_incoming": float(np.median(c)),
                                 "mean_incoming": float(np.mean(c))})
        out["figure10"].append({"target": t, "remaining": d, "remaining_overall": kernel_fraction(chain[d]),
                                "runs": runs, "layers": layers})
        out["_plot"]["figure10"].append((t, d, counts))
    return out


def kernel_fraction(masks: dict[str, Any]) -> float:
    """Fraction of all weights (output layer included) remaining, pooled over runs."""
    kernels = [np.asarray(layer["kernel"]) for layer in masks.values()]
    return sum(int(k.sum()) for k in kernels) / sum(k.size for k in kernels)


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


# ------------------------------------------------------------------ CLI


def _chain_from_store(path: Path, settings: experiment.Settings, wanted: Sequence[int]) -> dict[float, Any]:
    chain = {}
    for r in wanted:
        name = f"r{r:02d}"
        if not store.done(path, name):
            raise FileNotFoundError(f"round {r} ({name}) is not stored in {path}; "
                                    "run without --analyse_only / --from_run to train it")
        rec = store.load_level(path, name)
        chain[(1 - settings.rate) ** r] = store.subtree(rec.arrays, "masks")
    return chain


def run(argv: Sequence[str]) -> dict[str, Any]:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    fig9 = parse_levels(FLAGS.fig9_levels, "fig9_levels")
    fig10 = parse_levels(FLAGS.fig10_levels, "fig10_levels")
    if FLAGS.bins < 1:
        raise ValueError(f"--bins must be positive, got {FLAGS.bins}")
    if FLAGS.from_run:
        path = Path(FLAGS.from_run)
        if not (path / "settings.json").is_file():
            raise FileNotFoundError(f"{path}: no settings.json; --from_run must name a stored run directory")
        settings = experiment.load_settings(path)
        if settings.mode != "iterative":
            raise ValueError(f"{path} is a {settings.mode!r} run; Figures 9-10 need an iterative one")
        _, wanted = plan_rounds(settings, fig9 + fig10)
    else:
        settings, wanted = plan_rounds(settings_from_flags(), fig9 + fig10)
        path = store.run_dir(FLAGS.runs_dir, settings.hashed(), prefix=settings.mode)
        if not FLAGS.analyse_only:
            mnist = data.mnist(FLAGS.mnist_dir)
            bars = LevelBars(len(experiment.plan(settings)))
            path = experiment.run(settings, experiment.device_data(mnist), FLAGS.runs_dir, progress=bars)
            bars.close()
    chain = _chain_from_store(path, settings, wanted)
    init = jax.device_get(experiment.initial_params(settings))

    out_dir = Path(FLAGS.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = examine(init, chain, fig9, fig10, settings.std, FLAGS.bins)
    plot = summary.pop("_plot")
    runs = len(settings.seeds)
    note = f"{runs} runs, {settings.iterations:,} iterations/round"
    if settings.iterations != PRESETS["paper"]["steps"]:
        note += " (paper: 50,000)"
    plot_figure9(plot["figure9"], settings.std, out_dir / "figure9.png", note)
    plot_figure10(plot["figure10"], out_dir / "figure10.png", runs, note)
    rounds = []
    for r in range(max(wanted) + 1):
        m = store.load_level(path, f"r{r:02d}", arrays=False).metrics
        acc = m["roles"]["ticket"]["final_accuracy"]
        rounds.append({"round": r, "remaining_nominal": m["percent_nominal"] / 100,
                       "remaining_overall": m["percent_overall"] / 100, "final_accuracy": acc,
                       "diverged": m["roles"]["ticket"]["diverged"]})
    summary.update({
        "runs": runs, "settings": settings.hashed(), "run_dir": str(path),
        "command": "python -m experiments.examine " + " ".join(sys.argv[1:]),
        "paper": PAPER, "rounds": rounds,
        "normal_share_within_1_std": analysis.truncated_normal_share(),
    })
    store.write_json(out_dir / "examine.json", summary)
    return summary


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
    print(f"  paper: {PAPER['figure10']}")


def main(argv: Sequence[str]) -> None:
    xla_cpu.speed_up_xla_cpu()
    try:
        summary = run(argv)
    except (ValueError, FileNotFoundError, data.DataError) as e:
        sys.exit(f"examine: error: {e}")
    _print(summary)
    print(f"wrote {FLAGS.out_dir}/figure9.png, figure10.png, examine.json")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.flags_parser("examine"))
