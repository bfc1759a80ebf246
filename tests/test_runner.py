"""The lottery runner (lth_jax.runner) on a network the project does not ship: train, prune,
reset, repeat (paper section 1), one-shot (section 3), iterative (section 4) and Han et al.'s
continued training (section 6.4), with the reinit and shuffle controls, for any Flax model and
pruning rule.

The network is a small conv net (two nn.Conv layers in a nested module, and a Dense head, all
named by the user) on synthetic 8x8x1 images, trained for 60 mini-batch iterations; every run
is shared by the tests (module scope), so the file runs in about half a minute.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import judges, programs, pruning, rules, runner, store, trainers
from lth_jax import masks as masks_lib
from lth_jax.reproduction import mnist

SEEDS = (0, 1, 2)
TRAINER = trainers.Minibatch(lr=0.2, batch_size=32, iterations=60, eval_every=20)
JUDGE = judges.Convergence(eval_every=20, average_over=20, stable_for=20)
TEST_EXAMPLES = 128
ONESHOT = runner.Procedure(mode="oneshot", seeds=SEEDS, reinit=1, shuffle=1, levels=(100, 50, 20),
                           control_levels=(50,))
ITERATIVE = runner.Procedure(mode="iterative", seeds=SEEDS, reinit=1, shuffle=1, rounds=2)
HAN = runner.Procedure(mode="han", seeds=SEEDS, reinit=0, shuffle=1, rounds=2)


class Features(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), strides=2, name="z_conv")(x))
        return nn.relu(nn.Conv(4, (3, 3), strides=2, name="a_conv")(x))


class ConvNet(nn.Module):
    """Two conv layers (in a nested module) and a dense head: 36 + 144 + 64 weights. The names
    are the user's and sort against the call order (sorted, a_head would come first and
    features/z_conv last, as if it were the output layer)."""

    @nn.compact
    def __call__(self, x):
        x = Features(name="features")(x)
        return nn.Dense(4, name="a_head")(x.reshape((x.shape[0], -1)))


HIDDEN = ("features/z_conv", "features/a_conv")
OUTPUT = "a_head"
CONV = runner.Network(ConvNet(), (8, 8, 1), {"net": "conv 4-4, head 4"})


def conv_lottery(procedure: runner.Procedure, rule=None) -> runner.Lottery:
    return runner.Lottery(CONV, procedure, rule or rules.LayerwiseMagnitude(), TRAINER, JUDGE, data="quadrants")


@pytest.fixture(scope="module")
def data():
    """Learnable synthetic images: the label is the brightest quadrant."""
    rng = np.random.default_rng(0)

    def split(n):
        x = (rng.random((n, 8, 8, 1)) ** 2).astype(np.float32)
        quadrants = x.reshape(n, 2, 4, 2, 4).sum(axis=(2, 4)).reshape(n, 4)
        return jnp.asarray(x), jnp.asarray(np.argmax(quadrants, axis=1).astype(np.int32))

    return split(512), split(TEST_EXAMPLES)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def oneshot(data, root):
    lottery = conv_lottery(ONESHOT)
    return lottery, runner.run(lottery, data, root)


@pytest.fixture(scope="module")
def iterative(data, root):
    lottery = conv_lottery(ITERATIVE)
    return lottery, runner.run(lottery, data, root)


@pytest.fixture(scope="module")
def han(data, root):
    lottery = conv_lottery(HAN)
    return lottery, runner.run(lottery, data, root)


def global_magnitude(params, masks, rate=0.25):
    """A rule of one's own: drop the lowest-|w| quarter of the surviving weights of ALL kernels
    together (the paper prunes layer by layer)."""
    paths = masks_lib.kernel_paths(params)
    w = jnp.concatenate([jnp.abs(masks_lib.get(params, p)).ravel() for p in paths])
    alive = jnp.concatenate([masks_lib.get(masks, p).ravel() for p in paths])
    keep = pruning.keep_top_k(w, alive, pruning.survivors_after(jnp.sum(alive), rate))
    pieces = jnp.split(keep, np.cumsum([masks_lib.get(masks, p).size for p in paths])[:-1])
    shaped = [k.reshape(masks_lib.get(masks, p).shape) for p, k in zip(paths, pieces, strict=True)]
    return masks_lib.replace(masks, dict(zip(paths, shaped, strict=True)))


NO_CONTROLS = dataclasses.replace(ITERATIVE, reinit=0, shuffle=0)


@pytest.fixture(scope="module")
def grouped(data, root):
    """The paper's rule at two rates and a custom rule, iterative with no controls, run as one group."""
    lotteries = [conv_lottery(NO_CONTROLS), conv_lottery(NO_CONTROLS, rules.Custom("global 25%", global_magnitude)),
                 conv_lottery(NO_CONTROLS, rules.LayerwiseMagnitude(rate=0.5))]
    return lotteries, runner.run_groups(lotteries, data, root / "grouped")


def levels(path):
    return {r.name: r for r in runner.records(path, arrays=True)}


def tree(record, key):
    return store.subtree(record.arrays, key)


def kernel(tree_, layer):
    return masks_lib.get(tree_, layer)["kernel"]


def survivors(masks, layer):
    """Per seed, the surviving weights of ``layer``."""
    k = kernel(masks, layer)
    return k.reshape(k.shape[0], -1).sum(axis=1)


def roles(record):
    return [t["role"] for t in record.metrics["trials"]]


# ---------------------------------------------------------------- one-shot (section 3)


def test_one_shot_prunes_the_trained_originals_to_each_level_layer_by_layer_and_the_head_at_half_the_rate(oneshot):
    lottery, path = oneshot
    recs = levels(path)
    assert list(recs) == ["p100", "p50", "p20"]
    full = CONV.weight_counts()
    assert full == {"features/z_conv": 36, "features/a_conv": 144, "a_head": 64}
    trained, start = tree(recs["p100"], "trained"), tree(recs["p100"], "masks")
    for name, p in (("p50", 0.5), ("p20", 0.2)):
        m = tree(recs[name], "masks")
        for layer in HIDDEN:
            assert (survivors(m, layer) == round(full[layer] * p)).all(), (name, layer)
        assert (survivors(m, OUTPUT) == full[OUTPUT] - round(full[OUTPUT] * (1 - p) / 2)).all()
        assert recs[name].metrics["weights"] == recs[name].metrics["expected_weights"]  # the plan knew
        for layer in full:  # the lowest-|w| trained weights of each layer go, per seed
            w, kept = np.abs(kernel(trained, layer)), kernel(m, layer)
            for s in range(len(SEEDS)):
                assert w[s][~kept[s]].max() <= w[s][kept[s]].min()
        assert all(masks_lib.get(m, layer)["bias"].all() for layer in full)  # biases are never pruned
    assert all(kernel(start, layer).all() for layer in full)
    m50, m20 = tree(recs["p50"], "masks"), tree(recs["p20"], "masks")
    assert not any((kernel(m20, layer) & ~kernel(m50, layer)).any() for layer in full)  # smaller tickets nest


def test_controls_are_trained_only_at_the_control_levels(oneshot):
    _, path = oneshot
    recs = levels(path)
    n = len(SEEDS)
    assert roles(recs["p100"]) == roles(recs["p20"]) == ["ticket"] * n
    assert roles(recs["p50"]) == ["ticket"] * n + ["reinit"] * n + ["shuffle"] * n
    assert recs["p100"].arrays["curves/accuracy"].shape == (n, 3)
    assert recs["p50"].arrays["curves/accuracy"].shape == (3 * n, 3)
    assert set(recs["p20"].metrics["roles"]) == {"ticket"}


def test_tickets_restart_from_their_init_and_controls_are_what_the_paper_says(oneshot):
    lottery, path = oneshot
    init = tree(store.load_level(path, runner.INIT), "init")
    # seed s starts from network.init(fold_in(key(s), 0)) (SeedKeys)
    keys = lottery.keys.init(jnp.asarray([1], jnp.uint32), jnp.uint32(lottery.keys.init_code()))
    np.testing.assert_array_equal(jax.random.key_data(keys),
                                  jax.random.key_data(jax.random.fold_in(jax.random.key(1), 0))[None])
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda a: a[1:2], init),
                 jax.device_get(runner.initial_params(lottery, (1,))))
    level = runner.plan(lottery)[1]
    m = tree(levels(path)["p50"], "masks")
    params, trial_masks, _ = jax.device_get(runner.build_trials(
        lottery, jax.tree.map(jnp.asarray, init), jax.tree.map(jnp.asarray, m), level))
    n = len(SEEDS)
    for layer in CONV.weight_counts():
        k0, mk = kernel(init, layer), kernel(m, layer)
        p, pm = kernel(params, layer), kernel(trial_masks, layer)
        np.testing.assert_array_equal(p[:n], np.where(mk, k0, 0.0))  # winning ticket: survivors at their init
        np.testing.assert_array_equal(pm[n:2 * n], mk)  # control 1: the same architecture...
        assert not np.any((p[n:2 * n] == k0) & mk)  # ...with fresh values
        sm = pm[2 * n:]
        assert (survivors({"x": {"kernel": sm}}, "x") == survivors(m, layer)).all()  # control 2: same count,
        assert (sm != mk).any()  # at new places,
        for s in range(n):  # carrying the surviving initial values
            np.testing.assert_array_equal(np.sort(p[2 * n + s][sm[s]]), np.sort(k0[s][mk[s]]))


def test_a_vmapped_trial_equals_the_same_trial_run_alone(oneshot, data, tmp_path):
    """Seed 1's ticket and controls in the 3-seed run (9 trials in one program at p50, 3 at the
    other levels) against the 1-seed run of seed 1 (3 and 1 trials).

    What a trial starts from (initial values, masks, control draws, batch order) is the same bit
    for bit. What training makes of it agrees to the last bits only: XLA compiles one program per
    trial count, a vmapped convolution is one grouped convolution over the trials whose CPU kernel
    sums in an order that depends on the group count, and the batch loss's mean is vectorised
    differently (measured: 1 ulp in a forward pass; up to about 30 ulps of a weight, 2e-6
    relative, after 60 steps of this net; the MLP's weights stay bit-identical, its loss curve
    within 2 ulps)."""
    lottery, path = oneshot
    seed_1 = lottery.replace(procedure=dataclasses.replace(ONESHOT, seeds=(1,)))
    n = len(SEEDS)
    rows = [1, n + 1, 2 * n + 1]  # seed 1's ticket, reinit and shuffle trials at p50
    init = tree(store.load_level(path, runner.INIT), "init")
    m = jax.tree.map(jnp.asarray, tree(store.load_level(path, "p50"), "masks"))
    level = runner.plan(lottery)[1]
    three = jax.device_get(runner.build_trials(lottery, jax.tree.map(jnp.asarray, init), m, level))
    pick = lambda t: jax.tree.map(lambda a: a[1:2], t)  # noqa: E731
    one = jax.device_get(runner.build_trials(seed_1, runner.initial_params(seed_1), pick(m), level))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[rows], b), three[:2], one[:2])
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(three[2]))[rows], jax.random.key_data(one[2]))

    alone = runner.run(seed_1, data, tmp_path)
    together, by_itself = levels(path), levels(alone)
    for name in ("p100", "p50", "p20"):
        a, b = together[name].arrays, by_itself[name].arrays
        assert sorted(a) == sorted(b)
        got = {k: v[1:2] if k.startswith(("masks/", "trained/")) else v[rows if name == "p50" else [1]]
               for k, v in a.items()}
        assert_same_numbers(got, b, rtol=1e-5, atol=1e-7)  # about 80 ulps


def assert_same_numbers(got, want, rtol, atol, exact_masks=True):
    """Stored arrays equal up to float rounding: floats to ``rtol``/``atol``, test accuracy to one
    test example (the last bits of a logit can flip one), counts exactly. Masks exactly, or, when
    the trained weights they were cut from may differ in their last bits (``exact_masks=False``),
    with exact survivor counts and at most a near-tie's swap."""
    for key in want:
        if key.startswith("masks/") and not exact_masks:
            assert got[key].sum() == want[key].sum() and np.mean(got[key] == want[key]) > 0.99, key
        elif key.startswith("masks/") or want[key].dtype.kind in "bi":
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        elif key == "curves/accuracy":
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1 / TEST_EXAMPLES + 1e-6, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol, err_msg=key)


# ---------------------------------------------------------------- iterative (section 4)


def test_iterative_pruning_removes_20_percent_of_each_conv_layer_and_10_percent_of_the_head_each_round(iterative):
    lottery, path = iterative
    recs = list(levels(path).values())
    assert [r.name for r in recs] == ["r00", "r01", "r02"]
    expected = CONV.weight_counts()
    for prev, cur in zip([None, *recs], recs, strict=False):
        m = tree(cur, "masks")
        for layer, count in expected.items():
            assert (survivors(m, layer) == count).all(), (cur.name, layer)
        assert cur.metrics["weights"] == cur.metrics["expected_weights"]
        if prev is not None:  # the lowest-|w| trained weights of the previous ticket go; nothing comes back
            w, before = tree(prev, "trained"), tree(prev, "masks")
            for layer in expected:
                a, m0, m1 = np.abs(kernel(w, layer)), kernel(before, layer), kernel(m, layer)
                assert not (m1 & ~m0).any()
                for s in range(len(SEEDS)):
                    assert a[s][m0[s] & ~m1[s]].max() <= a[s][m1[s]].min()
        expected = {k: v - round(v * (0.1 if k == OUTPUT else 0.2)) for k, v in expected.items()}
    assert [r.metrics["percent_nominal"] for r in recs] == [100.0, 80.0, 64.0]


class Killed(Exception):
    pass


def test_a_killed_run_resumes_without_recomputing_and_gives_identical_records(iterative, data, tmp_path):
    lottery, whole = iterative

    def kill_after_r01(level, metrics):
        if level.name == "r01":
            raise Killed

    with pytest.raises(Killed):
        runner.run(lottery, data, tmp_path, after_level=kill_after_r01)
    assert store.levels(runner.run_dir(lottery, tmp_path)) == ["init", "r00", "r01"]
    trained = []
    resumed = runner.run(lottery, data, tmp_path, after_level=lambda lv, m: trained.append(lv.name))
    assert trained == ["r02"]
    for name in store.levels(whole):
        a, b = store.load_level(whole, name), store.load_level(resumed, name)
        assert sorted(a.arrays) == sorted(b.arrays)
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=f"{name} {key}")
        strip = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "checksum")}  # noqa: E731
        assert strip(a.metrics) == strip(b.metrics)


# ---------------------------------------------------------------- Han et al. (section 6.4)


def test_han_keeps_training_the_pruned_trained_weights_and_measures_a_rewound_copy(han):
    lottery, path = han
    recs = levels(path)
    n = len(SEEDS)
    assert roles(recs["r01"]) == ["ticket"] * n + ["shuffle"] * n + ["continue"] * n
    chain0, masks0, masks1 = tree(recs["r00"], "chain"), tree(recs["r00"], "masks"), tree(recs["r01"], "masks")
    one_round = jax.jit(jax.vmap(lambda p, m: lottery.prune.step(lottery.network, p, m)))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(one_round(chain0, masks0)), masks1)
    init = tree(store.load_level(path, runner.INIT), "init")
    level = runner.plan(lottery)[1]
    params, _, _ = jax.device_get(runner.build_trials(lottery, jax.tree.map(jnp.asarray, init),
                                                      jax.tree.map(jnp.asarray, masks1), level,
                                                      jax.tree.map(jnp.asarray, chain0)))
    for layer in CONV.weight_counts():
        m = kernel(masks1, layer)
        np.testing.assert_array_equal(kernel(params, layer)[:n], np.where(m, kernel(init, layer), 0))  # rewound
        np.testing.assert_array_equal(kernel(params, layer)[-n:], np.where(m, kernel(chain0, layer), 0))  # carried
    # the chain's trained weights are stored apart from the tickets'
    assert not np.array_equal(kernel(tree(recs["r01"], "chain"), OUTPUT), kernel(tree(recs["r01"], "trained"), OUTPUT))


# ---------------------------------------------------------------- one's own rule, groups, chunks


def test_a_custom_rule_drives_an_iterative_run_for_the_given_rounds(grouped):
    lotteries, (_, custom, _) = grouped
    recs = list(levels(custom).values())
    assert [r.name for r in recs] == ["r00", "r01", "r02"]
    total = sum(CONV.weight_counts().values())
    for prev, cur in zip(recs, recs[1:], strict=False):
        before, after, w = tree(prev, "masks"), tree(cur, "masks"), tree(prev, "trained")
        alive = sum(survivors(before, layer) for layer in CONV.weight_counts())
        kept = sum(survivors(after, layer) for layer in CONV.weight_counts())
        np.testing.assert_array_equal(kept, alive - np.round(alive * 0.25))  # a quarter of all survivors a round
        for s in range(len(SEEDS)):  # the smallest |w| across all layers together
            gone = np.concatenate([np.abs(kernel(w, ly)[s])[kernel(before, ly)[s] & ~kernel(after, ly)[s]]
                                   for ly in CONV.weight_counts()])
            stay = np.concatenate([np.abs(kernel(w, ly)[s])[kernel(after, ly)[s]] for ly in CONV.weight_counts()])
            assert gone.max() <= stay.min()
        assert cur.metrics["expected_weights"] is None  # a custom rule cannot say its sizes in advance
        assert cur.metrics["percent_overall"] == pytest.approx(100 * kept[0] / total)
    with pytest.raises(ValueError, match="number of rounds"):  # ... so it needs a number of rounds
        runner.plan(lotteries[1].replace(procedure=dataclasses.replace(NO_CONTROLS, rounds=None)))


def test_identical_trials_of_different_lotteries_are_trained_once(grouped):
    """The unpruned round is the same network under every rule and rate: a group trains it once."""
    _, paths = grouped
    r0 = [store.load_level(p, "r00") for p in paths]
    n = len(SEEDS)
    assert r0[0].metrics["group"]["trials"] == 3 * n and r0[0].metrics["group"]["unique_trials"] == n
    for other in r0[1:]:
        for key in r0[0].arrays:
            np.testing.assert_array_equal(other.arrays[key], r0[0].arrays[key], err_msg=key)
    r1 = store.load_level(paths[0], "r01").metrics["group"]
    assert r1["unique_trials"] == 3 * n  # pruned differently from round 1 on
    assert len(set(paths)) == 3  # each rule's run in its own directory


class Chunks(runner.Progress):
    """Records the training steps the runner plans per level (iterations x chunks)."""

    def __init__(self):
        self.steps_per_level = []

    def level_start(self, index, depth, runs, trials, steps):
        self.steps_per_level.append(steps)


def test_a_memory_budget_splits_the_trials_into_chunks_without_changing_results(oneshot, data, tmp_path):
    lottery, whole = oneshot
    budget = math.ceil(4 * TRAINER.trial_bytes(CONV) / 2**20)  # room for four trials a program
    per = budget * 2**20 // TRAINER.trial_bytes(CONV)
    assert 4 <= per < 9
    chunks = Chunks()
    small = runner.run(lottery, data, tmp_path, memory_budget_mb=budget, progress=chunks)
    # p100 and p20: 3 tickets in one program; p50: 3 tickets and 6 controls in several (on a CPU
    # levels do not merge: tests/test_programs.py)
    assert chunks.steps_per_level == [TRAINER.iterations * len(programs.chunks(k, per)) for k in (3, 9, 3)]
    assert chunks.steps_per_level[1] > TRAINER.iterations
    # Other trial counts in one program change the last bits (see the vmapped-trial test); over
    # levels pruned from those weights the differences grow, as tests/test_studies.py allows.
    for name in ("p100", "p50", "p20"):
        assert_same_numbers(store.load_level(small, name).arrays, store.load_level(whole, name).arrays,
                            rtol=1e-4, atol=1e-5, exact_masks=False)


def test_chunks_cover_every_trial_with_equal_programs_of_bounded_size():
    for n in (1, 5, 7, 35, 36):
        for per in (1, 3, 8, 100):
            parts = programs.chunks(n, per)
            assert len({p.size for p in parts}) == 1 and parts[0].size <= max(per, 1)
            assert sorted(set(np.concatenate(parts).tolist())) == list(range(n))


# ---------------------------------------------------------------- layers by the model's own names


def test_user_named_and_nested_layers_reach_the_store_under_slash_joined_names(oneshot):
    lottery, path = oneshot
    assert CONV.layers() == (("features", "z_conv"), ("features", "a_conv"), ("a_head",))  # call order
    assert CONV.output_layer() == ("a_head",)  # the last layer called, whatever its name
    rec = store.load_level(path, "p50")
    assert set(rec.metrics["weights"]) == {*HIDDEN, OUTPUT}
    assert {"masks/features/z_conv/kernel", "trained/features/a_conv/bias", "trained/a_head/kernel"} <= set(rec.arrays)
    assert rec.metrics["percent_hidden"] == pytest.approx(50, abs=0.5)  # the head is not a hidden layer


# ---------------------------------------------------------------- the plan


@pytest.mark.parametrize("bad, says", [(dict(mode="rewind"), "mode must be one of"),
                                       (dict(seeds=(0, 0)), "distinct"), (dict(reinit=-1), "control counts"),
                                       (dict(rounds=runner.MAX_ROUNDS + 1), "rounds"),
                                       (dict(min_remaining=0), "min_remaining")])
def test_a_procedure_that_cannot_run_is_rejected_when_it_is_made(bad, says):
    with pytest.raises(ValueError, match=says):
        runner.Procedure(**bad)


def test_layerwise_magnitude_plans_the_papers_exact_survivor_counts_for_lenet():
    lenet = mnist.network()
    assert lenet.weight_counts() == {"Dense_0": 235_200, "Dense_1": 30_000, "Dense_2": 1_000}
    lottery = runner.Lottery(lenet, runner.Procedure(mode="iterative"), rules.LayerwiseMagnitude(), TRAINER, JUDGE)
    plan = runner.plan(lottery)
    assert [lv.name for lv in plan[:3]] == ["r00", "r01", "r02"]
    # Section 4.1: 20% of each hidden layer's remaining weights a round, 10% of the output layer's.
    assert plan[1].counts == {"Dense_0": 188_160, "Dense_1": 24_000, "Dense_2": 900}
    assert plan[2].counts == {"Dense_0": 150_528, "Dense_1": 19_200, "Dense_2": 810}
    assert [lv.value for lv in plan[:4]] == [100.0, 80.0, 64.0, 51.2]
    overall = [100 * sum(lv.counts.values()) / 266_200 for lv in plan]
    assert overall[-1] < 1.0 <= overall[-2]  # the chain stops at the first level under min_remaining
    one = runner.plan(lottery.replace(procedure=runner.Procedure(mode="oneshot", levels=(51.2, 20))))
    assert [lv.name for lv in one] == ["p100", "p51.2", "p20"]  # the originals first
    assert one[1].counts == {"Dense_0": 120_422, "Dense_1": 15_360, "Dense_2": 756}
    assert one[2].counts == {"Dense_0": 47_040, "Dense_1": 6_000, "Dense_2": 600}
