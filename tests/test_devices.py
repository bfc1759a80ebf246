"""The trial axis split across devices (issue 10): a run on several devices stores exactly what
the same run on one device stores, for trial counts that do and do not divide the device count.

The device count of a process is fixed when jax starts, so the comparison runs in a fresh
process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (tests/devices_worker.py):
the XOR lines (10 trials a level) and a late-rewound MNIST run with all three controls (8
trials a level) and its k = 0 base, each on 1, 3 and 4 of the 4 CPU devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_mnist

from lth_jax import devices, mnist, programs, runner, store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count=4 {os.environ.get('XLA_FLAGS', '')}",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "devices_worker.py"),
                           str(tmp_path_factory.mktemp("devices"))], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_worker_saw_four_devices_and_split_the_trials_one_shard_per_device(report):
    assert report["devices"] == 4
    assert len(report["shards"]) == 4 and report["shard_rows"] == [1]


@pytest.mark.parametrize("count", ["3", "4"])
def test_xor_lines_on_several_devices_equal_one_device_bit_for_bit(report, count):
    lines = report[f"xor/{count}"]
    assert len(lines) == 9  # Figure 1's five widths and Figure 2's four strategies
    for name, cmp in lines.items():
        assert cmp == {**cmp, "ulps": 0.0, "metrics_equal": True}, name


@pytest.mark.parametrize("count", ["3", "4"])
@pytest.mark.parametrize("run", ["mnist_k0", "mnist_k100"])
def test_mnist_runs_on_several_devices_equal_one_device_bit_for_bit(report, run, count):
    """LeNet-shaped nets: every stored array (masks, trained weights, curves, snapshots) and every
    metric equal; 8 trials split 3 ways are padded to 9 and the padding dropped (the k = 0 base
    run holds the initial weights and the originals with their snapshots)."""
    cmp = report[f"{run}/{count}"]
    assert cmp["levels"] >= (2 if run == "mnist_k0" else 4)  # the base holds init and the originals
    assert cmp["ulps"] == 0.0 and cmp["metrics_equal"]


def test_a_placement_pads_to_whole_shards_and_refuses_what_the_machine_lacks():
    one = devices.placement()
    assert one.count == len(one.devices) >= 1
    assert [one.padded(n) for n in (1, 2, 3)] == [one.count * -(-n // one.count) for n in (1, 2, 3)]
    with pytest.raises(ValueError, match="devices"):
        devices.placement(one.count + 1)
    with pytest.raises(ValueError, match="devices"):
        devices.placement(0)


def test_chunks_are_whole_multiples_of_the_devices():
    for n, per, mult in ((8, 100, 3), (10, 4, 4), (5, 1, 2), (7, 7, 1)):
        pieces = programs.chunks(n, per, mult)
        assert all(p.size % mult == 0 for p in pieces) and len({p.size for p in pieces}) == 1
        assert sorted(set(np.concatenate(pieces).tolist())) == list(range(n))


def test_one_device_runs_the_programs_of_before(tmp_path):
    """devices=1 (or a one-device machine) changes nothing: no placement, the old programs."""
    s = mnist.Settings(mode="oneshot", hidden=(8,), iterations=100, eval_every=50, seeds=(0,), reinit=0, shuffle=0,
                       levels=(100, 50), average_over=50, stable_for=50)
    data = synthetic_mnist(64, 32)
    a = runner.run(s.lottery(), data, tmp_path / "a", devices=1)
    b = runner.run(s.lottery(), data, tmp_path / "b")
    for name in store.levels(a):
        x, y = store.load_level(a, name), store.load_level(b, name)
        assert x.arrays.keys() == y.arrays.keys()
        assert all(np.array_equal(x.arrays[k], y.arrays[k], equal_nan=True) for k in x.arrays)
