"""experiments.examine: Figures 9 and 10 from an iterative pruning chain."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import preloaded
import pytest

from lth_jax import data
from lth_jax.reproduction import analysis, mnist, paper

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = os.environ.get(data.MNIST_DIR_ENV)


def cli(*args, env_extra=None, fresh=False):
    """``python -m experiments.examine *args``: a fresh interpreter when ``fresh`` (it trains), else a
    child of the preloaded one (tests/preloaded.py: the same answer without JAX's import each time)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    argv = [sys.executable, "-m", "experiments.examine", *args]
    if not fresh:
        return preloaded.run(argv, cwd=ROOT, env=env, timeout=300)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_chain_stops_at_the_papers_rounds_for_its_levels():
    # 80%, 51.2%, 16.8%, 5.5% are rounds 1, 3, 8 and 13 of pruning 20% of each hidden layer a round
    settings, wanted = mnist.rounds_for(mnist.Settings(mode="iterative"), [1.0, 0.8, 0.512, 0.168, 0.055])
    assert wanted == [0, 1, 3, 8, 13]
    assert mnist.plan(settings)[-1].name == "r13"   # 14 trainings: the chain stops at 5.5%, not at 1%


def test_examine_summarises_hand_made_chain():
    rng = np.random.default_rng(0)
    runs, std = 3, 0.1
    init = {"Dense_0": {"kernel": rng.normal(0, std, (runs, 8, 4)), "bias": np.zeros((runs, 4))},
            "Dense_1": {"kernel": rng.normal(0, std, (runs, 4, 2)), "bias": np.zeros((runs, 2))}}
    init["Dense_0"]["kernel"][:, 0, :] = 1.5 * std   # input 0's weights are large: every hidden unit keeps one
    full = {k: {"kernel": np.ones_like(v["kernel"], bool), "bias": np.ones_like(v["bias"], bool)}
            for k, v in init.items()}
    # the sparse level keeps only large first-layer weights and cuts hidden unit 3 off from the output
    sparse = {"Dense_0": {"kernel": np.abs(init["Dense_0"]["kernel"]) > std, "bias": full["Dense_0"]["bias"]},
              "Dense_1": {"kernel": full["Dense_1"]["kernel"].copy(), "bias": full["Dense_1"]["bias"]}}
    sparse["Dense_1"]["kernel"][:, 3, :] = False
    out = analysis.section5(init, {1.0: full, 0.3: sparse}, fig9=[1.0, 0.25], fig10=[0.25], std=std, bins=8)
    low = out["figure9"][1]
    assert low["remaining"] == 0.3 and low["layers"]["Dense_0"]["fraction_within"] == 0.0
    assert out["figure9"][0]["layers"]["Dense_0"]["n"] == runs * 8 * 4
    f10 = out["figure10"][0]["layers"]
    assert f10["Dense_0"]["units"] == runs * 4
    # unit 3 keeps its inputs but reaches no output: footnote 7 disconnects it in every run
    assert (f10["Dense_0"]["disconnected_before_removal"], f10["Dense_0"]["disconnected"]) == (0, runs)
    _, edges = out["_plot"]["figure9"][0][2]["Dense_0"]
    assert len(edges) == 9 and edges[0] == -2 * std


NO_MNIST = {data.MNIST_DIR_ENV: "/nonexistent/mnist"}   # a driver that read MNIST first would fail with a data error
TINY = ("--seeds=2", "--iterations=100", "--eval_every=50", "--hidden=16,8")


@pytest.mark.parametrize(("flag", "name"), [
    ("--seeds=0", "--seeds"), ("--runs=0", "--seeds"), ("--eval_every=0", "--eval_every"), ("--std=nan", "--std"),
    ("--lr=0", "--lr"), ("--rate=1", "--rate"), ("--bins=0", "--bins"), ("--fig9_levels=half", "--fig9_levels"),
    ("--fig10_levels=0.8,1.5", "--fig10_levels"), ("--fig9_levels=", "--fig9_levels"),
    ("--iterations=120", "--iterations"),   # not a multiple of --eval_every=50
])   # an old name (--runs) is an alias: the line names the flag it sets
def test_a_bad_flag_is_refused_in_one_line_before_mnist_is_read(flag, name, tmp_path):
    res = cli(*TINY, flag, f"--runs_dir={tmp_path}", env_extra=NO_MNIST)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and lines[0].startswith("examine: error: ") and name in lines[0], res.stderr


def test_the_old_flag_names_still_run_and_a_missing_round_is_one_line(tmp_path):
    # --runs/--steps/--learning_rate/--seed are the documented names of before; nothing stored: exit 1, no training
    res = cli("--runs=2", "--steps=100", "--eval_every=50", "--learning_rate=0.1", "--seed=3", "--hidden=16,8",
              "--analyse_only", f"--runs_dir={tmp_path}", env_extra=NO_MNIST)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and "round 0 (r00) is not stored" in lines[0] and str(tmp_path) in lines[0], res.stderr


def test_from_run_must_name_a_stored_run(tmp_path):
    res = cli(f"--from_run={tmp_path}")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "settings.json" in res.stderr.strip().splitlines()[-1]


@pytest.mark.skipif(not REAL_DIR, reason=f"set {data.MNIST_DIR_ENV} to a folder with the four MNIST .gz files")
def test_cli_end_to_end_on_a_tiny_chain_and_resume(tmp_path):
    args = [*TINY, "--fig9_levels=1.0,0.64", "--fig10_levels=0.8,0.64", f"--runs_dir={tmp_path / 'runs'}",
            "--noprogress"]
    first = cli(*args, f"--out_dir={tmp_path / 'a'}", fresh=True)
    assert first.returncode == 0, first.stderr[-2000:]
    for name in ("figure9.png", "figure10.png", "examine.json"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    summary = json.loads((tmp_path / "a" / "examine.json").read_text())
    assert [round(lv["remaining"], 2) for lv in summary["figure9"]] == [1.0, 0.64]
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]   # the chain stops right after 64% (round 2)
    assert summary["settings"]["seeds"] == [0, 1] and summary["settings"]["reinit"] == 0
    assert summary["paper"] == paper.SECTION5
    unpruned = summary["figure9"][0]["layers"]["Dense_0"]
    assert abs(unpruned["fraction_within"] - analysis.truncated_normal_share()) < 4 * unpruned["se"]
    assert summary["figure10"][0]["layers"]["Dense_1"]["units"] == 2 * 8
    # everything is stored: analysing again (the run directory by name) trains nothing, gives the same numbers
    again = cli(f"--from_run={summary['run_dir']}", "--fig9_levels=1.0,0.64", "--fig10_levels=0.8,0.64",
                f"--out_dir={tmp_path / 'b'}", env_extra=NO_MNIST)
    assert again.returncode == 0, again.stderr[-2000:]
    second = json.loads((tmp_path / "b" / "examine.json").read_text())
    same = ("command",)
    assert {k: v for k, v in second.items() if k not in same} == {k: v for k, v in summary.items() if k not in same}
    # a damaged round is refused in one line naming the file, never used
    npz = Path(summary["run_dir"]) / "r02.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    bad = cli(*args, f"--out_dir={tmp_path / 'c'}", "--analyse_only", env_extra=NO_MNIST)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert "r02" in bad.stderr.strip().splitlines()[-1]
