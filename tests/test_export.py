"""Light copies of runs for the repository (issue 12): the curves and metrics of every level,
verified, without the weights, read by the report as the run itself is read, never trained in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_mnist

from lth_jax import mnist, results, runner, store

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(mode="oneshot", levels=(100, 50), hidden=(16, 8), iterations=100, eval_every=25, lr=0.2, seeds=(0, 1),
            reinit=1, shuffle=1, average_over=25, stable_for=25)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return mnist.run(mnist.Settings(**TINY), synthetic_mnist(256, 128), tmp_path_factory.mktemp("runs"))


def test_a_copy_holds_every_levels_curves_and_metrics_and_no_weights(run, tmp_path):
    copy = store.export_run(run, tmp_path)
    assert copy.name == run.name and store.levels(copy) == ["p100", "p50"]  # no initial weights
    for name in ("p100", "p50"):
        a, b = store.load_level(run, name), store.load_level(copy, name)  # both verify
        assert sorted(b.arrays) == sorted(k for k in a.arrays if k.startswith("curves/"))
        for key in b.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
        assert {k: v for k, v in b.metrics.items() if k not in ("checksum", "exported_from")} == \
            {k: v for k, v in a.metrics.items() if k != "checksum"}
        assert b.metrics["exported_from"] == {"run": run.name,
                                              "checksum": store.read_json(run / f"{name}.json")["checksum"]}
    assert store.is_export(copy) and not store.is_export(run)
    assert sum(f.stat().st_size for f in copy.iterdir()) < sum(f.stat().st_size for f in run.iterdir()) / 2


def test_the_report_reads_a_copy_as_it_reads_the_run(run, tmp_path):
    copy = store.export_run(run, tmp_path)
    ours, theirs = results.Run(run), results.Run(copy)
    assert ours.settings["levels"] == theirs.settings["levels"] and len(theirs.levels) == 2
    np.testing.assert_array_equal(ours.column("ticket", "convergence_iteration"),
                                  theirs.column("ticket", "convergence_iteration"))
    np.testing.assert_array_equal(ours.curves(ours.levels[1], "reinit"), theirs.curves(theirs.levels[1], "reinit"))


def test_no_run_continues_in_a_copy(run, tmp_path):
    store.export_run(run, tmp_path)
    with pytest.raises(store.StoreError, match="exported copy"):
        mnist.run(mnist.Settings(**TINY), synthetic_mnist(256, 128), tmp_path)


def test_a_damaged_record_stops_the_export_naming_it_before_anything_is_written(run, tmp_path):
    broken = tmp_path / "runs" / run.name
    broken.mkdir(parents=True)
    for f in run.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "p50.npz").write_bytes(b"not a zip")
    with pytest.raises(store.CorruptRecord, match="p50"):
        store.export_run(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_driver_copies_every_run_under_a_folder(run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.export", f"--runs_dir={run.parent}",
                           f"--out={tmp_path / 'copies'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"-> {tmp_path / 'copies' / run.name}: 2 levels" in done.stdout
    assert runner.run_dir(mnist.Settings(**TINY).lottery(), tmp_path / "copies").is_dir()


def test_the_committed_run_at_the_papers_settings_verifies_and_reads_as_a_run():
    """results/runs/ holds the one-shot experiment at the paper's settings (issue 12): every record's
    checksum holds, and the report's view finds it as the best one-shot run, at the paper's settings."""
    committed = ROOT / "results" / "runs"
    path = results.find_mnist_runs(committed)["oneshot"]
    run = results.Run(path)  # verifies every record
    assert store.is_export(path) and run.scale() == results.PAPER_SETTINGS
    assert [m["percent_nominal"] for m in run.levels] == [100, 90, 75, 55, 35, 25, 15, 10, 5]
    assert all(m["roles"][r]["converged"] == m["roles"][r]["trials"] == (5 if r == "ticket" else 15)
               for m in run.levels for r in ("ticket", "reinit", "shuffle"))
