"""lth_jax.reproduction.results: one view of the stored runs, with one rule for "the p% level", that never
skips a damaged file.
"""

from __future__ import annotations

import math

import pytest

from experiments.figures import mnist as mnist_figures
from lth_jax import store
from lth_jax.reproduction import mnist, results
from tests.stored_runs import converging, store_run, write_manifest

ROLES = ("ticket", "reinit", "shuffle")
ONESHOT = mnist.Settings(mode="oneshot", hidden=(30, 10), seeds=(0, 1), reinit=1, shuffle=1, iterations=1000,
                         eval_every=100, average_over=200, stable_for=200, levels=(100, 55, 40, 35, 25, 15))
ITERATIVE = mnist.Settings(mode="iterative", hidden=(30, 10), seeds=(0,), reinit=0, shuffle=0, iterations=1000,
                           eval_every=100, average_over=200, stable_for=200, min_remaining=1.0)


@pytest.fixture(scope="module")
def oneshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    path = store_run(root, ONESHOT, {p: converging(ROLES, 3 + i, 0.97 - 0.002 * i)
                                     for i, p in enumerate(ONESHOT.levels)})
    return results.Run(path)


@pytest.fixture(scope="module")
def iterative(tmp_path_factory):
    """Rounds 0, 5, 11 and 19: 100%, 32.8%, 8.59% and 1.44% of each hidden layer."""
    root = tmp_path_factory.mktemp("runs")
    return results.Run(store_run(root, ITERATIVE, {r: converging(("ticket",), 3, 0.97) for r in (0, 5, 11, 19)}))


def test_a_run_reads_its_settings_and_levels_largest_first(oneshot):
    assert oneshot.mode == "oneshot" and oneshot.settings["levels"] == list(ONESHOT.levels)
    assert list(oneshot.percents()) == sorted(ONESHOT.levels, reverse=True)
    assert oneshot.original is oneshot.levels[0] and oneshot.trials("reinit") == 2
    conv = oneshot.column("ticket", "convergence_iteration")
    assert conv[0] == oneshot.value(oneshot.original, "ticket", "convergence_iteration")
    assert oneshot.curves(oneshot.at(25), "ticket").shape == (2, ONESHOT.iterations // ONESHOT.eval_every)


@pytest.mark.parametrize("asked, stored", [
    (35, 35), (37, 35), (25, 25), (50, 55),   # nearest in ratio, within 0.1 in log
    (30, None), (45, None), (12, None),       # nothing within 0.1: 30 is log 0.15 from 35, 45 is 0.12 from 40
])
def test_one_shot_levels_resolve_to_the_nearest_within_a_tenth_in_log(oneshot, asked, stored):
    m = oneshot.at(asked)
    assert (m and m["percent_nominal"]) == stored
    assert math.isnan(oneshot.value_at(asked, "ticket", "convergence_iteration")) == (stored is None)


@pytest.mark.parametrize("quoted, rounds", [(8.5, 11), (1.5, 19), (31, 5)])
def test_the_papers_rounded_iterative_levels_resolve_to_their_round(iterative, quoted, rounds):
    """The paper's 8.5%, 1.5% and "about 31%" are the 8.59%, 1.44% and 32.8% rounds; 0.03 would miss two."""
    m = iterative.at(quoted)
    assert m["level"] == f"r{rounds:02d}"
    assert abs(math.log(m["percent_nominal"] / quoted)) <= results.TOLERANCE
    assert (abs(math.log(m["percent_nominal"] / quoted)) > 0.03) == (quoted != 8.5)


def test_the_plots_read_runs_through_the_same_view():
    assert mnist_figures.Run is results.Run


def test_the_best_paper_run_per_mode_is_found_at_any_depth(tmp_path):
    paper_like = ONESHOT.replace(hidden=(300, 100), levels=(100, 50))
    deep = store_run(tmp_path / "a" / "b", paper_like, {p: converging(ROLES, 3, 0.97) for p in (100, 50)})
    store_run(tmp_path, ONESHOT, {100: converging(ROLES, 3, 0.97)})  # not LeNet-300-100: not a paper run
    assert results.find_mnist_runs(tmp_path) == {"oneshot": deep}
    assert results.find_mnist_runs(tmp_path / "nowhere") == {}


@pytest.mark.parametrize("damage", ["truncate npz", "garbage json", "empty json"])
def test_a_damaged_record_is_refused_in_one_line_naming_the_file(tmp_path, damage):
    paper_like = ONESHOT.replace(hidden=(300, 100), levels=(100, 50))
    path = store_run(tmp_path, paper_like, {p: converging(ROLES, 3, 0.97) for p in (100, 50)})
    file = path / ("p50.npz" if "npz" in damage else "p50.json")
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if damage == "truncate npz" else b"" if "empty" in damage
                     else b"\x93\xff" * 50)
    for read in (lambda: results.Run(path), lambda: results.find_mnist_runs(tmp_path), lambda: results.load(tmp_path)):
        with pytest.raises(store.CorruptRecord) as e:
            read()
        assert str(file) in str(e.value) and "\n" not in str(e.value)


def test_damaged_summaries_and_settings_are_refused_not_skipped(tmp_path):
    (tmp_path / "xor").mkdir()
    (tmp_path / "xor" / "xor_sweep.json").write_text('{"rows": [')
    with pytest.raises(store.CorruptRecord, match="xor_sweep.json"):
        results.load_xor(tmp_path / "xor")
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "examine.json").write_text('{"runs": 2}')
    with pytest.raises(store.CorruptRecord, match="examine.json.*figure10"):
        results.load_examine(tmp_path / "ex")
    path = store_run(tmp_path / "runs", ONESHOT, {100: converging(ROLES, 3, 0.97)})
    (path / "settings.json").write_text("not json")
    with pytest.raises(store.CorruptRecord, match="settings.json"):
        results.find_mnist_runs(tmp_path / "runs")
    assert results.load_xor(tmp_path / "nowhere") is None and results.load_examine(tmp_path / "nowhere") is None


def test_a_study_reads_each_groups_stored_levels(tmp_path):
    groups = [(f"std {s:g}", ONESHOT.replace(std=s, reinit=0, shuffle=0, levels=(100, 50))) for s in (0.1, 0.8)]
    store_run(tmp_path, groups[0][1], {p: converging(("ticket",), 3, 0.95) for p in (100, 50)})  # 0.8: not stored
    manifest = write_manifest(tmp_path, "init_std", "oneshot", "smoke", groups, (11, 12), "python -m x")
    st = results.load_study(manifest)
    stored, missing = st["groups"]
    assert [r["level"] for r in stored["rows"]] == ["p100", "p50"] and missing["rows"] == []
    level = store.load_level(stored["path"], "p50", arrays=False).metrics
    assert stored["rows"][1]["convergence_iteration_mean"] == level["roles"]["ticket"]["convergence_iteration"]["mean"]
    assert stored["rows"][1]["weights"] == level["weights_total"] and stored["rows"][1]["diverged"] == 0
    assert results.best_studies(tmp_path)[("init_std", "oneshot")]["_manifest"] == str(manifest)
