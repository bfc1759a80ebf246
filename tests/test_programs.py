"""Fewer, larger programs (issue 10): with ``merge_levels`` (an accelerator's default) every level
whose source is trained trains in the next program, so the one-shot levels after the originals
are one program instead of one each; a budget bounds each chunk of it, each level is stored the
moment its trials are trained, and no stored number changes."""

from __future__ import annotations

import dataclasses
import threading
import time

import jax
import numpy as np
import pytest
from conftest import synthetic_mnist

from lth_jax import programs, runner, store
from lth_jax.reproduction import mnist

TINY = dict(hidden=(16, 8), iterations=100, eval_every=25, lr=0.2, seeds=(0, 1), reinit=1, shuffle=1, random=1,
            average_over=25, stable_for=25)
ONESHOT = mnist.Settings(mode="oneshot", levels=(100, 60, 30, 15), **TINY)


class Programs(runner.Progress):
    """(first plan position, trials, planned steps) of every program; levels as they are stored."""

    def __init__(self):
        self.programs, self.ends, self.trained_now = [], [], 0

    def level_start(self, index, depth, runs, trials, steps):
        self.programs.append((index, trials, steps))

    def level_end(self, index, stored):
        self.ends.append((index, [level.name for _, level, _ in stored]))

    def trained(self, trials, seconds):
        self.trained_now += trials


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(256, 128)


@pytest.fixture(scope="module")
def merged(data, tmp_path_factory):
    seen = Programs()
    path = runner.run(ONESHOT.lottery(), data, tmp_path_factory.mktemp("merged"), progress=seen, merge_levels=True)
    return path, seen


def _records(path):
    return {name: store.load_level(path, name) for name in store.levels(path)}


def _same_record(a: store.Record, b: store.Record) -> None:
    assert sorted(a.arrays) == sorted(b.arrays)
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)  # bit for bit
    drop = ("seconds", "group", "checksum")
    assert {k: v for k, v in a.metrics.items() if k not in drop} == \
        {k: v for k, v in b.metrics.items() if k not in drop}


def test_all_one_shot_levels_after_the_originals_train_in_one_program(merged):
    _, seen = merged
    per_level = 2 * (1 + 3)  # 2 seeds, ticket + reinit, shuffle and random-mask controls
    assert [(i, n) for i, n, _ in seen.programs] == [(0, per_level), (1, 3 * per_level)]
    assert [i for i, _ in seen.ends] == [0, 1, 2, 3]  # every position of the plan reported, in order
    assert seen.ends[1][1] == ["p60"] and seen.ends[3][1] == ["p15"]


def test_levels_trained_in_one_program_store_bit_for_bit_what_level_by_level_training_stores(merged, data, tmp_path):
    path, _ = merged
    seen = Programs()
    alone = runner.run(ONESHOT.lottery(), data, tmp_path, progress=seen, merge_levels=False)
    assert len(seen.programs) == 4  # one program per level, as before levels merged
    together, apart = _records(path), _records(alone)
    assert sorted(together) == sorted(apart) == ["init", "p100", "p15", "p30", "p60"]
    for name in together:
        _same_record(together[name], apart[name])
    group = together["p30"].metrics["group"]
    assert group["levels"] == 3 and group["trials"] == 24 and group["runs"] == 1
    assert sorted(group["members"]) == sorted(f"{path.name}/{n}" for n in ("p60", "p30", "p15"))
    assert "group" not in apart["p30"].metrics  # a program of one level says nothing of a group


def test_iterative_rounds_still_train_one_after_another():
    lt = mnist.Settings(mode="iterative", min_remaining=40.0, **TINY).lottery()
    plan = runner.plan(lt)
    stored, order = set(), []
    while todo := runner.next_program([lt], [plan], stored):
        order.append(todo)
        stored |= set(todo)
    assert order == [[(0, i)] for i in range(len(plan))]  # each round is pruned from the one before


def test_the_originals_train_alone_even_when_pruned_levels_of_another_run_are_ready():
    a, b = ONESHOT.lottery(), dataclasses.replace(ONESHOT, seeds=(5,)).lottery()
    plans = [runner.plan(a), runner.plan(b)]
    stored = {(0, 0)}  # run a's originals are stored, run b's are not
    assert runner.next_program([a, b], plans, stored) == [(1, 0)]  # they take the snapshots: alone
    assert runner.next_program([a, b], plans, stored | {(1, 0)}) == [(g, i) for g in (0, 1) for i in (1, 2, 3)]


def test_levels_merge_by_default_on_an_accelerator_and_not_on_a_cpu(data, tmp_path):
    seen = Programs()
    runner.run(ONESHOT.lottery(), data, tmp_path, progress=seen)
    assert len(seen.programs) == (2 if jax.devices()[0].platform != "cpu" else 4)


def test_a_program_killed_midway_keeps_every_level_already_trained(merged, data, tmp_path):
    """A budget of 8 trials a chunk: the 24 trials of the merged program train in 3 chunks, and
    each level (8 trials) is stored when its chunk ends; a kill after the first keeps it."""
    path, _ = merged
    budget = -(-8 * ONESHOT.lottery().trainer.trial_bytes(ONESHOT.lottery().network) // 2**20)
    per = budget * 2**20 // ONESHOT.lottery().trainer.trial_bytes(ONESHOT.lottery().network)
    assert 8 <= per < 12

    class Killed(Exception):
        pass

    def kill(level, metrics):
        if level.name == "p60":
            raise Killed

    with pytest.raises(Killed):
        runner.run(ONESHOT.lottery(), data, tmp_path, memory_budget_mb=budget, after_level=kill, merge_levels=True)
    run = runner.run_dir(ONESHOT.lottery(), tmp_path)
    assert store.levels(run) == ["init", "p100", "p60"]
    seen = Programs()
    runner.run(ONESHOT.lottery(), data, tmp_path, memory_budget_mb=budget, progress=seen, merge_levels=True)
    assert [n for _, n, _ in seen.programs] == [16]  # the two levels left, in one program
    for name, rec in _records(path).items():
        _same_record(_records(run)[name], rec)


def test_a_program_trains_identical_rows_once_and_yields_each_block_when_its_rows_are_done(data):
    lt = ONESHOT.lottery()
    init = runner.initial_params(lt)
    level = runner.plan(lt)[0]
    masks = runner.ticket_masks(lt, None, init, level, None)
    tickets = jax.tree.map(lambda x: x[:2], runner.build_trials(lt, init, masks, level))  # the 2 seeds' tickets
    twice = programs.Trials(*runner._concat([tickets] * 2))
    program = programs.Program(lt.trainer, lt.network, twice, 2**40, blocks=[2, 2])
    assert program.unique.tolist() == [0, 1] and program.inverse.tolist() == [0, 1, 0, 1]
    blocks = list(program.run(data, runner.Progress()))
    assert [b.index for b in blocks] == [0, 1]
    for key in blocks[0].outputs:
        np.testing.assert_array_equal(blocks[0].outputs[key], blocks[1].outputs[key])
    assert blocks[0].seconds == pytest.approx(blocks[1].seconds)  # the shared training's time, split


def test_chunks_cover_every_row_in_equal_programs_of_at_most_the_budget():
    for n, per in ((24, 8), (24, 10), (5, 1), (7, 100), (7, 0)):
        parts = programs.chunks(n, per)
        assert len({p.size for p in parts}) == 1 and parts[0].size <= max(per, 1)
        assert sorted(set(np.concatenate(parts).tolist())) == list(range(n))


# ---------------------------------------------------------------- whole chunks on several devices
# One CPU device named three times: the threads of a several-device program, in this process.


class _Steps(runner.Progress):
    def __init__(self):
        self.total = 0

    def steps(self, n):
        self.total += n


def test_a_program_on_several_devices_yields_what_one_device_yields_in_the_same_order(data):
    lt = mnist.Settings(mode="oneshot", levels=(100,), **{**TINY, "seeds": (0, 1, 2)}).lottery()
    masks = jax.tree.map(lambda x: np.ones((3, *x.shape), bool), lt.network.shapes())
    trials = programs.Trials(*runner.build_trials(lt, runner.initial_params(lt), masks, runner.plan(lt)[0]))
    budget = 2 * lt.trainer.trial_bytes(lt.network)  # 12 trials in 6 chunks of 2
    spread = programs.devices_lib.Placement((jax.devices()[0],) * 3)
    runs = {}
    for name, placement in (("one", None), ("three", spread)):
        steps = _Steps()
        program = programs.Program(lt.trainer, lt.network, trials, budget, placement, [4, 4, 4])
        runs[name] = (list(program.run(data, steps)), steps.total)
        assert len(program.pieces) == 6
    (one, one_steps), (three, three_steps) = runs["one"], runs["three"]
    assert [b.index for b in three] == [b.index for b in one] == [0, 1, 2]
    assert three_steps == one_steps == 6 * lt.trainer.iterations
    for a, b in zip(one, three, strict=True):
        for x, y in zip(jax.tree.leaves(a.trained), jax.tree.leaves(b.trained), strict=True):
            np.testing.assert_array_equal(x, y)
        assert a.outputs.keys() == b.outputs.keys()
        for key in a.outputs:
            np.testing.assert_array_equal(a.outputs[key], b.outputs[key])


class _Failing:
    """A trainer that returns its params after ``delay`` seconds (and fails on the chunk holding row ``bad``)."""

    def __init__(self, bad, delay=0.0):
        self.bad, self.delay, self.calls = bad, delay, 0

    def trial_bytes(self, network):
        return 1

    def __call__(self, network, params, masks, keys, data, on_steps=None, **kw):
        self.calls += 1
        time.sleep(self.delay)
        if self.bad in np.asarray(params["w"]).tolist():
            raise RuntimeError("chunk failed")
        on_steps(1)
        return params, {"w": np.asarray(params["w"])}


def _rows(n):
    return programs.Trials({"w": np.arange(n, dtype=np.float32)}, {"w": np.ones(n, bool)},
                           jax.random.split(jax.random.key(0), n))


@pytest.mark.parametrize("placement", [None, programs.devices_lib.Placement((jax.devices()[0],) * 3)])
def test_a_failing_chunk_raises_in_its_turn_after_the_blocks_before_it(placement):
    program = programs.Program(_Failing(bad=4), None, _rows(8), 2, placement, [2, 2, 2, 2])  # a block a chunk
    blocks = program.run(None, _Steps())
    assert [next(blocks).index, next(blocks).index] == [0, 1]
    with pytest.raises(RuntimeError, match="chunk failed"):
        next(blocks)


def test_closing_a_program_early_starts_no_other_chunk_and_leaves_no_thread():
    trainer = _Failing(bad=-1, delay=0.05)
    program = programs.Program(trainer, None, _rows(40), 2, programs.devices_lib.Placement((jax.devices()[0],) * 2),
                               [2] * 20)
    blocks = program.run(None, _Steps())
    first = next(blocks)
    assert first.index == 0 and np.array_equal(first.outputs["w"], [0, 1])
    blocks.close()
    assert trainer.calls < 20
    assert not [t for t in threading.enumerate() if t.name.startswith("chunks-")]
