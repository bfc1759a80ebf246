"""What each trial starts from: the initial weights and model state (stored once as the ``init``
record), the tickets and controls of a level built from them, and the late-rewinding snapshots.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from lth_jax import devices as devices_lib
from lth_jax import masks as masks_lib
from lth_jax import store, transforms
from lth_jax.runner.spec import (
    CONTINUE_SLOT,
    INIT,
    INIT_STATE,
    STATE,
    Keys,
    Level,
    Lottery,
    Network,
    Progress,
    PyTree,
    quick_options,
)
from lth_jax.store import ondisk


@jax.jit
def concat_trials(trees: list[PyTree]) -> PyTree:
    """Stack trees along the trial axis: one compiled program per layout, not one per leaf and op."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *trees)


@functools.lru_cache(maxsize=32)
def _init_keys(keys: Keys) -> Callable:
    return jax.jit(keys.init, compiler_options=quick_options())  # integer arithmetic: exact at any level


@functools.lru_cache(maxsize=32)
def _init_program(network: Network) -> Callable:
    # Full optimisation (unlike the other set-up programs) so the values equal a direct
    # ``network.init`` call bit for bit on the same platform.
    return jax.jit(jax.vmap(network.init))


def initial_params(lottery: Lottery, seeds: Sequence[int] | None = None) -> PyTree:
    """Initial weights of ``seeds`` (default: the procedure's), stacked on a leading axis."""
    return _init_program(lottery.network)(_seed_init_keys(lottery, seeds))


def initial_state(lottery: Lottery, seeds: Sequence[int] | None = None) -> PyTree | None:
    """Initial model state of ``seeds`` (drawn with their weights' keys), or None when stateless."""
    if not lottery.network.stateful:
        return None
    return jax.jit(jax.vmap(lottery.network.init_state))(_seed_init_keys(lottery, seeds))


def _seed_init_keys(lottery: Lottery, seeds: Sequence[int] | None) -> jax.Array:
    seeds = lottery.procedure.seeds if seeds is None else tuple(seeds)
    return _init_keys(lottery.keys)(jnp.asarray(seeds, jnp.uint32), jnp.uint32(lottery.keys.init_code()))


@functools.lru_cache(maxsize=64)
def _key_program(keys: Keys, seed_list: tuple[int, ...], n_re: int, n_sh: int, n_ra: int, han: bool,
                 paired: bool = False) -> Callable:
    """``code -> (reinit keys, shuffle keys, random keys, batch keys)`` of a level's trials, seed-major.
    ``paired``: every control draws its ticket's batches (slot 0) instead of its own.

    Integer arithmetic only (threefry), so the bits do not depend on the optimisation level."""
    seeds = jnp.asarray(seed_list, jnp.uint32)
    n = len(seed_list)

    def replicates(count):  # (seed, j) seed-major
        return jnp.repeat(seeds, count), jnp.tile(jnp.arange(count, dtype=jnp.uint32), n)

    def slot(first, j):  # a control's batch slot: its own, or its ticket's when paired
        return jnp.zeros_like(j) if paired else jnp.uint32(first) + j

    def program(code):
        batch = [keys.batches(seeds, jnp.uint32(0))]
        s, j = replicates(n_re)
        reinit = keys.control(s, "reinit", code, j) if n_re else None
        batch.append(keys.batches(s, slot(1, j)))
        s, j = replicates(n_sh)
        shuffle = keys.control(s, "shuffle", code, j) if n_sh else None
        batch.append(keys.batches(s, slot(1 + n_re, j)))
        random = None
        if n_ra:  # a key scheme without a random stream (XOR's) is never asked for one
            s, j = replicates(n_ra)
            random = keys.control(s, "random", code, j)
            batch.append(keys.batches(s, slot(1 + n_re + n_sh, j)))
        if han:
            batch.append(keys.batches(seeds, CONTINUE_SLOT + code))
        return reinit, shuffle, random, jnp.concatenate(batch)

    return jax.jit(program, compiler_options=quick_options())


def _repeat(n: int, tree: PyTree, count: int) -> PyTree:
    """Each of the ``n`` seeds' entries ``count`` times, seed-major."""
    return jax.tree.map(lambda a: a[jnp.repeat(jnp.arange(n), count)], tree)


def _reinit_rows(network: Network, n: int, n_re: int, masks: PyTree, reinit_keys: jax.Array,
                 fresh: PyTree | None) -> tuple[PyTree, PyTree]:
    if fresh is not None:  # drawn beforehand by the (cached) initialisation program
        return jax.vmap(lambda f, mm: transforms.reinit(None, lambda _: f, mm))(fresh, _repeat(n, masks, n_re))
    return jax.vmap(lambda k, mm: transforms.reinit(k, network.init, mm))(reinit_keys, _repeat(n, masks, n_re))


@functools.lru_cache(maxsize=32)
def _builder(network: Network, n: int, n_re: int, n_sh: int, n_ra: int, han: bool, quick: bool) -> Callable:
    """``(init, masks, chain, reinit keys, shuffle keys, random keys, fresh) -> (params, masks)`` of a
    level's trials."""

    def build(init, masks, chain, reinit_keys, shuffle_keys, random_keys, fresh):
        p, m = jax.vmap(transforms.rewind)(init, masks)
        params_l, masks_l = [p], [m]
        if n_re:
            p, m = _reinit_rows(network, n, n_re, masks, reinit_keys, fresh)
            params_l.append(p)
            masks_l.append(m)
        if n_sh:
            p, m = jax.vmap(transforms.shuffle)(shuffle_keys, _repeat(n, init, n_sh), _repeat(n, masks, n_sh))
            params_l.append(p)
            masks_l.append(m)
        if n_ra:
            p, m = jax.vmap(transforms.random_mask)(random_keys, _repeat(n, init, n_ra), _repeat(n, masks, n_ra))
            params_l.append(p)
            masks_l.append(m)
        if han:
            p, m = jax.vmap(transforms.carry_on)(chain, masks)
            params_l.append(p)
            masks_l.append(m)
        return concat_trials(params_l), concat_trials(masks_l)

    return jax.jit(build, compiler_options=quick_options(quick))


def _control_keys(lottery: Lottery, level: Level) -> tuple[tuple[int, int, int], tuple]:
    p = lottery.procedure
    counts = p.counts_at(level.value)
    keys = _key_program(lottery.keys, p.seeds, *counts, p.mode == "han", p.paired_batches)(
        jnp.uint32(lottery.keys.code(level)))
    return counts, keys


def build_trials(lottery: Lottery, init: PyTree, masks: PyTree, level: Level,
                 chain: PyTree | None = None) -> tuple[PyTree, PyTree, jax.Array]:
    """Params, masks and batch keys of every trial of a level (order of :func:`layout`),
    each trained from step 0.

    ``init`` and ``masks`` hold the seeds' initial weights and ticket masks on a leading
    axis; ``chain`` (han only) the continuing networks' trained weights.
    """
    p = lottery.procedure
    (n_re, n_sh, n_ra), (reinit_keys, shuffle_keys, random_keys, batch_keys) = _control_keys(lottery, level)
    build = _builder(lottery.network, len(p.seeds), n_re, n_sh, n_ra, p.mode == "han", lottery.quick_setup)
    # Without quick set-up the control draws are the initialisation program's own (full optimisation,
    # compiled once per network and trial count), as the XOR sweep's were.
    fresh = _init_program(lottery.network)(reinit_keys) if n_re and not lottery.quick_setup else None
    params, trial_masks = build(init, masks, chain, reinit_keys, shuffle_keys, random_keys, fresh)
    return params, trial_masks, batch_keys


@functools.lru_cache(maxsize=32)
def _state_builder(network: Network, n: int, n_re: int, n_sh: int, n_ra: int, han: bool) -> Callable:
    def build(start, chain, reinit_keys):
        rows = [start]
        if n_re:
            rows.append(jax.vmap(network.init_state)(reinit_keys))
        rows += [_repeat(n, start, count) for count in (n_sh, n_ra) if count]
        if han:
            rows.append(chain)
        return concat_trials(rows)

    return jax.jit(build)


def trial_states(lottery: Lottery, start: PyTree | None, level: Level, chain: PyTree | None = None) -> PyTree:
    """The model state every trial of a level starts from (order of :func:`layout`), or None for
    a stateless module. The state is not a weight, so it is never masked, pruned or shuffled:
    tickets and shuffle / random-mask controls start from ``start`` (the seeds' initial state, or
    the originals' step-k state when late rewinding, as a rewound checkpoint would), reinit
    controls from a fresh one drawn with their weights' keys, Han's chain from ``chain`` (its
    trained state)."""
    if start is None:
        return None
    p = lottery.procedure
    (n_re, n_sh, n_ra), (reinit_keys, *_) = _control_keys(lottery, level)
    return _state_builder(lottery.network, len(p.seeds), n_re, n_sh, n_ra, p.mode == "han")(
        start, start if chain is None else chain, reinit_keys)


def _moved_slots(state: PyTree, like: PyTree, move: Callable[[PyTree], PyTree]) -> PyTree:
    """``state`` (an optimiser state) with ``move`` applied to every sub-tree shaped like the
    params ``like`` (momentum, Adam's moments) and the rest (step counts) kept."""
    structure = jax.tree.structure(like)

    def is_slot(x: Any) -> bool:
        return jax.tree.structure(x) == structure

    return jax.tree.map(lambda x: move(x) if is_slot(x) else x, state, is_leaf=is_slot)


@functools.lru_cache(maxsize=32)
def _rewound_builder(network: Network, trainer: Any, n: int, n_re: int, n_sh: int, n_ra: int,
                     quick: bool) -> Callable:
    """``(snapshot, state, masks, reinit keys, shuffle keys, random keys, fresh) -> (params, masks,
    optimiser states)`` of a late-rewound level's trials (see the module docstring)."""

    def ticket(values, state, masks):
        p, m = transforms.rewind(values, masks)
        return p, m, _moved_slots(state, values, lambda t: masks_lib.apply(t, m))

    def shuffled(key, values, state, masks):
        p, m = transforms.shuffle(key, values, masks)
        perms = transforms.permutations(key, values)  # the ones shuffle drew: slots move with their weights
        return p, m, _moved_slots(state, values, lambda t: masks_lib.apply(transforms.permute(t, perms), m))

    def random(key, values, state, masks):
        p, m = transforms.random_mask(key, values, masks)
        return p, m, _moved_slots(state, values, lambda t: masks_lib.apply(t, m))  # the slots at the new places

    def build(values, state, masks, reinit_keys, shuffle_keys, random_keys, fresh):
        rows = [jax.vmap(ticket)(values, state, masks)]
        if n_re:
            p, m = _reinit_rows(network, n, n_re, masks, reinit_keys, fresh)
            rows.append((p, m, jax.vmap(trainer.init_state)(p)))  # a fresh draw has no optimiser history
        for count, keys, fn in ((n_sh, shuffle_keys, shuffled), (n_ra, random_keys, random)):
            if count:
                rows.append(jax.vmap(fn)(keys, _repeat(n, values, count), _repeat(n, state, count),
                                         _repeat(n, masks, count)))
        return tuple(concat_trials([r[i] for r in rows]) for i in range(3))

    return jax.jit(build, compiler_options=quick_options(quick))


def rewound_trials(lottery: Lottery, snapshot: tuple[PyTree, PyTree], masks: PyTree, level: Level
                   ) -> tuple[PyTree, PyTree, jax.Array, PyTree]:
    """Params, masks, batch keys and optimiser states of every trial of a late-rewound level
    (order of :func:`layout`), each to be trained from step ``procedure.rewind_step``.

    ``snapshot`` is the originals' ``(params, optimiser state)`` at that step (leading seed
    axis, :func:`original_snapshot`); ``masks`` the seeds' ticket masks.
    """
    p = lottery.procedure
    if p.mode == "han":
        raise ValueError("late rewinding does not apply to han mode")
    (n_re, n_sh, n_ra), (reinit_keys, shuffle_keys, random_keys, batch_keys) = _control_keys(lottery, level)
    build = _rewound_builder(lottery.network, lottery.trainer, len(p.seeds), n_re, n_sh, n_ra, lottery.quick_setup)
    fresh = _init_program(lottery.network)(reinit_keys) if n_re and not lottery.quick_setup else None
    params, trial_masks, states = build(*snapshot, masks, reinit_keys, shuffle_keys, random_keys, fresh)
    return params, trial_masks, batch_keys, states


def original_snapshot(lottery: Lottery, record: store.Record, step: int) -> tuple[PyTree, PyTree]:
    """The originals' ``(params, optimiser state)`` after ``step`` (leading seed axis), from a
    level-0 record that holds that snapshot; the state's structure is the trainer's
    ``init_state`` of one network."""
    if step not in record.metrics.get("snapshot_steps", []):
        raise store.StoreError(f"{record.name}: holds no snapshot at step {step} "
                               f"(has {record.metrics.get('snapshot_steps', [])})")
    params = record_tree(record, ondisk.snapshot(step, "params"))
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), params)
    leaves, treedef = jax.tree.flatten(jax.eval_shape(lottery.trainer.init_state, one))
    state = treedef.unflatten([jnp.asarray(record.arrays[ondisk.snapshot_opt(step, i)]) for i in range(len(leaves))])
    return params, state


def snapshot_model_state(lottery: Lottery, record: store.Record, step: int) -> PyTree | None:
    """The originals' model state after ``step`` (leading seed axis; None when stateless)."""
    if not lottery.network.stateful:
        return None
    return record_tree(record, ondisk.snapshot(step, STATE))


def record_tree(record: store.Record, key: str) -> PyTree:
    return jax.tree.map(jnp.asarray, store.subtree(record.arrays, key))


def stored_init(lottery: Lottery, path: str | Path, progress: Progress | None = None) -> PyTree:
    """The run's initial weights (leading seed axis): stored once as record ``init``, so
    analyses and resumed runs read the exact values the run started from."""
    if not store.done(path, INIT):
        report_problem(path, INIT, progress)
        init = store.flatten(jax.device_get(initial_params(lottery)), INIT)
        state = initial_state(lottery)
        if state is not None:
            init.update(store.flatten(jax.device_get(state), INIT_STATE))
        devices_lib.written(f"{path}/{INIT}", lambda: store.save_level(
            path, INIT, init, {"order": -10**9, "seeds": list(lottery.procedure.seeds)}))
    return record_tree(store.load_level(path, INIT), INIT)


def stored_init_state(lottery: Lottery, path: str | Path) -> PyTree | None:
    """The run's initial model state (leading seed axis) from its ``init`` record, or None for a
    stateless module."""
    if not lottery.network.stateful:
        return None
    return record_tree(store.load_level(path, INIT), INIT_STATE)


def report_problem(path: str | Path, name: str, progress: Progress | None) -> None:
    problem = store.problem(path, name)
    if problem and progress is not None:
        progress.note(f"recomputing {name}: {problem}")
