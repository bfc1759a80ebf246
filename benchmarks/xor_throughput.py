"""Throughput of XOR training: 1000 ten-unit networks x 10,000 full-batch steps.

    python -m benchmarks.xor_throughput            # prints a table, writes benchmarks/xor_throughput.json

Variants (all train the same networks, the sweep's ``models.xor_net(10, relu_grad_at_zero=1)``,
with the same masks; trial-steps/s = trials x steps / run s):

- ``flax+vmap``: ``jax.vmap`` of ``train_step.full_batch`` on the flax model's loss (``MLP.apply``; the
  naive version);
- ``hand+vmap``: the same with the loss of the trial-axis-last forward pass
  (``trainers.sigmoid_ce_trials_last``, i.e. ``models.mlp_logits_trials_last``);
- ``hand+batched``: ``train_step.full_batch(..., batched=True)`` (trial axis laid out last inside the
  program, the loss vmapped over it);
- ``hand+native``: the sweep's path, ``trainers.FullBatch`` (``batched=True`` with
  ``loss_takes_trials=True``: the loss broadcasts over the trailing trial axis itself, no vmap),
  one chunk of ``--trials`` networks, final logits included.

Each is measured with XLA's CPU defaults and with the YNN fusions off (the sweep's default,
``--fast_xla_cpu``); XLA flags are per process, so the second setting runs in a child process.
``--sweep`` also times the whole ``experiments.xor_sweep --trials=1000`` (``--sweep_trials``) from
scratch (a fresh folder: compile included), as a separate process.

Timings on a shared machine are noisy: the JSON records the load average before and after
each measurement, and the best of ``--repeats`` runs is reported (CPU seconds beside wall).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 1000, "Networks trained together.")
flags.DEFINE_integer("steps", 10_000, "Full-batch steps.")
flags.DEFINE_list("optimizers", ["adam", "sgd"], "Optimisers to time (adam is the sweep's default).")
flags.DEFINE_integer("repeats", 2, "Runs per variant after compiling; the best is reported.")
flags.DEFINE_list("variants", ["flax+vmap", "hand+vmap", "hand+batched", "hand+native"], "Which variants to time.")
flags.DEFINE_boolean("fast_xla_cpu", True, "YNN fusions off in this process.")
flags.DEFINE_boolean("both_xla_settings", True, "Also time every variant with the other XLA setting (child).")
flags.DEFINE_boolean("sweep", True, "Also time the whole xor_sweep from scratch.")
flags.DEFINE_integer("sweep_trials", 1000, "Trials of that sweep (the paper: 1000).")
flags.DEFINE_string("out", "benchmarks/xor_throughput.json", "JSON output ('' for none).")
flags.DEFINE_boolean("child", False, "Internal: print this process's measurements as JSON only.")

ROOT = Path(__file__).resolve().parents[1]
XLA_FLAGS_AT_START = os.environ.get("XLA_FLAGS", "")


def machine() -> dict:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import jax

    return {"cpu": model or platform.processor(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(), "xla_flags": os.environ.get("XLA_FLAGS", "")}


LEARNING_RATE = {"adam": 0.001, "sgd": 0.5, "momentum": 0.05}  # benchmarks/xor_calibration.md


def measure(variant: str, opt: str) -> dict:
    import jax

    from lth_jax import datasets, masks, models, pruning, runner, trainers
    from lth_jax.trainers import step as train_step

    net = models.xor_net(10, relu_grad_at_zero=1.0)
    keys = jax.random.split(jax.random.key(0), FLAGS.trials)
    params = jax.jit(jax.vmap(lambda k: models.init_params(net, k, 2)))(keys)
    ones = masks.ones_like(jax.tree.map(lambda a: a[0], params))
    m = jax.jit(jax.vmap(lambda _: pruning.first_units(ones, 10)))(keys)
    data = datasets.xor_points()
    if variant == "hand+native":  # the sweep's own trainer: the data are constants of its program
        trainer = trainers.FullBatch(opt, LEARNING_RATE[opt], FLAGS.steps, "mean", chunk=FLAGS.trials)
        compiled, compile_s = trainer.compiled(runner.Network(net, (2,)), data)
        args = (params, m)
    else:
        optimizer = train_step.make_optimizer(opt, LEARNING_RATE[opt])
        loss = train_step.sigmoid_bce(net.apply) if variant.startswith("flax") else trainers.sigmoid_ce_trials_last(net)
        if variant.endswith("batched"):
            fn = train_step.full_batch(loss, optimizer, FLAGS.steps, loss_every=FLAGS.steps, batched=True)
        else:
            fn = jax.vmap(train_step.full_batch(loss, optimizer, FLAGS.steps, loss_every=FLAGS.steps),
                          in_axes=(0, 0, None))
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(params, m, data).compile()
        compile_s = time.perf_counter() - t0
        args = (params, m, data)
    runs = []
    for _ in range(FLAGS.repeats):
        load = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(*args))
        runs.append({"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
                     "load_before": load, "load_after": os.getloadavg()[0]})
    best = min(runs, key=lambda r: r["wall_s"])
    work = FLAGS.trials * FLAGS.steps
    return {"variant": variant, "fast_xla_cpu": FLAGS.fast_xla_cpu, "trials": FLAGS.trials, "steps": FLAGS.steps,
            "optimizer": opt, "compile_s": compile_s, "run_s": best["wall_s"], "cpu_s": best["cpu_s"],
            "trial_steps_per_s": work / best["wall_s"], "trial_steps_per_cpu_s": work / best["cpu_s"], "runs": runs}


def time_sweep() -> dict:
    """The whole sweep from scratch in a fresh folder, as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "experiments.xor_sweep", f"--trials={FLAGS.sweep_trials}",
                            f"--out_dir={tmp}",
                            "--progress=false"], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": XLA_FLAGS_AT_START})
        wall = time.perf_counter() - t0
        if r.returncode:
            return {"error": r.stderr[-500:]}
        res = json.loads((Path(tmp) / "xor_sweep.json").read_text())
    return {"wall_s_including_startup": wall, "sweep_reported_s": res["seconds"],
            "trainings": res["trainings_run_now"], "trial_steps_per_s_in_training": res["trial_steps_per_second"],
            "load_before": load, "load_after": os.getloadavg()[0]}


def main(argv: list[str]) -> None:
    del argv
    from experiments import xla_cpu

    if FLAGS.fast_xla_cpu:
        xla_cpu.speed_up_xla_cpu()
    results = [measure(v, o) for o in FLAGS.optimizers for v in FLAGS.variants]
    if FLAGS.child:
        print(json.dumps(results))
        return
    if FLAGS.both_xla_settings:
        args = [f"--{k}={getattr(FLAGS, k)}" for k in ("trials", "steps", "repeats")]
        args.append(f"--optimizers={','.join(FLAGS.optimizers)}")
        # The child starts from the XLA_FLAGS this process was given, not the ones it added.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": XLA_FLAGS_AT_START}
        child = subprocess.run([sys.executable, "-m", "benchmarks.xor_throughput", *args,
                                f"--variants={','.join(FLAGS.variants)}", f"--fast_xla_cpu={not FLAGS.fast_xla_cpu}",
                                "--child"], cwd=ROOT, capture_output=True, text=True, env=env)
        if child.returncode == 0:
            results += json.loads(child.stdout.strip().splitlines()[-1])
        else:
            print(f"child with the other XLA setting failed: {child.stderr[-300:]}", file=sys.stderr)
    out = {"machine": machine(), "results": results, "note": "shared 2-core machine: timings are noisy"}
    print(f"{'variant':14s} {'opt':5s} {'YNN off':>7s} {'compile s':>9s} {'run s':>7s} {'M trial-steps/s':>16s} "
          f"{'per CPU-s':>10s} {'load':>5s}")
    for r in results:
        print(f"{r['variant']:14s} {r['optimizer']:5s} {str(r['fast_xla_cpu']):>7s} {r['compile_s']:9.2f} "
              f"{r['run_s']:7.2f} "
              f"{r['trial_steps_per_s'] / 1e6:16.2f} {r['trial_steps_per_cpu_s'] / 1e6:10.2f} "
              f"{max(x['load_before'] for x in r['runs']):5.1f}")
    if FLAGS.sweep:
        out["sweep"] = time_sweep()
        sw = out["sweep"]
        if "error" in sw:
            print(f"sweep failed: {sw['error']}")
        else:
            print(f"whole xor_sweep --trials={FLAGS.sweep_trials} from scratch: "
                  f"{sw['wall_s_including_startup']:.1f} s wall "
                  f"(sweep {sw['sweep_reported_s']['total']:.1f} s, of which compile "
                  f"{sw['sweep_reported_s']['compile']:.1f} s, training {sw['sweep_reported_s']['train']:.1f} s for "
                  f"{sw['trainings']} trainings = {sw['trial_steps_per_s_in_training'] / 1e6:.1f} M trial-steps/s); "
                  f"load {sw['load_before']:.1f}")
    if FLAGS.out:
        Path(FLAGS.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
