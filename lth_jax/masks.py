"""Mask pytrees: boolean arrays that mirror a params tree leaf for leaf.

A mask leaf is True where the weight is alive. Leaves that are never pruned
(biases of an unpruned network, say) are simply all-True, so every function
here works on any params tree without special cases.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def ones_like(params: PyTree) -> PyTree:
    """An all-alive mask with the structure and shapes of ``params``."""
    return jax.tree.map(lambda p: jnp.ones(jnp.shape(p), dtype=bool), params)


def apply(params: PyTree, masks: PyTree) -> PyTree:
    """Zero every pruned weight. ``where`` rather than ``*`` keeps NaN/inf out."""
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)


def count(masks: PyTree) -> PyTree:
    """Number of surviving entries per leaf (int32 scalars)."""
    return jax.tree.map(lambda m: jnp.sum(m, dtype=jnp.int32), masks)


def density(masks: PyTree) -> tuple[PyTree, jax.Array]:
    """Fraction remaining per leaf, and overall over all leaves.

    Returns ``(per_leaf, overall)``; ``per_leaf`` mirrors ``masks``.
    """
    per_leaf = jax.tree.map(lambda m: jnp.mean(m, dtype=jnp.float32), masks)
    alive = sum(jnp.sum(m, dtype=jnp.float32) for m in jax.tree.leaves(masks))
    total = sum(m.size for m in jax.tree.leaves(masks))
    return per_leaf, alive / total


def kernel_density(masks: PyTree) -> jax.Array:
    """Overall fraction of *weights* (kernel leaves) remaining: the paper's x-axis."""
    leaves = [m for path, m in jax.tree_util.tree_leaves_with_path(masks) if is_kernel(path)]
    alive = sum(jnp.sum(m, dtype=jnp.float32) for m in leaves)
    return alive / sum(m.size for m in leaves)


def is_kernel(path: tuple) -> bool:
    """True for a Dense ``kernel`` leaf (a weight matrix), False for biases."""
    last = path[-1]
    name = getattr(last, "key", getattr(last, "name", last))
    return str(name) == "kernel"
