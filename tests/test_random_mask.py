"""The random-mask control (issue 9; open_lth's "randomly_prune", a control the paper does not
run): each layer keeps its ticket's survivor count, but the survivors sit at positions drawn
uniformly at random, valued at the *initial values at those positions* (unlike the shuffle
control, which carries the surviving initial values with their connections). In the runner it
is a third control role, trained in the same vmapped program as the tickets and the other two.

Hand-made trees (numpy, no flax init) for the transform; a tiny synthetic-MNIST run
(784-16-8-10, 100 iterations) for the runner.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import synthetic_mnist
from scipy import stats

from lth_jax import masks as masks_lib
from lth_jax import runner, store, transforms
from lth_jax.reproduction import mnist

random_mask = jax.jit(transforms.random_mask)


@pytest.fixture(scope="module")
def tree():
    """An init with a dense kernel, a 4-d conv kernel and biases, and a mask keeping a few of each
    kernel's entries (biases all alive)."""
    rng = np.random.default_rng(0)
    init = {"conv": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
                     "bias": rng.standard_normal(4).astype(np.float32)},
            "dense": {"kernel": rng.standard_normal((12, 5)).astype(np.float32),
                      "bias": rng.standard_normal(5).astype(np.float32)}}
    masks = {"conv": {"kernel": rng.random((3, 3, 2, 4)) < 0.3, "bias": np.ones(4, bool)},
             "dense": {"kernel": rng.random((12, 5)) < 0.6, "bias": np.ones(5, bool)}}
    return init, masks


def test_each_layer_keeps_its_survivor_count_and_takes_the_initial_values_at_the_new_positions(tree):
    init, masks = tree
    for seed in range(5):
        params, new = jax.device_get(random_mask(jax.random.key(seed), init, masks))
        for layer in init:
            k, m, nm, p = (init[layer]["kernel"], masks[layer]["kernel"], new[layer]["kernel"],
                           params[layer]["kernel"])
            assert nm.shape == m.shape and nm.sum() == m.sum()     # the count, per layer
            np.testing.assert_array_equal(p, np.where(nm, k, 0))   # init's values where the new mask is
            # biases (not selected) keep their mask and their initial values
            np.testing.assert_array_equal(new[layer]["bias"], masks[layer]["bias"])
            np.testing.assert_array_equal(params[layer]["bias"], init[layer]["bias"])
        assert any((new[x]["kernel"] != masks[x]["kernel"]).any() for x in init)  # the positions did move


def test_unlike_shuffle_the_values_do_not_travel_with_the_connections(tree):
    init, masks = tree
    key = jax.random.key(3)
    sp, sm = jax.device_get(transforms.shuffle(key, init, masks))
    rp, rm = jax.device_get(random_mask(key, init, masks))
    k, m = init["dense"]["kernel"], masks["dense"]["kernel"]
    # shuffle: the survivors' initial values, moved; random mask: whatever init holds where it lands
    np.testing.assert_array_equal(np.sort(sp["dense"]["kernel"][sm["dense"]["kernel"]]), np.sort(k[m]))
    np.testing.assert_array_equal(rp["dense"]["kernel"][rm["dense"]["kernel"]], k[rm["dense"]["kernel"]])
    # both draw the same permutation from one key: the same new mask, other values on it
    np.testing.assert_array_equal(sm["dense"]["kernel"], rm["dense"]["kernel"])
    assert not np.array_equal(sp["dense"]["kernel"], rp["dense"]["kernel"])


def test_the_permutations_are_the_ones_shuffle_draws_so_other_trees_can_move_with_the_weights(tree):
    init, masks = tree
    key = jax.random.key(7)
    perms = transforms.permutations(key, init)
    assert [p is None for p in perms] == [not masks_lib.is_kernel(path)
                                          for path, _ in jax.tree_util.tree_leaves_with_path(init)]
    moved = transforms.permute(masks, perms)
    sp, sm = transforms.shuffle(key, init, masks)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(sm), jax.device_get(moved))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(sp),
                 jax.device_get(masks_lib.apply(transforms.permute(init, perms), moved)))


def test_where_selects_the_leaves_whose_positions_are_redrawn(tree):
    init, masks = tree
    only_dense = lambda path: masks_lib.as_path(path)[0] == "dense" and masks_lib.is_kernel(path)  # noqa: E731
    _, new = jax.device_get(transforms.random_mask(jax.random.key(1), init, masks, where=only_dense))
    np.testing.assert_array_equal(new["conv"]["kernel"], masks["conv"]["kernel"])
    assert new["dense"]["kernel"].sum() == masks["dense"]["kernel"].sum()


def test_positions_are_drawn_uniformly_every_subset_of_the_survivor_count_equally_often():
    """A 2x3 kernel keeping 2 of 6 entries: C(6, 2) = 15 possible new masks, each to be drawn with
    probability 1/15. Over D draws the counts are multinomial, so Pearson's statistic is
    chi-square with 14 degrees of freedom; we refuse uniformity only beyond its 1 - 1e-6 quantile
    (about 48), a threshold that a uniform sampler exceeds once in a million seeds. Each cell's
    frequency must also be within 5 binomial standard errors of 1/15 (sqrt(p (1 - p) / D)), and
    every single position must be kept with probability 2/6 to the same tolerance, so a sampler
    that favoured the ticket's own positions (say) fails here."""
    d = 6000
    init = {"layer": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.zeros(3, np.float32)}}
    masks = {"layer": {"kernel": np.array([[True, True, False], [False, False, False]]), "bias": np.ones(3, bool)}}
    draw = jax.jit(jax.vmap(lambda k: transforms.random_mask(k, init, masks)[1]["layer"]["kernel"]))
    drawn = np.asarray(draw(jax.random.split(jax.random.key(0), d))).reshape(d, 6)
    assert (drawn.sum(axis=1) == 2).all()
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(6), 2))}
    counts = np.bincount([subsets[tuple(np.flatnonzero(row))] for row in drawn], minlength=len(subsets))
    expected = d / len(subsets)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.ppf(1 - 1e-6, df=len(subsets) - 1), (chi2, counts)
    p = 1 / len(subsets)
    assert np.all(np.abs(counts / d - p) < 5 * math.sqrt(p * (1 - p) / d)), counts
    q = 2 / 6
    assert np.all(np.abs(drawn.mean(axis=0) - q) < 5 * math.sqrt(q * (1 - q) / d)), drawn.mean(axis=0)


def test_the_values_come_from_init_at_the_new_positions_over_many_draws():
    """Averaged over draws, a kept position's value is the init there (never a carried value):
    with init = the position's index, the mean kept value per position is that index."""
    init = {"layer": {"kernel": np.arange(1, 13, dtype=np.float32).reshape(3, 4), "bias": np.zeros(4, np.float32)}}
    masks = {"layer": {"kernel": np.eye(3, 4, dtype=bool), "bias": np.ones(4, bool)}}
    draw = jax.jit(jax.vmap(lambda k: transforms.random_mask(k, init, masks)))
    params, new = jax.device_get(draw(jax.random.split(jax.random.key(1), 500)))
    kept, values = new["layer"]["kernel"], params["layer"]["kernel"]
    np.testing.assert_array_equal(values, np.where(kept, init["layer"]["kernel"], 0))
    assert (kept.reshape(500, -1).sum(axis=1) == 3).all()
    assert kept.any(axis=0).all()  # every position is reached, not only the ticket's three


# ---------------------------------------------------------------- in the runner

TINY = dict(hidden=(16, 8), iterations=100, eval_every=50, lr=0.2, seeds=(0, 1), reinit=1, shuffle=1, random=2,
            average_over=50, stable_for=50)


class Recorder(runner.Progress):
    def __init__(self):
        self.levels, self.steps_seen = [], 0

    def level_start(self, index, depth, runs, trials, steps):
        self.levels.append((index, trials, steps))

    def steps(self, n):
        self.steps_seen += n


@pytest.fixture(scope="module")
def oneshot(tmp_path_factory):
    settings = mnist.Settings(mode="oneshot", levels=(100, 40), **TINY)
    progress = Recorder()
    path = mnist.run(settings, synthetic_mnist(256, 128), tmp_path_factory.mktemp("runs"), progress=progress)
    return settings, path, progress


def test_controls_train_in_the_same_vmapped_program_as_the_tickets_one_level_one_program(oneshot):
    settings, path, progress = oneshot
    n = len(settings.seeds)
    per_level = n * (1 + 1 + 1 + 2)
    # two levels, each one program of every trial for `iterations` steps (one chunk: steps == iterations)
    assert progress.levels == [(0, per_level, settings.iterations), (1, per_level, settings.iterations)]
    assert progress.steps_seen == 2 * settings.iterations
    rec = store.load_level(path, "p40")
    assert [t["role"] for t in rec.metrics["trials"]] == ["ticket"] * n + ["reinit"] * n + ["shuffle"] * n + [
        "random"] * 2 * n
    assert rec.metrics["roles"]["random"]["trials"] == 2 * n
    assert rec.arrays["curves/accuracy"].shape == (per_level, 2)
    assert {r["role"] for r in mnist.table(path)} == {"ticket", "reinit", "shuffle", "random"}


def test_random_mask_trials_are_the_documented_draws_of_stream_4_with_their_own_batch_slots(oneshot):
    settings, path, _ = oneshot
    lottery = settings.lottery()
    level = runner.plan(lottery)[1]
    init = jax.tree.map(jnp.asarray, store.subtree(store.load_level(path, runner.INIT).arrays, "init"))
    m = jax.tree.map(jnp.asarray, store.subtree(store.load_level(path, "p40").arrays, "masks"))
    params, tmasks, keys = jax.device_get(runner.build_trials(lottery, init, m, level))
    n = len(settings.seeds)
    first = 3 * n  # tickets, reinit, shuffle
    for s_i, seed in enumerate(settings.seeds):
        for j in range(2):
            row = first + 2 * s_i + j  # seed-major
            root = jax.random.key(seed)
            key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, 4), level.level_id), j)
            one = lambda t, s_i=s_i: jax.tree.map(lambda a: a[s_i], t)  # noqa: E731
            want_p, want_m = jax.device_get(transforms.random_mask(key, one(init), one(m)))
            jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda a, row=row: a[row], params), want_p)
            jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda a, row=row: a[row], tmasks), want_m)
            slot = 1 + settings.reinit + settings.shuffle + j
            np.testing.assert_array_equal(jax.random.key_data(keys[row]), jax.random.key_data(
                jax.random.fold_in(jax.random.fold_in(root, 1), slot)))
    for layer in ("Dense_0", "Dense_1", "Dense_2"):  # every random-mask trial keeps the ticket's counts
        counts = tmasks[layer]["kernel"].reshape(len(params[layer]["kernel"]), -1).sum(axis=1)
        np.testing.assert_array_equal(counts[first:], np.repeat(counts[:n], 2))


def test_without_random_controls_the_hash_and_the_layout_are_todays():
    plain = mnist.Settings(mode="oneshot", **{**TINY, "random": 0})
    assert "random" not in plain.hashed()
    assert [t.role for t in runner.layout(plain.lottery().procedure)].count("random") == 0
    assert plain.replace(random=1).hashed() == {**plain.hashed(), "random": 1}
    with pytest.raises(ValueError, match="control counts"):
        runner.Procedure(random=-1)
