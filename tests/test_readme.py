"""The README is executable documentation: every Python block runs as written, and the two
commands for a fresh machine stay exactly what CI runs.

Each ```python block of README.md runs in a fresh interpreter (nothing defined by an earlier
block or by this test leaks in: a child of tests/preloaded.py's, which has imported JAX and the
library and run nothing, so a block pays for its own work, not for the imports), with the
repository root on PYTHONPATH and the working directory a temporary folder (so a block cannot
depend on, or write into, the checkout). The environment is this process's: ``LTH_MNIST_DIR``
when set, and the XLA switch the test session turns on (tests/conftest.py), which changes
speed, not results. A block that reads MNIST (``data.mnist(``) is skipped, saying why, when
``LTH_MNIST_DIR`` is unset: offline it cannot download.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import preloaded
import pytest

from lth_jax import data

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -q -r requirements.txt && "
MAIN_COMMAND = INSTALL + "python -m experiments.xor_sweep --trials=1000"
NEW_EXPERIMENT = "## A new experiment in under 30 lines"


def blocks(language: str, text: str = README) -> list[tuple[int, str]]:
    """(first line number, code) of every fenced block of ``language``, in order."""
    return [(text[:m.start()].count("\n") + 2, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == language]


PYTHON = blocks("python")


def test_the_readme_has_python_blocks_to_run():
    assert len(PYTHON) >= 3, "the API tour (trees, runner) and the new experiment"


@pytest.mark.parametrize("line,code", PYTHON, ids=[f"README.md:{line}" for line, _ in PYTHON])
def test_every_python_block_runs_as_written(line, code, tmp_path):
    if "data.mnist(" in code and not os.environ.get(data.MNIST_DIR_ENV):
        pytest.skip(f"the block at README.md:{line} reads MNIST: set {data.MNIST_DIR_ENV} to a folder of the "
                    "four .gz files (offline it cannot download)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = preloaded.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"README.md:{line} exited {proc.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output, f"README.md:{line} printed a traceback:\n{output[-3000:]}"
    assert proc.stdout.strip(), f"README.md:{line} printed nothing"


def test_the_new_experiment_is_under_30_lines():
    after = README.index(NEW_EXPERIMENT)
    line, code = next((ln, c) for ln, c in PYTHON if README[:after].count("\n") + 1 < ln)
    assert len(code.splitlines()) < 30, f"README.md:{line}: {len(code.splitlines())} lines"
    for part in ("runner.run(", "rules.LayerwiseMagnitude(", "trainers.Minibatch(", "judges.Convergence(",
                 "nn.Conv(", "reinit=", "shuffle="):
        assert part in code, f"the new experiment no longer uses {part}"


def test_the_field_s_models_example_is_under_40_lines_and_uses_the_whole_training_contract():
    after = README.index("## The models the field trains, in under 40 lines")
    line, code = next((ln, c) for ln, c in PYTHON if README[:after].count("\n") + 1 < ln)
    assert len(code.splitlines()) < 40, f"README.md:{line}: {len(code.splitlines())} lines"
    for part in ("nn.BatchNorm(", "nn.Dropout(", "train: bool", "optimizers.SGD(", "optimizers.Warmup(",
                 "optimizers.Cosine(", "momentum=", "datasets.Dataset(", "datasets.RandomCrop(",
                 "datasets.HorizontalFlip(", 'mode="iterative"', "reinit=", "shuffle=", "rules.SNIP("):
        assert part in code, f"the example no longer uses {part}"


def test_a_fresh_machine_needs_exactly_two_commands():
    installs = [code.strip() for _, code in blocks("bash") if "pip install" in code]
    assert len(installs) == 2, installs
    main, tests = installs
    assert main == MAIN_COMMAND
    assert tests.startswith(INSTALL) and tests.endswith("python -m pytest -q")


def test_ci_runs_the_readmes_test_command():
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set "))]
    test_command = [code.strip() for _, code in blocks("bash") if "pip install" in code][1]
    assert ci[-1] == test_command
