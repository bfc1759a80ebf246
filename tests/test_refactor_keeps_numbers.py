"""A refactor keeps the numbers: today's runner reproduces, bit for bit, the stored outputs
recorded before the framework refactor (tests/golden/digests.json, made by the code of the
reproduction: lth_jax.experiment, experiments.studies.run_groups, experiments.xor_sweep).

The digests hash every stored array and every stored metric except wall-clock, device,
checksum and grouping entries. XLA's CPU code can differ in the last bits between processor
families, so the comparison runs on the processor the digests were recorded on and is
skipped, with that reason, elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from lth_jax import data, runner, store
from lth_jax.reproduction import mnist, xor
from tests.golden import tiny
from tests.golden.digest import digest_run

GOLDEN = json.loads((Path(__file__).parent / "golden" / "digests.json").read_text())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


pytestmark = pytest.mark.skipif(_cpu_model() != GOLDEN["cpu"],
                                reason=f"digests were recorded on {GOLDEN['cpu']!r}, this is {_cpu_model()!r}")
REAL_DIR = os.environ.get(data.MNIST_DIR_ENV)
needs_mnist = pytest.mark.skipif(not REAL_DIR, reason=f"set {data.MNIST_DIR_ENV} to the four MNIST .gz files")


@pytest.fixture(scope="module")
def mnist_data():
    return mnist.device_data(data.mnist(REAL_DIR))


@needs_mnist
@pytest.mark.parametrize("mode", ["oneshot", "iterative", "han"])
def test_mnist_runs_store_exactly_what_the_reproduction_stored(mode, mnist_data, tmp_path):
    settings = mnist.Settings(**tiny.RUNS[mode])
    want = GOLDEN[f"mnist/{mode}"]
    assert mnist.run_dir(settings, tmp_path).name.endswith(store.settings_hash(want["settings"]))
    assert digest_run(mnist.run(settings, mnist_data, tmp_path)) == want["records"]


@needs_mnist
def test_groups_trained_together_store_exactly_what_the_studies_driver_stored(mnist_data, tmp_path):
    groups = [mnist.Settings(**g) for g in tiny.GROUPS]
    paths = runner.run_groups([g.lottery() for g in groups], mnist_data, tmp_path)
    for settings, path in zip(groups, paths, strict=True):
        assert digest_run(path) == GOLDEN[f"groups/std{settings.std}"]["records"], settings.std


def _same(a: float | None, b: float | None) -> bool:
    return (a is None or math.isnan(a)) and (b is None or math.isnan(b)) or a == b


def test_xor_sweep_gives_exactly_the_reproductions_logits_and_rates(tmp_path):
    want = GOLDEN["xor"]
    s = xor.Settings(**tiny.XOR)
    logits = xor.outcomes(s, xor.run(s, tmp_path))
    got = {k: hashlib.sha256(np.ascontiguousarray(v, np.float32).tobytes()).hexdigest() for k, v in logits.items()}
    assert got == want["logits"]
    rows = xor.results(s, logits)["rows"]
    assert len(rows) == len(want["rates"])
    for row, old in zip(rows, want["rates"], strict=True):
        assert (row["table"], row["setting"], row["n_db"], row["n_zl"]) == (old["table"], old["setting"],
                                                                            old["n_db"], old["n_zl"])
        assert _same(row["db"], old["db"]) and _same(row["zl"], old["zl"]), row["setting"]
