"""What to train after pruning: the winning ticket and the paper's two controls.

Each is a pure function over pytrees that returns ``(params, masks)``:

- :func:`rewind`  the winning ticket: survivors reset to their original init.
- :func:`reinit`  control 1: same mask, a fresh draw from the init distribution.
- :func:`shuffle` control 2: same survivor count per layer at random positions,
  carrying the surviving *initial* values with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from lth_jax import masks as masks_lib

PyTree = Any
InitFn = Callable[[jax.Array], PyTree]


def rewind(init: PyTree, masks: PyTree) -> tuple[PyTree, PyTree]:
    """The winning ticket: the surviving weights at their values from before training."""
    return masks_lib.apply(init, masks), masks


def reinit(key: jax.Array, init_fn: InitFn, masks: PyTree) -> tuple[PyTree, PyTree]:
    """Control 1: keep the architecture, redraw every weight from ``init_fn``."""
    return masks_lib.apply(init_fn(key), masks), masks


def carry_on(trained: PyTree, masks: PyTree) -> tuple[PyTree, PyTree]:
    """Han et al.'s alternative to rewinding: keep training the trained survivors."""
    return masks_lib.apply(trained, masks), masks


def shuffle(key: jax.Array, init: PyTree, masks: PyTree,
            where: Callable[[tuple], bool] = masks_lib.is_kernel) -> tuple[PyTree, PyTree]:
    """Control 2: permute positions within each selected leaf (kernels by default).

    Mask and initial value move together under one permutation, so each layer
    keeps its survivor count and the multiset of surviving initial values,
    while the connections themselves land at random places.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(init)
    mask_leaves = treedef.flatten_up_to(masks)
    keys = jax.random.split(key, len(leaves))
    new_p, new_m = [], []
    for (path, p), m, k in zip(leaves, mask_leaves, keys, strict=True):
        if where(path):
            perm = jax.random.permutation(k, p.size)
            p = p.reshape(-1)[perm].reshape(p.shape)
            m = m.reshape(-1)[perm].reshape(m.shape)
        new_p.append(jnp.where(m, p, jnp.zeros_like(p)))
        new_m.append(m)
    return treedef.unflatten(new_p), treedef.unflatten(new_m)
