"""Several devices store exactly what one device stores: every array and every metric but the
wall-clock seconds, bit for bit, on 1, 2, 3 and 4 devices, for trial and chunk counts that do
not divide the device count (lth_jax.devices: every device trains whole one-device chunks).

The device count of a process is fixed when jax starts, so the runs go in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (tests/devices_worker.py): one-shot
LeNet-300-100 with controls (6 trials a level, 3 chunks of 2) on 2 and 4 devices; iterative
LeNet-300-100 with all three controls (7 trials, 4 chunks of 2) on 3; a small iterative net,
late-rewound and stopping at convergence (7 trials, 2 chunks of 4, and its k = 0 base run) on 3;
programs of one chunk (4 trials) on 3; the XOR lines (7 trials a setting: 35 originals in 5 chunks of 7,
and in one chunk) on 2, 3 and 4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import synthetic_mnist

from lth_jax import devices, programs, runner, store
from lth_jax.reproduction import mnist

ROOT = Path(__file__).resolve().parents[1]

MNIST = {"oneshot_lenet": (2, 4), "iterative_lenet": (3,), "iterative": (3,), "iterative_one_chunk": (3,)}
XOR = {"xor": (2, 3, 4), "xor_one_chunk": (3,)}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count=4 {os.environ.get('XLA_FLAGS', '')}",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "devices_worker.py"),
                           str(tmp_path_factory.mktemp("devices"))], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("run", "count"), [(run, c) for run, counts in MNIST.items() for c in counts])
def test_mnist_runs_on_several_devices_equal_one_device_bit_for_bit(report, run, count):
    """Masks, trained weights, curves, snapshots, stop steps: every stored array and metric equal
    (the metrics' ``group`` too: the same chunks whatever the devices)."""
    cmp = report[f"{run}/{count}"]
    assert cmp["levels"] >= 3  # init and at least two levels
    assert cmp == {**cmp, "ulps": 0.0, "metrics_equal": True}
    if run == "iterative":  # the late-rewound run's k = 0 base (init and the originals with their snapshots)
        assert report[f"{run}_base/{count}"] == {"ulps": 0.0, "metrics_equal": True, "levels": 2}
        assert report[f"{run}/stopped_early"] > 0  # the stopping (and narrowing) ran inside the chunks


@pytest.mark.parametrize(("run", "count"), [(run, c) for run, counts in XOR.items() for c in counts])
def test_xor_lines_on_several_devices_equal_one_device_bit_for_bit(report, run, count):
    lines = report[f"{run}/{count}"]
    assert len(lines) == 9  # Figure 1's five widths and Figure 2's four strategies
    for name, cmp in lines.items():
        assert cmp == {**cmp, "ulps": 0.0, "metrics_equal": True}, name


@pytest.mark.parametrize("run", [*MNIST, *XOR])
def test_the_chunks_do_not_depend_on_the_devices_and_each_device_trains_whole_ones(report, run):
    """One device trains without a placement, as always (-1); on d devices the same chunks go to
    min(d, chunks) devices, all of them working when there are enough chunks; a program of one
    chunk trains on one device."""
    counts = (1, *(MNIST.get(run) or XOR[run]))
    chunks = {report[f"{run}/chunks/{d}"] for d in counts}
    assert len(chunks) == 1
    (n,) = chunks
    assert (n == 1) == run.endswith("one_chunk")
    assert report[f"{run}/used/1"] == [-1]
    for d in counts[1:]:
        assert report[f"{run}/used/{d}"] == list(range(min(d, n)))


def test_the_trainer_still_splits_a_programs_trials_across_a_placement_it_is_given(report):
    assert report["devices"] == 4
    assert report["shards"] == [0, 1, 2, 3] and report["shard_rows"] == [1]


def test_a_placement_pads_to_whole_shards_and_refuses_what_the_machine_lacks():
    one = devices.placement()
    assert one.count == len(one.devices) >= 1
    assert [one.padded(n) for n in (1, 2, 3)] == [one.count * -(-n // one.count) for n in (1, 2, 3)]
    with pytest.raises(ValueError, match="devices"):
        devices.placement(one.count + 1)
    with pytest.raises(ValueError, match="devices"):
        devices.placement(0)


def test_chunks_are_equal_budgeted_cuts_that_do_not_depend_on_the_devices():
    """The one-device cut: equal sizes of at most ``per`` rows, every row once, the last chunk
    padded by repeating its own first row; a program cuts the same chunks with or without a
    placement."""
    for n, per in ((8, 100), (10, 4), (5, 1), (7, 7), (7, 2), (6, 0)):
        pieces = programs.chunks(n, per)
        size = pieces[0].size
        assert len({p.size for p in pieces}) == 1 and size <= max(1, per)
        assert np.array_equal(np.unique(np.concatenate(pieces)), np.arange(n))
        assert sum(np.unique(p).size for p in pieces) == n  # no row in two chunks
        last = pieces[-1]
        assert np.all(last[np.unique(last).size:] == last[0])
    assert [p.tolist() for p in programs.chunks(7, 3)] == [[0, 1, 2], [3, 4, 5], [6, 6, 6]]

    lt = mnist.Settings(mode="oneshot", hidden=(8,), iterations=100, eval_every=50, seeds=(0, 1, 2), reinit=1,
                        shuffle=1, levels=(100,), average_over=50, stable_for=50).lottery()
    masks = jax.tree.map(lambda x: np.ones((3, *x.shape), bool), lt.network.shapes())
    params, masks, keys = runner.build_trials(lt, runner.initial_params(lt), masks, runner.plan(lt)[0])
    trials = programs.Trials(params, masks, keys)
    budget = 2 * lt.trainer.trial_bytes(lt.network)
    alone = programs.Program(lt.trainer, lt.network, trials, budget).pieces
    spread = programs.Program(lt.trainer, lt.network, trials, budget,
                              devices.Placement(tuple(devices.placement().devices) * 4)).pieces
    assert len(alone) == 5 and [p.tolist() for p in alone] == [p.tolist() for p in spread]


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
