"""The instability experiment on stored runs (Frankle et al. 2020; issue 9): at each chosen level,
two copies of a ticket (and of its controls), started where the run starts them (rewound to step
k), trained with different synthetic_data orders, and the test error along the line between them.

Tiny synthetic-MNIST iterative runs (784-16-8-10, 200 iterations, evaluations every 50), k = 0
and k = 100, with the pairs of their tickets and random-mask controls: trained once for the
session (tests/conftest.py, ``instability_root``; test_beyond adds to a copy of them).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import preloaded
import pytest
from conftest import INSTABILITY_PAIRS, INSTABILITY_TINY

from lth_jax import data as data_lib
from lth_jax import instability, programs, runner, store
from lth_jax import masks as masks_lib
from lth_jax.reproduction import instability_runs, mnist

ROOT = Path(__file__).resolve().parents[1]
TINY = INSTABILITY_TINY
ANALYSIS = instability_runs.Analysis(**INSTABILITY_PAIRS)  # ticket and random pairs at r00 and r02


@pytest.fixture(scope="module")
def stored(instability_root):
    """``(root, {k: (lottery, run path, analysis path)})`` for k = 0 and 100: the session's runs and
    analyses (tests/conftest.py), read as they are."""
    out = {}
    for k in (0, 100):
        lottery = mnist.Settings(**TINY, rewind_step=k).lottery()
        out[k] = (lottery, runner.run_dir(lottery, instability_root),
                  instability_runs.analysis_dir(lottery, ANALYSIS, instability_root))
    assert all(d.is_dir() for _, run, path in out.values() for d in (run, path))
    return instability_root, out


@pytest.fixture
def own_copy(stored, tmp_path):
    """The stored runs and analyses copied for a test that adds to them or damages them."""
    root, runs = stored
    copy = Path(shutil.copytree(root, tmp_path / "runs"))
    return copy, {k: (lottery, copy / run.relative_to(root), copy / path.relative_to(root))
                  for k, (lottery, run, path) in runs.items()}


def _trained_copies(lottery, run_path, level, synthetic_data, keys_of):
    """Train the level's ticket rows of ``lottery`` from where the run starts them, batch keys by
    ``keys_of(keys)``: the reference computation of a copy, by hand."""
    params, masks, keys, states = instability_runs._start(lottery, run_path, level)
    n = len(lottery.procedure.seeds)
    rows = jnp.arange(n)
    job = (jax.tree.map(lambda x: x[rows], params), jax.tree.map(lambda x: x[rows], masks), keys_of(keys[rows]),
           None if states is None else jax.tree.map(lambda x: x[rows], states))
    k = lottery.procedure.rewind_step
    trained, _ = programs.train_trials(lottery.trainer, lottery.network, job, synthetic_data, runner.Progress(), 2048,
                                     **({"start_step": k} if k else {}))
    return masks_lib.apply(trained, job[1])


@pytest.mark.parametrize("k", [0, 100])
def test_copy_a_of_a_ticket_is_the_run_s_own_training(stored, synthetic_data, k):
    """Copy a of a ticket is read from the run; retraining it from the run's start with the run's
    batch key gives it bit for bit (so reading it instead of training it changes no number)."""
    _, runs = stored
    lottery, run_path, _ = runs[k]
    for level in runner.plan(lottery):
        again = _trained_copies(lottery, run_path, level, synthetic_data, lambda keys: keys)
        rec = store.load_level(run_path, level.name)
        kept = store.subtree(rec.arrays, "trained")
        for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(kept), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("k", [0, 100])
def test_the_barrier_is_that_of_copy_a_and_copy_b_along_the_straight_line(stored, synthetic_data, k):
    """The stored errors are the test error of (1 - alpha) a + alpha b, with a the run's ticket
    and b the same start trained on batches from fold_in(K, COPY_B); barrier = max - mean of ends."""
    _, runs = stored
    lottery, run_path, path = runs[k]
    level = runner.plan(lottery)[-1]
    a = masks_lib.apply(jax.tree.map(jnp.asarray, store.subtree(store.load_level(run_path, level.name).arrays,
                                                                "trained")),
                        runner.stored_masks(store.subtree(store.load_level(run_path, level.name).arrays, "masks")))
    b = _trained_copies(lottery, run_path, level, synthetic_data,
                        lambda keys: jax.vmap(lambda key: jax.random.fold_in(key, instability_runs.COPY_B))(keys))
    test_x, test_y = synthetic_data[1]
    rec = store.load_level(path, instability_runs.record_name(level, "ticket"))
    alphas = np.linspace(0, 1, ANALYSIS.alphas, dtype=np.float32)
    for j, seed_row in enumerate(range(len(rec.metrics["pairs"]))):
        one = jax.tree.map(lambda x, j=j: x[j], a)
        two = jax.tree.map(lambda x, j=j: x[j], b)
        errors = []
        for t in alphas:
            net = jax.tree.map(lambda x, y, t=t: (1 - t) * x + t * y, one, two)
            logits = lottery.network.module.apply({"params": net}, test_x)
            errors.append(float(np.mean(np.argmax(np.asarray(logits), axis=-1) != np.asarray(test_y))))
        np.testing.assert_allclose(rec.arrays["errors"][seed_row], errors, atol=1.5 / test_x.shape[0])
        pair = rec.metrics["pairs"][seed_row]
        assert pair["barrier"] == pytest.approx(max(rec.arrays["errors"][seed_row])
                                                - (errors[0] + errors[-1]) / 2, abs=1.5 / test_x.shape[0])
        assert pair["barrier"] >= 0


def test_copies_differ_in_data_order_only(stored, synthetic_data):
    """The two copies of a pair start from the same weights (same masks) but see different
    batches, so they end as different networks."""
    _, runs = stored
    lottery, run_path, _ = runs[0]
    level = runner.plan(lottery)[-1]
    rec = store.load_level(run_path, level.name)
    a = store.subtree(rec.arrays, "trained")
    b = _trained_copies(lottery, run_path, level, synthetic_data,
                        lambda keys: jax.vmap(lambda key: jax.random.fold_in(key, instability_runs.COPY_B))(keys))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).shape == np.asarray(y).shape
    kernels = [(np.asarray(a[n]["kernel"]), np.asarray(b[n]["kernel"])) for n in a]
    assert all(np.array_equal(x == 0, y == 0) for x, y in kernels)  # the same mask
    assert all(not np.array_equal(x, y) for x, y in kernels)  # different weights


def test_every_chosen_level_has_a_pair_per_seed_and_role(stored):
    """Each chosen level stores one record per role with one pair per seed, per-role statistics
    over the pairs (sample sizes included) and the rewind step it was started from."""
    _, runs = stored
    for k, (lottery, _, path) in runs.items():
        levels = ANALYSIS.levels(runner.plan(lottery))
        assert store.levels(path) == [instability_runs.record_name(lv, r) for lv in levels
                                      for r in instability_runs.MASKED_ROLES if r in ANALYSIS.roles]
        for lv in levels:
            for role in ANALYSIS.roles:
                m = store.load_level(path, instability_runs.record_name(lv, role), arrays=False).metrics
                assert (m["rewind_step"], m["role"], m["plan_level"]) == (k, role, lv.name)
                assert [p["seed"] for p in m["pairs"]] == list(TINY["seeds"])
                s = m["summary"]
                assert s["pairs"] + s["diverged"] == len(TINY["seeds"])
                barriers = [p["barrier"] for p in m["pairs"] if not p["diverged"]]
                assert s["barrier"]["mean"] == pytest.approx(np.mean(barriers))


def test_asking_for_more_roles_later_adds_only_their_records(own_copy, synthetic_data):
    """Roles are records of their own: a second analysis with one more role trains only that role's
    copies (one per seed and level, both copies) and leaves the stored ones as they were."""
    root, runs = own_copy
    lottery, _, path = runs[0]
    before = {name: store.load_level(path, name).metrics for name in store.levels(path)}

    class Count(runner.Progress):
        trained = 0

        def level_start(self, index, depth, runs_, trials, steps):
            Count.trained += trials

    more = dataclasses.replace(ANALYSIS, roles=("ticket", "reinit", "random"))
    assert instability_runs.run(lottery, more, synthetic_data, root, progress=Count()) == path
    levels = ANALYSIS.levels(runner.plan(lottery))
    assert Count.trained == 2 * len(TINY["seeds"]) * len(levels)
    for name, metrics in before.items():
        assert store.load_level(path, name).metrics == metrics
    assert all(store.done(path, instability_runs.record_name(lv, "reinit")) for lv in levels)


def test_random_mask_pairs_start_as_the_run_s_random_control_would(stored, synthetic_data):
    """The controls' pairs start from the controls a run with --controls=1,1,1 builds: same masks
    (a random-mask control: the ticket's per-layer counts at new places) and weights."""
    _, runs = stored
    lottery, run_path, _ = runs[0]
    level = runner.plan(lottery)[-1]
    pairs_of = instability_runs.pairing(lottery)
    params, masks, _, _ = instability_runs._start(pairs_of, run_path, level)
    with_random = mnist.Settings(**{**TINY, "reinit": 1, "shuffle": 1, "random": 1}).lottery()
    init = runner.stored_init(lottery, run_path)
    ticket = runner.stored_masks(store.subtree(store.load_level(run_path, level.name).arrays, "masks"))
    ref_params, ref_masks, _ = runner.build_trials(with_random, init, ticket, level)
    for x, y in zip(jax.tree.leaves((params, masks)), jax.tree.leaves((ref_params, ref_masks)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_stored_analysis_is_read_back_not_recomputed_and_a_damaged_level_is(own_copy, synthetic_data):
    """Re-running trains nothing; a corrupted level record is named and recomputed, to the same numbers."""
    root, runs = own_copy
    lottery, _, path = runs[0]
    name = instability_runs.record_name(ANALYSIS.levels(runner.plan(lottery))[-1], "random")
    before = store.load_level(path, name)

    class Notes(runner.Progress):
        def __init__(self):
            self.notes, self.trained = [], 0

        def level_start(self, index, depth, runs_, trials, steps):
            self.trained += trials

        def note(self, message):
            self.notes.append(message)

    quiet = Notes()
    instability_runs.run(lottery, ANALYSIS, synthetic_data, root, progress=quiet)
    assert quiet.trained == 0
    (path / f"{name}.json").write_text("{ not json")
    loud = Notes()
    instability_runs.run(lottery, ANALYSIS, synthetic_data, root, progress=loud)
    assert loud.trained > 0 and any(name in n for n in loud.notes)
    after = store.load_level(path, name)
    np.testing.assert_array_equal(after.arrays["errors"], before.arrays["errors"])


def test_the_analysis_refuses_bad_settings():
    with pytest.raises(ValueError, match="roles"):
        instability_runs.Analysis(roles=("ticket", "continue"))
    with pytest.raises(ValueError, match="alphas"):
        instability_runs.Analysis(alphas=1)
    with pytest.raises(ValueError, match="every"):
        instability_runs.Analysis(every=0)
    han = mnist.Settings(**{**TINY, "mode": "han"}).lottery()
    with pytest.raises(ValueError, match="han"):
        instability_runs.pairing(han)


def test_levels_every_n_keeps_the_first_and_the_last():
    plan = [runner.Level(f"r{i:02d}", i, i, 100.0, None) for i in range(15)]
    names = [lv.name for lv in instability_runs.Analysis(every=7).levels(plan)]
    assert names == ["r00", "r07", "r14"]
    assert len(instability_runs.Analysis(every=1).levels(plan)) == 15


def test_path_evaluation_in_pieces_equals_one_program(stored, synthetic_data):
    """A small memory budget splits the pairs into several programs: same errors."""
    _, runs = stored
    lottery, _, path = runs[0]
    rec = store.load_level(path, store.levels(path)[0])
    rng = np.random.default_rng(0)
    shapes = lottery.network.shapes()
    a = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal((3, *s.shape)).astype(np.float32) * 0.1), shapes)
    b = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal((3, *s.shape)).astype(np.float32) * 0.1), shapes)
    whole = instability_runs._paths(lottery, ANALYSIS, a, b, synthetic_data, 2048)
    pieces = instability_runs._paths(lottery, ANALYSIS, a, b, synthetic_data, 1)
    np.testing.assert_array_equal(whole.errors, pieces.errors)
    ref = instability.path_errors(lottery.network.module.apply, a, b, instability.grid(ANALYSIS.alphas),
                                  *synthetic_data[1])
    np.testing.assert_array_equal(whole.errors, np.asarray(ref.errors))
    assert rec.arrays["errors"].shape[1] == ANALYSIS.alphas


@pytest.mark.skipif(not os.environ.get(data_lib.MNIST_DIR_ENV), reason=f"needs {data_lib.MNIST_DIR_ENV} (real MNIST)")
def test_the_driver_reports_the_barrier_per_level_and_k_and_resumes(tmp_path):
    """python -m experiments.instability: a table row per k, level and role, both PNGs, and a second
    run of the same command trains nothing (everything is read back)."""
    argv = [sys.executable, "-m", "experiments.instability", "--preset=smoke", "--hidden=16,8", "--iterations=200",
            "--eval_every=50", "--average_over=50", "--stable_for=50", "--seeds=2", "--min_remaining=70",
            "--rewind_steps=100", "--alphas=5", "--every=2", f"--out_dir={tmp_path}", "--noprogress"]
    first = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [line.split() for line in first.stdout.splitlines() if line.split()[:1] == ["100"]]
    assert sorted((r[1], r[3]) for r in rows) == sorted(
        (lv, role) for lv in ("r00", "r02") for role in ("ticket", "random"))
    for png in ("instability_barrier.png", "instability_path.png"):
        assert (tmp_path / "figures" / png).stat().st_size > 1000
    written = {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*.npz")}
    again = preloaded.run(argv, cwd=ROOT, timeout=600)  # tests/preloaded.py: a fresh python's answer, sooner
    assert again.returncode == 0, again.stderr[-2000:]
    table = [line for line in first.stdout.splitlines() if line.split()[:1] == ["100"]]
    assert table == [line for line in again.stdout.splitlines() if line.split()[:1] == ["100"]]
    assert {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*.npz")} == written  # no record written again
