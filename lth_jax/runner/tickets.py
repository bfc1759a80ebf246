"""Pruning between levels: the masks each level's tickets carry, from the trained weights of the
level it depends on, or from a rule that sees data (a :class:`lth_jax.rules.Context`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lth_jax import masks as masks_lib
from lth_jax import rules, store
from lth_jax.runner.check import SetupError
from lth_jax.runner.plan import plan
from lth_jax.runner.spec import STATE, Level, Lottery, Network, PyTree, quick_options
from lth_jax.runner.trials import record_tree, stored_init_state
from lth_jax.store import ondisk


@functools.lru_cache(maxsize=32)
def _pruners(network: Network, rule: Any, quick: bool) -> tuple[Callable, Callable, Callable]:
    options = quick_options(quick)
    to_level = jax.jit(jax.vmap(lambda p, m, v: rule.to_level(network, p, m, v), in_axes=(0, 0, None)),
                       compiler_options=options)
    step = jax.jit(jax.vmap(lambda p, m: rule.step(network, p, m)), compiler_options=options)
    start = jax.jit(jax.vmap(lambda p: rule.start(network, p)), compiler_options=options)
    return to_level, step, start


def ticket_masks(lottery: Lottery, path: Path, init: PyTree, level: Level, previous: Level | None,
                 data: Any = None) -> PyTree:
    """The ticket masks of ``level`` (per seed), derived from what the store holds (and, for a
    rule that sees a batch, ``data``)."""
    to_level, step, start = _pruners(lottery.network, lottery.prune, True)
    if previous is None:
        return start(init)
    if getattr(lottery.prune, "uses_context", False):
        return _context_masks(lottery, path, init, level, previous, data)
    if lottery.procedure.mode == "oneshot":
        original = store.load_level(path, plan(lottery)[0].name)
        return to_level(record_tree(original, ondisk.TRAINED), record_tree(original, ondisk.MASKS),
                        jnp.float32(level.value))
    prev = store.load_level(path, previous.name)
    source = ondisk.CHAIN if lottery.procedure.mode == "han" else ondisk.TRAINED
    return step(record_tree(prev, source), record_tree(prev, ondisk.MASKS))


@functools.lru_cache(maxsize=32)
def _context_pruners(network: Network, rule: Any, pipeline: Any) -> tuple[Callable, Callable]:
    """Jitted, vmapped over seeds: ``(init, trained, masks, state, key, x, y[, value]) -> masks`` of a
    rule that sees a :class:`lth_jax.rules.Context`."""
    contract = network.contract()

    def context(init, trained, masks, state, key, x_all, y_all):
        idx = jax.random.randint(jax.random.fold_in(key, 0), (rule.batch_size,), 0, x_all.shape[0])
        x, y = x_all[idx], y_all[idx]
        if pipeline is not None:
            x = pipeline.test(x)

        def loss(params):
            logits, _ = contract.apply(masks_lib.apply(params, masks), state, x, train=True,
                                       key=jax.random.fold_in(key, 2))
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

        return rules.Context(init, trained, masks, (x, y), loss, jax.random.fold_in(key, 1))

    def to_level(init, trained, masks, state, key, x, y, value):
        return rule.to_level_ctx(network, context(init, trained, masks, state, key, x, y), value)

    def step(init, trained, masks, state, key, x, y):
        return rule.step_ctx(network, context(init, trained, masks, state, key, x, y))

    axes = (0, 0, 0, 0, 0, None, None)
    return (jax.jit(jax.vmap(to_level, in_axes=(*axes, None))), jax.jit(jax.vmap(step, in_axes=axes)))


def _context_masks(lottery: Lottery, path: Path, init: PyTree, level: Level, previous: Level,
                   data: Any) -> PyTree:
    """Masks of a context rule: from the initial weights (``at_init``) or the source level's trained
    ones, the source level's masks (all ones for one-shot), a batch and a key per seed drawn by
    :meth:`SeedKeys.prune`, the loss in training mode (BatchNorm on batch statistics, dropout drawn
    from the key; the state it computes is dropped)."""
    rule, p = lottery.prune, lottery.procedure
    if data is None:
        raise SetupError(f"rule {rule.name!r} sees a batch: the runner needs the training data")
    prune_keys = getattr(lottery.keys, "prune", None)
    if prune_keys is None:
        raise SetupError(f"rule {rule.name!r} sees a batch, which the key scheme {type(lottery.keys).__name__} "
                         "does not derive (it has no prune stream)")
    x, y = (data[0] if isinstance(data[0], tuple | list) else data)
    record = store.load_level(path, previous.name)  # the source level (depends_on)
    n = len(p.seeds)
    masks = jax.vmap(lambda q: rule.start(lottery.network, q))(init) if p.mode == "oneshot" else \
        record_tree(record, ondisk.MASKS)
    if rule.at_init:
        trained, state = None, stored_init_state(lottery, path)
    else:
        trained = record_tree(record, ondisk.CHAIN if p.mode == "han" else ondisk.TRAINED)
        state = None if not lottery.network.stateful else jax.tree.map(lambda a: a[:n], record_tree(record, STATE))
    keys = prune_keys(jnp.asarray(p.seeds, jnp.uint32), jnp.uint32(lottery.keys.code(level)))
    to_level, step = _context_pruners(lottery.network, rule, lottery.pipeline())
    if p.mode == "oneshot":
        return to_level(init, trained, masks, state, keys, x, y, jnp.float32(level.value))
    return step(init, trained, masks, state, keys, x, y)
