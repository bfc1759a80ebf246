"""The training contract (lth_jax.contract, issue 19): the models the field trains go through the
runner as they are. A conv net with BatchNorm and Dropout whose ``__call__`` takes ``train``,
trained by an optax transformation, on a data set value with augmentation and normalisation;
one-shot and iterative with every control, late rewinding, resuming; rules that see the data;
and every mistake refused in one line before anything is written.
"""

from __future__ import annotations

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax import contract, datasets, judges, optimizers, rules, runner, store, trainers

SEEDS = (0, 1)
STEPS, EVERY = 60, 20
JUDGE = judges.Convergence(eval_every=EVERY, average_over=20, stable_for=20)
# An optax transformation the runner knows nothing about, named for the hash.
OPTIMIZER = optax.chain(optax.clip_by_global_norm(5.0), optax.sgd(0.05, momentum=0.9))
TRAINER = trainers.Minibatch(optimizer=OPTIMIZER, optimizer_name="clip5+momentum0.05", batch_size=16,
                             iterations=STEPS, eval_every=EVERY)


class BatchNormDropoutNet(nn.Module):
    """Conv -> BatchNorm -> ReLU -> Dropout -> Dense, the Flax examples' ``train`` convention."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), strides=2)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        x = nn.Dropout(0.25, deterministic=not train)(x.reshape((x.shape[0], -1)))
        return nn.Dense(4)(x)


NET = runner.Network(BatchNormDropoutNet(), (8, 8, 1))


def quadrants(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic images whose label is their brightest quadrant."""
    x = (np.random.default_rng(seed).random((n, 8, 8, 1)) ** 2).astype(np.float32)
    return x, np.argmax(x.reshape(n, 2, 4, 2, 4).sum(axis=(2, 4)).reshape(n, 4), axis=1).astype(np.int32)


def dataset(name: str = "quadrants", train=None) -> datasets.Dataset:
    return datasets.Dataset(name, train=train or quadrants(256, 0), test=quadrants(64, 1),
                            augment=datasets.Compose((datasets.RandomCrop(1), datasets.HorizontalFlip())),
                            mean=(0.33,), std=(0.3,))


DATA = dataset()


def lottery(procedure: runner.Procedure, **kw) -> runner.Lottery:
    parts = dict(network=NET, procedure=procedure, prune=rules.LayerwiseMagnitude(), trainer=TRAINER, judge=JUDGE,
                 data=DATA)
    return runner.Lottery(**{**parts, **kw})


ONESHOT = runner.Procedure(mode="oneshot", seeds=SEEDS, reinit=1, shuffle=1, random=1, levels=(100, 40))
ITERATIVE = runner.Procedure(mode="iterative", seeds=SEEDS, reinit=1, shuffle=1, random=1, rounds=2)
LATE = dataclasses.replace(ONESHOT, rewind_step=20, snapshot_steps=(20,))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("contract")


@pytest.fixture(scope="module")
def oneshot(root):
    return runner.run(lottery(ONESHOT), root=root)


@pytest.fixture(scope="module")
def iterative(root):
    return runner.run(lottery(ITERATIVE), root=root)


def records(path) -> dict[str, store.Record]:
    return {r.name: r for r in runner.records(path, arrays=True)}


def test_the_contract_is_read_from_the_module():
    c = NET.contract()
    assert (c.collections, c.rngs, c.takes_train, c.classes) == (("batch_stats",), ("dropout",), True, 4)
    plain = runner.Network(nn.Dense(3), (5,)).contract()
    assert (plain.collections, plain.rngs, plain.takes_train, plain.stateful) == ((), (), False, False)


def test_batch_statistics_are_initialised_trained_and_stored_beside_the_trained_weights(oneshot):
    init = store.load_level(oneshot, runner.INIT)
    np.testing.assert_array_equal(init.arrays["init_state/batch_stats/BatchNorm_0/mean"], np.zeros((2, 4)))
    np.testing.assert_array_equal(init.arrays["init_state/batch_stats/BatchNorm_0/var"], np.ones((2, 4)))
    recs = records(oneshot)
    trials = len(runner.layout(ONESHOT))  # 2 tickets + 2 reinit + 2 shuffle + 2 random
    for rec in recs.values():
        mean = rec.arrays["state/batch_stats/BatchNorm_0/mean"]
        assert mean.shape == (trials, 4) and np.all(mean != 0)  # moved away from the initial zeros
    assert not any(k.startswith("masks/BatchNorm") and not rec.arrays[k].all()
                   for rec in recs.values() for k in rec.arrays)  # BatchNorm's scale and bias are never pruned


def test_tickets_and_shuffled_controls_start_from_the_initial_state_and_reinit_from_a_fresh_one():
    lt = lottery(ONESHOT)
    start = {"batch_stats": {"BatchNorm_0": {"mean": jnp.full((2, 4), 7.0), "var": jnp.full((2, 4), 3.0)}}}
    states = jax.device_get(runner.trial_states(lt, start, runner.plan(lt)[1]))
    mean = states["batch_stats"]["BatchNorm_0"]["mean"]
    roles = [t.role for t in runner.layout(ONESHOT)]
    for i, role in enumerate(roles):
        assert np.all(mean[i] == (0.0 if role == "reinit" else 7.0)), role


def test_a_module_s_state_and_dropout_are_used_in_training_and_not_in_evaluation():
    c = NET.contract()
    variables = c.variables(jax.random.key(0))
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    x = jnp.asarray(quadrants(8, 2)[0])
    a, new = c.apply(params, state, x, train=True, key=jax.random.key(1))
    b, _ = c.apply(params, state, x, train=True, key=jax.random.key(2))
    assert not np.allclose(a, b)  # dropout draws from the step's key
    assert not np.allclose(new["batch_stats"]["BatchNorm_0"]["mean"], 0.0)  # statistics updated in training
    e1, same = c.apply(params, state, x, train=False)
    e2, _ = c.apply(params, state, x, train=False)
    np.testing.assert_array_equal(e1, e2)  # evaluation is deterministic and leaves the state as it is
    assert same is state


def test_one_shot_iterative_and_late_rewinding_run_with_every_control(oneshot, iterative, root):
    assert list(records(oneshot)) == ["p100", "p40"]
    assert list(records(iterative)) == ["r00", "r01", "r02"]
    late = records(runner.run(lottery(LATE), root=root))
    p40 = late["p40"]
    assert {t["role"] for t in p40.metrics["trials"]} == {"ticket", "reinit", "shuffle", "random"}
    assert np.isnan(p40.arrays["curves/accuracy"][:, 0]).all() and p40.metrics["rewind_step"] == 20
    # the originals' BatchNorm statistics at step 20 are kept with their weights and optimiser state
    assert late["p100"].arrays["snapshots/20/state/batch_stats/BatchNorm_0/mean"].shape == (2, 4)


def test_a_vmapped_trial_equals_the_same_trial_run_alone(oneshot, tmp_path):
    """Seed 1 among two seeds against seed 1 alone: its dropout masks, augmentation and batches
    come from its own batch key, so training agrees to the last bits (a vmapped convolution is a
    grouped one, whose CPU kernel sums in another order: tests/test_runner.py)."""
    alone = records(runner.run(lottery(dataclasses.replace(ONESHOT, seeds=(1,))), root=tmp_path))
    together = records(oneshot)
    n = len(SEEDS)
    rows = [1, n + 1, 2 * n + 1, 3 * n + 1]  # seed 1's ticket, reinit, shuffle and random trials
    for name in ("p100", "p40"):
        want = alone[name].arrays
        got = {k: v[1:2] if k.startswith(("masks/", "trained/")) else v[rows]
               for k, v in together[name].arrays.items() if not k.startswith("snapshots/")}  # late rewinding's
        assert sorted(got) == sorted(want)
        for key in want:
            if key.startswith("masks/") or want[key].dtype.kind in "bi":
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)
            elif key == "curves/accuracy":
                np.testing.assert_allclose(got[key], want[key], atol=1 / 64 + 1e-6, err_msg=key)
            else:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6, err_msg=key)


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_uninterrupted_run_s_bits(iterative, tmp_path):
    lt = lottery(ITERATIVE)

    def kill_after_r01(level, metrics):
        if level.name == "r01":
            raise Killed

    with pytest.raises(Killed):
        runner.run(lt, root=tmp_path, after_level=kill_after_r01)
    resumed = records(runner.run(lt, root=tmp_path))
    for name, rec in records(iterative).items():
        assert sorted(rec.arrays) == sorted(resumed[name].arrays)
        for key, a in rec.arrays.items():
            np.testing.assert_array_equal(a, resumed[name].arrays[key], err_msg=f"{name} {key}")


def test_a_data_set_s_content_augmentation_and_normalisation_enter_the_hash():
    lt = lottery(ONESHOT)
    x, y = quadrants(256, 0)
    x = x.copy()
    x[0, 0, 0, 0] += 0.5
    changed = lt.replace(data=dataset(train=(x, y)))
    assert runner.run_dir(changed, "r") != runner.run_dir(lt, "r")
    plain = lt.replace(data=dataclasses.replace(DATA, augment=None))
    assert runner.run_dir(plain, "r") != runner.run_dir(lt, "r")


def test_changed_arrays_under_an_old_name_are_refused_rather_than_reused(tmp_path):
    lt = lottery(dataclasses.replace(ONESHOT, reinit=0, shuffle=0, random=0, levels=(100,)), data="mine")
    train, test = quadrants(256, 0), quadrants(64, 1)
    path = runner.run(lt, (train, test), tmp_path)
    noise = (np.random.default_rng(9).random(train[0].shape).astype(np.float32), train[1])
    with pytest.raises(runner.SetupError, match="not those .* was trained on"):
        runner.run(lt, (noise, test), tmp_path)
    assert store.levels(path) == ["init", "p100"]


class Flat(nn.Module):
    """Returns one number per example: not (batch, classes) logits."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x.reshape((x.shape[0], -1)))[:, 0]


class Broken(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(x) @ jnp.ones((5, 4))  # a shape error


@pytest.mark.parametrize("change, says", [
    (dict(network=runner.Network(Flat(), (8, 8, 1))), r"model Flat: returns \(2,\) .* \(batch, classes\)"),
    (dict(network=runner.Network(Broken(), (8, 8, 1))), r"model Broken fails on inputs of shape \(batch, 8, 8, 1\)"),
    (dict(network=runner.Network(BatchNormDropoutNet(), (6, 6, 1))), r"examples have shape \(8, 8, 1\)"),
    (dict(judge=judges.Convergence(eval_every=10, average_over=20, stable_for=20)), "every 10 steps .* every 20"),
])
def test_a_bad_model_or_setting_fails_in_one_line_with_nothing_written(change, says, tmp_path):
    with pytest.raises(ValueError, match=says) as e:
        runner.run(lottery(ONESHOT, **change), root=tmp_path / "runs")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()


def test_evaluation_that_needs_randomness_is_refused():
    class AlwaysDropout(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dropout(0.5, deterministic=False)(nn.Dense(3)(x))

    with pytest.raises(contract.ModelError, match="needs rng stream 'dropout' in evaluation"):
        runner.Network(AlwaysDropout(), (4,)).contract()


def test_any_optax_transformation_needs_a_name_for_the_hash():
    with pytest.raises(ValueError, match="optimizer_name"):
        trainers.Minibatch(optimizer=optax.adam(1e-3), iterations=STEPS, eval_every=EVERY)
    named = trainers.Minibatch(optimizer=optax.adam(1e-3), optimizer_name="adam1e-3", iterations=STEPS,
                               eval_every=EVERY)
    spec = trainers.Minibatch(optimizer=optimizers.SGD(optimizers.Warmup(10, optimizers.Cosine(0.1, 50)),
                                                       momentum=0.9, nesterov=True), iterations=STEPS, eval_every=EVERY)
    schedule = trainers.Minibatch("sgd", lr=optimizers.StepDecay(0.1, (30,)), iterations=STEPS, eval_every=EVERY)
    hashes = {store.settings_hash(t.hashed()) for t in (named, spec, schedule, TRAINER)}
    assert len(hashes) == 4
    assert trainers.Minibatch("sgd", 0.05).hashed()["lr"] == 0.05  # named optimisers keep their old hash fields


def test_a_stateful_network_stops_at_convergence(tmp_path):
    lt = lottery(dataclasses.replace(ONESHOT, stop_at_convergence=True, stop_every=20))
    rec = records(runner.run(lt, root=tmp_path))["p40"]
    assert rec.arrays["state/batch_stats/BatchNorm_0/mean"].shape == (8, 4)
    assert rec.arrays["curves/stop_step"].max() <= STEPS


def test_snip_prunes_at_initialisation_with_exact_counts_whatever_the_originals_trained(root, tmp_path):
    snip = lottery(dataclasses.replace(ONESHOT, levels=(100, 20)), prune=rules.SNIP(batch_size=32))
    recs = records(runner.run(snip, root=root))
    assert recs["p20"].metrics["pruned_at_init"] and "pruned_at_init" not in recs["p100"].metrics
    counts = rules.SNIP().counts(NET, value=20.0)
    assert recs["p20"].metrics["weights"] == counts  # conv at 20%, the head at 60%
    longer = dataclasses.replace(TRAINER, iterations=2 * STEPS)
    other = records(runner.run(snip.replace(trainer=longer), root=tmp_path))
    for key in (k for k in recs["p20"].arrays if k.startswith("masks/")):
        np.testing.assert_array_equal(recs["p20"].arrays[key], other["p20"].arrays[key], err_msg=key)


@pytest.mark.skipif(not os.environ.get("LTH_MNIST_DIR"), reason="set LTH_MNIST_DIR to the four MNIST .gz files")
def test_mnist_is_one_data_set_among_others_and_keeps_its_hash():
    ds = datasets.mnist(os.environ["LTH_MNIST_DIR"])
    assert ds.hashed() == "mnist" and ds.examples_shape == (784,) and ds.classes == 10
