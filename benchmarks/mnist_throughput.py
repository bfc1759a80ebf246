"""LeNet-300-100 training throughput: seed-steps per second, and as a fraction of matmul throughput.

    python -m benchmarks.mnist_throughput --trials=1,5,35 --steps=300 --out=/tmp/mnist_throughput.json

For each number of networks N trained together in one vmapped program (the paper's
setting: batch 100, masks applied, SGD lr 0.05, a test-set evaluation every 100 steps,
through ``lth_jax.train.minibatch`` over on-device MNIST), it measures seed-steps per
second (N x steps / seconds) and the matmul FLOP/s that implies, and divides the latter
by this machine's float32 matmul throughput measured in the same run, on the same
shapes: a program of the training step's matmuls alone (same N, same batching).

FLOPs per seed-step (matmuls only; a multiply-add counts 2). With W = 266,200 weights,
B = 100 and W' = 300*100 + 100*10 = 31,000 weights after the first layer:
  forward 2BW, weight gradients 2BW, input gradients 2BW' (the input layer's input
  gradient is never computed: the pixels are not differentiated), so 2B(2W + W') =
  112.68 MFLOP; plus a test evaluation (10,000 images, forward only, 2 x 10,000 x W
  = 5.32 GFLOP) every 100 steps, 53.24 MFLOP a step amortised: 165.92 MFLOP a
  seed-step. (The usual "3 x forward" rule would say 159.7 + 53.2; it over-counts the
  unneeded input gradient by 42%.) Bias adds, ReLU, softmax, masks and the SGD
  update (~ten elementwise passes over 266,610 parameters and the activations) are
  not counted: they are the overhead this figure exposes.

Each program is timed ``--repeats`` times, training and reference interleaved so
both see the same machine load; the best run of each counts. The machine is shared,
so we also report CPU seconds (process time), which other processes barely disturb,
and the utilisation computed from them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from lth_jax import data, masks, models, train

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, f"folder with the four MNIST .gz files (default: ${data.MNIST_DIR_ENV}, "
                    "else a tensorflow-datasets download)")
flags.DEFINE_list("trials", ["1", "5", "35"], "numbers of networks trained together in one vmapped program")
flags.DEFINE_integer("steps", 300, "training steps per timed run (a multiple of --eval_every)")
flags.DEFINE_integer("eval_every", 100, "steps between test-set evaluations (the paper: 100)")
flags.DEFINE_integer("repeats", 3, "timed runs of each program (best counts)")
flags.DEFINE_float("learning_rate", 0.05, "SGD learning rate (the paper: 0.05)")
flags.DEFINE_string("out", "benchmarks/results/mnist_throughput.json", "where to write the JSON results")

BATCH = 100
HIDDEN = (300, 100)


def step_flops(sizes: list[int], batch: int) -> int:
    """Matmul FLOPs of one training step of one network (see the module docstring)."""
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    not_first = weights - sizes[0] * sizes[1]
    return 2 * batch * (2 * weights + not_first)


def eval_flops(sizes: list[int], examples: int) -> int:
    """Matmul FLOPs of one forward pass over ``examples`` inputs."""
    return 2 * examples * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def timed(fn: Callable, *args) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one blocking call."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - wall, time.process_time() - cpu


def matmul_reference(sizes: list[int], trials: int, batch: int, steps: int) -> Callable:
    """The training step's matmuls alone, for ``trials`` networks, ``steps`` times.

    A bias-free linear network's forward pass and its weight VJP: exactly the
    dot shapes and batching of the training step (forward, weight gradients, input
    gradients of all but the first layer), with a new contiguous batch each step and a
    tiny update so that no iteration can be hoisted out of the loop.
    """

    def forward(ws, x):
        for w in ws:
            x = x @ w
        return x

    def one_net(ws, x_all):
        def body(ws, t):
            x = jax.lax.dynamic_slice_in_dim(x_all, (t * batch) % (x_all.shape[0] - batch), batch)
            y, vjp = jax.vjp(lambda ws: forward(ws, x), ws)
            (grads,) = vjp(y)
            return [w - 1e-9 * g for w, g in zip(ws, grads, strict=True)], None

        return jax.lax.scan(body, ws, jnp.arange(steps))[0]

    return jax.jit(jax.vmap(one_net, in_axes=(0, None)))


def square_matmul(n: int = 1024, reps: int = 20) -> tuple[Callable, int]:
    """A large square matmul chain: the machine's near-peak matmul rate, for context."""

    def chain(a):
        return jax.lax.fori_loop(0, reps, lambda i, x: (x @ a) * (1.0 / n), a)

    return jax.jit(chain), 2 * n ** 3 * reps


def run(argv) -> dict:
    del argv
    trials_list = [int(t) for t in FLAGS.trials]
    if FLAGS.steps <= 0 or FLAGS.steps % FLAGS.eval_every or min(trials_list) <= 0 or FLAGS.repeats <= 0:
        raise app.UsageError("--steps must be a positive multiple of --eval_every; --trials and --repeats positive")
    try:
        mnist = data.mnist(FLAGS.data_dir)
    except data.DataError as e:
        raise app.UsageError(str(e)) from None
    train_data = (jnp.asarray(mnist.train_x), jnp.asarray(mnist.train_y))
    test_data = (jnp.asarray(mnist.test_x), jnp.asarray(mnist.test_y))
    n_test = int(test_data[0].shape[0])

    model = models.lenet(HIDDEN)
    sizes = [784, *HIDDEN, 10]
    f_step = step_flops(sizes, BATCH)
    f_seed_step = f_step + eval_flops(sizes, n_test) / FLAGS.eval_every
    trainer = train.minibatch(train.softmax_ce(model.apply), train.accuracy(model.apply),
                              optax.sgd(FLAGS.learning_rate), FLAGS.steps, BATCH, FLAGS.eval_every)
    program = jax.jit(jax.vmap(trainer, in_axes=(0, 0, 0, None, None)))

    square, square_flops = square_matmul()
    a = jnp.full((1024, 1024), 1.0, jnp.float32)
    timed(square, a)
    sq = [timed(square, a) for _ in range(FLAGS.repeats)]
    square_rate = {"wall": square_flops / min(w for w, _ in sq), "cpu": square_flops / min(c for _, c in sq)}

    rows = []
    for n in trials_list:
        keys = jax.random.split(jax.random.key(0), n)
        params = jax.vmap(lambda k: models.init_params(model, k, 784))(keys)
        # Half the weights of each layer pruned (random masks, a different one per network):
        # the program does the same dense work at any density, and the masks are real inputs.
        mask_keys = jax.random.split(jax.random.key(1), n)
        ms = jax.vmap(lambda k, p: jax.tree.map(lambda leaf: jax.random.bernoulli(k, 0.5, leaf.shape), p))(
            mask_keys, params)
        ms = jax.tree.map(lambda m, p: m if p.ndim == 3 else jnp.ones_like(m), ms, params)  # biases unpruned
        ws = [params[name]["kernel"] for name in models.layer_names(params)]
        ref = matmul_reference(sizes, n, BATCH, FLAGS.steps)

        compile_s = timed(program, params, ms, keys, train_data, test_data)[0]
        timed(ref, ws, train_data[0])
        runs, ref_runs = [], []
        for _ in range(FLAGS.repeats):
            runs.append(timed(program, params, ms, keys, train_data, test_data))
            ref_runs.append(timed(ref, ws, train_data[0]))
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        ref_wall, ref_cpu = min(w for w, _ in ref_runs), min(c for _, c in ref_runs)
        seed_steps = n * FLAGS.steps
        train_rate = {"wall": seed_steps * f_seed_step / wall, "cpu": seed_steps * f_seed_step / cpu}
        ref_rate = {"wall": seed_steps * f_step / ref_wall, "cpu": seed_steps * f_step / ref_cpu}
        row = {
            "networks": n,
            "steps": FLAGS.steps,
            "compile_s": round(compile_s, 3),
            "run_s": round(wall, 4),
            "run_cpu_s": round(cpu, 4),
            "seed_steps_per_s": round(seed_steps / wall, 1),
            "train_gflops": round(train_rate["wall"] / 1e9, 2),
            "matmul_gflops": round(ref_rate["wall"] / 1e9, 2),
            "fraction_of_matmul": round(train_rate["wall"] / ref_rate["wall"], 3),
            "fraction_of_matmul_cpu_time": round(train_rate["cpu"] / ref_rate["cpu"], 3),
            "fraction_of_square_matmul": round(train_rate["wall"] / square_rate["wall"], 3),
            "fraction_of_square_matmul_cpu_time": round(train_rate["cpu"] / square_rate["cpu"], 3),
            "all_runs_s": [round(w, 4) for w, _ in runs],
            "all_reference_runs_s": [round(w, 4) for w, _ in ref_runs],
        }
        rows.append(row)
        print(f"N={n:3d}: {row['seed_steps_per_s']:9.1f} seed-steps/s  train {row['train_gflops']:6.1f} GFLOP/s  "
              f"matmul {row['matmul_gflops']:6.1f} GFLOP/s  fraction {row['fraction_of_matmul']:.2f} "
              f"(CPU time {row['fraction_of_matmul_cpu_time']:.2f}; of 1024^3 matmul "
              f"{row['fraction_of_square_matmul']:.2f})  compile {compile_s:.1f}s", flush=True)

    result = {
        "benchmark": "mnist_throughput",
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "batch": BATCH,
        "eval_every": FLAGS.eval_every,
        "learning_rate": FLAGS.learning_rate,
        "flops_per_step": f_step,
        "flops_per_seed_step_with_eval": f_seed_step,
        "square_matmul_gflops": round(square_rate["wall"] / 1e9, 2),
        "square_matmul_gflops_per_cpu_s": round(square_rate["cpu"] / 1e9, 2),
        "load_average": list(os.getloadavg()),
        "rows": rows,
    }
    print(f"1024^3 matmul: {result['square_matmul_gflops']} GFLOP/s ({result['square_matmul_gflops_per_cpu_s']} "
          f"per CPU second); load average {result['load_average'][0]:.1f} on {os.cpu_count()} cores")
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return result


def main(argv) -> None:
    run(argv)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    app.run(main)
