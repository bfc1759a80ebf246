"""The instability path as one batched program against its alphas evaluated one by one.

    python -m benchmarks.instability_path --data_dir=../shared/mnist --out=/tmp/instability_path.json

For pairs of LeNet-300-100 networks (random weights at the paper's init: the cost of a forward
pass does not depend on the values), it times the test error of the 31 networks on the straight
line between each pair (``--alphas``) over the 10,000-example MNIST test set:

- *batched*: :func:`lth_jax.instability.path_errors`, every pair and alpha in one compiled
  program (optionally ``--chunks`` of test examples at a time, which bounds the activations,
  and ``--alpha_batches``: all alphas in one vmap, or a loop over groups of alphas inside the
  program, every pair vmapped in each);
- *separate*: one compiled single-network program (interpolate at one alpha, then the test
  error), called once per pair and alpha, with the dispatches queued and the results fetched
  at the end (the most favourable way to run a Python loop of evaluations).

Both are timed after compilation (compile time reported apart), ``--repeats`` times, alternately;
the median counts. Wall-clock and process CPU seconds (summed over XLA's threads) are reported;
on a shared machine the CPU figures are the steadier. Without the MNIST files it falls back to
random data of the same shape and says so in the JSON (``"data"``).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import xla_cpu
from lth_jax import data, instability, models, store
from lth_jax.reproduction import mnist

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, f"folder with the four MNIST .gz files (default: ${data.MNIST_DIR_ENV})")
flags.DEFINE_list("pairs", ["1", "4"], "numbers of network pairs evaluated together")
flags.DEFINE_list("chunks", ["0", "2000"], "test examples per chunk of the batched program (0: all at once)")
flags.DEFINE_list("alpha_batches", ["0", "1"], "alphas evaluated at a time inside the batched program "
                  "(path_errors' alpha_batch; 0: all at once, one vmap)")
flags.DEFINE_integer("alphas", 31, "points on each path, 0 and 1 included")
flags.DEFINE_integer("repeats", 5, "timed runs of each program (the median counts)")
flags.DEFINE_string("out", "benchmarks/instability_path.json", "where to write the JSON results")

HIDDEN = (300, 100)


def timed(fn: Callable, *args) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, blocking on its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - wall, time.process_time() - cpu


def test_set() -> tuple[jax.Array, jax.Array, str]:
    """MNIST's test set on the device, else random data of its shape (and a note saying which)."""
    try:
        images = data.mnist(FLAGS.data_dir or os.environ.get(data.MNIST_DIR_ENV))
        _, (x, y) = mnist.device_data(images)
        return x, y, "mnist test set"
    except data.DataError as e:
        print(f"instability_path: no MNIST ({e}); timing on random data of the same shape", file=sys.stderr)
        rng = np.random.default_rng(0)
        return (jnp.asarray(rng.random((10_000, 784), np.float32)), jnp.asarray(rng.integers(0, 10, 10_000)),
                "random data of the MNIST test set's shape (MNIST not found)")


def median(runs: list[tuple[float, float]]) -> dict[str, float]:
    return {"wall_s": round(statistics.median(w for w, _ in runs), 4),
            "cpu_s": round(statistics.median(c for _, c in runs), 4)}


def run() -> dict:
    x, y, source = test_set()
    model = models.lenet(HIDDEN)
    apply = model.apply
    alphas = instability.grid(FLAGS.alphas)

    @jax.jit
    def one_alpha(a, b, t):
        """One network of the path, evaluated alone: what a Python loop over the alphas calls."""
        point = jax.tree.map(lambda u, v: (1 - t) * u + t * v, a, b)
        return jnp.mean(jnp.argmax(apply({"params": point}, x), axis=-1) != y)

    rows = []
    for n_pairs in (int(p) for p in FLAGS.pairs):
        init = jax.vmap(lambda k: models.init_params(model, k, 784))
        pairs_a = init(jax.random.split(jax.random.key(0), n_pairs))
        pairs_b = init(jax.random.split(jax.random.key(1), n_pairs))
        singles = [(jax.tree.map(lambda t, i=i: t[i], pairs_a), jax.tree.map(lambda t, i=i: t[i], pairs_b))
                   for i in range(n_pairs)]

        def separate(singles=singles):
            return [one_alpha(a, b, t) for a, b in singles for t in alphas]

        compile_separate = timed(one_alpha, *singles[0], alphas[1])[0]
        looped = jnp.stack(jax.block_until_ready(separate())).reshape(n_pairs, -1)
        for chunk, group in ((int(c), int(g)) for g in FLAGS.alpha_batches for c in FLAGS.chunks):
            def batched(chunk=chunk, group=group, pairs_a=pairs_a, pairs_b=pairs_b):
                return instability.path_errors(apply, pairs_a, pairs_b, alphas, x, y, chunk=chunk or None,
                                               alpha_batch=group or None).errors

            compile_batched = timed(batched)[0]  # compiles and runs once
            errors = batched()
            agree = bool(np.array_equal(np.asarray(errors), np.asarray(looped)))
            runs_b, runs_s = [], []
            for _ in range(FLAGS.repeats):
                runs_b.append(timed(batched))
                runs_s.append(timed(separate))
            b, s = median(runs_b), median(runs_s)
            rows.append({
                "pairs": n_pairs, "alphas": int(alphas.shape[0]), "evaluations": n_pairs * int(alphas.shape[0]),
                "chunk": chunk or int(x.shape[0]), "alpha_batch": group or int(alphas.shape[0]),
                "batched": b, "separate": s,
                "speedup_wall": round(s["wall_s"] / b["wall_s"], 2), "speedup_cpu": round(s["cpu_s"] / b["cpu_s"], 2),
                "ms_per_network_batched": round(1000 * b["wall_s"] / (n_pairs * alphas.shape[0]), 2),
                "ms_per_network_separate": round(1000 * s["wall_s"] / (n_pairs * alphas.shape[0]), 2),
                "compile_s_batched": round(compile_batched, 2), "compile_s_separate": round(compile_separate, 2),
                "same_errors": agree,
                "runs_wall_s": {"batched": [round(w, 3) for w, _ in runs_b],
                                "separate": [round(w, 3) for w, _ in runs_s]},
            })
            r = rows[-1]
            print(f"{n_pairs} pair(s) x {r['alphas']} alphas, chunk {r['chunk']:5d}, alpha_batch "
                  f"{r['alpha_batch']:2d}: batched {b['wall_s']:.3f} s "
                  f"({b['cpu_s']:.3f} CPU s), separate {s['wall_s']:.3f} s ({s['cpu_s']:.3f} CPU s): "
                  f"x{r['speedup_wall']} wall, x{r['speedup_cpu']} CPU; {r['ms_per_network_batched']} vs "
                  f"{r['ms_per_network_separate']} ms a network; same errors: {agree}", flush=True)

    result = {
        "benchmark": "instability_path",
        "what": "test error of every network on the straight line between LeNet-300-100 pairs: one batched "
                "program (lth_jax.instability.path_errors) vs one compiled evaluation per alpha and pair",
        "data": source, "test_examples": int(x.shape[0]),
        "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "repeats": FLAGS.repeats, "statistic": "median",
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
    }
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(out, result)
    print(f"load average {result['load_average'][0]:.1f} on {os.cpu_count()} cores; wrote {out}")
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(f"instability_path: unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.repeats <= 0 or FLAGS.alphas < 2 or not all(p.isdigit() and int(p) > 0 for p in FLAGS.pairs) \
            or not all(c.isdigit() for c in FLAGS.chunks):
        sys.exit("instability_path: --repeats and --pairs must be positive, --alphas at least 2, --chunks >= 0")
    if not all(g.isdigit() for g in FLAGS.alpha_batches):
        sys.exit("instability_path: --alpha_batches must be integers >= 0")
    xla_cpu.speed_up_xla_cpu()  # the drivers' XLA switch, before the first computation
    run()


if __name__ == "__main__":
    app.run(main)
