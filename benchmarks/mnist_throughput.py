"""LeNet-300-100 training throughput: seed-steps per second, and as a fraction of matmul throughput.

    python -m benchmarks.mnist_throughput --data_dir=../shared/mnist --out=/tmp/mnist_throughput.json

For each number of networks N trained together in one vmapped program (the paper's
setting: batch 100, masks applied, SGD lr 0.05, a test-set evaluation every 100 steps,
through the runner's own trainer, ``lth_jax.trainers.Minibatch``, over on-device MNIST;
``--steps`` in one compiled segment), it measures seed-steps per
second (N x steps / seconds) and the matmul FLOP/s that implies, and divides the latter
by this machine's float32 matmul throughput measured in the same run: a chain of
1024 x 1024 x 1024 matmuls, timed between the training runs. For context it also
reports the rate of the training step's matmuls alone at their own shapes (batch 100,
one network), which is what the training is really bound by.

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

Timing on a shared machine: training and the reference matmul are timed alternately,
``--repeats`` times, and the best run of each counts. We report wall-clock figures and
CPU-time figures (process CPU seconds, summed over XLA's threads); other processes
barely disturb the latter, and on an idle machine the two agree, since XLA keeps both
cores busy in both programs. The headline fraction is the CPU-time one.

XLA's CPU backend hands dots to YNNPACK by default; its batched dots are slow for
the vmapped (N, 100, 784) x (N, 784, 300) shapes (about 55 against 78 GFLOP per CPU
second for XLA's own at N=35; the whole N=35 program runs at 58% of matmul against
68%), while a large square matmul runs equally fast either way. ``--ynn=false`` (the default) therefore switches those
fusions off through ``XLA_FLAGS`` when the installed jaxlib knows the flag; the JSON
records the XLA flags in force.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags

from experiments import xla_cpu
from lth_jax import data, models, store, trainers
from lth_jax import masks as masks_lib
from lth_jax.reproduction import mnist
from lth_jax.trainers import step as train_step

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, f"folder with the four MNIST .gz files (default: ${data.MNIST_DIR_ENV}, "
                    "else a tensorflow-datasets download)")
flags.DEFINE_list("trials", ["1", "5", "35"], "numbers of networks trained together in one vmapped program")
flags.DEFINE_integer("steps", 100, "training steps per timed run (a multiple of --eval_every)")
flags.DEFINE_integer("eval_every", 100, "steps between test-set evaluations (the paper: 100)")
flags.DEFINE_integer("repeats", 3, "timed runs of each program (the best counts)")
flags.DEFINE_float("learning_rate", 0.05, "SGD learning rate (the paper: 0.05)")
flags.DEFINE_bool("ynn", False, "leave XLA's YNNPACK dot fusions on (XLA's default); see the module docstring")
flags.DEFINE_string("out", "benchmarks/mnist_throughput.json", "where to write the JSON results")
flags.DEFINE_list("paired", ["5", "7"], "groups,members of the paired-batch measurement (the paper's level: 5 tickets "
                  "x (1 + 3 + 3 controls)); empty: skip it")

BATCH = 100
HIDDEN = (300, 100)
SQUARE = 1024


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


def square_matmul(n: int = SQUARE, reps: int = 20) -> tuple[Callable, int]:
    """A chain of large square matmuls: the machine's float32 matmul rate."""
    def chain(a):
        return jax.lax.fori_loop(0, reps, lambda i, x: (x @ a) * (1.0 / n), a)

    return jax.jit(chain), 2 * n ** 3 * reps


def shape_reference(batch: int, steps: int) -> Callable:
    """The training step's matmuls alone, for one network, ``steps`` times.

    A bias-free linear network's forward pass and weight VJP: the training step's
    dot shapes (forward, weight gradients, input gradients of all but the first
    layer), a new batch each step and a tiny update so no iteration can be hoisted.
    """
    def forward(ws, x):
        for w in ws:
            x = x @ w
        return x

    def run(ws, x_all):
        def body(ws, t):
            x = jax.lax.dynamic_slice_in_dim(x_all, (t * batch) % (x_all.shape[0] - batch), batch)
            y, vjp = jax.vjp(lambda ws: forward(ws, x), ws)
            (grads,) = vjp(y)
            return [w - 1e-9 * g for w, g in zip(ws, grads, strict=True)], None

        return jax.lax.scan(body, ws, jnp.arange(steps))[0]

    return jax.jit(run)


COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def compile_seconds(fn: Callable, *args) -> float:
    """Seconds ``fn(*args)`` spends tracing, lowering and compiling (jax's own compile events):
    the trainer compiles on its first call, with no separate compile step to time."""
    spent = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            spent.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jax.block_until_ready(fn(*args))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return sum(spent)


def paired_steps(model, groups: int, members: int, steps: int, lr: float) -> tuple[Callable, Callable]:
    """Two programs of ``steps`` masked SGD steps (no evaluation) of ``groups x members`` LeNets in
    which every group's members see the same batches (a ticket and its controls under a shared
    batch order): ``flat`` vmaps over all trials, each gathering its own copy of its batch (what
    the trainer does today); ``grouped`` draws each group's batch once and vmaps its members over
    it, so a layer's forward pass is one wide matmul of the batch against the group's kernels.
    The same numbers go in and, up to float summation order, come out."""
    opt = train_step.make_optimizer("sgd", lr)
    step = train_step.masked_step(train_step.softmax_ce(model.apply), opt)

    def one(p, s, m, x, y):
        p, s, _ = step(p, s, m, (x, y))
        return p, s

    def flat(params, masks, keys, x_all, y_all):  # (G * M, ...) trials; keys repeat per group
        def body(carry, t):
            p, s = carry
            idx = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, t), (BATCH,), 0, x_all.shape[0]))(keys)
            return jax.vmap(one)(p, s, masks, x_all[idx], y_all[idx]), None
        state = (params, jax.vmap(opt.init)(params))
        return jax.lax.scan(body, state, jnp.arange(steps))[0][0]

    def grouped(params, masks, keys, x_all, y_all):  # (G, M, ...) trials; keys (G,)
        def body(carry, t):
            p, s = carry
            idx = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, t), (BATCH,), 0, x_all.shape[0]))(keys)
            members = jax.vmap(one, in_axes=(0, 0, 0, None, None))
            return jax.vmap(members)(p, s, masks, x_all[idx], y_all[idx]), None
        state = (params, jax.vmap(jax.vmap(opt.init))(params))
        return jax.lax.scan(body, state, jnp.arange(steps))[0][0]

    return jax.jit(flat), jax.jit(grouped)


def paired_measurement(model, train_data, groups: int, members: int) -> dict:
    """Seconds per step of the two programs of :func:`paired_steps` (best of ``--repeats``)."""
    n = groups * members
    keys = jax.random.split(jax.random.key(0), n)
    params = jax.vmap(lambda k: models.init_params(model, k, 784))(keys)
    mask_keys = jax.random.split(jax.random.key(1), n)
    ms = {name: {"kernel": jax.vmap(lambda k, w: jax.random.bernoulli(k, 0.5, w.shape))(mask_keys, layer["kernel"]),
                 "bias": jnp.ones(layer["bias"].shape, bool)} for name, layer in params.items()}
    group_keys = jax.random.split(jax.random.key(2), groups)
    flat, grouped = paired_steps(model, groups, members, FLAGS.steps, FLAGS.learning_rate)
    by_group = lambda t: jax.tree.map(lambda a: a.reshape(groups, members, *a.shape[1:]), t)  # noqa: E731
    args = {"flat": (flat, params, ms, jnp.repeat(group_keys, members)),
            "grouped": (grouped, by_group(params), by_group(ms), group_keys)}
    out = {}
    for fn, p, m, k in args.values():
        timed(fn, p, m, k, *train_data)  # compile
    runs: dict[str, list] = {"flat": [], "grouped": []}
    for _ in range(FLAGS.repeats):  # interleaved, under the same load
        for name, (fn, p, m, k) in args.items():
            runs[name].append(timed(fn, p, m, k, *train_data))
    a = jax.device_get(flat(params, ms, jnp.repeat(group_keys, members), *train_data))
    b = jax.device_get(grouped(by_group(params), by_group(ms), group_keys, *train_data))
    diff = max(float(jnp.max(jnp.abs(x.reshape(y.shape) - y))) for x, y in zip(jax.tree.leaves(b), jax.tree.leaves(a),
                                                                               strict=True))
    for name, r in runs.items():
        out[name] = {"best_run_s": round(min(w for w, _ in r), 4), "best_run_cpu_s": round(min(c for _, c in r), 4),
                     "seed_steps_per_s": round(n * FLAGS.steps / min(w for w, _ in r), 1)}
    out.update(groups=groups, members=members, steps=FLAGS.steps, max_weight_difference=diff,
               speedup_wall=round(out["flat"]["best_run_s"] / out["grouped"]["best_run_s"], 3),
               speedup_cpu=round(out["flat"]["best_run_cpu_s"] / out["grouped"]["best_run_cpu_s"], 3))
    print(f"paired batches, {groups} x {members} networks: flat {out['flat']['seed_steps_per_s']} seed-steps/s, "
          f"grouped {out['grouped']['seed_steps_per_s']}: {out['speedup_wall']}x wall, {out['speedup_cpu']}x CPU time "
          f"(weights differ by at most {diff:.2g})", flush=True)
    return out


def best_rates(runs: list[tuple[float, float]], flops: float) -> dict[str, float]:
    return {"wall": flops / min(w for w, _ in runs), "cpu": flops / min(c for _, c in runs)}


def run() -> dict:
    trials_list = [int(t) for t in FLAGS.trials]
    try:
        images = data.mnist(FLAGS.data_dir)
    except data.DataError as e:
        sys.exit(f"mnist_throughput: {e}")
    train_data, test_data = mnist.device_data(images)
    n_test = int(test_data[0].shape[0])

    network = mnist.network(HIDDEN)
    model = network.module
    sizes = [784, *HIDDEN, 10]
    f_step = step_flops(sizes, BATCH)
    f_seed_step = f_step + eval_flops(sizes, n_test) / FLAGS.eval_every
    trainer = trainers.Minibatch("sgd", FLAGS.learning_rate, BATCH, FLAGS.steps, FLAGS.eval_every,
                                 chunk_steps=FLAGS.steps)

    def program(params, masks, keys, train_data, test_data):
        return trainer(network, params, masks, keys, (train_data, test_data))

    square, square_flops = square_matmul()
    a = jnp.full((SQUARE, SQUARE), 1.0, jnp.float32)
    timed(square, a)

    # The training's own matmul shapes, one network: what this machine's dots do at batch 100.
    shapes = shape_reference(BATCH, FLAGS.steps)
    one = models.init_params(model, jax.random.key(0), 784)
    ws = [masks_lib.get(one, layer)["kernel"] for layer in network.layers()]
    timed(shapes, ws, train_data[0])
    shape_runs, square_runs = [], []
    for _ in range(FLAGS.repeats):
        square_runs.append(timed(square, a))
        shape_runs.append(timed(shapes, ws, train_data[0]))
    shape_rate = best_rates(shape_runs, FLAGS.steps * f_step)

    rows = []
    for n in trials_list:
        keys = jax.random.split(jax.random.key(0), n)
        params = jax.vmap(lambda k: models.init_params(model, k, 784))(keys)
        # Half of each kernel pruned, a different mask per network, biases unpruned: the program
        # does the same dense work at any density, and the masks are real inputs, not constants.
        mask_keys = jax.random.split(jax.random.key(1), n)
        ms = {name: {"kernel": jax.vmap(lambda k, w: jax.random.bernoulli(k, 0.5, w.shape))(mask_keys, layer["kernel"]),
                     "bias": jnp.ones(layer["bias"].shape, bool)}
              for name, layer in params.items()}

        compile_s = compile_seconds(program, params, ms, keys, train_data, test_data)  # and a first run
        timed(program, params, ms, keys, train_data, test_data)  # warm-up: first-run allocations
        runs, paired = [], []  # the matmul timed between training runs, under the same load
        for _ in range(FLAGS.repeats):
            paired.append(timed(square, a))
            runs.append(timed(program, params, ms, keys, train_data, test_data))
        square_runs += paired
        seed_steps = n * FLAGS.steps
        rate = best_rates(runs, seed_steps * f_seed_step)
        rows.append({
            "networks": n,
            "steps": FLAGS.steps,
            "compile_s": round(compile_s, 2),
            "best_run_s": round(min(w for w, _ in runs), 4),
            "best_run_cpu_s": round(min(c for _, c in runs), 4),
            "seed_steps_per_s": round(seed_steps / min(w for w, _ in runs), 1),
            "seed_steps_per_cpu_s": round(seed_steps / min(c for _, c in runs), 1),
            "gflops": round(rate["wall"] / 1e9, 2),
            "gflops_per_cpu_s": round(rate["cpu"] / 1e9, 2),
            # Wall-clock against the matmul runs interleaved with this N's (same load); CPU time,
            # which load barely moves, against the best matmul run of the whole benchmark (below).
            "fraction_of_matmul_wall": round(rate["wall"] / best_rates(paired, square_flops)["wall"], 3),
            "fraction_of_training_shape_matmul": round(rate["cpu"] / shape_rate["cpu"], 3),
            "runs_s": [round(w, 3) for w, _ in runs],
        })
        print(f"N={n:3d}: {rows[-1]['seed_steps_per_s']:7.1f} seed-steps/s, {rows[-1]['seed_steps_per_cpu_s']:6.1f} "
              f"per CPU second; compile {compile_s:.1f}s", flush=True)

    square_rate = best_rates(square_runs, square_flops)
    for row in rows:
        row["fraction_of_matmul"] = round(row["gflops_per_cpu_s"] * 1e9 / square_rate["cpu"], 3)
        print(f"N={row['networks']:3d}: {row['gflops_per_cpu_s']:5.1f} GFLOP per CPU second = "
              f"{row['fraction_of_matmul']:.0%} of matmul (wall-clock: {row['fraction_of_matmul_wall']:.0%}; "
              f"of the training's own matmul shapes: {row['fraction_of_training_shape_matmul']:.0%})")
    result = {
        "benchmark": "mnist_throughput",
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "batch": BATCH,
        "eval_every": FLAGS.eval_every,
        "learning_rate": FLAGS.learning_rate,
        "repeats": FLAGS.repeats,
        "flops_per_step": f_step,
        "flops_per_seed_step_with_eval": f_seed_step,
        "matmul_gflops": round(square_rate["wall"] / 1e9, 2),
        "matmul_gflops_per_cpu_s": round(square_rate["cpu"] / 1e9, 2),
        "training_shape_matmul_gflops_per_cpu_s": round(shape_rate["cpu"] / 1e9, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    if FLAGS.paired:
        result["paired_batches"] = paired_measurement(model, train_data, *(int(v) for v in FLAGS.paired))
    print(f"matmul ({SQUARE}^3 float32): {result['matmul_gflops']} GFLOP/s wall-clock, "
          f"{result['matmul_gflops_per_cpu_s']} per CPU s; the training's shapes, one network: "
          f"{result['training_shape_matmul_gflops_per_cpu_s']} per CPU s; load average "
          f"{result['load_average'][0]:.1f} on {os.cpu_count()} cores (shared machine: wall-clock figures are noisy)")
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(out, result)
    print(f"wrote {out}")
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(f"mnist_throughput: unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.steps <= 0 or FLAGS.eval_every <= 0 or FLAGS.steps % FLAGS.eval_every:
        sys.exit("mnist_throughput: --steps must be a positive multiple of --eval_every")
    if FLAGS.repeats <= 0 or not all(t.isdigit() and int(t) > 0 for t in FLAGS.trials):
        sys.exit("mnist_throughput: --repeats and every --trials entry must be positive integers")
    # Importing jax reads no XLA flags; its first computation does: set them before that.
    if not FLAGS.ynn:
        xla_cpu.speed_up_xla_cpu()
    run()


if __name__ == "__main__":
    app.run(main)
