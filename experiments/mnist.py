"""MNIST winning tickets: LeNet-300-100, one-shot / iterative / Han et al. pruning with controls.

    python -m experiments.mnist --preset=paper --mode=oneshot      # Figures 3-6 (a GPU job)
    python -m experiments.mnist --preset=paper --mode=iterative    # Figures 7-8
    python -m experiments.mnist --preset=paper --mode=han --controls=0,0   # Figure 16
    python -m experiments.mnist --preset=smoke                     # a few minutes on 2 CPU cores
    python -m experiments.mnist_plots --runs_dir=runs/mnist        # PNGs from what is stored

Configuration (flags generated from :class:`lth_jax.reproduction.mnist.Settings`; every flag left unset
takes the preset's value, ``experiments/configs/mnist.py``) -> :func:`lth_jax.reproduction.mnist.run`
(each level: the tickets of all seeds and all their controls in one vmapped program, stored
under ``--out_dir/<mode>-<hash>/`` as soon as it is trained; the same command resumes a
killed run) -> the per-level table. Section 6's studies are other settings of the same
command (``--std=0.4``, ``--hidden=600,300``, ``--mode=iterative --rate=0.5``).
"""

from __future__ import annotations

import time

import jax

from experiments import cli, distributed
from experiments.configs.mnist import PRESETS
from experiments.figures.tables import print_table
from experiments.progress import LevelBars
from lth_jax import data
from lth_jax.reproduction import mnist

FLAGS = cli.FLAGS
DRIVER = ("seeds", "reinit", "shuffle", "random")  # set from --seeds/--first_seed and --controls


def define() -> None:
    p = PRESETS["smoke"]
    cli.define_preset_flag(PRESETS, "smoke")
    cli.define_flags(mnist.Settings, p, skip=DRIVER + ("controls",))
    cli.define_seed_flags(p["seeds"])
    cli.define_flag("controls", tuple[int, ...], p["controls"], "Controls per ticket: reinit,shuffle[,random] (the "
                    "paper: 3,3; random-mask copies 0 unless a third count is given).", min=0)
    cli.define_flag("chunk_steps", int | None, None, "Steps per compiled call (progress only; results do not change).",
                    min=1)
    cli.define_flag("out_dir", str, "runs/mnist", "Results root; each setting gets a hashed subdirectory.")
    cli.define_flag("mnist_dir", str | None, None,
                    "Folder of the four MNIST .gz files (default: $LTH_MNIST_DIR, else downloads).", exists="dir")
    cli.define_flag("progress", bool, True, "Show progress bars.")
    distributed.define_flags()


def settings_from_flags() -> mnist.Settings:
    """The preset with every given flag applied, validated (before any data is read)."""
    p = cli.preset(PRESETS)
    controls = tuple(cli.given("controls", p["controls"]))
    cli.check(len(controls) in (2, 3), "controls", f"takes 2 or 3 comma-separated values (reinit,shuffle[,random]), "
              f"not {len(controls)}")
    reinit, shuffle, random = (*controls, 0)[:3]
    s = cli.settings_from_flags(mnist.Settings, p, skip=DRIVER + ("controls",), values={
        "seeds": cli.seeds_from_flags(p["seeds"]), "reinit": reinit, "shuffle": shuffle, "random": random})
    c = FLAGS.chunk_steps
    cli.check(c is None or (s.iterations % c == 0 and c % s.eval_every == 0), "chunk_steps",
              f"{c} must divide --iterations={s.iterations} and be a multiple of --eval_every={s.eval_every}")
    return s


def run() -> None:
    s = settings_from_flags()
    count = distributed.start()
    images = mnist.device_data(data.mnist(FLAGS.mnist_dir))
    counts = mnist.weight_counts(s)
    levels = mnist.plan(s)
    print("weights per layer: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
          + f" (total {sum(counts.values()):,})")
    print(f"mode {s.mode}: {len(levels)} levels x {s.trials_per_level()} networks ({len(s.seeds)} tickets + "
          f"{s.reinit} reinit + {s.shuffle} shuffle" + (f" + {s.random} random-mask" if s.random else "")
          + " per ticket" + (" + the continuing chain" if s.mode == "han" else "")
          + (f", rewound to step {s.rewind_step}" if s.rewind_step else "")
          + f"), {s.iterations:,} iterations each, on {jax.devices()[0].platform}")
    print(f"results: {mnist.run_dir(s, FLAGS.out_dir)}")
    bars = LevelBars(len(levels), FLAGS.progress)
    t0 = time.perf_counter()
    path = mnist.run(s, images, FLAGS.out_dir, progress=bars, chunk_steps=FLAGS.chunk_steps, devices=count,
                     memory_budget_mb=FLAGS.memory_budget_mb)
    bars.close()
    print(f"done in {time.perf_counter() - t0:.1f} s")
    print_table(mnist.table(path))


if __name__ == "__main__":
    cli.main("mnist", run, define)
