"""What to train after pruning: the winning ticket and its controls.

Each is a pure function over pytrees that returns ``(params, masks)``:

- :func:`rewind`  the winning ticket: survivors reset to their values from before training
  (the initialisation, or the step-``k`` snapshot of late rewinding: Frankle et al. 2019).
- :func:`reinit`  control 1: same mask, a fresh draw from the init distribution.
- :func:`shuffle` control 2: same survivor count per layer at random positions,
  carrying the surviving *initial* values with them.
- :func:`random_mask` control 3 (open_lth's "randomly_prune"): same survivor count per
  layer at uniformly random positions, with the initial values *at those positions*.
- :func:`carry_on` Han et al.: keep training the trained survivors.

:func:`permutations` and :func:`permute` are the per-leaf permutations that
:func:`shuffle` and :func:`random_mask` draw from their key, so other trees that belong to
the same weights (an optimiser's momentum, say) can be moved in exactly the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lth_jax import masks as masks_lib

PyTree = Any
InitFn = Callable[[jax.Array], PyTree]
Where = Callable[[tuple], bool]


def rewind(init: PyTree, masks: PyTree) -> tuple[PyTree, PyTree]:
    """The winning ticket: the surviving weights at their values from before training
    (``init`` is the initialisation, or a snapshot of the original at step ``k``)."""
    return masks_lib.apply(init, masks), masks


def reinit(key: jax.Array, init_fn: InitFn, masks: PyTree) -> tuple[PyTree, PyTree]:
    """Control 1: keep the architecture, redraw every weight from ``init_fn``."""
    return masks_lib.apply(init_fn(key), masks), masks


def carry_on(trained: PyTree, masks: PyTree) -> tuple[PyTree, PyTree]:
    """Han et al.'s alternative to rewinding: keep training the trained survivors."""
    return masks_lib.apply(trained, masks), masks


def permutations(key: jax.Array, tree: PyTree, where: Where = masks_lib.is_kernel) -> list[jax.Array | None]:
    """One permutation of the flattened positions per selected leaf of ``tree`` (None for the
    others), in leaf order: leaf ``i`` uses ``permutation(split(key, leaves)[i], size)``.
    :func:`shuffle` and :func:`random_mask` draw exactly these from their key."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    keys = jax.random.split(key, len(leaves))
    return [jax.random.permutation(k, p.size) if where(path) else None
            for (path, p), k in zip(leaves, keys, strict=True)]


def permute(tree: PyTree, perms: Sequence[jax.Array | None]) -> PyTree:
    """Move every leaf's entries by its permutation (``new.flat = old.flat[perm]``; None: unchanged)."""
    leaves, treedef = jax.tree.flatten(tree)
    out = [p if perm is None else jnp.asarray(p).reshape(-1)[perm].reshape(jnp.shape(p))
           for p, perm in zip(leaves, perms, strict=True)]
    return treedef.unflatten(out)


def shuffle(key: jax.Array, init: PyTree, masks: PyTree,
            where: Where = masks_lib.is_kernel) -> tuple[PyTree, PyTree]:
    """Control 2: permute positions within each selected leaf (kernels by default).

    Mask and initial value move together under one permutation, so each layer
    keeps its survivor count and the multiset of surviving initial values,
    while the connections themselves land at random places.
    """
    perms = permutations(key, init, where)
    new_m = permute(masks, perms)
    return masks_lib.apply(permute(init, perms), new_m), new_m


def random_mask(key: jax.Array, init: PyTree, masks: PyTree,
                where: Where = masks_lib.is_kernel) -> tuple[PyTree, PyTree]:
    """Control 3, the random-mask control: in each selected leaf (kernels by default) the
    same number of survivors at positions drawn uniformly at random (a random permutation
    of the mask, so every subset of that size is equally likely), valued at ``init``'s
    values *at the new positions*.

    Unlike :func:`shuffle`, which carries the surviving values with their connections, this
    asks whether the ticket's *positions* matter when the values are the network's own; the
    other leaves keep their mask and their ``init`` values.
    """
    new_m = permute(masks, permutations(key, masks, where))
    return masks_lib.apply(init, new_m), new_m
