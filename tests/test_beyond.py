"""The report's "Beyond the paper" section is generated from stored runs: late rewinding, global
pruning, the random-mask control and the instability barrier, each number read from a record.

Tiny synthetic-MNIST runs (784-16-8-10, 200 iterations): k = 0 (with every control's pairs),
k = 100, and global pruning at k = 0 (the first two, with their ticket and random-mask pairs, are
the session's runs of tests/conftest.py, copied).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import preloaded
import pytest
from conftest import INSTABILITY_PAIRS, INSTABILITY_TINY

from experiments import beyond
from experiments.figures import beyond as beyond_section
from lth_jax import store
from lth_jax.reproduction import instability_runs, mnist

ROOT = Path(__file__).resolve().parents[1]
TINY = INSTABILITY_TINY
ALL = instability_runs.Analysis(**{**INSTABILITY_PAIRS, "roles": instability_runs.MASKED_ROLES})  # levels r00, r02
PAIRS = instability_runs.Analysis(**INSTABILITY_PAIRS)  # ticket and random-mask pairs


@pytest.fixture(scope="module")
def runs_dir(instability_root, tmp_path_factory, synthetic_data):
    """The session's runs at k = 0 and 100 with their ticket and random pairs (tests/conftest.py),
    copied; then the pairs of every control at k = 0 and global pruning at k = 0 added, and each
    command recorded."""
    root = Path(shutil.copytree(instability_root, tmp_path_factory.mktemp("beyond") / "runs"))
    for settings, analysis in ((mnist.Settings(**TINY), ALL), (mnist.Settings(**TINY, rewind_step=100), PAIRS),
                               (mnist.Settings(**TINY, pruning="global"), PAIRS)):
        instability_runs.run(settings.lottery(), analysis, synthetic_data, root,
                             command=f"cmd k={settings.rewind_step}")
    return root


def test_the_section_reads_every_number_from_the_stored_records(runs_dir, tmp_path):
    lines = beyond_section.section(runs_dir, tmp_path / "figures")
    text = "\n".join(lines)
    assert lines[0] == beyond_section.TITLE
    for heading in ("What the follow-up papers state", "Late rewinding", "Layer-wise against global",
                    "random-mask control beside reinit and shuffle", "Instability: the error barrier"):
        assert heading in text
    assert "`cmd k=0`" in text and "`cmd k=100`" in text
    family = beyond_section.largest_family(beyond_section.find(runs_dir))
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
    family = beyond_section.largest_family(beyond_section.find(runs_dir))
    g = family[-1]
    last = list(mnist.records(g.run))[-1].metrics
    first = list(mnist.records(g.run))[0].metrics
    fractions = {n: last["weights"][n] / first["weights"][n] for n in first["weights"]}
    assert len({round(f, 3) for f in fractions.values()}) > 1
    text = "\n".join(beyond_section.section(runs_dir, tmp_path))
    assert all(f"{100 * f:.1f}" in text for f in fractions.values())


def test_splice_replaces_the_section_or_puts_it_before_missing_results(tmp_path):
    report = tmp_path / "REPORT.md"
    report.write_text("# R\n\n## Figures\n\nx\n\n## Missing results\n\ny\n")
    once = beyond.splice(report, [beyond_section.TITLE, "", "first", ""])
    assert once.index(beyond_section.TITLE) < once.index("## Missing results") and "first" in once
    report.write_text(once)
    twice = beyond.splice(report, [beyond_section.TITLE, "", "second", ""])
    assert "first" not in twice and twice.count(beyond_section.TITLE) == 1 and "second" in twice
    assert twice.startswith("# R\n\n## Figures\n\nx\n") and twice.rstrip().endswith("y")


def test_the_command_refreshes_the_section_of_a_report(runs_dir, tmp_path):
    report = tmp_path / "REPORT.md"
    report.write_text("# R\n\n## Missing results\n\nnone\n")
    done = subprocess.run([sys.executable, "-m", "experiments.beyond", f"--runs_dir={runs_dir}",
                           f"--report={report}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert beyond_section.TITLE in text and "Refreshed by `python -m experiments.beyond" in text
    assert (tmp_path / "figures" / "instability_barrier.png").is_file()


def test_no_stored_analysis_is_one_line_and_exit_1(tmp_path):
    report = tmp_path / "REPORT.md"
    report.write_text("# R\n")
    done = preloaded.run([sys.executable, "-m", "experiments.beyond", f"--runs_dir={tmp_path}",
                          f"--report={report}"], cwd=ROOT, timeout=120)  # tests/preloaded.py: a fresh python's answer
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no stored instability analysis" in done.stderr
    assert report.read_text() == "# R\n"
    assert store.find_runs(tmp_path) == []
