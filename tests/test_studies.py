"""Section 6's parameter studies: which groups each figure trains (experiments.studies), how many
trainings a pruning rate needs, and groups of MNIST settings trained together in one vmapped
program (lth_jax.runner.run_groups).

Training here uses narrow networks (784-16-8-10), 100 iterations and synthetic data, so the
file runs in seconds; the procedure is the experiment's at every step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import preloaded
import pytest
from conftest import synthetic_mnist

from experiments import studies
from experiments.configs import studies as configs
from experiments.figures import studies as study_figures
from lth_jax import programs, runner, store
from lth_jax.reproduction import mnist, results

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden=(16, 8), iterations=100, eval_every=50, seeds=(0, 1), reinit=0, shuffle=0,
            average_over=50, stable_for=50)
BLOW_UP = 1e8  # an initialisation whose logits overflow float32 within two steps: a trial that must diverge


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(512, 256)


def _lotteries(*settings):
    return [s.lottery() for s in settings]


def _arrays(path):
    return {name: store.load_level(path, name) for name in store.levels(path)}


def assert_same_training(got, want, test_examples=256):
    """Equal up to float rounding: a different number of trials in one vmapped program may change
    the last bits (XLA picks other kernels), enough to flip at most one test example."""
    for key in want:
        if key.startswith("masks/"):  # exact survivor counts; a near-tie may swap one survivor
            assert got[key].sum() == want[key].sum() and np.mean(got[key] == want[key]) > 0.999, key
        elif key == "curves/accuracy":
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1 / test_examples + 1e-6, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------- the studies' settings


def about_5(rate):
    """Trainings iterative pruning at ``rate`` needs for a ticket of about 5% (Figure 15's chains)."""
    return mnist.trainings_to(configs.ABOUT_5_PERCENT, mnist.Settings(mode="iterative", rate=rate))


def test_rates_need_the_papers_number_of_trainings_to_reach_about_five_percent():
    """Section 4.1: pruning 20% a round "until it is about 5% ... requires training the network 14 times";
    section 6.3: 10% a round "would require training the network 28 times"."""
    assert about_5(0.2)["trainings"] == 14
    assert about_5(0.1)["trainings"] == 28
    counts = [about_5(r)["trainings"] for r in configs.RATES]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)  # faster rates, fewer trainings


def test_the_rate_chain_stops_at_the_first_level_under_the_threshold_and_not_before():
    for rate in configs.RATES:
        s = studies.study_groups("rates", "iterative", "paper", rates=(rate,))[0].settings
        levels = mnist.plan(s)
        total = sum(levels[0].counts.values())
        overall = [100 * sum(lv.counts.values()) / total for lv in levels]
        assert overall[-1] < configs.ABOUT_5_PERCENT <= overall[-2], rate
        assert len(levels) - 1 == about_5(rate)["trainings"]


def test_paper_preset_groups_are_five_tickets_without_controls_at_the_papers_values():
    stds = studies.study_groups("init_std", "oneshot", "paper")
    assert [g.settings.std for g in stds] == [0.025, 0.05, 0.1, 0.2, 0.4, 0.8]
    sizes = studies.study_groups("sizes", "iterative", "paper")
    assert [g.settings.hidden for g in sizes] == [(300 * k, 100 * k) for k in range(1, 6)]  # multiples of 300-100
    assert {g.settings.std for g in sizes} == {0.05}  # Figures 13-14's captions
    rates = studies.study_groups("rates", "iterative", "paper")
    assert [g.settings.rate for g in rates] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    for g in stds + sizes + rates:
        s = g.settings
        assert len(s.seeds) == 5 and s.reinit == s.shuffle == 0 and s.iterations == 50_000 and s.lr == 0.05


def test_a_study_group_lands_in_the_same_directory_as_the_same_settings_run_by_the_mnist_driver():
    s = studies.study_groups("init_std", "oneshot", "paper", stds=(0.4,))[0].settings
    assert mnist.run_dir(s, "r") == mnist.run_dir(mnist.Settings(std=0.4, reinit=0, shuffle=0), "r")


def test_chunks_cover_every_trial_with_equal_programs_of_bounded_size():
    for n in (1, 5, 7, 35, 36):
        for per in (1, 3, 8, 100):
            parts = programs.chunks(n, per)
            assert len({p.size for p in parts}) == 1 and parts[0].size <= max(per, 1)
            assert sorted(set(np.concatenate(parts).tolist())) == list(range(n))


# ---------------------------------------------------------------- training groups together


def test_groups_trained_together_store_what_each_stores_alone(data, tmp_path):
    a = mnist.Settings(mode="iterative", std=0.1, min_remaining=85.0, **TINY)
    b = a.replace(std=0.2)
    alone = mnist.run(a, data, tmp_path / "alone")
    paths = runner.run_groups(_lotteries(a, b), data, tmp_path / "together")
    assert paths[0].name == alone.name
    x, y = _arrays(alone), _arrays(paths[0])
    assert list(x) == list(y) == ["init", "r00", "r01"]
    for name in x:
        assert sorted(x[name].arrays) == sorted(y[name].arrays)
        assert_same_training(y[name].arrays, x[name].arrays)
    assert y["r01"].metrics["group"]["runs"] == 2 and y["r01"].metrics["group"]["trials"] == 4
    # resuming: nothing left to train
    assert runner.run_groups(_lotteries(a, b), data, tmp_path / "together") == paths


def test_a_memory_budget_splits_the_trials_into_chunks_without_changing_results(data, tmp_path):
    a = mnist.Settings(mode="oneshot", levels=(100, 50), **TINY)
    b = a.replace(std=0.05)
    whole = runner.run_groups(_lotteries(a, b), data, tmp_path / "whole", memory_budget_mb=1024)
    lottery = a.lottery()
    per_trial_mb = lottery.trainer.trial_bytes(lottery.network) / 2**20
    budget = int(2.5 * per_trial_mb) + 1  # room for two trials a program
    small = runner.run_groups(_lotteries(a, b), data, tmp_path / "small", memory_budget_mb=budget)
    rec = store.load_level(small[1], "p50")
    assert rec.metrics["group"]["chunks"] == 2 and rec.metrics["group"]["trained_trials"] == 4
    for p, q in zip(whole, small, strict=True):
        for name in ("p100", "p50"):
            assert_same_training(store.load_level(q, name).arrays, store.load_level(p, name).arrays)


def test_identical_trials_of_different_groups_are_trained_once(data, tmp_path):
    """The unpruned round is the same network for every pruning rate: Figure 15 trains it once."""
    groups = [mnist.Settings(mode="iterative", rate=r, min_remaining=60.0, **TINY) for r in (0.2, 0.5)]
    paths = runner.run_groups(_lotteries(*groups), data, tmp_path)
    r0 = [store.load_level(p, "r00") for p in paths]
    assert r0[0].metrics["group"]["unique_trials"] == 2 and r0[0].metrics["group"]["trials"] == 4
    np.testing.assert_array_equal(r0[0].arrays["curves/accuracy"], r0[1].arrays["curves/accuracy"])
    r1 = [store.load_level(p, "r01").metrics for p in paths]
    assert r1[0]["group"]["unique_trials"] == 4  # pruned differently from round 1 on
    assert r1[0]["percent_overall"] > r1[1]["percent_overall"]


def test_a_diverging_group_is_recorded_with_its_step_and_does_not_touch_the_others(data, tmp_path):
    healthy = mnist.Settings(mode="oneshot", levels=(100, 50), **TINY)
    wild = healthy.replace(std=BLOW_UP)
    # the same program shape with a healthy group in the wild one's place: the reference, to the bit
    calm = runner.run_groups(_lotteries(healthy, healthy.replace(std=0.05)), data, tmp_path / "calm")
    paths = runner.run_groups(_lotteries(healthy, wild), data, tmp_path / "together")
    for name in ("p100", "p50"):
        ok, bad = store.load_level(paths[0], name), store.load_level(paths[1], name)
        ref = store.load_level(calm[0], name)
        for key in ref.arrays:
            np.testing.assert_array_equal(ok.arrays[key], ref.arrays[key], err_msg=key)
        assert np.all(ok.arrays["curves/diverged_at"] == -1) and np.isfinite(ok.arrays["curves/accuracy"]).all()
        steps = bad.arrays["curves/diverged_at"]
        assert np.all((steps >= 0) & (steps < healthy.iterations))
        acc = bad.arrays["curves/accuracy"]
        for trial, step in enumerate(steps):  # no accuracy from the evaluation after the bad step on
            assert np.isnan(acc[trial, step // healthy.eval_every:]).all()
        tickets = bad.metrics["roles"]["ticket"]
        if name == "p100":
            assert tickets["diverged"] == len(healthy.seeds)
        else:  # pruned from diverged originals: flagged and left out of the statistics, with a count
            assert bad.metrics["pruned_from_diverged"] == list(healthy.seeds)
            assert tickets["excluded_pruned_from_diverged"] == len(healthy.seeds) and tickets["trials"] == 0
        assert [t["diverged_at"] for t in bad.metrics["trials"]] == steps.tolist()
    # tables and plots say so
    manifest = studies.write_manifest(tmp_path / "together", "init_std", "oneshot", "smoke",
                                      [configs.Group("std 0.1", healthy), configs.Group("std wild", wild)], "cmd")
    st = results.load_study(manifest)
    table = study_figures.markdown_table(st)
    wild_rows = [line for line in table.splitlines() if line.startswith("| std wild")]
    assert len(wild_rows) == 2 and "2/2 diverged** (step" in wild_rows[0]  # p100
    assert "diverged" in wild_rows[1]  # p50: pruned from the diverged originals
    assert not any("diverged**" in line for line in table.splitlines() if line.startswith("| std 0.1"))
    out = study_figures.plot_study(st, tmp_path / "fig.png", title="divergence")
    assert out.stat().st_size > 0


# ---------------------------------------------------------------- the CLI


@pytest.mark.parametrize("flag, words", [("--study=bogus", "study"), ("--sizes=300-x", "sizes"),
                                         ("--study=rates --mode=oneshot", "iterative only")])
def test_bad_flags_give_a_one_line_error(flag, words):
    res = preloaded.run([sys.executable, "-m", "experiments.studies", *flag.split(), "--dry_run"], cwd=ROOT,
                        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # a fresh python's answer, sooner
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("studies: error:") and words in lines[0], res.stderr
