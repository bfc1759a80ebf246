"""MNIST winning tickets: LeNet-300-100, one-shot / iterative / Han et al. pruning with controls.

    python -m experiments.mnist --preset=paper --mode=oneshot      # Figures 3-6 (a GPU job)
    python -m experiments.mnist --preset=paper --mode=iterative    # Figures 7-8
    python -m experiments.mnist --preset=paper --mode=han          # Figure 16 (with --controls=0,0)
    python -m experiments.mnist --preset=smoke                     # a few minutes on 2 CPU cores
    python -m experiments.mnist_plots --runs_dir=runs/mnist        # PNGs from what is stored

Every flag left unset takes the preset's value (experiments/configs/mnist.py). Each level
(the tickets of all seeds and all their controls, trained together in one vmapped program)
is stored under ``--out_dir/<mode>-<hash of the settings>/`` as soon as it is trained; the
same command run again skips finished levels, so a killed run resumes where it stopped.
Issue 4's parameter studies are other settings of the same command: ``--std=0.4``,
``--hidden=600,300``, ``--mode=iterative --rate=0.5``.
"""

from __future__ import annotations

import time
from typing import Any

from absl import app, flags, logging

from experiments import cli
from experiments.configs.mnist import PRESETS

_fail = cli.failer("mnist")
_parse = cli.flags_parser("mnist")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags are defined only when run as a program, so the drivers can be imported together."""
    flags.DEFINE_enum("preset", "smoke", list(PRESETS), "Settings to start from; every flag below overrides them.")
    flags.DEFINE_enum("mode", "oneshot", ["oneshot", "iterative", "han"],
                      "oneshot (section 3), iterative (section 4) or han (section 6.4: prune and keep training).")
    flags.DEFINE_list("levels", None, "One-shot: percents of each hidden layer to keep, e.g. 100,75,35,5.")
    flags.DEFINE_integer("seeds", None, "Number of winning tickets (seeds first_seed, first_seed+1, ...).")
    flags.DEFINE_integer("first_seed", 0, "First seed.")
    flags.DEFINE_list("controls", None, "Controls per ticket: reinit,shuffle (the paper: 3,3).")
    flags.DEFINE_integer("iterations", None, "Training iterations per network (the paper: 50,000).")
    flags.DEFINE_integer("eval_every", None, "Test accuracy every this many iterations (the paper: 100).")
    flags.DEFINE_float("std", None, "Standard deviation of the truncated-normal initialisation (the paper: 0.1).")
    flags.DEFINE_list("hidden", None, "Hidden layer widths (the paper: 300,100).")
    flags.DEFINE_float("rate", None, "Iterative/han: fraction of each hidden layer's remaining weights pruned a round.")
    flags.DEFINE_float("output_rate_factor", None, "The output layer is pruned at this fraction of the hidden rate.")
    flags.DEFINE_float("min_remaining", None, "Iterative/han: stop after the first level under this percent.")
    flags.DEFINE_float("lr", None, "Learning rate (the paper: SGD, 0.05).")
    flags.DEFINE_string("optimizer", None, "sgd (the paper), momentum or adam.")
    flags.DEFINE_integer("batch_size", None, "Mini-batch size (the paper: 100).")
    flags.DEFINE_integer("average_over", None, "Footnote 5: moving-average window in iterations (1000).")
    flags.DEFINE_integer("stable_for", None, "Footnote 5: iterations the average must stay put (1000).")
    flags.DEFINE_float("tolerance", None, "Footnote 5: allowed change of the moving average (0.002).")
    flags.DEFINE_integer("chunk_steps", None, "Steps per compiled call (progress granularity; results do not change).")
    flags.DEFINE_string("out_dir", "runs/mnist", "Results root; each setting gets a hashed subdirectory.")
    flags.DEFINE_string("mnist_dir", None,
                        "Folder of the four MNIST .gz files (default: $LTH_MNIST_DIR, else downloads).")
    flags.DEFINE_bool("progress", True, "Show progress bars.")


UsageError = cli.UsageError


def settings_from_flags() -> Any:
    """The preset with every given flag applied, as a validated ``Settings``."""
    from lth_jax.experiment import Settings

    cfg = dict(PRESETS[FLAGS.preset])
    given = {
        "levels": cli.parse_list("levels", FLAGS.levels, float), "hidden": cli.parse_list("hidden", FLAGS.hidden, int),
        "controls": cli.parse_list("controls", FLAGS.controls, int),
        **{k: getattr(FLAGS, k) for k in ("seeds", "iterations", "eval_every", "std", "rate", "output_rate_factor",
                                           "min_remaining", "lr", "optimizer", "batch_size", "average_over",
                                           "stable_for", "tolerance")},
    }
    cfg.update({k: v for k, v in given.items() if v is not None})
    if len(cfg["controls"]) != 2:
        raise UsageError(f"--controls takes two counts, reinit,shuffle (e.g. 3,3), not {cfg['controls']}")
    if cfg["seeds"] < 1:
        raise UsageError(f"--seeds must be at least 1, not {cfg['seeds']}")
    if FLAGS.first_seed < 0:
        raise UsageError(f"--first_seed must be >= 0, not {FLAGS.first_seed}")
    reinit, shuffle = cfg.pop("controls")
    seeds = tuple(range(FLAGS.first_seed, FLAGS.first_seed + cfg.pop("seeds")))
    try:
        return Settings(mode=FLAGS.mode, seeds=seeds, reinit=reinit, shuffle=shuffle, **cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    """The per-level report: convergence iteration, accuracy there, final accuracy (mean [min, max])."""
    print(f"{'level':>7} {'%left':>7} {'role':>8} {'n':>3} {'conv':>4}  {'conv. iteration':>23}  "
          f"{'acc. at convergence':>26}  {'final accuracy':>26}")
    def triple(r: dict[str, Any], key: str, spec: str) -> str:
        return f"{_fmt(r[key + '_mean'], spec)} [{_fmt(r[key + '_min'], spec)}, {_fmt(r[key + '_max'], spec)}]"

    for r in rows:
        print(f"{r['level']:>7} {r['percent_overall']:7.2f} {r['role']:>8} {r['trials']:3d} {r['converged']:4d}  "
              f"{triple(r, 'convergence_iteration', '7.0f'):>23}  {triple(r, 'convergence_accuracy', '.4f'):>26}  "
              f"{triple(r, 'final_accuracy', '.4f'):>26}" + (f"  diverged {r['diverged']}" if r["diverged"] else ""))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # jax's INFO lines (e.g. no TPU) are noise here
    settings = settings_from_flags()

    from experiments.progress import LevelBars
    from lth_jax import data, experiment

    mnist = data.mnist(FLAGS.mnist_dir)
    import jax

    counts = experiment.weight_counts(settings)
    print("weights per layer: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
          + f" (total {sum(counts.values()):,})")
    levels = experiment.plan(settings)
    print(f"mode {settings.mode}: {len(levels)} levels x {settings.trials_per_level()} networks "
          f"({len(settings.seeds)} tickets + {settings.reinit} reinit + {settings.shuffle} shuffle per ticket"
          + (" + the continuing chain" if settings.mode == "han" else "") + f"), {settings.iterations:,} iterations "
          f"each, on {jax.devices()[0].platform}")
    path = experiment.run_dir(settings, FLAGS.out_dir)
    print(f"results: {path}")
    bars = LevelBars(len(levels), FLAGS.progress)
    t0 = time.perf_counter()
    experiment.run(settings, experiment.device_data(mnist), FLAGS.out_dir, progress=bars,
                   chunk_steps=FLAGS.chunk_steps)
    bars.close()
    print(f"done in {time.perf_counter() - t0:.1f} s")
    print_table(experiment.table(path))




run_main = cli.guarded("mnist", main)


if __name__ == "__main__":
    define_flags()
    app.run(run_main, flags_parser=_parse)
