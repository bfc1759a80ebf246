"""Run by tests/test_devices.py in a fresh process with XLA_FLAGS=--xla_force_host_platform_device_count=4
(set before jax starts): the same MNIST runs and XOR lines on 1, 2, 3 and 4 devices, each in its
own root; prints, as JSON, per run and device count, the largest difference from the 1-device
arrays in units in the last place (0: bit for bit), whether the metrics are equal (all but the
wall-clock seconds), the chunks of the programs and the devices that trained them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import jax  # noqa: E402
from conftest import synthetic_mnist  # noqa: E402

from lth_jax import datasets, devices, programs, runner, store  # noqa: E402
from lth_jax.reproduction import mnist, xor  # noqa: E402

LENET = 20.35  # MB a LeNet-300-100 trial is estimated to need (Minibatch.trial_bytes): 41 MB holds 2
# 6 trials a level (2 tickets, a reinit and a shuffled copy each), one-shot, LeNet-300-100
ONESHOT = dict(mode="oneshot", hidden=(300, 100), iterations=20, eval_every=10, seeds=(0, 1), reinit=1, shuffle=1,
               levels=(100, 25), average_over=10, stable_for=10)
# 7 trials a level (a ticket, 2 copies of each control), iterative, late rewinding, stopping at convergence
ITERATIVE = dict(mode="iterative", hidden=(16, 8), iterations=40, eval_every=10, lr=0.2, seeds=(0,), reinit=2,
                 shuffle=2, random=2, min_remaining=85.0, average_over=10, stable_for=10, snapshot_steps=(0, 10),
                 rewind_step=10, stop_at_convergence=True, stop_every=10, tolerance=0.05)
# 7 trials a level, iterative, LeNet-300-100
ITERATIVE_LENET = dict(mode="iterative", hidden=(300, 100), iterations=20, eval_every=10, seeds=(0,), reinit=2,
                       shuffle=2, random=2, min_remaining=85.0, average_over=10, stable_for=10)
# 4 trials a level (a ticket and one copy of each control), iterative: one chunk at the default budget
ONE_CHUNK = {**ITERATIVE, "reinit": 1, "shuffle": 1, "random": 1, "rewind_step": 0, "stop_at_convergence": False}


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.kind != "f":
        return 0.0 if np.array_equal(a, b) else float("inf")
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    ia, ib = (x.astype(np.float32).view(np.int32).astype(np.int64) for x in (a, b))
    return float(np.max(np.abs(ia - ib)))


def compare(one: Path, many: Path) -> dict:
    """Every stored array and every metric but the wall clock (``seconds``, and the metrics'
    checksum, which covers them) of run ``many`` against run ``one``."""
    worst, same_metrics = 0.0, store.levels(one) == store.levels(many)
    for name in store.levels(one):
        a, b = store.load_level(one, name), store.load_level(many, name)
        same_metrics &= a.arrays.keys() == b.arrays.keys()
        for key in a.arrays:
            worst = max(worst, ulps(a.arrays[key], b.arrays[key]) if key in b.arrays else float("inf"))
        drop = ("seconds", "checksum")
        same_metrics &= {k: v for k, v in a.metrics.items() if k not in drop} == \
            {k: v for k, v in b.metrics.items() if k not in drop}
    return {"ulps": worst, "metrics_equal": bool(same_metrics), "levels": len(store.levels(one))}


TRAINED: list[tuple[int, int]] = []  # (chunks of the program, device id or -1 without a placement)


def _watch() -> None:
    train = programs.Program._train

    def watched(self, c, data, steps, how, device=None):
        TRAINED.append((len(self.pieces), -1 if device is None else device.id))
        return train(self, c, data, steps, how, device)

    programs.Program._train = watched


def on_counts(report: dict, name: str, counts: tuple[int, ...], train) -> dict[int, object]:
    """``train(root, devices)`` on each device count; what each trained where goes in the report."""
    out = {}
    for d in counts:
        TRAINED.clear()
        t0 = time.perf_counter()
        out[d] = train(Path(sys.argv[1]) / f"{name}{d}", d)
        report[f"{name}/seconds/{d}"] = round(time.perf_counter() - t0, 2)
        report[f"{name}/chunks/{d}"] = max(c for c, _ in TRAINED)
        report[f"{name}/used/{d}"] = sorted({dev for _, dev in TRAINED})
    return out


def mnist_case(report: dict, name: str, counts: tuple[int, ...], settings: dict, data, budget: float | None) -> None:
    lt = mnist.Settings(**settings).lottery()
    paths = on_counts(report, name, counts, lambda root, d: runner.run(lt, data, root, devices=d,
                                                                       memory_budget_mb=budget))
    stops = [store.load_level(paths[1], n).arrays.get("curves/stop_step") for n in store.levels(paths[1])]
    report[f"{name}/stopped_early"] = int(sum((s < lt.trainer.iterations).sum() for s in stops if s is not None))
    for d in counts[1:]:
        report[f"{name}/{d}"] = compare(paths[1], paths[d])
        if lt.procedure.rewind_step:  # its k = 0 base run, trained first in the same root
            base = [runner.run_dir(runner.base_lottery(lt), paths[c].parent) for c in (1, d)]
            report[f"{name}_base/{d}"] = compare(*base)


def xor_case(report: dict, name: str, counts: tuple[int, ...], per_chunk: int | None) -> None:
    """The XOR lines, 7 trials a setting (35 originals), in chunks of ``per_chunk`` trials (None: one)."""
    s = xor.Settings(trials=7, iterations=200, chunk=7)
    lines = xor.lotteries(s)
    first = next(iter(lines.values()))
    budget = None if per_chunk is None else per_chunk * first.trainer.trial_bytes(first.network) / 2**20
    paths = on_counts(report, name, counts, lambda root, d: dict(zip(lines, runner.run_groups(
        list(lines.values()), datasets.xor_points(), root, devices=d, memory_budget_mb=budget), strict=True)))
    for d in counts[1:]:
        report[f"{name}/{d}"] = {line: compare(paths[1][line], paths[d][line]) for line in lines}


def main() -> None:
    report = {"devices": jax.device_count()}
    _watch()
    data = synthetic_mnist(256, 128)
    # Each case on 1 device and on counts that do not divide its trials or its chunks (chunk widths
    # shared between cases, so that they share compiled programs: the worker is mostly compiling).
    mnist_case(report, "oneshot_lenet", (1, 2, 4), ONESHOT, data, 2 * LENET)  # 3 chunks of 2
    mnist_case(report, "iterative_lenet", (1, 3), ITERATIVE_LENET, data, 2 * LENET)  # 4 chunks of 2, one padded
    mnist_case(report, "iterative", (1, 3), ITERATIVE, data, 7.0)  # 2 chunks of 4, one padded (1.6 MB a trial)
    mnist_case(report, "iterative_one_chunk", (1, 3), ONE_CHUNK, data, None)  # one chunk of 4
    xor_case(report, "xor", (1, 2, 3, 4), 7)  # the 35 originals in 5 chunks of 7
    xor_case(report, "xor_one_chunk", (1, 3), None)
    # The trainer's own placement (benchmarks/scaling.py) still splits one program's trials:
    # one shard per device.
    placement = devices.placement(4)
    lt = mnist.Settings(**ONE_CHUNK).lottery()
    params, masks, keys = runner.build_trials(lt, runner.initial_params(lt), jax.tree.map(
        lambda x: np.ones((1, *x.shape), bool), lt.network.shapes()), runner.plan(lt)[0])
    rows = np.arange(4) % keys.shape[0]
    trained, _ = lt.trainer(lt.network, *(jax.tree.map(lambda x: x[rows], t) for t in (params, masks, keys)),
                            placement.replicate(data), placement=placement)
    leaf = jax.tree.leaves(trained)[0]
    report["shards"] = sorted(d.id for d in leaf.sharding.device_set)
    report["shard_rows"] = sorted({s.data.shape[0] for s in leaf.addressable_shards})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
