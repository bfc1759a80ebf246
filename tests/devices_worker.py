"""Run by tests/test_devices.py in a fresh process with XLA_FLAGS=--xla_force_host_platform_device_count=4
(set before jax starts): the same XOR lines and MNIST runs on 1, 3 and 4 devices, each in its own
root; prints, as JSON, per run and device count, the largest difference from the 1-device
arrays in units in the last place (0: bit for bit) and whether the metrics are equal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import jax  # noqa: E402
from conftest import synthetic_mnist  # noqa: E402

from lth_jax import devices, mnist, runner, store, xor  # noqa: E402

TINY = dict(mode="iterative", hidden=(16, 8), iterations=200, eval_every=50, lr=0.2, seeds=(0, 1), reinit=1,
            shuffle=1, random=1, min_remaining=70.0, average_over=50, stable_for=50, snapshot_steps=(0, 100))


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype.kind != "f":
        return 0.0 if np.array_equal(a, b) else float("inf")
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    ia, ib = (x.astype(np.float32).view(np.int32).astype(np.int64) for x in (a, b))
    return float(np.max(np.abs(ia - ib)))


def compare(one: Path, many: Path) -> dict:
    worst, same_metrics = 0.0, True
    for name in store.levels(one):
        a, b = store.load_level(one, name), store.load_level(many, name)
        for key in a.arrays:
            worst = max(worst, ulps(a.arrays[key], b.arrays[key]))
        drop = ("seconds", "group", "checksum")
        same_metrics &= {k: v for k, v in a.metrics.items() if k not in drop} == \
            {k: v for k, v in b.metrics.items() if k not in drop}
    return {"ulps": worst, "metrics_equal": bool(same_metrics), "levels": len(store.levels(one))}


def main(out: str) -> None:
    root = Path(out)
    report = {"devices": jax.device_count()}
    s = xor.fitted_chunk(xor.Settings(trials=10, iterations=200, chunk=10))
    xor_paths = {d: xor.run(s, root / f"xor{d}", devices=d) for d in (1, 3, 4)}
    for d in (3, 4):
        report[f"xor/{d}"] = {name: compare(xor_paths[1][name], xor_paths[d][name]) for name in xor_paths[1]}
    data = synthetic_mnist(256, 128)
    late = mnist.Settings(**TINY, rewind_step=100).lottery()  # trains its k = 0 base run first
    paths = {d: runner.run(late, data, root / f"mnist{d}", devices=d) for d in (1, 3, 4)}
    base = {d: runner.run_dir(runner.base_lottery(late), root / f"mnist{d}") for d in (1, 3, 4)}
    for d in (3, 4):
        report[f"mnist_k0/{d}"] = compare(base[1], base[d])
        report[f"mnist_k100/{d}"] = compare(paths[1], paths[d])
    # the trials really are split: one shard per device
    placement = devices.placement(4)
    lt = mnist.Settings(**TINY).lottery()
    params, masks, keys = runner.build_trials(lt, runner.initial_params(lt), jax.tree.map(
        lambda x: np.ones((2, *x.shape), bool), lt.network.shapes()), runner.plan(lt)[0])
    rows = np.arange(4) % keys.shape[0]
    trained, _ = lt.trainer(lt.network, *(jax.tree.map(lambda x: x[rows], t) for t in (params, masks, keys)),
                            placement.replicate(data), placement=placement)
    leaf = jax.tree.leaves(trained)[0]
    report["shards"] = sorted(d.id for d in leaf.sharding.device_set)
    report["shard_rows"] = sorted({s.data.shape[0] for s in leaf.addressable_shards})
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
