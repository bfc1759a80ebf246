"""One-shot levels in one program against one program per level (fewer, larger programs).

    python -m benchmarks.merged_levels --data_dir=../shared/mnist

Runs the same one-shot LeNet-300-100 experiment twice from nothing, through the runner: once as
it runs by default (every level pruned from the originals in one program after them,
``merge_levels=True``) and once one program per level (``merge_levels=False``); prints and writes
(``--out``, JSON) the programs, the seconds of each run and of its training programs, and
whether every stored array and metric of the two is bit for bit the same (it must be: the
merged run stores nothing else). With ``--data_dir`` unset the images are random (the speed does
not depend on the pixels). The figure that matters on an accelerator is how busy one program
keeps it; on a CPU, which a program of 35 LeNets already fills, expect little difference.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from experiments import xla_cpu
from lth_jax.store import ondisk
from tests.golden.digest import digest_record

FLAGS = flags.FLAGS
flags.DEFINE_string("out", str(Path(__file__).with_suffix(".json")), "Where the JSON goes.")
flags.DEFINE_string("data_dir", None, "Folder with the four MNIST .gz files (default: random images).")
flags.DEFINE_list("levels", ["100", "90", "75", "55", "35", "25", "15", "10", "5"], "One-shot levels (percent).")
flags.DEFINE_integer("seeds", 5, "Seeds (tickets per level).")
flags.DEFINE_integer("controls", 1, "Reinit and shuffle controls per ticket (each).")
flags.DEFINE_integer("iterations", 300, "Training iterations (a multiple of 100).")
flags.DEFINE_integer("budget_mb", None, "Memory budget a device (default: the runner's).")


def _digests(path: Path) -> dict[str, str]:
    names = sorted(p.stem for p in path.glob("*.json")
                   if p.name != ondisk.SETTINGS and (path / f"{p.stem}.npz").exists())
    return {n: json.dumps(digest_record(path, n), sort_keys=True) for n in names}


def main(_: list[str]) -> None:
    xla_cpu.speed_up_xla_cpu()  # before jax starts, as the drivers do
    import jax

    from lth_jax import data, runner
    from lth_jax.reproduction import mnist

    class Programs(runner.Progress):
        def __init__(self) -> None:
            self.programs: list[int] = []
            self.seconds = 0.0

        def level_start(self, index: int, depth: int, runs: int, trials: int, steps: int) -> None:
            self.programs.append(trials)

        def trained(self, trials: int, seconds: float) -> None:
            self.seconds += seconds

    if FLAGS.data_dir:
        images = mnist.device_data(data.mnist(FLAGS.data_dir))
    else:
        rng = np.random.default_rng(0)
        images = tuple((jax.numpy.asarray(rng.random((n, 784), np.float32)),
                        jax.numpy.asarray(rng.integers(0, 10, n).astype(np.int32))) for n in (60_000, 10_000))
    s = mnist.Settings(mode="oneshot", levels=tuple(float(v) for v in FLAGS.levels), seeds=tuple(range(FLAGS.seeds)),
                       reinit=FLAGS.controls, shuffle=FLAGS.controls, iterations=FLAGS.iterations, eval_every=100,
                       average_over=100, stable_for=100)
    runs = {}
    for merge in (True, False):
        with tempfile.TemporaryDirectory() as root:
            seen = Programs()
            t0 = time.perf_counter()
            path = runner.run(s.lottery(), images, root, progress=seen, merge_levels=merge,
                              memory_budget_mb=FLAGS.budget_mb)
            runs["merged" if merge else "one_per_level"] = {
                "seconds": time.perf_counter() - t0, "training_seconds": seen.seconds,
                "programs": len(seen.programs), "trials_per_program": seen.programs, "digests": _digests(path)}
    same = runs["merged"].pop("digests") == runs["one_per_level"].pop("digests")
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "device": str(jax.devices()[0]), "load_average": os.getloadavg(),
           "settings": {"levels": FLAGS.levels, "seeds": FLAGS.seeds, "controls": FLAGS.controls,
                        "iterations": FLAGS.iterations, "data": "mnist" if FLAGS.data_dir else "random"},
           "stored_bit_for_bit_equal": same, **runs,
           "speedup": runs["one_per_level"]["seconds"] / runs["merged"]["seconds"]}
    for name in ("merged", "one_per_level"):
        r = runs[name]
        print(f"{name:14s} {r['programs']:2d} programs {r['trials_per_program']}: {r['seconds']:.1f} s "
              f"({r['training_seconds']:.1f} s training)")
    print(f"speed-up {out['speedup']:.2f}x; stored records bit-for-bit equal: {same}")
    Path(FLAGS.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
