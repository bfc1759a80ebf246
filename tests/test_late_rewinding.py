"""Late rewinding (Frankle et al. 2019, "Stabilizing the lottery ticket hypothesis"; issue 9):
tickets are reset to their original's weights at training step k instead of step 0, and trained
from step k to the end with the original's batch order from k on. The originals keep snapshots
(weights and optimiser state) at chosen steps, so k is chosen after the fact: a run with another
k trains no original, it reuses the stored one.

Tiny synthetic-MNIST runs (784-16-8-10, 200 iterations, evaluations every 50, snapshots at 50
and 100), each shared by the tests of this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import preloaded
import pytest
from conftest import synthetic_mnist

from lth_jax import judges, pruning, runner, store, trainers, transforms
from lth_jax import masks as masks_lib
from lth_jax.reproduction import mnist
from lth_jax.trainers import step as train_step

ROOT = Path(__file__).resolve().parents[1]
K = 100
TINY = dict(mode="iterative", hidden=(16, 8), iterations=200, eval_every=50, lr=0.2, seeds=(0, 1), reinit=1,
            shuffle=1, random=1, min_remaining=70.0, average_over=50, stable_for=50, snapshot_steps=(0, 50, 100))
BASE = mnist.Settings(**TINY)                          # rewind_step 0: the paper, with snapshots kept
LATE = BASE.replace(rewind_step=K)


class Killed(Exception):
    pass


class Recorder(runner.Progress):
    """What the runner trained: (level index, trials, steps) per program, steps reported, notes."""

    def __init__(self):
        self.programs, self.steps_seen, self.notes = [], 0, []

    def level_start(self, index, depth, runs, trials, steps):
        self.programs.append((index, trials, steps))

    def steps(self, n):
        self.steps_seen += n

    def note(self, message):
        self.notes.append(message)


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(256, 128)


@pytest.fixture(scope="module")
def sgd(data, tmp_path_factory):
    """The base run (k = 0, snapshots kept), then k = 100 and k = 50 in the same root."""
    root = tmp_path_factory.mktemp("sgd")
    base = mnist.run(BASE, data, root)
    late, trained = {}, {}
    for k in (K, 50):
        progress, names = Recorder(), []
        late[k] = mnist.run(BASE.replace(rewind_step=k), data, root, progress=progress,
                            after_level=lambda lv, m, names=names: names.append(lv.name))
        trained[k] = (progress, names)
    return root, base, late, trained


@pytest.fixture(scope="module")
def momentum(data, tmp_path_factory):
    """A rewound run with momentum (an optimiser with state) and no base run stored before it."""
    settings = LATE.replace(optimizer="momentum", lr=0.05)
    root = tmp_path_factory.mktemp("momentum")
    progress = Recorder()
    return settings, mnist.run(settings, data, root, progress=progress), progress


def records(path):
    return {name: store.load_level(path, name) for name in store.levels(path)}


def tree(record, key):
    return store.subtree(record.arrays, key)


def rows(t, idx):
    return jax.tree.map(lambda a: np.asarray(a)[idx], t)


def equal_trees(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


# ---------------------------------------------------------------- the procedure


def by_hand(settings, data, k):
    """Train the originals k steps, then to the end; prune one round (20% of each hidden layer's
    weights, 10% of the output layer's); reset the survivors to their step-k values (and the
    optimiser state, masked); train from step k to the end on the original's batches.
    Only lth_jax.trainers.step and lth_jax.pruning, with the documented keys of runner.SeedKeys."""
    net = mnist.network(settings.hidden, settings.std)
    opt = train_step.make_optimizer(settings.optimizer, settings.lr)
    loss, acc = train_step.softmax_ce(net.module.apply), train_step.accuracy(net.module.apply)

    def segment(steps):
        fn = train_step.minibatch_segment(loss, acc, opt, steps, settings.batch_size, settings.eval_every)
        return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, None, None)))

    seeds = jnp.asarray(settings.seeds, jnp.uint32)
    init = jax.vmap(lambda s: net.init(jax.random.fold_in(jax.random.key(s), 0)))(seeds)
    key = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(jax.random.key(s), 1), 0))(seeds)
    full = masks_lib.ones_like(init)
    state = jax.vmap(lambda p, m: train_step.start(opt, p, m))(init, full)
    at_k, _ = segment(k)(state, full, key, *data)
    original, original_curve = segment(settings.iterations - k)(at_k, full, key, *data)
    prune = jax.vmap(lambda p, m: pruning.magnitude(p, m, pruning.layer_rates(p, settings.rate, settings.rate / 2)))
    ticket_masks = prune(original.params, full)
    trace, rest = at_k.opt_state  # momentum: (TraceState, EmptyState)
    reset = train_step.TrainState(masks_lib.apply(at_k.params, ticket_masks),
                             (optax.TraceState(trace=masks_lib.apply(trace.trace, ticket_masks)), rest),
                             at_k.diverged_at, at_k.step, at_k.stop_at)
    ticket, ticket_curve = segment(settings.iterations - k)(reset, ticket_masks, key, *data)
    return at_k, original, ticket_masks, ticket, ticket_curve


def test_late_rewinding_equals_train_k_steps_prune_reset_to_the_step_k_values_and_train_the_rest(momentum, data):
    settings, path, _ = momentum
    at_k, original, ticket_masks, ticket, curve = jax.device_get(by_hand(settings, data, K))
    recs = records(path)
    n = len(settings.seeds)
    equal_trees(tree(recs["r00"], "trained"), original.params)          # the originals, trained once
    equal_trees(tree(recs["r00"], f"snapshots/{K}/params"), at_k.params)  # their step-k weights ...
    trace = [recs["r00"].arrays[f"snapshots/{K}/opt/{i}"] for i in range(len(jax.tree.leaves(at_k.opt_state)))]
    equal_trees(trace, jax.tree.leaves(at_k.opt_state))                  # ... and optimiser state
    equal_trees(tree(recs["r01"], "masks"), ticket_masks)                 # pruned from the trained originals
    equal_trees(tree(recs["r01"], "trained"), ticket.params)              # reset to step k, trained k..end
    stored = recs["r01"].arrays["curves/accuracy"][:n]
    np.testing.assert_array_equal(stored[:, K // settings.eval_every:], curve.accuracy)
    assert recs["r01"].metrics["rewind_step"] == K


def test_controls_of_a_rewound_level_start_from_step_k_and_their_optimiser_state_moves_with_their_weights(momentum):
    """Reinit: a fresh draw and a fresh optimiser state. Shuffle: the step-k values moved, and the
    momentum moved by the same permutation. Random mask: the step-k values and momentum at the
    new positions. Tickets: both masked."""
    settings, path, _ = momentum
    lottery = settings.lottery()
    level = runner.plan(lottery)[1]
    recs = records(path)
    snapshot = runner.original_snapshot(lottery, recs["r00"], K)
    m = jax.tree.map(jnp.asarray, tree(recs["r01"], "masks"))
    params, tmasks, keys, states = jax.device_get(runner.rewound_trials(lottery, snapshot, m, level))
    values, (trace, _) = jax.device_get(snapshot)
    momenta = states[0].trace
    n = len(settings.seeds)
    for s in range(n):
        one = lambda t, s=s: rows(t, s)  # noqa: E731
        equal_trees(rows(params, s), masks_lib.apply(one(values), one(m)))
        equal_trees(rows(momenta, s), masks_lib.apply(one(trace.trace), one(m)))
        equal_trees(rows(momenta, n + s), jax.tree.map(np.zeros_like, one(trace.trace)))  # reinit: no history
        key = lambda stream, s=s: jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(  # noqa: E731
            jax.random.key(settings.seeds[s]), stream), level.level_id), 0)
        sp, sm = transforms.shuffle(key(3), one(values), one(m))
        equal_trees((rows(params, 2 * n + s), rows(tmasks, 2 * n + s)), (sp, sm))
        moved = transforms.permute(one(trace.trace), transforms.permutations(key(3), one(values)))
        equal_trees(rows(momenta, 2 * n + s), masks_lib.apply(moved, sm))
        rp, rm = transforms.random_mask(key(4), one(values), one(m))
        equal_trees((rows(params, 3 * n + s), rows(tmasks, 3 * n + s)), (rp, rm))
        equal_trees(rows(momenta, 3 * n + s), masks_lib.apply(one(trace.trace), rm))
    # every trial keeps its own batch order (tickets: the original's, slot 0)
    np.testing.assert_array_equal(jax.random.key_data(keys[:n]), jax.random.key_data(jax.vmap(
        lambda s: jax.random.fold_in(jax.random.fold_in(jax.random.key(s), 1), 0))(jnp.asarray(settings.seeds))))
    curves = recs["r01"].arrays["curves/accuracy"]
    assert curves.shape == (4 * n, settings.iterations // settings.eval_every)
    assert np.isnan(curves[:, :K // settings.eval_every]).all() and np.isfinite(curves[:, K // 50:]).all()
    np.testing.assert_array_equal(recs["r01"].arrays["curves/start_step"], np.full(4 * n, K))


def test_a_rewound_run_with_no_stored_original_trains_it_once_in_its_base_run(momentum):
    settings, path, progress = momentum
    base = runner.run_dir(runner.base_lottery(settings.lottery()), path.parent)
    assert base != path and store.levels(base) == ["init", "r00"]  # the base run holds the original only
    n = len(settings.seeds)
    trials = 4 * n
    assert progress.programs == [(0, trials, settings.iterations), (1, trials, settings.iterations - K),
                                 (2, trials, settings.iterations - K)]
    assert store.load_level(path, "r00").metrics["copied_from"] == f"{base.name}/r00"
    assert store.load_level(base, "r00").metrics["snapshot_steps"] == [50, 100]


def test_rewind_step_0_gives_exactly_todays_numbers(sgd, data, tmp_path):
    _, base, _, _ = sgd
    plain = BASE.replace(snapshot_steps=(0,))
    assert plain.hashed() == BASE.hashed() and "rewind_step" not in BASE.hashed()
    today = mnist.run(plain, data, tmp_path)
    assert today.name == base.name  # the same run directory: snapshots are not hashed
    a, b = records(today), records(base)
    assert list(a) == list(b) == ["init", "r00", "r01", "r02"]
    for name in a:
        kept = {k: v for k, v in b[name].arrays.items() if not k.startswith("snapshots/")}
        assert sorted(a[name].arrays) == sorted(kept)
        for key in kept:
            np.testing.assert_array_equal(a[name].arrays[key], kept[key], err_msg=f"{name} {key}")
        strip = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "snapshot_steps")}  # noqa: E731
        assert strip(a[name].metrics) == strip(b[name].metrics)
    assert "snapshot_steps" not in a["r00"].metrics and b["r00"].metrics["snapshot_steps"] == [50, 100]


def test_a_second_rewind_step_reuses_the_stored_original_nothing_is_retrained(sgd):
    root, base, late, trained = sgd
    original = store.load_level(base, "r00")
    for k in (K, 50):
        progress, names = trained[k]
        assert names == ["r01", "r02"]                         # stored now: the pruned levels only
        assert [p[0] for p in progress.programs] == [1, 2]     # no program for level 0
        assert progress.steps_seen == 2 * (BASE.iterations - k)
        copy = store.load_level(late[k], "r00")
        assert copy.metrics["copied_from"] == f"{base.name}/r00" and copy.metrics["snapshot_steps"] == [k]
        want = {key: v for key, v in original.arrays.items()
                if not key.startswith("snapshots/") or key.startswith(f"snapshots/{k}/")}
        assert sorted(copy.arrays) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(copy.arrays[key], want[key], err_msg=key)
        assert store.settings_hash(mnist.load_settings(late[k]).hashed()) in late[k].name
        assert mnist.load_settings(late[k]).rewind_step == k
    assert len({base, late[K], late[50]}) == 3
    assert store.levels(base) == ["init", "r00", "r01", "r02"]  # the base run is untouched
    # pruning starts from the same originals, so the first ticket masks agree; the tickets differ
    equal_trees(tree(store.load_level(late[K], "r01"), "masks"), tree(store.load_level(late[50], "r01"), "masks"))
    assert not np.array_equal(store.load_level(late[K], "r01").arrays["trained/Dense_2/kernel"],
                              store.load_level(late[50], "r01").arrays["trained/Dense_2/kernel"])


def test_a_snapshot_the_original_lacks_is_taken_by_training_only_the_originals_up_to_step_k(sgd, data, tmp_path):
    _, _, late, _ = sgd
    mnist.run(BASE.replace(snapshot_steps=(0,)), data, tmp_path)   # originals stored without snapshots
    progress = Recorder()
    path = mnist.run(LATE, data, tmp_path, progress=progress)
    assert any(f"no snapshot at step(s) 50, 100: training its originals to step {K}" in n for n in progress.notes)
    assert [p[0] for p in progress.programs] == [1, 2]
    assert progress.steps_seen == K + 2 * (BASE.iterations - K)   # k steps of the seeds' originals, once
    for name in ("r00", "r01", "r02"):  # the same numbers as when the snapshot was kept from the start
        a, b = store.load_level(path, name), store.load_level(late[K], name)
        assert sorted(a.arrays) == sorted(b.arrays)
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=f"{name} {key}")


def test_a_killed_rewound_run_resumes_and_gives_the_uninterrupted_runs_records(sgd, data, tmp_path):
    _, _, late, _ = sgd

    def kill_at(name):
        def hook(level, metrics):
            if level.name == name:
                raise Killed
        return hook

    with pytest.raises(Killed):  # killed right after the base run stored the original, before the copy
        mnist.run(LATE, data, tmp_path, after_level=kill_at("r00"))
    path = mnist.run_dir(LATE, tmp_path)
    assert store.levels(path) == []
    with pytest.raises(Killed):  # then killed after the first rewound level
        mnist.run(LATE, data, tmp_path, after_level=kill_at("r01"))
    assert store.levels(path) == ["init", "r00", "r01"]
    progress, names = Recorder(), []
    mnist.run(LATE, data, tmp_path, progress=progress, after_level=lambda lv, m: names.append(lv.name))
    assert names == ["r02"] and [p[0] for p in progress.programs] == [2]
    for name in store.levels(late[K]):
        a, b = store.load_level(path, name), store.load_level(late[K], name)
        assert sorted(a.arrays) == sorted(b.arrays)
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=f"{name} {key}")
        strip = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
        assert strip(a.metrics) == strip(b.metrics)


# ---------------------------------------------------------------- curves at absolute steps


def test_a_rewound_curve_is_judged_at_absolute_steps():
    """Footnote 5's rule on a curve that starts at step k (NaN before it): judged on the part
    from k, reported at absolute steps, so it agrees with a curve from step 0 that holds the same
    values from k on (without the NaN, every moving average would be NaN and nothing converge)."""
    judge = judges.Convergence(eval_every=50, average_over=100, stable_for=100, tolerance=0.002)
    late = np.array([[np.nan, np.nan, 0.5, 0.7, 0.9, 0.9, 0.9, 0.9]], np.float32)
    whole = np.array([[0.1, 0.3, 0.5, 0.7, 0.9, 0.9, 0.9, 0.9]], np.float32)
    got = judge.per_trial({"curves/accuracy": late, "curves/diverged_at": np.array([-1]),
                           "curves/start_step": np.array([100])})
    ref = judge.per_trial({"curves/accuracy": whole, "curves/diverged_at": np.array([-1])})
    assert got["convergence_iteration"][0] == ref["convergence_iteration"][0] == 300  # 50 x (evaluation 5 + 1)
    assert got["final_accuracy"][0] == np.float32(0.9)


def test_the_stored_trials_of_a_rewound_run_converge_no_earlier_than_their_rewind_step(sgd):
    """Re-judged from the stored curves under a tolerance loose enough for these tiny, noisy runs
    (128 test examples) to converge at all."""
    _, _, late, _ = sgd
    levels = mnist.resummarize(late[K], LATE.replace(tolerance=0.2))
    converged = [t["convergence_iteration"] for m in levels if m["level"] != "r00" for t in m["trials"]
                 if np.isfinite(t["convergence_iteration"])]
    assert converged and min(converged) > K


# ---------------------------------------------------------------- settings and flags


def test_the_rewind_step_enters_the_hash_only_when_set_and_snapshot_steps_never():
    assert BASE.hashed() == BASE.replace(snapshot_steps=(0,)).hashed() == BASE.replace(snapshot_steps=(0, 50)).hashed()
    assert LATE.hashed() == {**BASE.hashed(), "rewind_step": K}
    assert runner.base_lottery(LATE.lottery()).hashed() == BASE.hashed()
    assert mnist.Settings(snapshot_steps=(500, 100)).snapshot_steps == (0, 100, 500)


@pytest.mark.parametrize("changes, says", [
    (dict(rewind_step=150), "rewind_step must be one of snapshot_steps (0, 50, 100), not 150"),
    (dict(snapshot_steps=(0, 75)),
     "snapshot_steps must be multiples of eval_every (50) below iterations (200), not 75"),
    (dict(snapshot_steps=(0, 200), rewind_step=200), "rewind_step must be below iterations (200), not 200"),
    (dict(snapshot_steps=(0, 250)), "not 250"),
    (dict(snapshot_steps=(50, 50)), "snapshot_steps must be distinct"),
    (dict(mode="han", rewind_step=K), "rewind_step must be 0 in han mode"),
    (dict(random=-1), "control counts must be >= 0"),
])
def test_settings_that_cannot_rewind_are_refused_in_one_line(changes, says):
    with pytest.raises(ValueError) as e:
        BASE.replace(**changes)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_trainer_that_cannot_stop_mid_training_cannot_keep_snapshots():
    lottery = BASE.lottery()
    with pytest.raises(ValueError, match="snapshot_steps must be"):
        lottery.replace(trainer=trainers.FullBatch())


def test_controls_takes_two_counts_as_before_or_three_with_the_random_masks():
    code = ("import sys; from experiments import cli, mnist as m; m.define(); cli.FLAGS(['x', *sys.argv[1:]]); "
            "s = m.settings_from_flags(); print(s.reinit, s.shuffle, s.random, s.rewind_step, s.snapshot_steps)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}

    def parsed(*argv):
        out = preloaded.run([sys.executable, "-c", code, *argv], cwd=ROOT, env=env, timeout=120)  # tests/preloaded.py
        assert out.returncode == 0, out.stderr
        return out.stdout.split(maxsplit=4)

    assert parsed("--controls=1,1") == ["1", "1", "0", "0", "(0,)\n"]
    assert parsed("--controls=2,1,3", "--snapshot_steps=100,500", "--rewind_step=500") == [
        "2", "1", "3", "500", "(0, 100, 500)\n"]
