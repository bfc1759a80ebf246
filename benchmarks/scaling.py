"""Trials per second with the trial axis split across 1, 2 and 4 devices.

    python -m benchmarks.scaling                      # this machine: 4 CPU devices forced, 1 / 2 / 4 used
    python -m benchmarks.scaling --real               # the devices the machine has (a GPU node)

Each device count runs in a fresh process (a process's CPU device count is fixed when jax starts;
``--xla_force_host_platform_device_count=4`` makes 4 of this machine's cores' worth of devices)
through the runner's own trainers, with the trials padded and split as the runner does:

- XOR (section 2): ``--xor_trials`` ten-unit networks, ``--xor_steps`` full-batch Adam steps
  (``trainers.FullBatch``), trial-steps per second;
- LeNet-300-100 (sections 3-4): ``--lenet_trials`` networks, ``--lenet_steps`` mini-batch SGD steps
  of 100 with a test evaluation every 100 (``trainers.Minibatch``), on MNIST-shaped random data
  (the speed does not depend on the pixels), seed-steps per second.

Each figure is the best of ``--repeats`` timed calls after one untimed call (compilation). Printed
and written to ``--out`` (JSON) with the machine, the load average and the XLA flags.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", str(Path(__file__).with_suffix(".json")), "Where the JSON goes.")
flags.DEFINE_list("counts", ["1", "2", "4"], "Device counts to measure.")
flags.DEFINE_boolean("real", False, "Use the machine's own devices instead of 4 forced CPU devices.")
flags.DEFINE_integer("xor_trials", 1000, "XOR networks.")
flags.DEFINE_integer("xor_steps", 2000, "XOR full-batch steps.")
flags.DEFINE_integer("lenet_trials", 8, "LeNet-300-100 networks.")
flags.DEFINE_integer("lenet_steps", 500, "LeNet mini-batch steps (a multiple of 100).")
flags.DEFINE_integer("repeats", 2, "Timed calls per figure (the best counts).")
flags.DEFINE_integer("worker", 0, "Internal: measure with this many devices and print JSON.")


def _best(fn: Any, repeats: int) -> float:
    fn()  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def worker(count: int) -> dict[str, Any]:
    # jax is imported here, in the measuring process only: its device count is fixed at import
    import jax

    from lth_jax import datasets, devices
    from lth_jax.reproduction import mnist, xor

    placement = devices.placement(count)
    split = placement if count > 1 else None
    out: dict[str, Any] = {"devices": count, "platform": jax.devices()[0].platform, "visible": jax.device_count()}
    s = xor.Settings(trials=FLAGS.xor_trials, iterations=FLAGS.xor_steps, chunk=FLAGS.xor_trials)
    net, trainer = s.network(), s.trainer()
    keys = jax.random.split(jax.random.key(0), FLAGS.xor_trials)
    params = jax.vmap(net.init)(keys)
    masks = jax.tree.map(lambda x: np.ones(x.shape, bool), params)
    data = datasets.xor_points()
    seconds = _best(lambda: trainer(net, params, masks, keys, data, placement=split), FLAGS.repeats)
    out["xor"] = {"trials": FLAGS.xor_trials, "steps": FLAGS.xor_steps, "seconds": seconds,
                  "trial_steps_per_s": FLAGS.xor_trials * FLAGS.xor_steps / seconds}
    lt = mnist.Settings(iterations=FLAGS.lenet_steps, eval_every=100).lottery()
    n = placement.padded(FLAGS.lenet_trials)
    rng = np.random.default_rng(0)
    images = ((rng.random((60_000, 784), np.float32), rng.integers(0, 10, 60_000).astype(np.int32)),
              (rng.random((10_000, 784), np.float32), rng.integers(0, 10, 10_000).astype(np.int32)))
    images = split.replicate(images) if split else jax.tree.map(jax.numpy.asarray, images)
    lkeys = jax.random.split(jax.random.key(1), n)
    lparams = jax.vmap(lt.network.init)(lkeys)
    lmasks = jax.tree.map(lambda x: np.ones(x.shape, bool), lparams)
    seconds = _best(lambda: jax.block_until_ready(lt.trainer(lt.network, lparams, lmasks, lkeys, images,
                                                             placement=split)[0]), FLAGS.repeats)
    out["lenet"] = {"trials": n, "steps": FLAGS.lenet_steps, "seconds": seconds,
                    "seed_steps_per_s": n * FLAGS.lenet_steps / seconds}
    return out


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.worker:
        print(json.dumps(worker(FLAGS.worker)))
        return
    from experiments import xla_cpu

    env = dict(os.environ)
    if not FLAGS.real:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=4 {env.get('XLA_FLAGS', '')}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    os.environ.update(env)
    xla_cpu.speed_up_xla_cpu()
    env["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    rows = []
    for count in map(int, FLAGS.counts):
        argv = [sys.executable, "-m", "benchmarks.scaling", f"--worker={count}",
                *(f"--{k}={getattr(FLAGS, k)}" for k in ("xor_trials", "xor_steps", "lenet_trials", "lenet_steps",
                                                         "repeats"))]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if done.returncode:
            sys.exit(f"scaling: the {count}-device measurement failed: {done.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{count} device(s): XOR {r['xor']['trial_steps_per_s'] / 1e6:6.2f} M trial-steps/s, "
              f"LeNet {r['lenet']['seed_steps_per_s']:7.1f} seed-steps/s ({r['lenet']['trials']} networks)")
    result = {"benchmark": "scaling", "machine": platform.machine(), "cpu_count": os.cpu_count(),
              "forced_cpu_devices": not FLAGS.real, "load_average": list(os.getloadavg()),
              "xla_flags": env.get("XLA_FLAGS", ""), "rows": rows}
    from lth_jax import store  # (after the measurements: this process never starts jax's backend)

    store.write_json(FLAGS.out, result)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
