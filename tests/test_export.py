"""Light copies of runs for the repository (issue 12): the curves and metrics of every level,
verified, without the weights, read by the report as the run itself is read, never trained in."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import preloaded
import pytest
from conftest import synthetic_mnist

from experiments import export, report
from lth_jax import runner, store
from lth_jax.reproduction import mnist, results

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
    assert results.Run(copy).trained_in == run and results.Run(run).trained_in == run  # where a rerun writes
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


def test_the_driver_copies_every_run_and_summary_at_its_place_under_the_folder(run, tmp_path):
    """What the report reads keeps its relative place: runs at any depth, the XOR and section-5
    summaries with the PNGs beside them, the study manifests."""
    root = tmp_path / "runs"
    (root / "mnist").mkdir(parents=True)
    shutil.copytree(run, root / "mnist" / run.name)  # a run one folder down
    summaries = {"xor/xor_sweep.json": b'{"rows": []}\n', "xor/xor_sweep.png": b"png",
                 "examine/figures/examine.json": b'{"figure10": {}}\n', "studies/manifests/sizes.json": b"{}\n"}
    for name, data in summaries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    done = preloaded.run([sys.executable, "-m", "experiments.export", f"--runs_dir={root}",
                          f"--out={tmp_path / 'copies'}"], cwd=ROOT, timeout=120)  # tests/preloaded.py
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"-> {tmp_path / 'copies' / 'mnist' / run.name}: 2 levels" in done.stdout
    assert runner.run_dir(mnist.Settings(**TINY).lottery(), tmp_path / "copies" / "mnist").is_dir()
    for name, data in summaries.items():
        assert (tmp_path / "copies" / name).read_bytes() == data
    assert store.exported_from(tmp_path / "copies" / "xor") == root / "xor"  # where the report's commands write
    assert store.exported_from(root / "xor") is None


def test_a_damaged_summary_stops_the_driver_with_one_line_naming_it(tmp_path):
    (tmp_path / "runs" / "xor").mkdir(parents=True)
    (tmp_path / "runs" / "xor" / "xor_sweep.json").write_bytes(b"\x00garbage")
    done = preloaded.run([sys.executable, "-m", "experiments.export", f"--runs_dir={tmp_path / 'runs'}",
                          f"--out={tmp_path / 'copies'}"], cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "xor_sweep.json" in done.stderr and "Traceback" not in done.stderr


def test_an_instability_analysis_keeps_all_its_arrays_a_lottery_run_its_curves(tmp_path):
    assert export.kept_arrays(tmp_path / "instability-0123456789ab") == ("",)
    assert export.kept_arrays(tmp_path / "iterative-0123456789ab") == ("curves/",)


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


def test_the_report_rebuilt_from_the_committed_copies_takes_figures_3_to_6_from_the_papers_settings(tmp_path):
    """Issue 12's 'done when': results/REPORT.md can be rebuilt from the checkout, and its one-shot
    claims and Figures 3-6 come from the run at the paper's settings, each claim with its sample size."""
    text = report.build(ROOT / "results" / "runs", tmp_path).read_text()
    rows = [r for r in json.loads((tmp_path / "claims.json").read_text()) if r["source"] == "oneshot"]
    assert len(rows) >= 10 and all(r["settings"] == results.PAPER_SETTINGS and r["n"] for r in rows)
    for fig in (3, 4, 5, 6):
        part = text[text.index(f"### Figure {fig}:"):text.index(f"### Figure {fig + 1}:")]
        assert (tmp_path / "figures" / f"figure{fig:02d}.png").is_file()
        assert "Drawn from the oneshot run at paper settings" in part and "stopped at convergence" in part
    assert "stored at the paper's settings with measured trainings stopped at convergence" in text
    written = re.findall(r"--(?:out|runs)_dir=([^`\s|]+)", text)
    assert written and not [d for d in written if "results/runs" in d]  # commands write where results were made
