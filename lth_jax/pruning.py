"""Mask arithmetic: pure functions ``(params, masks, ...) -> masks`` on any Flax params tree, the
primitives the rules of :mod:`lth_jax.rules` are made of.

Rates may be traced values, so trials of one vmapped program can be pruned to
different sparsities under a single compile. Counts are exact: ties are broken
by rank, never by a threshold that could keep too many.

Rates are fractions of the remaining weights, in [0, 1]. A concrete rate (a
Python or numpy number, or a jax array that is not being traced) outside that
range raises ``ValueError``; a traced rate cannot be checked, so it is clipped
to [0, 1] (1.5 prunes everything, -0.5 nothing). A NaN rate is rejected when
concrete and undefined when traced.

Layers and their order: see :mod:`lth_jax.masks` (paths, ``"/"``-joined names,
``order=``, the natural default). Units are the last axis of a layer's kernel
(a Dense layer's output features, a Conv layer's output channels); they feed
the input axis (second to last) of the next layer's kernel in ``order``. That
holds for Dense -> Dense and Conv -> Conv chains; a Dense layer after a
flatten sees ``h * w * channels`` inputs, not ``channels``, and is rejected.
Unit functions work on one network (no trial axis): vmap them over trials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import masks as masks_lib
from lth_jax.masks import LayerRef, Path

PyTree = Any
Heuristic = Literal["input", "output", "product"]
HEURISTICS: tuple[str, ...] = ("input", "output", "product")
Order = Sequence[LayerRef] | None


def check_rate(rate: float | jax.Array, what: str = "pruning rate") -> float | jax.Array:
    """``rate`` itself if it is concrete and in [0, 1] (every entry, for arrays), else
    ``ValueError``; a traced ``rate`` comes back clipped to [0, 1]."""
    if isinstance(rate, jax.core.Tracer):
        return jnp.clip(rate, 0.0, 1.0)
    r = np.asarray(rate, np.float64)
    if not np.all((r >= 0.0) & (r <= 1.0)):
        bad = r[~((r >= 0.0) & (r <= 1.0))].reshape(-1)
        raise ValueError(f"{what} must be a fraction in [0, 1], got {bad[0]:g}")
    return rate


def keep_top_k(scores: jax.Array, alive: jax.Array, k: jax.Array) -> jax.Array:
    """Mask of the ``k`` highest-scoring alive entries (exactly ``k``; ties by index)."""
    flat = jnp.where(alive.reshape(-1), scores.reshape(-1).astype(jnp.float32), -jnp.inf)
    order = jnp.argsort(-flat, stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))
    return (rank < k).reshape(alive.shape) & alive


def survivors_after(remaining: jax.Array, rate: jax.Array) -> jax.Array:
    """How many of ``remaining`` survive pruning a fraction ``rate`` of them.

    Rounded to the nearest integer, so 20% of 235,200 removes exactly 47,040.
    ``rate`` must lie in [0, 1] (see the module docstring for traced rates).
    """
    rate = check_rate(rate)
    remaining = jnp.asarray(remaining, jnp.float32)
    return (remaining - jnp.round(remaining * rate)).astype(jnp.int32)


def output_layer(params: PyTree, *, output: LayerRef | None = None, order: Order = None) -> Path:
    """The output layer's path: ``output`` if given (checked to be a layer), else the
    last layer in ``order`` (default order: see :mod:`lth_jax.masks`)."""
    paths = masks_lib.layer_paths(params, order)
    if output is None:
        return paths[-1]
    if masks_lib.as_path(output) not in paths:
        raise ValueError(f"output {masks_lib.layer_name(output)!r} is not a layer; layers: "
                         f"{[masks_lib.layer_name(p) for p in paths]}")
    return masks_lib.as_path(output)


def layer_rates(params: PyTree, rate: float | jax.Array, output_rate: float | jax.Array | None = None, *,
                output: LayerRef | None = None, order: Order = None) -> PyTree:
    """Per-leaf pruning rates mirroring ``params``: ``rate`` for every kernel (any rank),
    ``output_rate`` (default ``rate``) for the output layer's kernel (the paper prunes
    it at half the hidden rate), 0 for biases and every other leaf.

    The output layer is ``output``, else the last in ``order``, else the last in
    the default order (see :func:`output_layer`).
    """
    if output_rate is None:
        output_rate = rate
    check_rate(rate)
    check_rate(output_rate, "output pruning rate")
    out = output_layer(params, output=output, order=order)

    def leaf_rate(path, _):
        path = masks_lib.keys(path)
        if not masks_lib.is_kernel(path):
            return jnp.float32(0.0)
        return jnp.asarray(output_rate if path[:-1] == out else rate, jnp.float32)

    return jax.tree_util.tree_map_with_path(leaf_rate, params)


KINDS: tuple[str, ...] = ("conv", "dense", "output")


def layer_kind(kernel_shape: Sequence[int], is_output: bool = False) -> str:
    """A layer's kind from its kernel, never its name: ``"output"`` for the output layer,
    ``"conv"`` for a convolution (a kernel of rank 3 or more), else ``"dense"``."""
    return "output" if is_output else "conv" if len(kernel_shape) >= 3 else "dense"


def kind_rates(params: PyTree, rates: Mapping[str, float | jax.Array], *, output: LayerRef | None = None,
               order: Order = None) -> PyTree:
    """Per-leaf pruning rates mirroring ``params`` by each layer's kind (:func:`layer_kind`):
    ``rates["conv"]``, ``rates["dense"]`` and ``rates["output"]`` for the kernels, 0 for biases
    and every other leaf (the later versions of the paper prune convolutions at 10-15%, dense
    layers at 20% and the output layer at half that a round)."""
    missing = [k for k in KINDS if k not in rates]
    if missing:
        raise ValueError(f"rates needs a rate for every kind ({', '.join(KINDS)}); missing {', '.join(missing)}")
    checked = {k: check_rate(rates[k], f"{k} pruning rate") for k in KINDS}
    out = output_layer(params, output=output, order=order)

    def leaf_rate(path, leaf):
        path = masks_lib.keys(path)
        if not masks_lib.is_kernel(path):
            return jnp.float32(0.0)
        return jnp.asarray(checked[layer_kind(jnp.shape(leaf), path[:-1] == out)], jnp.float32)

    return jax.tree_util.tree_map_with_path(leaf_rate, params)


def magnitude(params: PyTree, masks: PyTree, rates: PyTree) -> PyTree:
    """Remove the lowest-|w| fraction ``rates`` of each leaf's *remaining* weights.

    ``rates`` mirrors ``params`` with a scalar per leaf (see :func:`layer_rates`).
    Leaves of any shape: a conv kernel is ranked over all its entries.
    """
    def prune_leaf(p, m, r):
        k = survivors_after(jnp.sum(m), r)
        return keep_top_k(jnp.abs(p), m, k)

    return jax.tree.map(prune_leaf, params, masks, rates)


# ------------------------------------------------------------------ units


def _unit_layers(tree: PyTree, layer: int | LayerRef, order: Order) -> tuple[Path, Path | None]:
    """The layer whose units are meant, and the next layer in order (None after the last)."""
    paths = masks_lib.layer_paths(tree, order)
    if isinstance(layer, int):
        i = range(len(paths))[layer]
    elif masks_lib.as_path(layer) in paths:
        i = paths.index(masks_lib.as_path(layer))
    else:
        raise ValueError(f"{masks_lib.layer_name(layer)!r} is not a layer; layers: "
                         f"{[masks_lib.layer_name(p) for p in paths]}")
    here, nxt = paths[i], paths[i + 1] if i + 1 < len(paths) else None
    if nxt is not None:
        units_here = jnp.shape(masks_lib.get(tree, (*here, "kernel")))[-1]
        fed = jnp.shape(masks_lib.get(tree, (*nxt, "kernel")))
        if len(fed) < 2 or fed[-2] != units_here:
            raise ValueError(f"the {units_here} units of {masks_lib.layer_name(here)!r} do not feed the input axis "
                             f"of {masks_lib.layer_name(nxt)!r} (kernel {tuple(fed)}); unit pruning needs "
                             "Dense -> Dense or Conv -> Conv")
    return here, nxt


def _axes_but(ndim: int, keep: int) -> tuple[int, ...]:
    return tuple(a for a in range(ndim) if a != keep % ndim)


def unit_scores(params: PyTree, masks: PyTree, heuristic: Heuristic, layer: int | LayerRef = 0, *,
                order: Order = None, with_bias: bool = False) -> jax.Array:
    """Score each unit of layer ``layer`` (an index into the order, or a path/name);
    the lowest is pruned first.

    - ``input``: mean |incoming weight| (paper: "smallest average input weight magnitudes")
    - ``output``: |outgoing weight| (summed over outputs when there are several)
    - ``product``: |outgoing| * sum |incoming|

    Incoming weights are the layer's kernel entries over all its axes but the
    last; outgoing ones the next layer's over all axes but its input axis.
    ``with_bias`` counts the unit's bias as one more incoming weight (the paper does not
    say whether its "input weights" include it).
    """
    here, nxt = _unit_layers(params, layer, order)
    live = masks_lib.apply(params, masks)
    w_in = jnp.abs(masks_lib.get(live, (*here, "kernel")))   # (..., fan_in, units)
    node = masks_lib.get(live, here)
    if with_bias and "bias" in node:
        w_in = jnp.concatenate([w_in.reshape(-1, w_in.shape[-1]), jnp.abs(node["bias"])[None, :]])
    if heuristic == "input":
        return jnp.mean(w_in, axis=_axes_but(w_in.ndim, -1))
    if heuristic not in HEURISTICS:
        raise ValueError(f"unknown unit-pruning heuristic {heuristic!r}; choose from {HEURISTICS}")
    if nxt is None:
        raise ValueError(f"the units of {masks_lib.layer_name(here)!r} feed no layer: no {heuristic!r} score")
    w_out = jnp.abs(masks_lib.get(live, (*nxt, "kernel")))   # (..., units, fan_out)
    outgoing = jnp.sum(w_out, axis=_axes_but(w_out.ndim, -2))
    if heuristic == "output":
        return outgoing
    return outgoing * jnp.sum(w_in, axis=_axes_but(w_in.ndim, -1))


def alive_units(masks: PyTree, layer: int | LayerRef = 0, *, order: Order = None) -> jax.Array:
    """Boolean vector: which units of layer ``layer`` still exist (a live incoming
    weight or a live bias)."""
    here, _ = _unit_layers(masks, layer, order)
    node = masks_lib.get(masks, here)
    alive = jnp.any(node["kernel"], axis=_axes_but(jnp.ndim(node["kernel"]), -1))
    return alive | node["bias"] if "bias" in node else alive


def unit_masks(masks: PyTree, keep: jax.Array, layer: int | LayerRef = 0, *, order: Order = None) -> PyTree:
    """Remove the units where ``keep`` is False *entirely*: incoming weights, bias
    and outgoing weights (a unit with only its kernel masked would still emit
    relu(bias)).
    """
    here, nxt = _unit_layers(masks, layer, order)
    new = {(*here, "kernel"): lambda m: m & keep}
    if "bias" in masks_lib.get(masks, here):
        new[(*here, "bias")] = lambda m: m & keep
    if nxt is not None:
        new[(*nxt, "kernel")] = lambda m: m & keep[:, None]
    return masks_lib.replace(masks, new)


def units(params: PyTree, masks: PyTree, num_prune: int | jax.Array, heuristic: Heuristic,
          layer: int | LayerRef = 0, *, order: Order = None, with_bias: bool = False) -> PyTree:
    """Prune the ``num_prune`` lowest-scoring alive units of layer ``layer``."""
    alive = alive_units(masks, layer, order=order)
    k = jnp.sum(alive, dtype=jnp.int32) - jnp.asarray(num_prune, jnp.int32)
    keep = keep_top_k(unit_scores(params, masks, heuristic, layer, order=order, with_bias=with_bias), alive, k)
    return unit_masks(masks, keep, layer, order=order)


def first_units(masks: PyTree, num_units: int | jax.Array, layer: int | LayerRef = 0, *,
                order: Order = None) -> PyTree:
    """Keep only the first ``num_units`` units: a narrower network inside a wide one.

    A 10-unit network with all but 2 units removed computes exactly what a 2-unit
    network would, and its surviving initial values are an independent draw
    from the same distribution, so every width trains under one compile.
    """
    here, _ = _unit_layers(masks, layer, order)
    width = jnp.shape(masks_lib.get(masks, (*here, "kernel")))[-1]
    return unit_masks(masks, jnp.arange(width) < num_units, layer, order=order)


# ------------------------------------------------------------------ global magnitude


def global_magnitude(params: PyTree, masks: PyTree, rate: float | jax.Array,
                     where: Callable[[Path], bool] = masks_lib.is_kernel) -> PyTree:
    """Remove the lowest-|w| fraction ``rate`` of the *remaining* weights of all selected
    leaves together: one threshold across layers, where :func:`magnitude` has one per layer.

    ``where(path) -> bool`` selects the leaves that are pruned (``path`` a tuple of str keys,
    e.g. ``("encoder", "Dense_1", "kernel")``); by default every kernel, so biases are never
    pruned. Unselected leaves come back unchanged; ``masks`` must mirror ``params`` leaf for
    leaf (any Flax tree, nested or user-named; leaves of any rank). Works on ONE network:
    vmap it over trials (a leading trial axis would be pooled with the rest).

    Counts are exact: of the ``n`` selected weights still alive, :func:`survivors_after`
    ``(n, rate)`` survive (nearest integer, as layer-wise pruning rounds per layer), whatever
    the ties. Ties are broken by rank: among equal |w|, the weight earlier in the flattened
    order survives, i.e. jax's leaf order of the tree (dict keys sorted, at every level) and
    row-major order within a leaf. ``rate`` may be traced (one compile for every sparsity;
    see the module docstring for its range).
    """
    rate = check_rate(rate)
    leaves, mask_leaves, chosen = _selected(params, masks, where, "weights")
    flat = jnp.concatenate([jnp.abs(jnp.asarray(leaves[i][1])).reshape(-1) for i in chosen])
    return _keep_pooled(flat, params, mask_leaves, chosen, rate)


def _selected(tree: PyTree, masks: PyTree, where: Callable[[Path], bool], what: str
              ) -> tuple[list, list, list[int]]:
    """``tree``'s leaves with paths, ``masks``' leaves, and the indices ``where`` selects, checked."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    try:
        mask_leaves = treedef.flatten_up_to(masks)
    except (ValueError, TypeError) as e:
        raise ValueError(f"masks must mirror {'params' if what == 'weights' else what} leaf for leaf: {e}") from None
    chosen = [i for i, (path, _) in enumerate(leaves) if where(masks_lib.keys(path))]
    if not chosen:
        raise ValueError(f"where= selects no leaf of {'params' if what == 'weights' else what}: nothing to prune")
    for i in chosen:
        if jnp.shape(leaves[i][1]) != jnp.shape(mask_leaves[i]):
            raise ValueError(f"mask of {masks_lib.layer_name(masks_lib.keys(leaves[i][0]))!r} has shape "
                             f"{jnp.shape(mask_leaves[i])}, its {what} {jnp.shape(leaves[i][1])}")
    return leaves, mask_leaves, chosen


def _keep_pooled(flat_scores: jax.Array, tree: PyTree, mask_leaves: list, chosen: list[int], rate: Any) -> PyTree:
    """Masks keeping the top :func:`survivors_after` of the selected leaves' alive entries pooled."""
    alive = [jnp.asarray(mask_leaves[i], bool) for i in chosen]
    flat_alive = jnp.concatenate([m.reshape(-1) for m in alive])
    keep = keep_top_k(flat_scores, flat_alive, survivors_after(jnp.sum(flat_alive, dtype=jnp.int32), rate))
    pieces = jnp.split(keep, np.cumsum([m.size for m in alive])[:-1].tolist())
    out = list(mask_leaves)
    for i, piece, m in zip(chosen, pieces, alive, strict=True):
        out[i] = piece.reshape(m.shape)
    return jax.tree_util.tree_unflatten(jax.tree.structure(tree), out)


# ------------------------------------------------------------------ given scores


def _rankable(scores: jax.Array) -> jax.Array:
    """``scores`` as float32 with NaN and -inf at the lowest finite value: they rank below every
    other alive weight yet above the dead ones, so :func:`keep_top_k` still keeps exactly ``k``
    (a NaN would sort after the dead entries and leave fewer). Finite scores are unchanged."""
    s = jnp.asarray(scores).astype(jnp.float32)
    return jnp.where(jnp.isnan(s) | (s == -jnp.inf), jnp.finfo(jnp.float32).min, s)


def by_score(scores: PyTree, masks: PyTree, rates: PyTree) -> PyTree:
    """Remove the lowest-scoring fraction ``rates`` of each leaf's *remaining* weights.

    :func:`magnitude` with the ranking given rather than |w|, so a new pruning criterion (SNIP's
    |g * w|, ...) is only a score tree: ``scores`` and ``rates`` mirror ``masks`` (``rates`` a
    scalar per leaf, see :func:`layer_rates`). Counts and ties are :func:`magnitude`'s
    (:func:`survivors_after`, ties by index); ``by_score(|params|, ...)`` is
    ``magnitude(params, ...)`` bit for bit. Leaves whose rate is 0 keep their mask whatever their
    scores; NaN and -inf scores rank lowest, so counts stay exact.
    """
    def prune_leaf(s, m, r):
        m = jnp.asarray(m, bool)
        keep = keep_top_k(_rankable(s), m, survivors_after(jnp.sum(m), r))
        return jnp.where(jnp.asarray(r) == 0, m, keep)

    return jax.tree.map(prune_leaf, scores, masks, rates)


def global_by_score(scores: PyTree, masks: PyTree, rate: float | jax.Array,
                    where: Callable[[Path], bool] = masks_lib.is_kernel) -> PyTree:
    """Remove the lowest-scoring fraction ``rate`` of the *remaining* weights of all selected
    leaves together: :func:`global_magnitude` with the ranking given rather than |w|.

    ``scores`` mirrors ``masks`` leaf for leaf; ``where``, exact counts, ties (by flattened index)
    and traced rates are :func:`global_magnitude`'s, and ``global_by_score(|params|, ...)`` is
    ``global_magnitude(params, ...)`` bit for bit. NaN and -inf scores rank lowest.
    """
    rate = check_rate(rate)
    leaves, mask_leaves, chosen = _selected(scores, masks, where, "scores")
    flat = jnp.concatenate([_rankable(leaves[i][1]).reshape(-1) for i in chosen])
    return _keep_pooled(flat, scores, mask_leaves, chosen, rate)
