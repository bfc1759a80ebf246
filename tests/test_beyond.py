"""The report's "Beyond the paper" section is generated from stored runs: late rewinding, global
pruning, the random-mask control and the instability barrier, each number read from a record.

Tiny synthetic-MNIST runs (784-16-8-10, 200 iterations): k = 0 (with every control's pairs),
k = 100, and global pruning at k = 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import beyond
from lth_jax import instability_runs, mnist, store

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(mode="iterative", hidden=(16, 8), iterations=200, eval_every=50, lr=0.2, seeds=(0, 1), reinit=0,
            shuffle=0, random=0, min_remaining=70.0, average_over=50, stable_for=50, snapshot_steps=(0, 100))
ALL = instability_runs.Analysis(roles=instability_runs.ROLES, alphas=5, every=2, chunk=50)  # levels r00, r02
PAIRS = instability_runs.Analysis(roles=("ticket", "random"), alphas=5, every=2, chunk=50)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, synthetic_data):
    root = tmp_path_factory.mktemp("beyond")
    for settings, analysis in ((mnist.Settings(**TINY), ALL), (mnist.Settings(**TINY, rewind_step=100), PAIRS),
                               (mnist.Settings(**TINY, pruning="global"), PAIRS)):
        instability_runs.run(settings.lottery(), analysis, synthetic_data, root,
                             command=f"cmd k={settings.rewind_step}")
    return root


def test_the_section_reads_every_number_from_the_stored_records(runs_dir, tmp_path):
    lines = beyond.section(runs_dir, tmp_path / "figures")
    text = "\n".join(lines)
    assert lines[0] == beyond.TITLE
    for heading in ("What the follow-up papers state", "Late rewinding", "Layer-wise against global",
                    "random-mask control beside reinit and shuffle", "Instability: the error barrier"):
        assert heading in text
    assert "`cmd k=0`" in text and "`cmd k=100`" in text
    family = beyond.largest_family(beyond.find(runs_dir))
    assert [(a.settings.pruning, a.settings.rewind_step) for a in family] == [
        ("layerwise", 0), ("layerwise", 100), ("global", 0)]
    # each barrier row is its record's summary
    k0 = family[0]
    for rec in instability_runs.records(k0.path):
        b = rec.metrics["summary"]["barrier"]
        cell = f"{100 * b['mean']:.2f} ± {100 * b['se']:.2f} [{100 * b['min']:.2f}, {100 * b['max']:.2f}]"
        assert f"| k=0 | {rec.metrics['plan_level']} | {rec.metrics['percent_overall']:.2f} | " \
               f"{rec.metrics['role']} | 2 | {cell} |" in text
    # the late-rewinding table's cells are the tickets' mean final accuracies
    last = list(mnist.records(family[1].run))[-1]
    final = [t["final_accuracy"] for t in last.metrics["trials"] if t["role"] == "ticket"]
    assert f"{100 * np.mean(final):.2f} ± {100 * np.std(final, ddof=1) / np.sqrt(2):.2f}" in text
    for png in ("beyond_late_rewinding.png", "instability_barrier.png", "instability_path.png"):
        assert (tmp_path / "figures" / png).stat().st_size > 1000
        assert f"figures/{png}" in text


def test_global_pruning_keeps_different_fractions_per_layer_and_the_section_says_so(runs_dir, tmp_path):
    family = beyond.largest_family(beyond.find(runs_dir))
    g = family[-1]
    last = list(mnist.records(g.run))[-1].metrics
    first = list(mnist.records(g.run))[0].metrics
    fractions = {n: last["weights"][n] / first["weights"][n] for n in first["weights"]}
    assert len({round(f, 3) for f in fractions.values()}) > 1
    text = "\n".join(beyond.section(runs_dir, tmp_path))
    assert all(f"{100 * f:.1f}" in text for f in fractions.values())


def test_splice_replaces_the_section_or_puts_it_before_missing_results(tmp_path):
    report = tmp_path / "REPORT.md"
    report.write_text("# R\n\n## Figures\n\nx\n\n## Missing results\n\ny\n")
    once = beyond.splice(report, [beyond.TITLE, "", "first", ""])
    assert once.index(beyond.TITLE) < once.index("## Missing results") and "first" in once
    report.write_text(once)
    twice = beyond.splice(report, [beyond.TITLE, "", "second", ""])
    assert "first" not in twice and twice.count(beyond.TITLE) == 1 and "second" in twice
    assert twice.startswith("# R\n\n## Figures\n\nx\n") and twice.rstrip().endswith("y")


def test_the_command_refreshes_the_section_of_a_report(runs_dir, tmp_path):
    report = tmp_path / "REPORT.md"
    report.write_text("# R\n\n## Missing results\n\nnone\n")
    done = subprocess.run([sys.executable, "-m", "experiments.beyond", f"--runs_dir={runs_dir}",
                           f"--report={report}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert beyond.TITLE in text and "Refreshed by `python -m experiments.beyond" in text
    assert (tmp_path / "figures" / "instability_barrier.png").is_file()


def test_no_stored_analysis_is_one_line_and_exit_1(tmp_path):
    report = tmp_path / "REPORT.md"
    report.write_text("# R\n")
    done = subprocess.run([sys.executable, "-m", "experiments.beyond", f"--runs_dir={tmp_path}",
                           f"--report={report}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no stored instability analysis" in done.stderr
    assert report.read_text() == "# R\n"
    assert store.find_runs(tmp_path) == []
