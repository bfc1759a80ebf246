"""Instability analysis (Frankle et al. 2020, "Linear mode connectivity and the lottery ticket
hypothesis"): how much worse the networks on the straight line between two trained networks are
than the two networks themselves.

Two copies of a network (or of a ticket, rewound to the same step) trained with different data
orders are *stable* when the error along the line between them does not rise: their
*error barrier* (the paper's "instability") is

    max over alpha in [0, 1] of E((1 - alpha) a + alpha b)  -  (E(a) + E(b)) / 2,

estimated on a grid of ``alphas`` (by default 31 evenly spaced points, 0, 1/30, ..., 1) that starts
at 0 and ends at 1, so the endpoints' errors are the path's first and last and the barrier is
never negative.

The whole path is ONE batched evaluation: :func:`interpolate` stacks the networks of the path
on a leading alpha axis and :func:`error_barrier` vmaps the evaluation over it, so evaluating
31 networks costs one compiled program, not 31 calls (``alpha_batch`` trades the width of
the vmap for a loop inside that program, which is faster on a CPU; see
benchmarks/instability_path.json). The functions are pure and traceable, so they compose with a further
vmap over pairs, levels or seeds; :func:`path_errors` does that for classifier error on a test
set, in chunks of test examples where the activations of every alpha at once would not fit.

Masks need no special treatment: pass masked parameters (``masks.apply``); where both
endpoints are zero, every network on the path is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
EvalFn = Callable[[PyTree], jax.Array]  # params of ONE network -> its error (a scalar)
ApplyFn = Callable[..., jax.Array]      # Flax-style: apply_fn({"params": params}, x) -> logits
ALPHAS = 31  # the default grid: 0, 1/30, ..., 1 (Frankle et al. 2020 use about 30 values of alpha)


def grid(n: int = ALPHAS) -> jax.Array:
    """``n`` evenly spaced interpolation coefficients from 0 to 1 (float32)."""
    if n < 2:
        raise ValueError(f"a path needs at least its two endpoints, not {n} alphas")
    return jnp.linspace(0.0, 1.0, n, dtype=jnp.float32)


class Barrier(NamedTuple):
    """Errors along the path between two networks and what the paper reads from them.

    Leading axes (pairs, levels, ...) come first when the evaluation was vmapped over them.
    """

    alphas: jax.Array     # (n,) interpolation coefficients, alphas[0] = 0 (network a), alphas[-1] = 1 (b)
    errors: jax.Array     # (..., n) error of (1 - alpha) a + alpha b at each alpha
    endpoints: jax.Array  # (..., 2) errors of a and of b
    barrier: jax.Array    # (...,) max of errors minus the mean of the endpoints' errors (>= 0)


def check_alphas(alphas: jax.Array | np.ndarray | list[float]) -> jax.Array:
    """``alphas`` as a float32 vector, checked when concrete: one axis, at least 2 entries, the
    first 0 and the last 1 (the endpoints' errors are read there). A traced vector is not checked."""
    if isinstance(alphas, jax.core.Tracer):
        return alphas
    a = np.asarray(alphas, np.float64)
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"alphas must be a vector of at least 2 coefficients, got shape {a.shape}")
    if a[0] != 0.0 or a[-1] != 1.0:
        raise ValueError(f"alphas must start at 0 and end at 1 (the two networks), got {a[0]:g} .. {a[-1]:g}")
    if not np.all(np.isfinite(a)):
        raise ValueError("alphas must be finite")
    return jnp.asarray(alphas, jnp.float32)


def interpolate(a: PyTree, b: PyTree, alphas: jax.Array) -> PyTree:
    """The networks ``(1 - alpha) a + alpha b`` for every alpha, stacked on a new leading axis
    (leaf for leaf: each leaf of the result has shape ``(len(alphas), *leaf.shape)``).

    Written as ``(1 - alpha) a + alpha b`` rather than ``a + alpha (b - a)`` so that alpha 0
    gives ``a`` and alpha 1 gives ``b`` bit for bit (for finite weights). ``a`` and ``b``
    must have the same structure and shapes; leaves keep their dtype.
    """
    alphas = jnp.asarray(alphas)

    def leaf(x: jax.Array, y: jax.Array) -> jax.Array:
        x, y = jnp.asarray(x), jnp.asarray(y)
        if x.shape != y.shape:
            raise ValueError(f"the two networks differ in shape: {x.shape} and {y.shape}")
        t = alphas.astype(jnp.result_type(x.dtype, y.dtype)).reshape(alphas.shape + (1,) * x.ndim)
        return (1 - t) * x + t * y

    return jax.tree.map(leaf, a, b)


def barrier_of(alphas: jax.Array, errors: jax.Array) -> Barrier:
    """The :class:`Barrier` of ``errors`` along a path (last axis: the alphas, first 0, last 1)."""
    errors = jnp.asarray(errors)
    endpoints = jnp.stack([errors[..., 0], errors[..., -1]], axis=-1)
    return Barrier(jnp.asarray(alphas), errors, endpoints, jnp.max(errors, axis=-1) - jnp.mean(endpoints, axis=-1))


def error_barrier(eval_fn: EvalFn, a: PyTree, b: PyTree, alphas: jax.Array | None = None, *,
                  alpha_batch: int | None = None) -> Barrier:
    """Errors along the straight line from ``a`` (alpha 0) to ``b`` (alpha 1) and their barrier.

    ``eval_fn(params) -> error`` evaluates ONE network (any scalar where higher is worse: test
    error, loss); it is vmapped over the alphas, so the whole path is one batched evaluation
    (jit the call, or call it inside a jitted function, to make it one program). ``alphas``
    defaults to :func:`grid` (31 points); it must start at 0 and end at 1 (:func:`check_alphas`).
    Traceable: vmap it over pairs of networks for a leading pair axis in the result.

    ``alpha_batch`` evaluates the path that many alphas at a time inside the same program
    (``jax.lax.map``'s ``batch_size``: vmapped within a group, a loop across groups); None, the
    default, vmaps all of them at once. Same numbers either way. On a GPU all at once is
    fastest; on a CPU a small group can be faster, because one network's activations stay
    in cache (benchmarks/instability_path.json).
    """
    alphas = check_alphas(grid() if alphas is None else alphas)
    path = interpolate(a, b, alphas)
    if alpha_batch is None:
        errors = jax.vmap(eval_fn)(path)
    elif alpha_batch < 1:
        raise ValueError(f"alpha_batch must be a positive number of alphas, not {alpha_batch}")
    else:
        errors = jax.lax.map(eval_fn, path, batch_size=alpha_batch)
    return barrier_of(alphas, errors)


def classifier_error(apply_fn: ApplyFn, x: jax.Array, y: jax.Array, chunk: int | None = None) -> EvalFn:
    """``params -> fraction of (x, y) misclassified`` (argmax of ``apply_fn({"params": p}, x)``).

    ``chunk`` evaluates the examples ``chunk`` at a time (a scan; the last, shorter piece apart),
    so that, vmapped over a path and over pairs, the activations held at once are those of
    ``chunk`` examples for every network rather than of the whole test set. Counts are exact
    (integers), so the chunking does not change the result.
    """
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("no examples to evaluate")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive number of examples, not {chunk}")

    def mistakes(params: PyTree, xs: jax.Array, ys: jax.Array) -> jax.Array:
        return jnp.sum(jnp.argmax(apply_fn({"params": params}, xs), axis=-1) != ys, dtype=jnp.int32)

    def error(params: PyTree) -> jax.Array:
        if chunk is None or chunk >= n:
            wrong = mistakes(params, x, y)
        else:
            whole = n // chunk * chunk
            blocks = (x[:whole].reshape(n // chunk, chunk, *x.shape[1:]), y[:whole].reshape(n // chunk, chunk))
            wrong = jnp.sum(jax.lax.map(lambda xy: mistakes(params, *xy), blocks))
            if whole < n:
                wrong = wrong + mistakes(params, x[whole:], y[whole:])
        return wrong.astype(jnp.float32) / n

    return error


def path_errors(apply_fn: ApplyFn, pairs_a: PyTree, pairs_b: PyTree, alphas: jax.Array | None, x: jax.Array,
                y: jax.Array, *, chunk: int | None = None, batch_dims: int = 1,
                alpha_batch: int | None = None) -> Barrier:
    """Classifier error on ``(x, y)`` along the path between every pair of networks, and the
    barriers: one compiled, batched program for all pairs and alphas.

    ``pairs_a`` and ``pairs_b`` are params trees with ``batch_dims`` leading axes (pairs; or
    levels and pairs with ``batch_dims=2``); pair ``i`` is the path from ``pairs_a[i]`` to
    ``pairs_b[i]``. The result's ``errors`` have shape ``(*leading, len(alphas))``. ``chunk``:
    test examples evaluated at a time (see :func:`classifier_error`; e.g. 2,000 keeps a
    LeNet-300-100 path of 31 networks at about 100 MB of activations per pair);
    ``alpha_batch``: alphas evaluated at a time (see :func:`error_barrier`). ``apply_fn``
    must be hashable and stable across calls (``module.apply`` is) so the program is reused.
    """
    alphas = check_alphas(grid() if alphas is None else alphas)
    return _path_program(apply_fn, chunk, batch_dims, alpha_batch)(pairs_a, pairs_b, alphas, x, y)


@functools.lru_cache(maxsize=32)
def _path_program(apply_fn: ApplyFn, chunk: int | None, batch_dims: int,
                  alpha_batch: int | None) -> Callable[..., Barrier]:
    if batch_dims < 0:
        raise ValueError(f"batch_dims must be >= 0, not {batch_dims}")

    def one_pair(a: PyTree, b: PyTree, alphas: jax.Array, x: jax.Array, y: jax.Array) -> Barrier:
        return error_barrier(classifier_error(apply_fn, x, y, chunk), a, b, alphas, alpha_batch=alpha_batch)

    fn = one_pair
    for _ in range(batch_dims):
        fn = jax.vmap(fn, in_axes=(0, 0, None, None, None), out_axes=Barrier(None, 0, 0, 0))
    return jax.jit(fn)
