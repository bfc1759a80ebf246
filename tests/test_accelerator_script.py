"""benchmarks/accelerator.sh, the paper on one GPU (issue 10), kept from rotting: its --tiny mode runs
every stage (benchmarks, one-shot and iterative runs, the report) at toy sizes on the CPU."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from lth_jax import data

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not os.environ.get(data.MNIST_DIR_ENV), reason=f"needs {data.MNIST_DIR_ENV} (real MNIST)")
def test_every_stage_runs_and_prints_its_seconds(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "accelerator.sh"), str(tmp_path), "--tiny"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    stages = [m.group(1) for m in re.finditer(r"^== (.+?): \d+ s", done.stdout, re.MULTILINE)]
    assert stages == ["xor throughput", "lenet throughput", "scaling", "merged levels", "conv throughput",
                      "figures 3-6 (one-shot)", "figures 7-8 (iterative)", "cifar conv-2 (later version)", "report",
                      "total"]
    for name in ("xor_throughput", "mnist_throughput", "scaling", "merged_levels", "conv_throughput"):
        assert (tmp_path / "benchmarks" / f"{name}.json").stat().st_size > 100
    assert "Figure 3" in (tmp_path / "report" / "REPORT.md").read_text()
    assert "SYNTHETIC DATA" in done.stdout  # no CIFAR-10 here: the Conv-2 stage says what it trained on
