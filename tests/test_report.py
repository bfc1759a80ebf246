"""The reproduction report (experiments.report) built from stored results.

Runs are synthesised through the store's API with the driver's own summaries (made-up
accuracy curves, LeNet-300-100 settings), so each report here builds in seconds and the
expected numbers are read back from what was stored, never typed in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments import report, studies
from lth_jax import experiment, store

ONESHOT = experiment.Settings(mode="oneshot", seeds=(0, 1), reinit=1, shuffle=1, iterations=5000,
                              levels=(100, 75, 25, 15))


def curves(settings: experiment.Settings, knee: dict[str, int], plateau: dict[str, float],
           diverge: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Per trial of the level's layout, a test-accuracy curve that rises until ``knee[role]``
    evaluations and then stays at ``plateau[role]`` (footnote 5 then finds it converged)."""
    trials = experiment.layout(settings)
    evals = settings.iterations // settings.eval_every
    acc, div = [], []
    for i, t in enumerate(trials):
        k = knee[t.role] + i % 2
        a = np.array([plateau[t.role] - 0.05 * max(0.0, 1 - (e + 1) / k) for e in range(evals)])
        d = (diverge or {}).get(t.role, -1)
        if d >= 0:
            a[d // settings.eval_every:] = np.nan
        acc.append(a)
        div.append(d)
    return {"accuracy": np.asarray(acc, np.float32), "loss": np.zeros((len(trials), evals), np.float32),
            "diverged_at": np.asarray(div, np.int32)}


def store_run(root: Path, settings: experiment.Settings, levels: dict[float, dict[str, Any]]) -> Path:
    """A run as experiment.run stores it (metrics from experiment.summarize; curves in the npz)."""
    path = store.open_run(root, settings.hashed(), prefix=settings.mode,
                          extra={k: getattr(settings, k) for k in experiment.UNHASHED})
    plan = {lv.percent: lv for lv in experiment.plan(settings)}
    for percent, spec in levels.items():
        c = curves(settings, **spec)
        lv = plan[percent] if settings.mode == "oneshot" else experiment.plan(settings)[spec.get("round", 0)]
        metrics = {"order": lv.order, "level_id": lv.level_id, "percent_nominal": lv.percent,
                   "percent_hidden": lv.percent, "percent_overall": lv.percent, "weights": lv.counts,
                   "weights_total": sum(lv.counts.values()), "expected_weights": lv.counts, "seconds": 1.0,
                   "device": "cpu", **experiment.summarize(c, settings)}
        store.save_level(path, lv.name, {f"curves/{k}": v for k, v in c.items()}, metrics)
    return path


def claims_of(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in json.loads((out / "claims.json").read_text())}


def section(text: str, figure: int) -> str:
    start = text.index(f"### Figure {figure}:")
    end = text.find("### Figure", start + 5)
    return text[start:end if end > 0 else None]


def test_an_empty_store_lists_every_figure_as_missing_with_its_command_and_time(tmp_path):
    (tmp_path / "runs").mkdir()
    text = report.build(tmp_path / "runs", tmp_path / "out").read_text()
    for fig in range(1, 17):
        assert "**Missing.**" in section(text, fig), fig
    assert "python -m experiments.mnist --preset=paper --mode=oneshot" in section(text, 3)
    assert "python -m experiments.studies --study=all --preset=paper" in section(text, 15)
    assert "on this CPU" in section(text, 16) and "on a GPU" in section(text, 16)
    rows = claims_of(tmp_path / "out")
    assert not rows["os_25_faster"]["stored"] and rows["os_25_faster"]["ours"] is None
    assert rows["it_trainings"]["ours"] == 14 and rows["rate_10_trainings"]["ours"] == 28  # computed, no run needed
    assert not list((tmp_path / "out" / "figures").glob("*.png"))


@pytest.fixture(scope="module")
def oneshot_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = {100: dict(knee={"ticket": 14, "reinit": 14, "shuffle": 14}, plateau={"ticket": .980, "reinit": .980,
                                                                                  "shuffle": .980}),
            75: dict(knee={"ticket": 10, "reinit": 15, "shuffle": 16}, plateau={"ticket": .981, "reinit": .978,
                                                                                "shuffle": .977}),
            25: dict(knee={"ticket": 8, "reinit": 17, "shuffle": 17}, plateau={"ticket": .979, "reinit": .975,
                                                                               "shuffle": .974}),
            15: dict(knee={"ticket": 12, "reinit": 18, "shuffle": 18}, plateau={"ticket": .975, "reinit": .970,
                                                                                "shuffle": .969})}
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


def test_claims_are_read_from_the_stored_numbers_and_follow_them(oneshot_report):
    root, path, out, _ = oneshot_report
    conv = lambda name: store.load_level(path, name, arrays=False).metrics["roles"]["ticket"][  # noqa: E731
        "convergence_iteration"]["mean"]
    rows = claims_of(out)
    assert rows["os_25_faster"]["ours"] == pytest.approx(round(100 * (1 - conv("p25") / conv("p100")), 2))
    assert rows["os_25_faster"]["n"] == "2 tickets/level" and "--iterations=5000" in rows["os_25_faster"]["command"]
    ctrl = store.load_level(path, "p25", arrays=False).metrics["roles"]["reinit"]["convergence_iteration"]["mean"]
    assert rows["os_ratio25"]["ours"] == pytest.approx(round(ctrl / conv("p25"), 2))
    # change what is stored: the report changes with it
    rec = store.load_level(path, "p25", arrays=False).metrics
    rec["roles"]["ticket"]["convergence_iteration"]["mean"] = conv("p100") / 2
    store.write_json(path / "p25.json", rec)
    out2 = out.parent / (out.name + "-2")
    report.build(root, out2)
    assert claims_of(out2)["os_25_faster"]["ours"] == pytest.approx(50.0)


def test_a_study_with_diverged_trials_shows_them_as_diverged(tmp_path):
    root = tmp_path / "runs"
    groups = studies.study_groups("init_std", "oneshot", "smoke", stds=(0.1, 0.8), levels=(100, 50))
    calm = {"ticket": 6}
    for g, plateau in zip(groups, (0.95, 0.90), strict=True):
        s = g.settings.replace(iterations=3000, eval_every=100, average_over=1000, stable_for=1000)
        groups[groups.index(g)] = studies.Group(g.label, s)
        diverge = {"ticket": 1234} if s.std == 0.8 else None
        store_run(root, s, {p: dict(knee=calm, plateau={"ticket": plateau}, diverge=diverge) for p in (100, 50)})
    studies.write_manifest(root, "init_std", "oneshot", "smoke", groups, "python -m experiments.studies --smoke")
    text = report.build(root, tmp_path / "out").read_text()
    fig11 = section(text, 11)
    assert "figures/figure11.png" in fig11 and (tmp_path / "out" / "figures" / "figure11.png").is_file()
    diverged = [line for line in fig11.splitlines() if line.startswith("| std 0.8")]
    assert len(diverged) == 2 and all("**2/2 diverged** (step 1234)" in line for line in diverged)
    rows = claims_of(tmp_path / "out")
    assert rows["std_fastest"]["ours"] == 0.1  # std 0.8 never converged: its trials diverged first
    assert "std 0.8: -" in rows["std_fastest"]["details"]
