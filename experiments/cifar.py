"""CIFAR-10 winning tickets: Conv-2/4/6, VGG and ResNet (the paper's later versions) with controls.

    python -m experiments.cifar --model=conv2 --preset=paper          # the paper's Conv-2 (a GPU job)
    python -m experiments.cifar --model=resnet20 --preset=cpu --cifar10_dir=/data/cifar-10-batches-bin
    python -m experiments.cifar --synthetic --preset=smoke            # about a minute, no data needed

Configuration (flags generated from :class:`lth_jax.reproduction.cifar.Settings`; every flag left
unset takes the preset's value for ``--model``, ``experiments/configs/cifar.py``) ->
:func:`lth_jax.runner.run` (each level: every ticket and control in one vmapped program, stored
under ``--out_dir/<mode>-<hash>/`` as soon as it is trained; the same command resumes) -> the
per-level table and ``cifar.png`` (accuracy and convergence iteration against weights remaining).
CIFAR-10 comes from ``--cifar10_dir`` / ``$LTH_CIFAR10_DIR`` (the official binary version) or a
download; ``--synthetic`` trains on random CIFAR-shaped data, marked as such in every output.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

from experiments import cli, distributed
from experiments.configs.cifar import PRESETS, preset
from experiments.figures.cifar import plot
from experiments.figures.tables import print_table
from experiments.progress import LevelBars
from lth_jax import runner, zoo
from lth_jax.reproduction import cifar, mnist

FLAGS = cli.FLAGS
DRIVER = ("seeds", "reinit", "shuffle", "random", "model", "controls")


def define() -> None:
    p = preset("smoke", "conv2")
    cli.define_flag("model", str, "conv2", "A model of lth_jax.zoo.", choices=zoo.NAMES)
    cli.define_flag("preset", str, "smoke", "Settings to start from, for --model; every flag left unset takes "
                    "the preset's value.", choices=PRESETS)
    cli.define_flags(cifar.Settings, p, skip=DRIVER)
    cli.define_seed_flags(None)
    cli.define_flag("controls", tuple[int, ...] | None, None, "Controls per ticket: reinit,shuffle[,random] "
                    "(default: the preset's).", min=0)
    cli.define_flag("out_dir", str, "runs/cifar", "Results root; each setting gets a hashed subdirectory.")
    cli.define_flag("cifar10_dir", str | None, None, "Folder of the CIFAR-10 binary version (default: "
                    "$LTH_CIFAR10_DIR, else downloads).", exists="dir")
    cli.define_flag("progress", bool, True, "Show progress bars.")
    distributed.define_flags()


def settings_from_flags() -> cifar.Settings:
    """The preset of ``--model`` with every given flag applied, validated before any data is read."""
    p = preset(FLAGS.preset, FLAGS.model)
    controls = tuple(cli.given("controls", p["controls"]))
    cli.check(len(controls) in (2, 3), "controls", f"takes 2 or 3 comma-separated values, not {len(controls)}")
    reinit, shuffle, random = (*controls, 0)[:3]
    return cli.settings_from_flags(cifar.Settings, {k: v for k, v in p.items() if k != "controls"},
                                   skip=DRIVER, values={"model": FLAGS.model, "seeds": cli.seeds_from_flags(p["seeds"]),
                                                        "reinit": reinit, "shuffle": shuffle, "random": random})


def run() -> None:
    s = settings_from_flags()
    count = distributed.start()
    lottery = cifar.lottery(s, cifar.dataset(s, FLAGS.cifar10_dir))
    runner.check(lottery)
    counts, levels = lottery.network.weight_counts(), runner.plan(lottery)
    mark = " [SYNTHETIC DATA: random CIFAR-shaped images, not CIFAR-10]" if s.synthetic else ""
    print(f"{s.model} on {s.data_name}{mark}: {sum(counts.values()):,} weights in {len(counts)} layers")
    per_level = len(s.seeds) * (1 + s.reinit + s.shuffle + s.random)
    print(f"mode {s.mode}: {len(levels)} levels x {per_level} networks, {s.iterations:,} iterations each, "
          f"on {jax.devices()[0].platform}")
    print(f"results: {runner.run_dir(lottery, FLAGS.out_dir)}")
    bars = LevelBars(len(levels), FLAGS.progress)
    t0 = time.perf_counter()
    path = runner.run(lottery, root=FLAGS.out_dir, progress=bars, devices=count,
                      memory_budget_mb=FLAGS.memory_budget_mb)
    bars.close()
    print(f"done in {time.perf_counter() - t0:.1f} s{mark}")
    rows = mnist.table(path)
    print_table(rows)
    print(f"wrote {plot(rows, Path(path) / 'cifar.png', f'{s.model} on {s.data_name}{mark}')}")


if __name__ == "__main__":
    cli.main("cifar", run, define)
