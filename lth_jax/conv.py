"""Convolutions over a stack of trials, laid out for speed (issue 20).

``jax.vmap`` turns a convolution over a stack of trials into ONE grouped convolution
(``feature_group_count`` = trials), which XLA's CPU backend runs several times slower than
the same convolutions one by one (benchmarks/conv_throughput.py). :func:`conv_general_dilated`
computes exactly ``lax.conv_general_dilated`` for one network, and under ``vmap`` chooses the
layout itself (a ``custom_vmap`` rule, inside a ``custom_vjp`` so gradients take the same path):

- input shared by every trial, kernels per trial (a first layer whose batch the trials share):
  ONE wide convolution, the trials' kernels side by side on the output-channel axis;
- input and kernels per trial: one convolution per trial (``"unrolled"``), or the grouped
  convolution vmap would make (``"grouped"``, :data:`BATCHED`);
- kernels shared, inputs per trial: the trials folded into the batch axis.

:func:`fast_convs` is a Flax method interceptor that gives every ``nn.Conv`` of a user's model
this convolution, so the model needs no rewriting; the trainer applies it where it pays
(``trainers.Minibatch(conv_layout=...)``). For one network nothing changes: the forward pass is
``lax.conv_general_dilated`` and its gradient is ``jax.vjp`` of it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

BATCHED: tuple[str, ...] = ("unrolled", "grouped")


def _trials_first(x: jax.Array, batched: bool, n: int) -> jax.Array:
    return x if batched else jnp.broadcast_to(x, (n, *x.shape))


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

    def wide(x, ks):
        """One convolution of the shared input with every trial's kernels side by side."""
        n = ks.shape[0]
        k = jnp.concatenate(list(ks), axis=k_out)
        y = plain(x, k)
        return jnp.stack(jnp.split(y, n, axis=out_axis))

    def per_trial(fn, args, batched, n):
        if layout == "grouped":
            return jax.vmap(fn, in_axes=tuple(0 if b else None for b in batched))(*args)
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
        if xb and not kb:
            y = plain(x.reshape((-1, *x.shape[2:])), k)
            return y.reshape((n, -1, *y.shape[1:])), True
        return per_trial(plain, (x, k), batched, n), True

    def grads(x, k, g):
        return jax.vjp(plain, x, k)[1](g)

    @custom_vmap
    def backward(x, k, g):
        return grads(x, k, g)

    @backward.def_vmap
    def backward_rule(n, batched, x, k, g):
        xb, kb, gb = batched
        if kb and gb and not xb and groups == 1:
            # The kernels' gradients of all trials from one wide backward pass; the input's
            # per-trial gradients (a first layer's are dropped by XLA) one by one.
            _, vjp = jax.vjp(wide, x, k)
            _, dk = vjp(g)
            dx = per_trial(lambda kk, gg: grads(x, kk, gg)[0], (k, g), (True, True), n)
            return (dx, dk), (True, True)
        dx, dk = per_trial(grads, (x, k, g), batched, n)
        return (dx, dk), (True, True)

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


@contextlib.contextmanager
def fast_convs(layout: str = "unrolled") -> Iterator[None]:
    """Within this context every ``nn.Conv`` without a convolution of its own computes with
    :func:`conv_general_dilated` (``layout`` under vmap): a Flax method interceptor, so a user's
    model needs no change."""
    fast = functools.partial(conv_general_dilated, layout=layout)

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, nn.Conv) or \
                module.conv_general_dilated is not None or module.conv_general_dilated_cls is not None:
            return next_fun(*args, **kwargs)
        object.__setattr__(module, "conv_general_dilated", fast)  # for this call only
        try:
            return next_fun(*args, **kwargs)
        finally:
            object.__setattr__(module, "conv_general_dilated", None)

    with nn.intercept_methods(intercept):
        yield
