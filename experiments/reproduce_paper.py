"""Everything the report needs, in the order that gives the headline figures first, then the report.

    python -m experiments.reproduce_paper --preset=paper       # the paper's settings (a GPU job: hours)
    python -m experiments.reproduce_paper --preset=cpu         # the largest CPU versions of each step
    python -m experiments.reproduce_paper --preset=smoke       # every step end to end in minutes
    python -m experiments.reproduce_paper --preset=paper --dry_run   # the plan with estimated times

Configuration (``experiments/configs/reproduce_paper.py``: the steps) -> each step's own entry
point as a subprocess (each resumable: a killed run started again skips what is stored) ->
``experiments.report``. Time estimates use the cost per LeNet-300-100 seed-step measured from
what is stored under ``--runs_dir`` (:mod:`lth_jax.reproduction.cost`), else its documented defaults.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from experiments import cli
from experiments.configs.reproduce_paper import PRESETS, STEPS, estimate, steps
from lth_jax.reproduction import cost

FLAGS = cli.FLAGS


def define() -> None:
    cli.define_flag("preset", str, "cpu", "paper: the paper's settings; cpu: what fits a 2-core CPU; smoke: every "
                    "step in minutes.", choices=PRESETS)
    cli.define_flag("runs_dir", str, "runs", "Root of every stored run (xor/, mnist/, examine/, studies/ below it).")
    cli.define_flag("out_dir", str, "results", "Where the report goes (REPORT.md and PNGs).")
    cli.define_flag("only", tuple[str, ...] | None, None, "Run only these steps.", choices=STEPS, unique=True)
    cli.define_flag("mnist_dir", str | None, None, "Folder with the four MNIST .gz files (passed on as "
                    "$LTH_MNIST_DIR).", exists="dir")
    cli.define_flag("dry_run", bool, False, "Print the plan with estimated times; run nothing.")
    cli.define_flag("report", bool, True, "Build the report at the end.")


def run() -> int | None:
    plan = [s for s in steps(FLAGS.preset, FLAGS.runs_dir) if not FLAGS.only or s.name in FLAGS.only]
    costs = cost.model(FLAGS.runs_dir)
    total = {"cpu": 0.0, "gpu": 0.0}
    print(f"preset {FLAGS.preset}: {len(plan)} steps (cost per LeNet seed-step: cpu {costs['source']['cpu']}; "
          f"gpu {costs['source']['gpu']})")
    for i, s in enumerate(plan, 1):
        est = estimate(s, costs)
        for d in total:
            total[d] += est[d] if math.isfinite(est[d]) else 0.0
        print(f"{i}. {s.name}: Figures {', '.join(map(str, s.figures))} - {s.title}\n   {s.command}\n"
              f"   left to run: ~{cost.human(est['cpu'])} on this CPU, ~{cost.human(est['gpu'])} on a GPU")
    print(f"total: ~{cost.human(total['cpu'])} on this CPU, ~{cost.human(total['gpu'])} on a GPU")
    report = ["-m", "experiments.report", f"--runs_dir={FLAGS.runs_dir}", f"--out_dir={FLAGS.out_dir}",
              f"--preset={FLAGS.preset}"]
    print("then: python " + " ".join(report))
    if FLAGS.dry_run:
        return None
    env = dict(os.environ)
    if FLAGS.mnist_dir:
        env["LTH_MNIST_DIR"] = FLAGS.mnist_dir
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    failed = []
    for i, s in enumerate(plan, 1):
        print(f"\n=== {i}/{len(plan)} {s.name}: {s.command}", flush=True)
        if subprocess.run([sys.executable, "-m", s.module, *s.args], env=env).returncode:
            print(f"   {s.name} did not finish; continuing with the next step")
            failed.append(s.name)
    if FLAGS.report:
        print("\n=== report", flush=True)
        if subprocess.run([sys.executable, *report], env=env).returncode:
            failed.append("report")
    if failed:
        print(f"reproduce_paper: error: steps that did not finish: {', '.join(failed)} "
              "(run the same command again to resume)", file=sys.stderr)
        return cli.FAILURE
    return None


if __name__ == "__main__":
    cli.main("reproduce_paper", run, define)
