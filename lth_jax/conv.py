"""Conv nets over a stack of trials, laid out for speed.

On XLA's CPU backend ``jax.vmap`` turns a convolution over a stack of trials into ONE grouped
convolution (``feature_group_count`` = trials), several times slower than the same
convolutions one by one, and the gradient of max pooling (``select_and_scatter``) costs more
than the convolutions (benchmarks/conv_throughput.py). Two pieces fix that without touching
the model:

- :func:`conv_general_dilated` computes exactly ``lax.conv_general_dilated`` for one network
  and under ``vmap`` picks its own layout (a ``custom_vmap`` rule inside a ``custom_vjp``, so
  gradients take the same path): an input shared by every trial (a first layer, or the test
  set) with per-trial kernels is ONE wide convolution, the kernels side by side on the
  output-channel axis; per-trial inputs and kernels are one convolution per trial
  (``"unrolled"``) or the grouped one (``"grouped"``); shared kernels fold the trials into the
  batch axis.
- :func:`rewrite` evaluates a function's jaxpr with every ``conv_general_dilated`` replaced by
  the above and every non-overlapping max pooling (window = stride, no padding: ``nn.max_pool(x,
  (2, 2), (2, 2))``) by a reshape and a max, whose gradient is elementwise. Forward values are
  identical; at exact ties inside a window the max's gradient is shared among the tied entries
  where ``select_and_scatter`` gives it to the first (after a ReLU, ties are zeros, whose
  gradient is zero either way).

The trainer applies :func:`rewrite` to a model's loss and accuracy
(``trainers.Minibatch(conv_layout=...)``), so a user's own ``nn.Conv`` and ``nn.max_pool``
get the fast path as written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.extend as jex
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

BATCHED: tuple[str, ...] = ("unrolled", "grouped")


@functools.lru_cache(maxsize=256)
def _ops(spec: tuple, layout: str) -> Any:
    """The convolution of one static configuration, with its batching and gradient rules."""
    strides, padding, lhs_dil, rhs_dil, dn, groups = spec

    def plain(x, k):
        return lax.conv_general_dilated(x, k, strides, padding, lhs_dilation=lhs_dil, rhs_dilation=rhs_dil,
                                        dimension_numbers=dn, feature_group_count=groups)

    dims = lax.conv_dimension_numbers((1,) * len(strides + (0, 0)), (1,) * len(strides + (0, 0)), dn)
    out_axis = dims.out_spec[1]     # the output's feature axis
    k_out = dims.rhs_spec[0]        # the kernel's output-feature axis
    batch_first = dims.lhs_spec[0] == 0 and dims.out_spec[0] == 0

    def grads(x, k, g):
        return jax.vjp(plain, x, k)[1](g)

    # Rules call the custom ops again (not ``plain``), so an enclosing vmap (groups of trials
    # that share a batch, trials within a group) gets its own layout in turn.
    def wide(x, ks):
        """One convolution of the shared input with every trial's kernels side by side."""
        y = forward(x, jnp.concatenate(list(ks), axis=k_out))
        return jnp.stack(jnp.split(y, ks.shape[0], axis=out_axis))

    def per_trial(fn, base, args, batched, n):
        if layout == "grouped":  # XLA's own batching of the plain op
            return jax.vmap(base, in_axes=tuple(0 if b else None for b in batched))(*args)
        outs = [fn(*(a[i] if b else a for a, b in zip(args, batched, strict=True))) for i in range(n)]
        return jax.tree.map(lambda *ys: jnp.stack(ys), *outs)

    @custom_vmap
    def forward(x, k):
        return plain(x, k)

    @forward.def_vmap
    def forward_rule(n, batched, x, k):
        xb, kb = batched
        if kb and not xb and groups == 1:
            return wide(x, k), True
        if xb and not kb and batch_first:
            y = forward(x.reshape((-1, *x.shape[2:])), k)  # the trials folded into the batch
            return y.reshape((n, -1, *y.shape[1:])), True
        return per_trial(forward, plain, (x, k), batched, n), True

    @custom_vmap
    def backward(x, k, g):
        return grads(x, k, g)

    @backward.def_vmap
    def backward_rule(n, batched, x, k, g):
        xb, kb, gb = batched
        if kb and gb and not xb and groups == 1:
            # Every trial's kernel gradient from one wide backward pass; the input's per-trial
            # gradients (a first layer's are dropped by XLA) one by one.
            _, dk = backward(x, jnp.concatenate(list(k), axis=k_out), jnp.concatenate(list(g), axis=out_axis))
            dx = per_trial(lambda kk, gg: backward(x, kk, gg)[0], lambda kk, gg: grads(x, kk, gg)[0], (k, g),
                           (True, True), n)
            return (dx, jnp.stack(jnp.split(dk, n, axis=k_out))), (True, True)
        return per_trial(backward, grads, (x, k, g), batched, n), (True, True)

    @jax.custom_vjp
    def conv(x, k):
        return forward(x, k)

    def conv_fwd(x, k):
        return forward(x, k), (x, k)

    def conv_bwd(res, g):
        return backward(*res, g)

    conv.defvjp(conv_fwd, conv_bwd)
    return conv


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Any, padding: Any,
                         lhs_dilation: Any = None, rhs_dilation: Any = None, dimension_numbers: Any = None,
                         feature_group_count: int = 1, batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None, *, layout: str = "unrolled") -> jax.Array:
    """``lax.conv_general_dilated`` (same arguments) whose batching over trials is ``layout``."""
    if batch_group_count != 1 or precision is not None or preferred_element_type is not None:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)
    if layout not in BATCHED:
        raise ValueError(f"layout must be one of {', '.join(BATCHED)}, not {layout!r}")
    nd = lhs.ndim - 2
    spec = (tuple(window_strides), padding if isinstance(padding, str) else tuple(tuple(p) for p in padding),
            tuple(lhs_dilation) if lhs_dilation is not None else (1,) * nd,
            tuple(rhs_dilation) if rhs_dilation is not None else (1,) * nd,
            _hashable_dn(dimension_numbers), int(feature_group_count))
    return _ops(spec, layout)(lhs, rhs)


def _hashable_dn(dn: Any) -> Any:
    if dn is None or isinstance(dn, lax.ConvDimensionNumbers):
        return dn
    return tuple(dn)


def _max_pool(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    """Non-overlapping max pooling as a reshape and a max (each axis split into blocks of its window)."""
    shape, axes = [], []
    for d, w in zip(x.shape, window, strict=True):
        shape += [d // w, w]
        axes.append(len(shape) - 1)
    return jnp.max(x.reshape(shape), axis=tuple(axes))


def _poolable(x: Any, params: dict[str, Any]) -> bool:
    window = params["window_dimensions"]
    return (tuple(params["window_strides"]) == tuple(window) and all(p == (0, 0) for p in params["padding"])
            and all(d == 1 for d in params["base_dilation"]) and all(d == 1 for d in params["window_dilation"])
            and all(n % w == 0 for n, w in zip(x.shape, window, strict=True)))


def _evaluate(jaxpr: Any, consts: list[Any], args: list[Any], layout: str) -> list[Any]:
    """``jaxpr`` evaluated on ``args`` (values or tracers), its convolutions and max poolings replaced."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex.core.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts, strict=True):
        env[var] = val
    for var, val in zip(jaxpr.invars, args, strict=True):
        env[var] = val
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name, params = eqn.primitive.name, eqn.params
        if name == "conv_general_dilated" and params.get("batch_group_count", 1) == 1 and \
                params.get("precision") is None and params.get("preferred_element_type") is None:
            outs = [conv_general_dilated(*ins, params["window_strides"], params["padding"], params["lhs_dilation"],
                                         params["rhs_dilation"], params["dimension_numbers"],
                                         params["feature_group_count"], layout=layout)]
        elif name == "reduce_window_max" and _poolable(ins[0], params):
            outs = [_max_pool(ins[0], tuple(params["window_dimensions"]))]
        elif name in ("jit", "pjit"):  # look inside: a jnp function may wrap a convolution
            inner = params["jaxpr"]
            outs = _evaluate(inner.jaxpr, list(inner.consts), ins, layout)
        else:
            bind_params = eqn.primitive.get_bind_params(params)
            subfuns = ()
            if isinstance(bind_params, tuple):  # older jax: (subfuns, params)
                subfuns, bind_params = bind_params
            outs = eqn.primitive.bind(*subfuns, *ins, **bind_params)
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for var, val in zip(eqn.outvars, outs, strict=True):
            if not isinstance(var, jex.core.DropVar):
                env[var] = val
    return [read(v) for v in jaxpr.outvars]


def rewrite(fn: Callable[..., Any], layout: str = "unrolled") -> Callable[..., Any]:
    """``fn`` computed with the trial-batched convolution (``layout`` under vmap) and fast max
    pooling: traced to a jaxpr at each call (under the caller's jit, once) and evaluated with
    those primitives replaced. Everything else is bound as it was."""
    if layout not in BATCHED:
        raise ValueError(f"layout must be one of {', '.join(BATCHED)}, not {layout!r}")

    def run(*args: Any) -> Any:
        closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
        outs = _evaluate(closed.jaxpr, list(closed.consts), jax.tree.leaves(args), layout)
        return jax.tree.unflatten(jax.tree.structure(shapes), outs)

    return run


def uses_convolutions(fn: Callable[..., Any], *args: Any) -> bool:
    """Whether ``fn(*args)`` convolves or max-pools anywhere (what :func:`rewrite` would change)."""
    def found(jaxpr: Any) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("conv_general_dilated", "reduce_window_max"):
                return True
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", value)  # a ClosedJaxpr's jaxpr, or a Jaxpr
                if hasattr(inner, "eqns") and found(inner):
                    return True
        return False

    return found(jax.make_jaxpr(fn)(*args).jaxpr)
