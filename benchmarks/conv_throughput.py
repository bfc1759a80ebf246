"""Conv-net training throughput: seed-steps per second of the stock trainer's layouts against PyTorch.

    python -m benchmarks.conv_throughput --out=benchmarks/conv_throughput.json

A Conv-2-like net (two 3x3 convolutions of 8 filters, 2x2 max pooling, dense 32,
dense 10; 32x32x3 inputs), ``--seeds`` networks, Adam 1e-3, batches of 60, half of every
kernel masked (masks on gradients and weights; each row checks the masked weights are exactly
0 afterwards). ``shared`` rows give every seed the same batch at each step (seeds that share
their batches, or a ticket and its controls with ``--paired_batches``); ``own`` rows one per seed.

JAX rows go through the runner's trainer (``lth_jax.trainers.Minibatch``, one ``--steps``
training after a compiling one, a test evaluation of 60 images every 50 steps) with each
``conv_layout``, plus one jitted vmapped step called from a Python loop (the plain-JAX
baseline). PyTorch rows (when torch is installed): the loop over seeds a user would write, and
``torch.func.vmap`` over stacked parameters; both with the same masks and Adam. Everything runs
in one process back to back; run it on an idle machine (PyTorch's OpenMP threads collapse when
the cores are shared). XLA's YNN fusions are switched off as the drivers do (``--ynn`` keeps them).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 5, "networks trained together")
flags.DEFINE_integer("steps", 100, "timed steps per row (a multiple of 50)")
flags.DEFINE_integer("batch", 60, "examples a step")
flags.DEFINE_list("layouts", ["vmap", "grouped", "unrolled"], "the trainer's conv layouts to measure")
flags.DEFINE_integer("repeats", 2, "timed runs per row; the best counts (the machine may be shared)")
flags.DEFINE_bool("torch", True, "measure the PyTorch peers when torch is installed")
flags.DEFINE_bool("ynn", False, "keep XLA's YNN fusions (the drivers switch them off on the CPU)")
flags.DEFINE_list("zoo", ["conv2", "resnet20"], "lth_jax.zoo models measured at CIFAR shapes (32x32x3, 10 classes) "
                  "through the trainer and, with torch, the PyTorch loop over seeds; empty: none")
flags.DEFINE_integer("zoo_steps", 50, "timed steps per zoo row (a multiple of 50)")
flags.DEFINE_string("out", "benchmarks/conv_throughput.json", "JSON rows written here")

EXAMPLES, CLASSES, EVAL_EVERY = 2000, 10, 50


def best_seconds(run: Any, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``run()`` (the machine may be shared)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def jax_rows(seeds: int, steps: int, batch: int, layouts: list[str], repeats: int) -> list[dict[str, Any]]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from lth_jax import conv, runner, trainers
    from lth_jax import masks as masks_lib
    from lth_jax.trainers import step as train_step

    class Conv2Like(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(8, (3, 3))(x))
            x = nn.relu(nn.Conv(8, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
            x = nn.relu(nn.Dense(32)(x.reshape((x.shape[0], -1))))
            return nn.Dense(CLASSES)(x)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((EXAMPLES, 32, 32, 3), np.float32))
    y = jnp.asarray(rng.integers(0, CLASSES, EXAMPLES).astype(np.int32))
    data = ((x, y), (x[:60], y[:60]))
    net = runner.Network(Conv2Like(), (32, 32, 3))
    params = jax.vmap(net.init)(jax.random.split(jax.random.key(0), seeds))
    half = jax.tree.map(lambda p: jnp.broadcast_to(jnp.arange(p[0].size).reshape(p[0].shape) % 2 == 0, p.shape)
                        if p.ndim > 2 else jnp.ones(p.shape, bool), params)  # every other kernel entry
    keys = {"shared": jnp.stack([jax.random.key(7)] * seeds), "own": jax.random.split(jax.random.key(7), seeds)}
    rows = []

    def exact(trained) -> bool:
        return all(bool(jnp.all(jnp.where(m, 0.0, p) == 0)) for p, m in
                   zip(jax.tree.leaves(trained), jax.tree.leaves(half), strict=True))

    for layout in layouts:
        trainer = trainers.Minibatch("adam", 1e-3, batch, steps, EVAL_EVERY, conv_layout=layout)
        for batches, k in keys.items():
            trainer(net, params, half, k, data)  # compiles
            out = []
            rate = seeds * steps / best_seconds(lambda trainer=trainer, k=k, out=out: out.append(
                jax.block_until_ready(trainer(net, params, half, k, data)[0])), repeats)
            trained = out[-1]
            rows.append(dict(model="conv2-like", seeds=seeds, variant=f"lth_jax trainer, conv_layout={layout}",
                             batches=batches, seed_steps_per_s=round(rate, 1), masks_exact=exact(trained)))
            print(f"{rows[-1]['variant']:42s} {batches:6s} {rate:7.1f} seed-steps/s", flush=True)

    opt = optax.adam(1e-3)
    for name, fast in (("vmap", None), ("unrolled", "unrolled")):
        def loss(p, xb, yb, fast=fast):
            apply = (lambda q, v: net.module.apply({"params": q}, v)) if fast is None else \
                conv.rewrite(lambda q, v: net.module.apply({"params": q}, v), fast)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, xb), yb))

        def one(p, s, m, xb, yb, loss=loss):
            g = jax.grad(loss)(p, xb, yb)
            return train_step._masked_update(opt, g, s, p, m)

        @jax.jit
        def step(p, s, t, one=one):
            idx = jax.random.randint(jax.random.fold_in(jax.random.key(7), t), (batch,), 0, EXAMPLES)
            return jax.vmap(one, in_axes=(0, 0, 0, None, None))(p, s, half, x[idx], y[idx])

        p, s = masks_lib.apply(params, half), jax.vmap(opt.init)(params)
        jax.block_until_ready(step(p, s, 0))
        state = [p, s]

        def run(step=step, state=state):
            for t in range(steps):
                state[:] = step(*state, t)
            jax.block_until_ready(state[0])

        rate = seeds * steps / best_seconds(run, repeats)
        p = state[0]
        rows.append(dict(model="conv2-like", seeds=seeds, variant=f"JAX, one jitted step a call ({name})",
                         batches="shared", seed_steps_per_s=round(rate, 1), masks_exact=exact(p)))
        print(f"{rows[-1]['variant']:42s} shared {rate:7.1f} seed-steps/s", flush=True)
    return rows


def torch_loop_step(t: int, nets: list, masks: list, opts: list, x: Any, y: Any, batch: int, shared: bool) -> None:
    """Step ``t`` of the PyTorch loop over seeds a user would write: every net its Adam step on the
    batch of step ``t`` (one batch for all when ``shared``), masks on gradients and weights."""
    import torch

    gen = torch.Generator().manual_seed(t)
    common = torch.randint(0, EXAMPLES, (batch,), generator=gen)
    for m, mk, o in zip(nets, masks, opts, strict=True):
        idx = common if shared else torch.randint(0, EXAMPLES, (batch,), generator=gen)
        o.zero_grad()
        torch.nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
        with torch.no_grad():
            for p, q in zip(m.parameters(), mk, strict=True):
                p.grad.mul_(q)
        o.step()
        with torch.no_grad():
            for p, q in zip(m.parameters(), mk, strict=True):
                p.mul_(q)


def zoo_rows(models: list[str], seeds: int, steps: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    """The zoo's models at CIFAR shapes through the stock trainer (Adam, half of every kernel masked,
    ``seeds`` trials sharing their batches and drawing their own), and the PyTorch loop over seeds."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lth_jax import runner, trainers, zoo

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((EXAMPLES, 32, 32, 3), np.float32))
    y = jnp.asarray(rng.integers(0, CLASSES, EXAMPLES).astype(np.int32))
    rows = []
    for name in models:
        net = runner.Network(zoo.get(name), (32, 32, 3))
        params = jax.vmap(net.init)(jax.random.split(jax.random.key(0), seeds))
        state = jax.vmap(net.init_state)(jax.random.split(jax.random.key(0), seeds)) if net.stateful else None
        half = jax.tree.map(lambda p: jnp.broadcast_to(jnp.arange(p[0].size).reshape(p[0].shape) % 2 == 0, p.shape)
                            if p.ndim > 2 else jnp.ones(p.shape, bool), params)
        trainer = trainers.Minibatch("adam", 1e-3, batch, steps, EVAL_EVERY)
        for batches, keys in (("shared", jnp.stack([jax.random.key(7)] * seeds)),
                              ("own", jax.random.split(jax.random.key(7), seeds))):
            extra = {"model_state": state} if state is not None else {}
            trainer(net, params, half, keys, ((x, y), (x[:60], y[:60])), **extra)  # compiles
            rate = seeds * steps / best_seconds(lambda keys=keys, extra=extra, trainer=trainer, net=net, params=params,
                                                half=half: jax.block_until_ready(trainer(
                                                    net, params, half, keys, ((x, y), (x[:60], y[:60])), **extra)[0]),
                                                repeats)
            rows.append(dict(model=name, seeds=seeds, variant=f"lth_jax trainer ({trainer.layout(net)})",
                             batches=batches, seed_steps_per_s=round(rate, 1)))
            print(f"{name:9s} {rows[-1]['variant']:33s} {batches:6s} {rate:7.1f} seed-steps/s", flush=True)
    return rows


def torch_zoo_rows(models: list[str], seeds: int, steps: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    """The same models in PyTorch (NCHW, BatchNorm in training mode), the loop over seeds a user
    would write, masks on gradients and weights."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return []
    import numpy as np

    def conv2() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 16 * 16, 256), nn.ReLU(),
                             nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, CLASSES))

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                   nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())

        def forward(self, v):
            return torch.relu(self.a(v) + self.short(v))

    def resnet20() -> nn.Module:
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        cin = 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(3):
                layers.append(Block(cin, width, 2 if i and not j else 1))
                cin = width
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES))

    makers = {"conv2": conv2, "resnet20": resnet20}
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((EXAMPLES, 3, 32, 32), np.float32))
    y = torch.from_numpy(rng.integers(0, CLASSES, EXAMPLES).astype(np.int64))
    rows: list[dict[str, Any]] = []
    for name in [m for m in models if m in makers]:
        for batches in ("shared", "own"):
            nets = [makers[name]() for _ in range(seeds)]
            masks = [[(torch.arange(p.numel()).reshape(p.shape) % 2 == 0).float() if p.dim() > 1
                      else torch.ones_like(p) for p in m.parameters()] for m in nets]
            opts = [torch.optim.Adam(m.parameters(), 1e-3) for m in nets]

            def step(t, nets=nets, masks=masks, opts=opts, batches=batches):
                torch_loop_step(t, nets, masks, opts, x, y, batch, batches == "shared")

            step(0)
            rate = seeds * steps / best_seconds(lambda step=step: [step(t) for t in range(steps)], repeats)
            rows.append(dict(model=name, seeds=seeds, variant=f"PyTorch {torch.__version__}, loop over seeds",
                             batches=batches, seed_steps_per_s=round(rate, 1), threads=torch.get_num_threads()))
            print(f"{name:9s} {rows[-1]['variant']:33s} {batches:6s} {rate:7.1f} seed-steps/s", flush=True)
    return rows


def torch_rows(seeds: int, steps: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    try:
        import torch
        from torch import nn
    except ImportError:
        print("PyTorch is not installed: no PyTorch rows")
        return []
    import numpy as np

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((EXAMPLES, 3, 32, 32), np.float32))
    y = torch.from_numpy(rng.integers(0, CLASSES, EXAMPLES).astype(np.int64))

    def make():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16 * 16, 32), nn.ReLU(),
                             nn.Linear(32, CLASSES))

    def mask_of(p):
        return (torch.arange(p.numel()).reshape(p.shape) % 2 == 0).float() if p.dim() > 1 else torch.ones_like(p)

    loss_fn = nn.CrossEntropyLoss()
    rows = []
    for batches in ("shared", "own"):
        models = [make() for _ in range(seeds)]
        masks = [[mask_of(p) for p in m.parameters()] for m in models]
        opts = [torch.optim.Adam(m.parameters(), 1e-3) for m in models]

        def step(t, models=models, masks=masks, opts=opts, batches=batches):
            torch_loop_step(t, models, masks, opts, x, y, batch, batches == "shared")

        step(0)
        rate = seeds * steps / best_seconds(lambda step=step: [step(t) for t in range(steps)], repeats)
        rows.append(dict(model="conv2-like", seeds=seeds, variant=f"PyTorch {torch.__version__}, loop over seeds",
                         batches=batches, seed_steps_per_s=round(rate, 1), threads=torch.get_num_threads()))
        print(f"{rows[-1]['variant']:42s} {batches:6s} {rate:7.1f} seed-steps/s", flush=True)

    from torch.func import functional_call, grad, stack_module_state, vmap
    base = make()
    models = [make() for _ in range(seeds)]
    params, _ = stack_module_state(models)
    masks = {k: torch.stack([mask_of(v[0])] * seeds) for k, v in params.items()}
    params = {k: (v * masks[k]).detach().requires_grad_() for k, v in params.items()}
    opt = torch.optim.Adam(list(params.values()), 1e-3)

    def loss_of(p, xb, yb):
        return loss_fn(functional_call(base, p, (xb,)), yb)

    batched = vmap(grad(loss_of), in_dims=(0, None, None))

    def vstep(t):
        idx = torch.randint(0, EXAMPLES, (batch,), generator=torch.Generator().manual_seed(t))
        grads = batched(params, x[idx], y[idx])
        for k, v in params.items():
            v.grad = grads[k] * masks[k]
        opt.step()
        with torch.no_grad():
            for k, v in params.items():
                v.mul_(masks[k])

    vstep(0)
    rate = seeds * steps / best_seconds(lambda: [vstep(t) for t in range(steps)], repeats)
    rows.append(dict(model="conv2-like", seeds=seeds,
                     variant=f"PyTorch {torch.__version__}, torch.func.vmap over seeds",
                     batches="shared", seed_steps_per_s=round(rate, 1), threads=torch.get_num_threads()))
    print(f"{rows[-1]['variant']:42s} shared {rate:7.1f} seed-steps/s", flush=True)
    return rows


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.steps < EVAL_EVERY or FLAGS.steps % EVAL_EVERY:
        sys.exit(f"--steps must be a positive multiple of {EVAL_EVERY}, not {FLAGS.steps}")
    if not FLAGS.ynn:
        from experiments import xla_cpu

        xla_cpu.speed_up_xla_cpu()
    import jax

    from lth_jax import store

    if FLAGS.zoo_steps < EVAL_EVERY or FLAGS.zoo_steps % EVAL_EVERY:
        sys.exit(f"--zoo_steps must be a positive multiple of {EVAL_EVERY}, not {FLAGS.zoo_steps}")
    rows = jax_rows(FLAGS.seeds, FLAGS.steps, FLAGS.batch, FLAGS.layouts, FLAGS.repeats)
    if FLAGS.torch:
        rows += torch_rows(FLAGS.seeds, FLAGS.steps, FLAGS.batch, FLAGS.repeats)
    rows += zoo_rows(FLAGS.zoo, FLAGS.seeds, FLAGS.zoo_steps, FLAGS.batch, FLAGS.repeats)
    if FLAGS.torch:
        rows += torch_zoo_rows(FLAGS.zoo, FLAGS.seeds, FLAGS.zoo_steps, FLAGS.batch, FLAGS.repeats)
    machine = dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                   backend=jax.default_backend(), jax=jax.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""))
    store.write_json(FLAGS.out, {"machine": machine, "repeats": FLAGS.repeats, "rows": rows})
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
