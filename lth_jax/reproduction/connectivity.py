"""Connectivity of pruned MLP masks: which units and edges can still matter.

Pruning individual weights can leave a hidden unit with no live outgoing edge:
whatever it computes never reaches an output, so its incoming edges are dead
weight even though they survived pruning. Footnote 7 of the paper removes
"any edges that did not have a path to an output unit" before counting
connections (Figure 10); :func:`remove_disconnected` is that transform.

Masks are mask trees of a chain of Dense layers (an MLP), each with a
``kernel`` of shape ``(fan_in, units)`` and optionally a ``bias`` of shape
``(units,)``, in any Flax layout: flat (``Dense_0 .. Dense_k``), user-named or
nested. The chain is ``order`` (layer paths or ``"/"``-joined names, e.g. from
:func:`lth_jax.models.layer_order`; default: the natural order of
:func:`lth_jax.masks.layer_paths`); its last layer is the output layer.
Results are keyed by layer name. Every function here broadcasts over any
leading axes (the trial axis), jits, and vmaps; loops run over layers, which
are static.

Two directions, and why only one is the default:

- *Backward* (footnote 7): a hidden unit with no live outgoing edge to a unit
  that reaches an output cannot affect the output. Its incoming edges are
  removed, and so is its bias: the unit is gone, so the bias can only keep a
  useless unit "alive" in counts such as :func:`lth_jax.pruning.alive_units`.
  Removing it changes no output of the network: this transform is exact.
- *Forward*: a unit with no live incoming edge still emits ``relu(bias)``, a
  constant that its outgoing edges carry on as an offset to the next layer.
  It is therefore *not* dead unless its bias is pruned too (the MNIST
  experiment never prunes biases). :func:`remove_unfed` removes the outgoing
  edges of units that receive nothing, counting a live bias as something
  (``bias_feeds=True``, exact) or not (``bias_feeds=False``, the purely
  graph-theoretic reading, which can change outputs by dropping constants).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lth_jax import masks as masks_lib

PyTree = Any
Order = Sequence[masks_lib.LayerRef] | None


def _layers(masks: PyTree, order: Order) -> tuple[list[str], list[dict], list[jax.Array]]:
    """Names, layer nodes and boolean kernels of the chain, in order."""
    paths = masks_lib.layer_paths(masks, order)
    nodes = [masks_lib.get(masks, path) for path in paths]
    return ([masks_lib.layer_name(p) for p in paths], nodes,
            [jnp.asarray(node["kernel"], bool) for node in nodes])


def _rebuild(masks: PyTree, order: Order, kernels: list[jax.Array], biases: list[jax.Array | None]) -> PyTree:
    """A new mask tree with the given kernels/biases; other leaves are kept as they are."""
    new = {}
    for path, kernel, bias in zip(masks_lib.layer_paths(masks, order), kernels, biases, strict=True):
        new[(*path, "kernel")] = kernel
        if bias is not None:
            new[(*path, "bias")] = bias
    return masks_lib.replace(masks, new)


def reaches_output(masks: PyTree, *, order: Order = None) -> dict[str, jax.Array]:
    """Per layer, which units have a path of live edges to an output unit.

    Output units reach themselves. One top-down sweep is exact: whether a unit
    of layer ``l`` reaches an output depends only on its outgoing edges and on
    layer ``l + 1``, which the sweep has already settled.
    """
    names, _, kernels = _layers(masks, order)
    out_kernel = kernels[-1]
    useful = {names[-1]: jnp.ones(out_kernel.shape[:-2] + out_kernel.shape[-1:], bool)}
    for i in range(len(names) - 2, -1, -1):
        nxt = useful[names[i + 1]]
        useful[names[i]] = jnp.any(kernels[i + 1] & nxt[..., None, :], axis=-1)
    return useful


def remove_disconnected(masks: PyTree, prune_bias: bool = True, *, order: Order = None) -> PyTree:
    """Footnote 7: remove every edge with no path to an output unit.

    A hidden unit with no live outgoing edge (to a unit that itself reaches an
    output) loses its incoming edges, and with ``prune_bias`` its bias; this
    cascades back to the input in one sweep. Output units and their incoming
    edges are never touched. Idempotent, and the network's outputs are
    unchanged.
    """
    useful = reaches_output(masks, order=order)
    names, nodes, kernels = _layers(masks, order)
    new_kernels, biases = [], []
    for name, node, kernel in zip(names, nodes, kernels, strict=True):
        new_kernels.append(kernel & useful[name][..., None, :])
        biases.append(jnp.asarray(node["bias"], bool) & useful[name] if prune_bias and "bias" in node else None)
    return _rebuild(masks, order, new_kernels, biases)


def fed_units(masks: PyTree, bias_feeds: bool = True, *, order: Order = None) -> dict[str, jax.Array]:
    """Per layer, which units receive anything: a live edge from a fed unit of the
    layer below (every input is fed), or, with ``bias_feeds``, a live bias.

    One bottom-up sweep is exact, for the mirror reason of :func:`reaches_output`.
    """
    names, nodes, kernels = _layers(masks, order)
    fed = {}
    below = jnp.ones(kernels[0].shape[:-1], bool)   # the inputs
    for name, node, kernel in zip(names, nodes, kernels, strict=True):
        here = jnp.any(kernel & below[..., :, None], axis=-2)
        if bias_feeds and "bias" in node:
            here = here | jnp.asarray(node["bias"], bool)
        fed[name] = here
        below = here
    return fed


def remove_unfed(masks: PyTree, bias_feeds: bool = True, *, order: Order = None) -> PyTree:
    """Forward direction: remove the outgoing edges (and bias) of units that are
    not fed (see :func:`fed_units`).

    With ``bias_feeds=True`` an unfed unit has no live input and no live bias, so
    it emits exactly ``relu(0) = 0`` and the network's outputs are unchanged.
    With ``bias_feeds=False`` a unit fed only by its bias counts as unfed and its
    constant output is dropped: a graph view, not an exact transform.
    """
    fed = fed_units(masks, bias_feeds, order=order)
    names, nodes, kernels = _layers(masks, order)
    new_kernels, biases = [], []
    below = None
    for name, node, kernel in zip(names, nodes, kernels, strict=True):
        new_kernels.append(kernel if below is None else kernel & below[..., :, None])
        is_hidden = name != names[-1]
        biases.append(jnp.asarray(node["bias"], bool) & fed[name] if is_hidden and "bias" in node else None)
        below = fed[name]
    return _rebuild(masks, order, new_kernels, biases)


def remove_dead(masks: PyTree, bias_feeds: bool = True, *, order: Order = None) -> PyTree:
    """Both directions: :func:`remove_unfed` then :func:`remove_disconnected`.

    This order is a fixed point: removing edges into units that reach no output
    never starves a unit that does reach one (such a unit keeps all its inputs),
    so no second forward pass is needed.
    """
    return remove_disconnected(remove_unfed(masks, bias_feeds, order=order), order=order)


def incoming_counts(masks: PyTree, *, order: Order = None) -> dict[str, jax.Array]:
    """Per layer, the number of surviving incoming connections of each unit
    (Figure 10's y-axis), shape ``(..., units)``."""
    names, _, kernels = _layers(masks, order)
    return {name: jnp.sum(kernel, axis=-2, dtype=jnp.int32) for name, kernel in zip(names, kernels, strict=True)}


def outgoing_counts(masks: PyTree, *, order: Order = None) -> dict[str, jax.Array]:
    """Per *hidden* layer, the number of surviving outgoing connections of each unit."""
    names, _, kernels = _layers(masks, order)
    return {names[i]: jnp.sum(kernels[i + 1], axis=-1, dtype=jnp.int32) for i in range(len(names) - 1)}


def disconnected_units(masks: PyTree, *, order: Order = None) -> dict[str, jax.Array]:
    """Per layer, the units with no surviving incoming connection (Figure 10's zeros).

    Call it on :func:`remove_disconnected` masks for the paper's count: then a
    hidden unit that cannot reach an output has no incoming edges either and is
    counted too.
    """
    return {name: counts == 0 for name, counts in incoming_counts(masks, order=order).items()}
