"""The reproduction report (experiments.report) and the MNIST plots, built from stored results.

Runs are synthesised through the store in the runner's format (tests/stored_runs.py), so each
report builds in seconds and the expected numbers are read back from what was stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import preloaded
import pytest

from experiments import report
from experiments.configs import reproduce_paper as plan
from experiments.figures import mnist as mnist_figures
from experiments.figures import report as report_figures
from lth_jax import store
from lth_jax.reproduction import claims, mnist, paper, results
from tests.stored_runs import converging, store_run, write_manifest

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("ticket", "reinit", "shuffle")
ONESHOT = mnist.Settings(mode="oneshot", seeds=(0, 1), reinit=1, shuffle=1, iterations=5000, levels=(100, 75, 25, 15))


def claims_of(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in json.loads((out / "claims.json").read_text())}


def section(text: str, figure: int) -> str:
    start = text.index(f"### Figure {figure}:")
    end = text.find("### Figure", start + 5)
    return text[start:end if end > 0 else None]


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m experiments.<module> *args``, through tests/preloaded.py (a fresh python's answer,
    without JAX's import each time)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return preloaded.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=ROOT, env=env, timeout=300)


def test_an_empty_store_lists_every_figure_as_missing_with_its_command_and_time(tmp_path):
    (tmp_path / "runs").mkdir()
    text = report.build(tmp_path / "runs", tmp_path / "out").read_text()
    for fig in range(1, 17):
        assert f"### Figure {fig}: {paper.FIGURE_TITLES[fig]}" in text
        assert "**Missing.**" in section(text, fig), fig
    assert "python -m experiments.mnist --preset=paper --mode=oneshot" in section(text, 3)
    assert "python -m experiments.studies --study=all --preset=paper" in section(text, 15)
    assert "on this CPU" in section(text, 16) and "on a GPU" in section(text, 16)
    rows = claims_of(tmp_path / "out")
    assert len(rows) == len(paper.CLAIMS) and {r["paper"] for r in rows.values()} >= {38.0, 1.91, 140_000}
    assert not rows["os_25_faster"]["stored"] and rows["os_25_faster"]["ours"] is None
    # computed from the plan's exact survivor counts, no run needed: the paper's 14 and 28
    assert rows["it_trainings"]["ours"] == paper.CLAIM["it_trainings"].value
    assert rows["rate_10_trainings"]["ours"] == paper.CLAIM["rate_10_trainings"].value
    assert not list((tmp_path / "out" / "figures").glob("*.png"))


@pytest.fixture(scope="module")
def oneshot_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = {100: dict(knee=dict.fromkeys(ROLES, 14), plateau=dict.fromkeys(ROLES, 0.980)),
            75: dict(knee={"ticket": 10, "reinit": 15, "shuffle": 16},
                     plateau={"ticket": .981, "reinit": .978, "shuffle": .977}),
            25: dict(knee={"ticket": 8, "reinit": 17, "shuffle": 17},
                     plateau={"ticket": .979, "reinit": .975, "shuffle": .974}),
            15: dict(knee={"ticket": 12, "reinit": 18, "shuffle": 18},
                     plateau={"ticket": .975, "reinit": .970, "shuffle": .969})}
    path = store_run(root / "mnist", ONESHOT, spec)
    out = root.parent / (root.name + "-out")
    text = report.build(root, out).read_text()
    return root, path, out, text


def test_a_stored_one_shot_run_gives_figures_3_to_6_and_leaves_the_rest_missing(oneshot_report):
    _, _, out, text = oneshot_report
    for fig in (3, 4, 5, 6):
        assert (out / "figures" / f"figure{fig:02d}.png").is_file(), fig
        assert f"figures/figure{fig:02d}.png" in section(text, fig) and "**Missing.**" not in section(text, fig)
    for fig in (1, 2, 8, 9, 10, 11, 13, 14, 15, 16):
        assert "**Missing.**" in section(text, fig), fig
    assert "python -m experiments.mnist --preset=paper --mode=oneshot --levels=100,75,25,15" not in text
    assert "--iterations=5000" in text and "--seeds=2" in text and "--controls=1,1" in text  # the command that made it


def test_claims_are_read_from_the_stored_numbers_and_follow_them(oneshot_report, tmp_path):
    root, path, out, _ = oneshot_report

    def conv(name: str, role: str = "ticket") -> float:
        return store.load_level(path, name, arrays=False).metrics["roles"][role]["convergence_iteration"]["mean"]

    rows = claims_of(out)
    assert rows["os_25_faster"]["ours"] == pytest.approx(round(100 * (1 - conv("p25") / conv("p100")), 2))
    assert rows["os_25_faster"]["n"] == "2 tickets/level" and "--iterations=5000" in rows["os_25_faster"]["command"]
    assert rows["os_ratio25"]["ours"] == pytest.approx(round(conv("p25", "reinit") / conv("p25"), 2))
    # change what is stored (a copy, through the store so that it verifies): the claims change with it
    copy = Path(shutil.copytree(root, tmp_path / "runs"))
    moved = copy / path.relative_to(root)
    rec = store.load_level(moved, "p25")
    rec.metrics["roles"]["ticket"]["convergence_iteration"]["mean"] = conv("p100") / 2
    store.save_level(moved, "p25", rec.arrays, rec.metrics)
    assert claims_of_view(copy)["os_25_faster"]["ours"] == pytest.approx(50.0)


def test_a_report_of_exported_copies_has_the_same_claims_and_commands_that_write_where_the_run_was(
        oneshot_report, tmp_path):
    root, path, _, _ = oneshot_report
    copy = store.export_run(path, tmp_path / "copies" / "mnist")
    theirs, ours = claims_of_view(tmp_path / "copies"), claims_of_view(root)
    assert {k: r["ours"] for k, r in theirs.items()} == {k: r["ours"] for k, r in ours.items()}
    command = report_figures.mnist_command(results.Run(copy))
    assert command == report_figures.mnist_command(results.Run(path)) and f"--out_dir={path.parent}" in command
    assert "exported copy" in report_figures.describe(results.Run(copy)) and "exported" not in report_figures.describe(
        results.Run(path))


def test_the_command_of_a_run_grown_beyond_its_preset_says_how_far():
    """min_remaining and the one-shot levels are not hashed (a run grows in place), so the command
    that made a run says them where they differ from the preset's."""
    iterative, oneshot = plan.mnist_settings("cpu", "iterative"), plan.mnist_settings("cpu", "oneshot")
    assert report_figures.unhashed_flags({"mode": "iterative", "min_remaining": 8.0}, iterative) == " --min_remaining=8"
    same = {"mode": "iterative", "min_remaining": iterative.min_remaining}
    assert report_figures.unhashed_flags(same, iterative) == ""
    assert report_figures.unhashed_flags({"mode": "oneshot", "levels": [100, 50]}, oneshot) == " --levels=100,50"
    assert report_figures.unhashed_flags({"mode": "oneshot", "levels": list(oneshot.levels)}, oneshot) == ""


def claims_of_view(root: Path) -> dict[str, dict]:
    return {r["key"]: r for r in report_figures.claim_rows(results.load(root))}


def test_the_plots_write_the_reports_claims_for_their_runs(oneshot_report, tmp_path):
    root, path, _, _ = oneshot_report
    mnist_figures.make_all(tmp_path, tmp_path, oneshot=path)
    plotted = {r["key"]: r for r in json.loads((tmp_path / "claims.json").read_text())}
    reported = claims_of_view(root)
    assert plotted and {r["source"] for r in plotted.values()} == {"oneshot"}
    for key, row in plotted.items():
        assert row == {k: v for k, v in reported[key].items() if k != "command"}, key
    assert "| one-shot: the 25% ticket converges faster than the original (%) |" in (tmp_path / "claims.md").read_text()


def test_a_study_with_diverged_trials_shows_them_as_diverged(tmp_path):
    root = tmp_path / "runs"
    groups = []
    for std, plateau in ((0.1, 0.95), (0.8, 0.90)):
        s = mnist.Settings(mode="oneshot", hidden=(30, 10), std=std, seeds=(0, 1), reinit=0, shuffle=0,
                           iterations=3000, eval_every=100, average_over=1000, stable_for=1000, levels=(100, 50))
        diverge = {"ticket": 1234} if std == 0.8 else None
        store_run(root, s, {p: dict(**converging(("ticket",), 6, plateau), diverge=diverge) for p in (100, 50)})
        groups.append((f"std {std:g}", s))
    write_manifest(root, "init_std", "oneshot", "smoke", groups, (11, 12), "python -m experiments.studies --smoke")
    text = report.build(root, tmp_path / "out").read_text()
    fig11 = section(text, 11)
    assert "figures/figure11.png" in fig11 and (tmp_path / "out" / "figures" / "figure11.png").is_file()
    diverged = [line for line in fig11.splitlines() if line.startswith("| std 0.8")]
    assert len(diverged) == 2 and all("**2/2 diverged** (step 1234)" in line for line in diverged)
    rows = claims_of(tmp_path / "out")
    assert rows["std_fastest"]["ours"] == 0.1  # std 0.8 never converged: its trials diverged first
    assert "std 0.8: -" in rows["std_fastest"]["details"]
    sizes = claims.study_ticket_sizes(results.load(root).studies[("init_std", "oneshot")])
    assert [r["label"] for r in sizes] == ["std 0.1", "std 0.8"]


def test_a_corrupt_record_stops_the_report_and_the_plots_in_one_line_naming_it(tmp_path):
    path = store_run(tmp_path / "mnist", ONESHOT, {p: converging(ROLES, 3, 0.97) for p in (100, 25)})
    npz = path / "p25.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    for module, args in (("report", [f"--runs_dir={tmp_path}", f"--out={tmp_path / 'out'}"]),
                         ("mnist_plots", [f"--runs_dir={tmp_path / 'mnist'}", f"--out_dir={tmp_path / 'plots'}"])):
        res = cli(module, *args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert len(lines) == 1 and lines[0].startswith(f"{module}: error: ") and str(npz) in lines[0], res.stderr
    assert not (tmp_path / "out" / "REPORT.md").exists()


def test_a_report_of_an_empty_folder_says_it_found_nothing_and_fails(tmp_path):
    (tmp_path / "runs").mkdir()
    res = cli("report", f"--runs_dir={tmp_path / 'runs'}", f"--out_dir={tmp_path / 'out'}")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"report: error: --runs_dir={tmp_path / 'runs'}: found no stored results"), lines
    assert "- nothing is stored yet" in (tmp_path / "out" / "REPORT.md").read_text()
