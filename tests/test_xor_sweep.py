"""The XOR sweep's command line (experiments.xor_sweep): from flags to tables, JSON and PNG.
The experiment itself (judging, network, loss, plan, training) is specified in tests/test_xor.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import preloaded
import pytest

from lth_jax.reproduction import xor

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the command line


def run_cli(*args: str, fresh: bool = False) -> subprocess.CompletedProcess:
    """``python -m experiments.xor_sweep *args``: a fresh interpreter when ``fresh``, else a child of the
    preloaded one (tests/preloaded.py: the same answer without JAX's import each time)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "-m", "experiments.xor_sweep", *args]
    if not fresh:
        return preloaded.run(argv, cwd=ROOT, env=env, timeout=300)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


SMALL = ["--trials=8", "--iterations=200", "--widths=6,2", "--heuristics=product", "--progress=false"]


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """The same small sweep run twice from scratch in two folders (in a fresh interpreter, then in a
    preloaded one), and once more in the first."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    runs, results = [], []
    for out, fresh in ((a, True), (b, False), (a, False)):
        runs.append(run_cli(*SMALL, f"--out_dir={out}", fresh=fresh))
        assert runs[-1].returncode == 0, runs[-1].stderr[-2000:]
        results.append(json.loads((out / "xor_sweep.json").read_text()))
    return runs, results, a


def test_cli_writes_both_figures_as_json_rows_and_a_png(small_runs):
    runs, (res, _, _), out = small_runs
    assert (out / "xor_sweep.png").stat().st_size > 10_000
    assert "Figure 1" in runs[0].stdout and "Figure 2" in runs[0].stdout
    rows = res["rows"]
    fig1 = [r for r in rows if r["table"] == "figure1"]
    assert [r["units"] for r in fig1] == [6, 2]
    for r in rows:
        assert {"setting", "trials", "db", "zl", "db_se", "zl_se"} <= r.keys()
        assert r["trials"] == 8
    settings = {r["setting"] for r in rows}
    for u in (4, 2):
        assert f"iterative product: {u}-unit ticket (original and ticket)" in settings
        assert f"one-shot product: {u}-unit ticket (original and ticket)" in settings
        assert f"iterative product: {u}-unit ticket reinitialised | original succeeded" in settings
    # The ten-unit originals serve Figure 1 and every line of Figure 2: trained once.
    assert res["trainings_run_now"] == xor.trainings(xor.Settings(trials=8, widths=(6, 2), heuristics=("product",)))


def test_cli_same_flags_give_the_same_numbers_and_a_rerun_reuses_the_stored_results(small_runs):
    _, (first, fresh, rerun), _ = small_runs
    assert first["rows"] == fresh["rows"]
    assert rerun["rows"] == first["rows"]
    assert rerun["trainings_run_now"] == 0


@pytest.mark.parametrize("flag", ["--trials=0", "--heuristics=input,bogus", "--optimizer=rmsprop",
                                  "--learning_rate=-1", "--lr=nan", "--widths=12", "--ticket_units=3",
                                  "--trials=lots", "--heuristics=", "--ticket_units=", "--seed=-1"])
def test_bad_flags_exit_with_one_line_and_no_traceback(flag, tmp_path):
    r = run_cli(flag, f"--out_dir={tmp_path}")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xor_sweep: error:"), r.stderr
    assert not (tmp_path / "xor_sweep.json").exists()
