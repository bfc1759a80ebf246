"""The procedure of section 1 / section 4.1: train, prune, reset the survivors to their values
from before training, repeat; and Han et al.'s variant that keeps training the trained weights
(section 6.4). Training is replaced by a recorder, so what each training starts from is visible.
"""

import chex
import jax
import numpy as np
import pytest

from lth_jax import lottery, masks, pruning

ROUNDS = 3
# Hidden layers at `rate`, the output layer at half of it (section 3.1).
prune_at = jax.jit(lambda t, m, rate: pruning.magnitude(t, m, pruning.layer_rates(t, rate, rate / 2)))


def prune_paper(trained, mask, round_):
    """Section 4.1: 20% of each hidden layer's remaining weights, 10% of the output layer's."""
    return prune_at(trained, mask, 0.2)



class Recorder:
    """A stand-in trainer: 'training' adds a fixed per-call offset to *every* entry (pruned ones
    too, as a careless trainer might), and it records what each training started from."""

    def __init__(self, params_like, trials=None):
        self.offsets = [params_like([6, 12, 8, 4], seed=100 + i, std=1.0, trials=trials) for i in range(ROUNDS + 1)]
        self.calls = []

    def __call__(self, params, mask):
        i = len(self.calls)
        self.calls.append(jax.device_get((params, mask)))
        trained = jax.tree.map(lambda p, o: np.asarray(p) + o, params, self.offsets[i])
        return trained, {"training": i}


def tree_at(tree, i):
    return jax.tree.map(lambda leaf: leaf[i], tree)


def zeros_where_pruned(tree, mask):
    return jax.tree.map(lambda p, m: np.where(m, p, np.float32(0)), jax.device_get(tree), jax.device_get(mask))


@pytest.mark.parametrize("reset", ["rewind", "continue"])
def test_iterative_trains_rounds_plus_one_times_pruning_and_resetting_between(reset, params_like):
    init = params_like([6, 12, 8, 4], seed=0, bias_std=0.5)
    full = jax.device_get(masks.ones_like(init))
    train = Recorder(params_like)
    rounds = list(lottery.iterative(init, full, train, prune_paper, ROUNDS, reset=reset))

    assert len(train.calls) == len(rounds) == ROUNDS + 1
    assert [r.round for r in rounds] == list(range(ROUNDS + 1))
    assert [r.metrics for r in rounds] == [{"training": i} for i in range(ROUNDS + 1)]
    # The first training is the unpruned network from its init.
    chex.assert_trees_all_equal(train.calls[0], (init, full))
    chex.assert_trees_all_equal(rounds[0].masks, full)
    for r in range(1, ROUNDS + 1):
        before = rounds[r - 1]
        # Round r trains under the masks that pruning the previous round's trained weights gives ...
        expected_mask = jax.device_get(prune_paper(before.trained, before.masks, r - 1))
        chex.assert_trees_all_equal(rounds[r].masks, expected_mask)
        chex.assert_trees_all_equal(train.calls[r][1], expected_mask)
        # ... starting from the survivors' original init (the winning ticket), or, for Han et al.,
        # from where the previous training left them; pruned weights are exactly 0 either way.
        start = init if reset == "rewind" else before.trained
        chex.assert_trees_all_equal(train.calls[r][0], zeros_where_pruned(start, expected_mask))
        # The trained values handed back are the trainer's own.
        chex.assert_trees_all_equal(jax.device_get(rounds[r].trained),
                                    jax.tree.map(lambda p, o: p + o, train.calls[r][0], train.offsets[r]))
    # Masks only ever shrink: 20% of each hidden layer's remaining weights a round.
    first = [int(m["Dense_0"]["kernel"].sum()) for m in (r.masks for r in rounds)]
    expected = [72]
    for _ in range(ROUNDS):
        expected.append(expected[-1] - round(expected[-1] * 0.2))
    assert first == expected


def test_rewind_and_continue_differ_only_in_the_starting_values(params_like):
    init = params_like([6, 12, 8, 4], seed=0)
    full = masks.ones_like(init)
    rewind, cont = Recorder(params_like), Recorder(params_like)
    list(lottery.iterative(init, full, rewind, prune_paper, 1, reset="rewind"))
    list(lottery.iterative(init, full, cont, prune_paper, 1, reset="continue"))
    chex.assert_trees_all_equal(rewind.calls[0], cont.calls[0])
    chex.assert_trees_all_equal(rewind.calls[1][1], cont.calls[1][1])  # same ticket architecture
    assert not np.array_equal(rewind.calls[1][0]["Dense_0"]["kernel"], cont.calls[1][0]["Dense_0"]["kernel"])


def test_iterative_yields_each_level_before_training_the_next(params_like):
    init = params_like([6, 12, 8, 4], seed=0)
    train = Recorder(params_like)
    levels = lottery.iterative(init, masks.ones_like(init), train, prune_paper, ROUNDS)
    next(levels)
    next(levels)
    assert len(train.calls) == 2, "a caller that stops after a level must not pay for the next training"


def test_unknown_reset_is_rejected_at_the_call_before_any_training(params_like):
    init = params_like([6, 12, 8, 4], seed=0)
    train = Recorder(params_like)
    with pytest.raises(ValueError, match="reset"):
        lottery.iterative(init, masks.ones_like(init), train, prune_paper, ROUNDS, reset="reinit")
    assert train.calls == []


def test_iterative_runs_a_vmapped_batch_of_trials_as_each_trial_alone(params_like):
    """The driver is generic: vmapped train and prune over a leading trial axis give, per trial,
    exactly the masks and values of that trial's own run."""
    trials = 3
    init = params_like([6, 12, 8, 4], seed=0, trials=trials)
    full = jax.device_get(masks.ones_like(init))
    batched_train = Recorder(params_like, trials=trials)
    prune_batched = jax.jit(jax.vmap(lambda t, m: pruning.magnitude(t, m, pruning.layer_rates(t, 0.2, 0.1))))
    batched = list(lottery.iterative(init, full, batched_train, lambda t, m, r: prune_batched(t, m), ROUNDS))
    for i in range(trials):
        alone_train = Recorder(params_like)
        alone_train.offsets = [tree_at(o, i) for o in batched_train.offsets]
        alone = list(lottery.iterative(tree_at(init, i), tree_at(full, i), alone_train, prune_paper, ROUNDS))
        for b, a in zip(batched, alone, strict=True):
            chex.assert_trees_all_equal(tree_at(jax.device_get(b.masks), i), jax.device_get(a.masks))
            chex.assert_trees_all_equal(tree_at(jax.device_get(b.trained), i), jax.device_get(a.trained))


def test_one_shot_trains_once_and_prunes_the_trained_network_to_every_level(params_like):
    init = params_like([6, 12, 8, 4], seed=0)
    full = jax.device_get(masks.ones_like(init))
    train = Recorder(params_like)
    levels = [0.8, 0.5, 0.2]  # fraction of each hidden layer's weights remaining

    def prune_to(trained, mask, keep):
        return prune_at(trained, mask, 1 - keep)

    original, tickets = lottery.one_shot(init, full, train, prune_to, levels)

    assert len(train.calls) == 1
    chex.assert_trees_all_equal(train.calls[0], (init, full))
    assert original.round == 0 and original.metrics == {"training": 0}
    chex.assert_trees_all_equal(original.masks, full)
    assert len(tickets) == len(levels)
    for keep, ticket in zip(levels, tickets, strict=True):
        # Each level is one prune of the trained unpruned network, not a chain of prunes.
        chex.assert_trees_all_equal(jax.device_get(ticket), jax.device_get(prune_to(original.trained, full, keep)))
        assert int(ticket["Dense_0"]["kernel"].sum()) == round(72 * keep)
    # Pruning the same weights further keeps a subset of the survivors.
    for bigger, smaller in zip(tickets[:-1], tickets[1:], strict=True):
        for b, s in zip(jax.tree.leaves(bigger), jax.tree.leaves(smaller), strict=True):
            assert not np.any(np.asarray(s) & ~np.asarray(b))
