"""Several processes (jax.distributed): two processes on localhost, 2 CPU devices each, run one
lottery on all 4 devices, each process training whole chunks on its own devices and sharing
them with JAX's CPU collectives; only process 0 writes; the stored run equals the same run in
one process on one device, and after one process is killed mid-run, restarting both resumes it
to the same numbers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_mnist
from distributed_worker import BUDGET_MB, TINY

from lth_jax import runner, store
from lth_jax.reproduction import mnist

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(root: Path, port: int, pid: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {os.environ.get('XLA_FLAGS', '')}"}
    return subprocess.Popen([sys.executable, str(WORKER), str(root), str(port), str(pid), *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _both(root: Path, *extra: str, timeout: float = 600) -> list[tuple[int, str, str]]:
    port = _port()
    procs = [_start(root, port, pid, *extra) for pid in (0, 1)]
    out = []
    try:
        for p in procs:
            so, se = p.communicate(timeout=timeout)
            out.append((p.returncode, so, se))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    return out


def _arrays(path: Path) -> dict[str, dict[str, np.ndarray]]:
    return {name: store.load_level(path, name).arrays for name in store.levels(path)}


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    root = tmp_path_factory.mktemp("alone")
    return runner.run(mnist.Settings(**TINY).lottery(), synthetic_mnist(256, 128), root, memory_budget_mb=BUDGET_MB)


def test_two_processes_store_what_one_process_stores(tmp_path, alone):
    results = _both(tmp_path)
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    assert all("done" in r[1] for r in results)
    assert all("trained 0" not in r[1] for r in results)  # both processes trained chunks
    path = runner.run_dir(mnist.Settings(**TINY).lottery(), tmp_path)
    ours, ref = _arrays(path), _arrays(alone)
    assert ours.keys() == ref.keys() and len(ref) >= 3
    for name in ref:
        for key in ref[name]:
            np.testing.assert_array_equal(ours[name][key], ref[name][key], err_msg=f"{name}/{key}")
    assert not [f for f in tmp_path.rglob("*.tmp")]  # one writer: no half-written files from a second


def test_a_run_killed_in_one_process_resumes_when_both_restart(tmp_path, alone):
    port = _port()
    procs = [_start(tmp_path, port, pid, "0") for pid in (0, 1)]  # process 1 dies after level 0 is stored
    try:
        procs[1].wait(timeout=600)
        assert procs[1].returncode == 3, procs[1].stderr.read()[-2000:]
        time.sleep(1)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # process 0 waits for its partner forever: kill it too
            p.wait()
    path = runner.run_dir(mnist.Settings(**TINY).lottery(), tmp_path)
    first = store.levels(path)
    assert "r00" in first and len(first) < len(store.levels(alone))
    results = _both(tmp_path)
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    ours, ref = _arrays(path), _arrays(alone)
    assert ours.keys() == ref.keys()
    for name in ref:
        for key in ref[name]:
            np.testing.assert_array_equal(ours[name][key], ref[name][key], err_msg=f"{name}/{key}")


def test_when_process_0_cannot_write_every_process_stops_instead_of_waiting(tmp_path):
    results = _both(tmp_path, "fail_write", timeout=300)  # a hang would end in the timeout
    (rc0, _, err0), (rc1, _, err1) = results
    assert rc0 != 0 and "No space left on device" in err0
    assert rc1 != 0 and "process 0 could not write" in err1
    path = runner.run_dir(mnist.Settings(**TINY).lottery(), tmp_path)
    assert store.levels(path) == ["init", "r00"]  # what was written before the failure stays
