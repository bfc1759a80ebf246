"""Spec of every driver's edge (issue 8): a bad flag is refused at once, in one line, with exit code 2.

Each case runs ``python -m experiments.<driver> <flags>`` (through tests/preloaded.py: a child of
one interpreter that has imported JAX and the library already, which answers as a fresh
``python`` does, tests/test_preloaded.py, in milliseconds instead of seconds) and expects
exactly one non-empty line on stderr, ``<driver>: error: ...``, naming the flag (or the
path, or the stray argument), no ``Traceback``, and the exit code of experiments.cli
(2 for every usage error; 1 where the flags are fine but an existing folder holds
nothing to report). A line that calls a flag *unknown* passes only the
unknown-flag cases, so a flag of the target vocabulary that a driver does not define yet
fails here instead of passing for the wrong reason.

Fail fast: validation must come before anything is read or trained. So ``LTH_MNIST_DIR``
points at a folder that does not exist (a driver that loads MNIST before checking its
flags exits 1 with a data error here instead of training), the working directory is a
fresh temporary folder (default outputs land there), XOR runs use ``--trials=2``,
``reproduce_paper`` runs with ``--dry_run``, and a case still running after
:data:`TIMEOUT` seconds is killed with its process group and fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import preloaded
import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0


class Case(NamedTuple):
    driver: str
    argv: tuple[str, ...]        # "{missing}" / "{empty}": a missing / an empty folder under tmp_path
    names: tuple[str, ...]       # the line names one of these (a flag, a path, an argument)
    code: int = 2
    unknown: bool = False        # the case of an unknown flag


def case(driver: str, *argv: str, names: str | tuple[str, ...], code: int = 2, unknown: bool = False):
    names = (names,) if isinstance(names, str) else names
    return pytest.param(Case(driver, argv, names, code, unknown), id=f"{driver} {' '.join(argv)}")


def generic(driver: str, float_flag: str | None, *safe: str) -> list:
    """The bad flags every driver must refuse: an unknown flag, a stray argument, a NaN."""
    cases = [case(driver, *safe, "--no_such_flag=1", names="no_such_flag", unknown=True),
             case(driver, *safe, "stray_argument", names="stray_argument")]
    if float_flag is not None:
        cases.append(case(driver, *safe, f"--{float_flag}=nan", names=float_flag))
    return cases


XOR = ("--trials=2",)   # if a bad flag gets through, the sweep it starts is short
CASES = [
    # issue 8's list
    case("xor_sweep", *XOR, "--heuristics=", names="heuristics"),
    case("xor_sweep", *XOR, "--ticket_units=", names="ticket_units"),
    case("xor_sweep", *XOR, "--seed=-1", names="seed"),
    case("examine", "--eval_every=0", names="eval_every"),
    case("mnist", "--chunk_steps=-100", names="chunk_steps"),
    case("mnist", "--chunk_steps=300", "--iterations=400", names=("chunk_steps", "iterations")),
    case("mnist", "--std=inf", names="std"),
    case("mnist", "--lr=inf", names="lr"),
    case("mnist", "--chunk_steps=0", names="chunk_steps"),
    case("studies", "--rates_iterations=0", names="rates_iterations"),
    case("studies", "--memory_budget_mb=0", names="memory_budget_mb"),
    case("report", "--runs_dir=", names="runs_dir"),
    case("report", "--runs_dir={missing}", names=("runs_dir", "{missing}")),
    # the flags are fine, the folder holds nothing: a report that says so, and a runtime failure's code
    case("report", "--runs_dir={empty}", names=("runs_dir", "{empty}"), code=1),
    # a folder named explicitly must hold what the flag promises (xor_sweep.json, examine.json)
    *[case("report", "--runs_dir={empty}", f"--{flag}={where}", names=flag)
      for flag in ("xor_dir", "examine_dir") for where in ("", "{missing}", "{empty}")],
    case("reproduce_paper", "--dry_run", "--only=", names="only"),
    # the same kinds of mistakes elsewhere
    case("xor_sweep", *XOR, "--lr=inf", names="lr"),
    case("xor_sweep", *XOR, "--iterations=0", names="iterations"),
    case("examine", "--seeds=0", names="seeds"),
    case("studies", "--stds=0.1,nan", names="stds"),
    case("studies", "--seeds=0", names="seeds"),
    case("reproduce_paper", "--dry_run", "--only=xor,everything", names=("only", "everything")),
    case("mnist_plots", "--runs_dir=", names="runs_dir"),
    case("mnist_plots", "--runs_dir={missing}", names=("runs_dir", "{missing}")),
    case("mnist_plots", "--runs_dir={empty}", names=("runs_dir", "{empty}"), code=1),  # as the report
    case("mnist_plots", "--oneshot={missing}", names="oneshot"),
    # issue 9: late rewinding and the random-mask control (smoke preset: 1000 iterations, eval every 100)
    case("mnist", "--rewind_step=150", names="rewind_step"),
    case("mnist", "--rewind_step=-100", names="rewind_step"),
    case("mnist", "--rewind_step=1000", "--snapshot_steps=0,1000", names="rewind_step"),
    case("mnist", "--mode=han", "--rewind_step=500", "--snapshot_steps=0,500", names="rewind_step"),
    case("mnist", "--snapshot_steps=0,150", names="snapshot_steps"),
    case("mnist", "--snapshot_steps=0,2000", names="snapshot_steps"),
    case("mnist", "--snapshot_steps=100,100", names="snapshot_steps"),
    case("mnist", "--snapshot_steps=", names="snapshot_steps"),
    case("mnist", "--controls=1,1,1,1", names="controls"),
    case("mnist", "--controls=1,1,-1", names="controls"),
    # generic
    *generic("xor_sweep", "lr", *XOR),
    *generic("mnist", "lr"),
    *generic("examine", "std"),
    *generic("studies", "min_remaining"),
    *generic("report", None),
    *generic("reproduce_paper", None, "--dry_run"),
    *generic("mnist_plots", None),
    case("mnist", "--pruning=magnitude", names="pruning"),  # issue 9: layerwise | global
    # issue 9: the instability driver (cpu preset: 5000 iterations, eval every 100)
    case("instability", "--rewind_steps=150", names="rewind_steps"),
    case("instability", "--roles=ticket,continue", names="roles"),
    case("instability", "--alphas=1", names="alphas"),
    case("instability", "--every=0", names="every"),
    case("instability", "--mode=han", names="mode"),
    case("instability", "--controls=1", names="controls"),
    case("instability", "--mnist_dir={missing}", names="mnist_dir"),
    *generic("instability", "lr"),
    *generic("beyond", None),
    case("beyond", "--runs_dir={missing}", names=("runs_dir", "{missing}")),
    case("beyond", "--runs_dir={empty}", "--report={missing}", names="report"),
    # issue 12: stopping at convergence, and the light copies of runs for the repository
    case("mnist", "--stop_at_convergence", "--stop_every=150", names="stop_every"),
    case("mnist", "--stop_every=0", names="stop_every"),
    *generic("export", None),
    case("export", "--runs_dir={missing}", names=("runs_dir", "{missing}")),
    case("export", "--runs_dir={empty}", names="runs_dir"),
]


def run_driver(driver: str, argv: list[str], cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "LTH_MNIST_DIR": str(cwd / "no_mnist_here"), "JAX_PLATFORMS": "cpu"}
    try:
        done = preloaded.run([sys.executable, "-m", f"experiments.{driver}", *argv], cwd=cwd, env=env,
                             timeout=TIMEOUT)  # the driver and whatever it started are killed at the timeout
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {TIMEOUT:.0f} s: the flags were not refused before the work began")
    return done.returncode, done.stderr


@pytest.mark.parametrize("c", CASES)
def test_a_bad_flag_is_one_line_and_exit_code_2(c: Case, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    folders = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    argv = [a.format(**folders) for a in c.argv]
    names = [n.format(**folders) for n in c.names]
    code, err = run_driver(c.driver, argv, tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith(f"{c.driver}: error: "), line
    assert any(name in line for name in names), f"the line names none of {names}: {line}"
    if not c.unknown:
        assert "unknown command line flag" not in line.lower() and "unknown flag" not in line.lower(), line
    assert code == c.code, f"exit code {code}, expected {c.code}: {line}"
