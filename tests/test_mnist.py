"""The MNIST lottery experiment (paper sections 3, 4, 6.4) through lth_jax.reproduction.mnist, on tiny settings.

Networks here are narrow (784-16-8-10) and train for 200 iterations so the whole
file runs in well under a minute; the procedure is the paper's at every step.
Tests that need the real MNIST files read them from ``$LTH_MNIST_DIR``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import preloaded
import pytest

from lth_jax import data, models, runner, store
from lth_jax import masks as masks_lib
from lth_jax.reproduction import mnist, paper

REAL_DIR = os.environ.get(data.MNIST_DIR_ENV)
pytestmark = pytest.mark.skipif(
    not REAL_DIR, reason=f"set {data.MNIST_DIR_ENV} to a folder with the four original MNIST .gz files")
ROOT = Path(__file__).resolve().parents[1]

TINY = dict(hidden=(16, 8), iterations=200, eval_every=50, seeds=(0, 1), reinit=1, shuffle=1,
            average_over=100, stable_for=100)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def mnist_data():
    return mnist.device_data(data.mnist(REAL_DIR))


@pytest.fixture(scope="module")
def iterative(mnist_data, tmp_path_factory):
    """One iterative run done in one go, and the same run killed after its second level and resumed."""
    settings = mnist.Settings(mode="iterative", min_remaining=55.0, **TINY)
    whole = mnist.run(settings, mnist_data, tmp_path_factory.mktemp("whole"))
    root = tmp_path_factory.mktemp("resumed")

    def kill_after_second(level, metrics):
        if level.name == "r01":
            raise Killed

    with pytest.raises(Killed):
        mnist.run(settings, mnist_data, root, after_level=kill_after_second)
    assert store.levels(mnist.run_dir(settings, root)) == ["init", "r00", "r01"]
    resumed_levels = []
    resumed = mnist.run(settings, mnist_data, root, after_level=lambda lv, m: resumed_levels.append(lv.name))
    return settings, whole, resumed, resumed_levels


def _records(path):
    return {name: store.load_level(path, name) for name in store.levels(path)}


def _kernel_counts(masks):
    return {name: np.sum(m["kernel"], axis=tuple(range(1, m["kernel"].ndim))) for name, m in masks.items()}


def test_a_killed_run_resumes_without_recomputing_and_gives_identical_results(iterative):
    settings, whole, resumed, resumed_levels = iterative
    assert resumed_levels == ["r02", "r03"]  # r00, r01 were kept, not retrained
    a, b = _records(whole), _records(resumed)
    assert list(a) == list(b) == ["init", "r00", "r01", "r02", "r03"]
    for name in a:
        assert sorted(a[name].arrays) == sorted(b[name].arrays)
        for key in a[name].arrays:
            np.testing.assert_array_equal(a[name].arrays[key], b[name].arrays[key], err_msg=f"{name} {key}")
        strip = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
        assert strip(a[name].metrics) == strip(b[name].metrics)


def test_iterative_pruning_removes_exactly_20_percent_of_hidden_and_10_percent_of_output_weights_each_round(iterative):
    settings, whole, _, _ = iterative
    expected = mnist.weight_counts(settings)  # 12544 / 128 / 80 at the start
    levels = [r for r in _records(whole).values() if r.name != "init"]
    for rec in levels:
        counts = _kernel_counts(store.subtree(rec.arrays, "masks"))
        for name, n in expected.items():
            assert (counts[name] == n).all(), (rec.name, name, counts[name], n)
        masks = store.subtree(rec.arrays, "masks")
        assert all(m["bias"].all() for m in masks.values())  # biases are never pruned
        assert rec.metrics["weights"] == rec.metrics["expected_weights"]  # the plan knew the counts in advance
        output = list(expected)[-1]
        expected = {k: v - round(v * (0.1 if k == output else 0.2)) for k, v in expected.items()}
    # The chain stops at the first level under min_remaining (55%): 100, 80, 64, 51.2%.
    percents = [r.metrics["percent_overall"] for r in levels]
    assert len(percents) == 4 and percents[-1] < 55.0 <= percents[-2]


def test_lenet_300_100_has_the_papers_266200_weights():
    counts = mnist.weight_counts(mnist.Settings())
    assert counts == {"Dense_0": 235_200, "Dense_1": 30_000, "Dense_2": 1_000}
    assert mnist.Settings().trials_per_level() == 35  # 5 tickets + 15 reinit + 15 shuffle, one program


def test_each_round_prunes_the_lowest_magnitude_trained_weights_of_the_previous_ticket(iterative):
    _, whole, _, _ = iterative
    levels = [r for r in _records(whole).values() if r.name != "init"]
    for prev, cur in zip(levels, levels[1:], strict=False):
        trained = store.subtree(prev.arrays, "trained")
        before, after = store.subtree(prev.arrays, "masks"), store.subtree(cur.arrays, "masks")
        for name in trained:
            w, m0, m1 = np.abs(trained[name]["kernel"]), before[name]["kernel"], after[name]["kernel"]
            assert not (m1 & ~m0).any()  # nothing pruned comes back
            for s in range(w.shape[0]):
                removed, kept = w[s][m0[s] & ~m1[s]], w[s][m1[s]]
                assert removed.max() <= kept.min()


def test_survivors_after_rewind_equal_their_initial_values_and_controls_are_what_the_paper_says(iterative):
    settings, whole, _, _ = iterative
    init_rec = store.load_level(whole, "init")
    init = store.subtree(init_rec.arrays, "init")
    # The initialisation is a function of (seed, settings): seed s draws init_params with fold_in(key(s), 0).
    direct = models.init_params(models.lenet(settings.hidden, settings.std),
                                jax.random.fold_in(jax.random.key(1), 0), 784)
    for name in init:
        np.testing.assert_array_equal(init[name]["kernel"][1], np.asarray(direct[name]["kernel"]))
    rec = store.load_level(whole, "r03")
    masks = store.subtree(rec.arrays, "masks")
    level = mnist.plan(settings)[3]
    lottery = settings.lottery()
    params, trial_masks, _ = jax.device_get(runner.build_trials(
        lottery, jax.tree.map(jnp.asarray, init), jax.tree.map(jnp.asarray, masks), level))
    roles = [t.role for t in runner.layout(lottery.procedure, level)]
    assert roles == ["ticket", "ticket", "reinit", "reinit", "shuffle", "shuffle"]
    for name in init:
        k0, m = init[name]["kernel"], masks[name]["kernel"]
        ticket, reinit, shuffled = params[name]["kernel"][0:2], params[name]["kernel"][2:4], params[name]["kernel"][4:6]
        np.testing.assert_array_equal(ticket, np.where(m, k0, 0.0))  # winning ticket: survivors at their init
        np.testing.assert_array_equal(trial_masks[name]["kernel"][2:4], m)  # control 1: same architecture...
        assert not np.any((reinit == np.where(m, k0, 0.0)) & m)  # ...fresh values
        sm = trial_masks[name]["kernel"][4:6]
        assert (sm.sum(axis=(1, 2)) == m.sum(axis=(1, 2))).all()  # control 2: same count per layer,
        assert (sm != m).any()  # at new places,
        for s in range(2):  # carrying the surviving initial values
            np.testing.assert_array_equal(np.sort(shuffled[s][sm[s]]), np.sort(k0[s][m[s]]))


def _original_trials(settings):
    """The lottery and the trials of its first (unpruned) level: tickets and controls at their init."""
    lottery = settings.lottery()
    init = mnist.initial_params(settings)
    level = mnist.plan(settings)[0]
    return lottery, level, runner.build_trials(lottery, init, jax.vmap(masks_lib.ones_like)(init), level)


def test_training_in_segments_gives_exactly_one_calls_result(mnist_data):
    settings = mnist.Settings(mode="oneshot", **TINY)
    lottery, _, (params, trial_masks, keys) = _original_trials(settings)
    seen = []
    in_four = settings.lottery(chunk_steps=50).trainer
    in_one = settings.lottery(chunk_steps=200).trainer
    p1, c1 = in_four(lottery.network, params, trial_masks, keys, mnist_data, on_steps=seen.append)
    p2, c2 = in_one(lottery.network, params, trial_masks, keys, mnist_data)
    assert seen == [50, 50, 50, 50]
    assert sorted(c1) == ["curves/accuracy", "curves/diverged_at", "curves/loss"]
    for k in c1:
        np.testing.assert_array_equal(c1[k], c2[k])
    jax.tree.map(np.testing.assert_array_equal, p1, p2)


def test_a_diverging_network_is_recorded_with_its_step_and_leaves_the_others_untouched(mnist_data):
    settings = mnist.Settings(mode="oneshot", **TINY)
    lottery, level, (params, trial_masks, keys) = _original_trials(settings)
    net, trainer = lottery.network, lottery.trainer
    _, sane = trainer(net, params, trial_masks, keys, mnist_data)
    blown = jax.tree.map(lambda x: x.at[3].multiply(1e30), params)  # trial 3's weights overflow at once
    _, curves = trainer(net, blown, trial_masks, keys, mnist_data)
    assert curves["curves/diverged_at"][3] == 0 and np.isnan(curves["curves/accuracy"][3]).all()
    others = [0, 1, 2, 4, 5]
    np.testing.assert_array_equal(curves["curves/accuracy"][others], sane["curves/accuracy"][others])
    summary = lottery.judge.summarize(curves, runner.layout(lottery.procedure, level))
    assert summary["trials"][3]["diverged_at"] == 0 and np.isnan(summary["trials"][3]["final_accuracy"])
    assert summary["roles"]["reinit"]["diverged"] == 1 and summary["roles"]["reinit"]["final_accuracy"]["n"] == 1


@pytest.fixture(scope="module")
def oneshot(mnist_data, tmp_path_factory):
    settings = mnist.Settings(mode="oneshot", levels=(100, 50, 20), **TINY)
    root = tmp_path_factory.mktemp("oneshot")
    return settings, root, mnist.run(settings, mnist_data, root)


@pytest.fixture(scope="module")
def han(mnist_data, tmp_path_factory):
    settings = mnist.Settings(mode="han", min_remaining=70.0, **{**TINY, "reinit": 0})
    return settings, mnist.run(settings, mnist_data, tmp_path_factory.mktemp("han"))


def test_one_shot_keeps_p_percent_of_hidden_weights_and_prunes_the_output_layer_at_half_the_rate(mnist_data, oneshot):
    settings, root, path = oneshot
    recs = {r.name: r for r in mnist.records(path, arrays=True)}
    assert list(recs) == ["p100", "p50", "p20"]
    full = mnist.weight_counts(settings)  # 12544 / 128 / 80
    for name, p in (("p50", 0.5), ("p20", 0.2)):
        assert recs[name].metrics["weights"] == recs[name].metrics["expected_weights"]
        counts = _kernel_counts(store.subtree(recs[name].arrays, "masks"))
        assert (counts["Dense_0"] == round(full["Dense_0"] * p)).all()
        assert (counts["Dense_1"] == round(full["Dense_1"] * p)).all()
        assert (counts["Dense_2"] == full["Dense_2"] - round(full["Dense_2"] * (1 - p) / 2)).all()
    # Every level prunes the same trained originals, so smaller tickets nest inside larger ones.
    m50, m20 = (store.subtree(recs[n].arrays, "masks") for n in ("p50", "p20"))
    assert all(not (m20[k]["kernel"] & ~m50[k]["kernel"]).any() for k in m50)
    # Asking for one more level later trains only that level.
    trained = []
    extended = mnist.run(settings.replace(levels=(100, 50, 20, 10)), mnist_data, root,
                         after_level=lambda lv, m: trained.append(lv.name))
    assert trained == ["p10"] and extended == path


def test_han_keeps_training_the_pruned_trained_weights_and_measures_a_rewound_copy(han):
    settings, path = han
    r0, r1 = store.load_level(path, "r00"), store.load_level(path, "r01")
    masks1 = store.subtree(r1.arrays, "masks")
    chain0 = jax.tree.map(jnp.asarray, store.subtree(r0.arrays, "chain"))
    masks0 = jax.tree.map(jnp.asarray, store.subtree(r0.arrays, "masks"))
    lottery = settings.lottery()
    one_round = jax.jit(jax.vmap(lambda p, m: lottery.prune.step(lottery.network, p, m)))  # per seed
    pruned = jax.device_get(one_round(chain0, masks0))
    jax.tree.map(np.testing.assert_array_equal, pruned, masks1)  # the chain is pruned from its trained weights
    init = jax.tree.map(jnp.asarray, store.subtree(store.load_level(path, "init").arrays, "init"))
    level = mnist.plan(settings)[1]
    params, _, _ = jax.device_get(runner.build_trials(lottery, init, jax.tree.map(jnp.asarray, masks1), level,
                                                      chain0))
    roles = [t.role for t in runner.layout(lottery.procedure, level)]
    for name in masks1:
        m = masks1[name]["kernel"]
        np.testing.assert_array_equal(params[name]["kernel"][[i for i, r in enumerate(roles) if r == "ticket"]],
                                      np.where(m, np.asarray(init[name]["kernel"]), 0))
        np.testing.assert_array_equal(params[name]["kernel"][[i for i, r in enumerate(roles) if r == "continue"]],
                                      np.where(m, np.asarray(chain0[name]["kernel"]), 0))


def test_figures_3_to_8_and_16_and_the_claims_table_are_drawn_from_stored_runs(oneshot, iterative, han, tmp_path):
    from experiments.figures import mnist as mnist_figures

    made = mnist_figures.make_all(tmp_path, tmp_path, oneshot=oneshot[2], iterative=iterative[1], han=han[1])
    figures = {f"figure{i}.png" for i in (3, 4, 5, 6, 7, 8, 16)}
    assert figures <= set(made)
    assert all((tmp_path / f).stat().st_size > 10_000 for f in figures)
    claims = json.loads((tmp_path / "claims.json").read_text())
    by_claim = {c["claim"]: c for c in claims}
    back = next(c for c in paper.CLAIMS if c.key == "it_acc_back")  # "... as accurate as the original down to"
    assert by_claim[back.text]["paper"] == back.value == 2.8
    tickets = [int(c["n"].split()[0]) for c in claims if re.match(r"\d+ tickets", c["n"])]  # "2 tickets/level"
    assert tickets and set(tickets) == {2}  # every ticket claim is over the runs' two tickets


def _cli(*args, env_dir=REAL_DIR, module="experiments.mnist", fresh=False):
    """``python -m <module> *args``: a fresh interpreter when ``fresh``, else a child of the preloaded
    one (tests/preloaded.py: the same answer without JAX's import each time)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), data.MNIST_DIR_ENV: env_dir}
    argv = [sys.executable, "-m", module, *args]
    if not fresh:
        return preloaded.run(argv, cwd=ROOT, env=env, timeout=300)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_smoke_preset_end_to_end_through_the_command_line(tmp_path):
    out = _cli("--preset=smoke", "--hidden=16,8", "--iterations=200", "--eval_every=50", "--average_over=100",
               "--stable_for=100", "--levels=100,50", f"--out_dir={tmp_path}", "--noprogress", fresh=True)
    assert out.returncode == 0, out.stderr
    assert "Dense_0 12,544, Dense_1 128, Dense_2 80 (total 12,752)" in out.stdout
    (run,) = store.find_runs(tmp_path, mode="oneshot")
    assert store.levels(run) == ["init", "p100", "p50"]
    table = mnist.table(run)
    assert [(r["level"], r["role"], r["trials"]) for r in table] == [
        (lv, role, 2) for lv in ("p100", "p50") for role in ("ticket", "reinit", "shuffle")]
    assert "p50" in out.stdout.splitlines()[-1]


@pytest.mark.parametrize("args, says", [
    (["--mode=bogus"], "--mode"),
    (["--levels=0,50"], "--levels: must be > 0"),
    (["--controls=3"], "--controls"),
])
def test_bad_flags_give_a_one_line_error_and_a_nonzero_exit(args, says, tmp_path):
    out = _cli(*args, f"--out_dir={tmp_path}")
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and says in out.stderr, out.stderr


def test_a_missing_mnist_folder_gives_the_loaders_one_line_error(tmp_path):
    out = _cli(f"--out_dir={tmp_path}", env_dir=str(tmp_path / "nowhere"))
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "train-images-idx3-ubyte.gz" in out.stderr
