"""Mask pytrees, and how to name the layers of any Flax params tree.

A mask leaf is True where the weight is alive. Leaves that are never pruned
(biases of an unpruned network, say) are simply all-True, so every function
here works on any params tree without special cases.

Layers. A *layer* is a submodule that owns a ``kernel`` param: a Dense kernel
``(in, out)``, a Conv kernel ``(kh, kw, in, out)`` or one of any other rank.
It is addressed by its *path*, the tuple of keys that leads to it inside the
``params`` collection (``("Dense_0",)``, ``("encoder", "Dense_1")``); wherever
a layer is named, its ``"/"``-joined *name* (``"encoder/Dense_1"``) is accepted
too, and results keyed by layer use that name (for a flat MLP, simply
``"Dense_0"``).

Order. Which layer feeds which is a property of the model, not of the params
tree: :func:`lth_jax.models.layer_order` reads it from the forward pass.
Functions that need an order take ``order=`` (a sequence of layer paths or
names listing every layer once). Without one, :func:`layer_paths` sorts paths
naturally, key by key (``Dense_2`` before ``Dense_10`` at every nesting level):
that is the call order of Flax's auto-names when modules of one type are
created in the order they are called (an MLP's ``Dense_0 .. Dense_k``), but
not of user names, of mixed module types, or of ``nn.Dense(2)(nn.Dense(3)(x))``
(Flax numbers at construction, so the outer layer is ``Dense_0``).
Dict insertion order is not used: jit, vmap and ``jax.tree.map`` rebuild
dicts with sorted keys, so it does not survive a transform.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any
Path = tuple[str, ...]
LayerRef = str | Sequence[str]   # a layer's path, or its "/"-joined name

KERNEL = "kernel"


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


# ------------------------------------------------------------------ paths and layers


def keys(path: Iterable[Any]) -> Path:
    """A jax key path (``DictKey``/``GetAttrKey``/...) or a plain sequence as a tuple of str keys."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def as_path(layer: LayerRef) -> Path:
    """``"encoder/Dense_1"`` or ``("encoder", "Dense_1")`` -> ``("encoder", "Dense_1")``."""
    if isinstance(layer, str):
        return tuple(layer.split("/"))
    return keys(layer)


def layer_name(layer: LayerRef) -> str:
    """A layer's ``"/"``-joined name: the key results are reported under."""
    return "/".join(as_path(layer))


def is_kernel(path: Sequence[Any] | str) -> bool:
    """True for a ``kernel`` leaf (a weight array of any rank), False for biases and the rest.

    ``path`` is a jax key path, a tuple of keys or a ``"/"``-joined string.
    """
    return as_path(path)[-1:] == (KERNEL,)


def natural_key(path: LayerRef) -> tuple:
    """Sort key comparing each key by its digit runs as numbers (``Dense_2`` < ``Dense_10``)."""
    return tuple(tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", key)))
                 for key in as_path(path))


def layer_paths(tree: PyTree, order: Sequence[LayerRef] | None = None) -> tuple[Path, ...]:
    """The paths of the layers of ``tree`` (the nodes holding a ``kernel`` leaf), in order.

    ``order`` (paths or names) must list every layer of ``tree`` exactly once;
    without it layers are sorted by :func:`natural_key` (see the module docstring
    for when that is the forward order). Leaves may carry extra leading axes.
    """
    found = {keys(path)[:-1] for path, _ in jax.tree_util.tree_leaves_with_path(tree) if is_kernel(path)}
    if order is None:
        return tuple(sorted(found, key=natural_key))
    paths = tuple(as_path(p) for p in order)
    if len(set(paths)) != len(paths) or set(paths) != found:
        extra = sorted(map(layer_name, set(paths) - found))
        missing = sorted(map(layer_name, found - set(paths)))
        raise ValueError(f"order must list every layer of the tree once; not layers: {extra}, missing: {missing}, "
                         f"repeated: {len(paths) - len(set(paths))}")
    return paths


def kernel_paths(tree: PyTree, order: Sequence[LayerRef] | None = None) -> tuple[Path, ...]:
    """The paths of the ``kernel`` leaves of ``tree``, layer by layer in order (see :func:`layer_paths`)."""
    return tuple((*path, KERNEL) for path in layer_paths(tree, order))


def get(tree: PyTree, path: LayerRef) -> PyTree:
    """The subtree (a layer's dict, or a leaf) at ``path``."""
    node = tree
    for key in as_path(path):
        try:
            node = node[key]
        except (KeyError, TypeError, IndexError):
            raise KeyError(f"no {layer_name(path)!r} in the tree") from None
    return node


def replace(tree: PyTree, leaves: Mapping[LayerRef, Any | Callable[[Any], Any]]) -> PyTree:
    """A copy of ``tree`` with the leaves at the given paths replaced.

    Values may be callables, applied to the old leaf. Every other leaf is kept
    as it is (the containers are new, the other leaves the same objects).
    """
    wanted = {as_path(p): v for p, v in leaves.items()}
    seen = set()

    def pick(path, leaf):
        path = keys(path)
        if path not in wanted:
            return leaf
        seen.add(path)
        new = wanted[path]
        return new(leaf) if callable(new) else new

    out = jax.tree_util.tree_map_with_path(pick, tree)
    if missing := set(wanted) - seen:
        raise KeyError(f"no leaves {sorted(map(layer_name, missing))} in the tree")
    return out
