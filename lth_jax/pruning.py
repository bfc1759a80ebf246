"""Pruning rules: pure functions ``(params, masks, ...) -> masks``.

Rates may be traced values, so trials of one vmapped program can be pruned to
different sparsities under a single compile. Counts are exact: ties are broken
by rank, never by a threshold that could keep too many.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

from lth_jax import masks as masks_lib
from lth_jax.models import layer_names

PyTree = Any
Heuristic = Literal["input", "output", "product"]
HEURISTICS: tuple[str, ...] = ("input", "output", "product")


def keep_top_k(scores: jax.Array, alive: jax.Array, k: jax.Array) -> jax.Array:
    """Mask of the ``k`` highest-scoring alive entries (exactly ``k``; ties by index)."""
    flat = jnp.where(alive.reshape(-1), scores.reshape(-1).astype(jnp.float32), -jnp.inf)
    order = jnp.argsort(-flat, stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))
    return (rank < k).reshape(alive.shape) & alive


def survivors_after(remaining: jax.Array, rate: jax.Array) -> jax.Array:
    """How many of ``remaining`` survive pruning a fraction ``rate`` of them.

    Rounded to the nearest integer, so 20% of 235,200 removes exactly 47,040.
    """
    remaining = jnp.asarray(remaining, jnp.float32)
    return (remaining - jnp.round(remaining * rate)).astype(jnp.int32)


def layer_rates(params: PyTree, rate: float | jax.Array, output_rate: float | jax.Array | None = None) -> PyTree:
    """Per-leaf pruning rates: ``rate`` for hidden kernels, ``output_rate`` for the
    output kernel (the paper prunes it at half the hidden rate), 0 for biases.
    """
    if output_rate is None:
        output_rate = rate
    names = layer_names(params)
    rates = {}
    for name in names:
        r = output_rate if name == names[-1] else rate
        rates[name] = {leaf: (jnp.asarray(r, jnp.float32) if leaf == "kernel" else jnp.float32(0.0))
                       for leaf in params[name]}
    return rates


def magnitude(params: PyTree, masks: PyTree, rates: PyTree) -> PyTree:
    """Remove the lowest-|w| fraction ``rates`` of each leaf's *remaining* weights.

    ``rates`` mirrors ``params`` with a scalar per leaf (see :func:`layer_rates`).
    """
    def prune_leaf(p, m, r):
        k = survivors_after(jnp.sum(m), r)
        return keep_top_k(jnp.abs(p), m, k)

    return jax.tree.map(prune_leaf, params, masks, rates)


def unit_scores(params: PyTree, masks: PyTree, heuristic: Heuristic, layer: int = 0) -> jax.Array:
    """Score each unit of hidden layer ``layer``; the lowest is pruned first.

    - ``input``: mean |incoming weight| (paper: "smallest average input weight magnitudes")
    - ``output``: |outgoing weight| (summed over outputs when there are several)
    - ``product``: |outgoing| * sum |incoming|
    """
    names = layer_names(params)
    live = masks_lib.apply(params, masks)
    w_in = jnp.abs(live[names[layer]]["kernel"])       # (fan_in, units)
    w_out = jnp.abs(live[names[layer + 1]]["kernel"])  # (units, fan_out)
    if heuristic == "input":
        return jnp.mean(w_in, axis=0)
    if heuristic == "output":
        return jnp.sum(w_out, axis=1)
    if heuristic == "product":
        return jnp.sum(w_out, axis=1) * jnp.sum(w_in, axis=0)
    raise ValueError(f"unknown unit-pruning heuristic {heuristic!r}; choose from {HEURISTICS}")


def alive_units(masks: PyTree, layer: int = 0) -> jax.Array:
    """Boolean vector: which units of hidden layer ``layer`` still exist."""
    names = layer_names(masks)
    return jnp.any(masks[names[layer]]["kernel"], axis=0) | masks[names[layer]]["bias"]


def unit_masks(masks: PyTree, keep: jax.Array, layer: int = 0) -> PyTree:
    """Remove the units where ``keep`` is False *entirely*: incoming weights, bias
    and outgoing weights (a unit with only its kernel masked would still emit
    relu(bias)).
    """
    names = layer_names(masks)
    here, nxt = names[layer], names[layer + 1]
    out = jax.tree.map(lambda m: m, masks)
    out[here] = {**masks[here], "kernel": masks[here]["kernel"] & keep[None, :], "bias": masks[here]["bias"] & keep}
    out[nxt] = {**masks[nxt], "kernel": masks[nxt]["kernel"] & keep[:, None]}
    return out


def units(params: PyTree, masks: PyTree, num_prune: int | jax.Array, heuristic: Heuristic,
          layer: int = 0) -> PyTree:
    """Prune the ``num_prune`` lowest-scoring alive units of hidden layer ``layer``."""
    alive = alive_units(masks, layer)
    k = jnp.sum(alive, dtype=jnp.int32) - jnp.asarray(num_prune, jnp.int32)
    keep = keep_top_k(unit_scores(params, masks, heuristic, layer), alive, k)
    return unit_masks(masks, keep, layer)


def first_units(masks: PyTree, num_units: int | jax.Array, layer: int = 0) -> PyTree:
    """Keep only the first ``num_units`` units: a narrower network inside a wide one.

    A 10-unit network with all but 2 units removed computes exactly what a 2-unit
    network would, and its surviving initial values are an independent draw
    from the same distribution, so every width trains under one compile.
    """
    width = masks[layer_names(masks)[layer]]["bias"].shape[-1]
    return unit_masks(masks, jnp.arange(width) < num_units, layer)
