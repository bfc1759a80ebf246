"""Fully-connected networks of the paper, as Flax linen modules, and the layer
order of any Flax module.

Initialisation follows the paper: weights from N(0, std^2) with values beyond
two standard deviations resampled (a truncated normal whose *untruncated*
deviation is ``std``), biases 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lth_jax import masks as masks_lib

PyTree = Any


def truncated_normal(std: float) -> nn.initializers.Initializer:
    """N(0, std^2) resampled beyond +-2 std (jax's bounds are in units of std)."""
    return jax.nn.initializers.truncated_normal(stddev=std, lower=-2.0, upper=2.0)


@functools.cache
def relu(grad_at_zero: float = 0.0) -> Callable[[jax.Array], jax.Array]:
    """max(z, 0) whose derivative at exactly z == 0 is ``grad_at_zero``.

    jax, TensorFlow's ``tf.nn.relu`` and PyTorch use 0 (then this *is*
    ``jax.nn.relu``); ``tf.maximum(z, 0)`` uses 1 and ``jnp.maximum(z, 0)`` 0.5.
    With zero initial biases the XOR input (0, 0) puts every hidden unit at
    exactly 0, so this choice decides whether that example moves the biases in
    the first step. Cached: one function object per slope.
    """
    if grad_at_zero == 0.0:
        return jax.nn.relu

    @jax.custom_jvp
    def f(z):
        return jnp.maximum(z, 0.0)

    @f.defjvp
    def f_jvp(primals, tangents):
        (z,), (dz,) = primals, tangents
        slope = jnp.where(z > 0, 1.0, jnp.where(z == 0, grad_at_zero, 0.0)).astype(dz.dtype)
        return f(z), slope * dz

    return f


class MLP(nn.Module):
    """ReLU hidden layers, linear output (the loss applies sigmoid or softmax).

    Layers are named ``Dense_0 .. Dense_k``; the last one is the output layer.
    ``relu_grad_at_zero`` is ReLU's derivative at exactly 0 (see :func:`relu`):
    0 is ``jax.nn.relu``.
    """

    hidden: Sequence[int]
    outputs: int
    std: float = 0.1
    relu_grad_at_zero: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = truncated_normal(self.std)
        act = relu(self.relu_grad_at_zero)
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=init, bias_init=nn.initializers.zeros)(x))
        return nn.Dense(self.outputs, kernel_init=init, bias_init=nn.initializers.zeros)(x)


def xor_net(hidden: int = 10, std: float = 0.1, relu_grad_at_zero: float = 0.0) -> MLP:
    """2 inputs, one ReLU hidden layer, 1 sigmoid output (paper section 2)."""
    return MLP(hidden=(hidden,), outputs=1, std=std, relu_grad_at_zero=relu_grad_at_zero)


def lenet(hidden: Sequence[int] = (300, 100), std: float = 0.1) -> MLP:
    """LeNet-300-100 (784-300-100-10) and its wider variants (paper section 3.1)."""
    return MLP(hidden=tuple(hidden), outputs=10, std=std)


def init_params(model: nn.Module, key: jax.Array, input_dim: int) -> PyTree:
    """The ``params`` collection of ``model`` for inputs of width ``input_dim``."""
    return model.init(key, jnp.zeros((1, input_dim), jnp.float32))["params"]


# ------------------------------------------------------------------ layer order


def layer_order(module: nn.Module, *sample_inputs: Any, **kwargs: Any) -> tuple[masks_lib.Path, ...]:
    """The paths of ``module``'s layers (submodules owning a ``kernel``) in the order
    the forward pass first calls them: the ``order=`` of :mod:`lth_jax.pruning`,
    :mod:`lth_jax.reproduction.connectivity` and :mod:`lth_jax.reproduction.analysis`.

    ``sample_inputs`` (arrays or ``jax.ShapeDtypeStruct``) and ``kwargs`` are what
    ``module.init`` takes after its key. Nothing is computed or compiled: the
    init is traced under ``jax.eval_shape`` with every module method call
    intercepted (``flax.linen.intercept_methods``), so user-named layers
    (``"z_first"`` called before ``"a_second"``), layers defined in ``setup``,
    nested modules and conv nets all come out in call order. A layer called
    twice (shared weights) appears once, at its first call.
    """
    first_call: dict[masks_lib.Path, int] = {}

    def record(next_fun, args, kw, context):
        if context.method_name != "setup":
            first_call.setdefault(masks_lib.keys(context.module.path), len(first_call))
        return next_fun(*args, **kw)

    with nn.intercept_methods(record):
        variables = jax.eval_shape(lambda *xs: module.init(jax.random.key(0), *xs, **kwargs), *sample_inputs)
    layers = masks_lib.layer_paths(variables["params"])
    return tuple(sorted(layers, key=lambda path: first_call.get(path, len(first_call))))


def layer_names(params: PyTree, order: Sequence[masks_lib.LayerRef] | None = None) -> list[str]:
    """Layer names (``"/"``-joined paths) in forward order: ``Dense_10`` after ``Dense_9``
    by default, or ``order`` (see :func:`lth_jax.masks.layer_paths`)."""
    return [masks_lib.layer_name(path) for path in masks_lib.layer_paths(params, order)]


def param_counts(params: PyTree, order: Sequence[masks_lib.LayerRef] | None = None) -> dict[str, int]:
    """Number of weights (kernel entries) per layer, in forward order. Works on shapes
    (``jax.eval_shape``) as well as on arrays."""
    return {masks_lib.layer_name(path[:-1]): math.prod(jnp.shape(masks_lib.get(params, path)))
            for path in masks_lib.kernel_paths(params, order)}


# ------------------------------------------------------------------ the XOR fast path


def mlp_logits_trials_last(params: PyTree, x: jax.Array, relu_grad_at_zero: float = 0.0, *,
                           order: Sequence[masks_lib.LayerRef] | None = None) -> jax.Array:
    """:class:`MLP`'s forward pass on a stack of networks laid out trial-axis-LAST.

    Every leaf of ``params`` ends in the same trailing trial axes ``*t`` (kernels
    ``(in, out, *t)``, biases ``(out, *t)``; none at all is one network); ``x``
    is ``(rows, inputs)``, shared by all trials. Returns ``(rows, outputs, *t)``.
    This is the XOR sweep's fast layout (about 2.4x the trial-steps/s of
    ``jax.vmap`` over ``MLP.apply``): no matmul, only elementwise products and
    reductions that vectorise along the trial axis.

    - The first layer is written out input by input (``x[:, 0] * k[0] +
      x[:, 1] * k[1] + ... + b``): one multiply-add per input feature, meant for
      networks with few inputs such as XOR's 2.
    - A later layer sums its products over the input axis; a layer with one unit
      (XOR's output) as ``sum(h * k[:, 0], axis=1) + b[0]``.

    For the XOR 2-H-1 net these are exactly the operations, in this order, that
    produced the stored XOR sweep (so its numbers stay bit-identical).

    Versus ``MLP.apply`` (a ``dot_general`` per layer) it is not bit-identical:
    a sum of ``n`` products in another order than the dot's (or fused
    multiply-adds) can differ by up to about ``2 (n - 1) eps sum |terms|``.
    Measured on CPU for 2-H-1 nets on the four XOR points: the hidden layer is
    bit-identical (products with inputs 0 and 1 are exact), and about a quarter
    of the output logits differ, by under ``2 eps sum_i |h_i w_i|``; near a
    cancelling sum that is many ulps of the logit itself. The tests check the
    worst-case bound.
    """
    act = relu(relu_grad_at_zero)
    layers = [masks_lib.get(params, path) for path in masks_lib.layer_paths(params, order)]
    h = x
    for i, layer in enumerate(layers):
        k, b = layer["kernel"], layer["bias"]                    # (in, out, *t), (out, *t)
        if i == 0:
            column = (-1,) + (1,) * b.ndim                        # (rows, 1, *1)
            z = x[:, 0].reshape(column) * k[0]
            for j in range(1, k.shape[0]):
                z = z + x[:, j].reshape(column) * k[j]
            z = z + b                                             # (rows, out, *t)
        elif k.shape[1] == 1:
            z = (jnp.sum(h * k[:, 0], axis=1) + b[0])[:, None]    # (rows, 1, *t)
        else:
            z = jnp.sum(h[:, :, None] * k, axis=1) + b            # (rows, out, *t)
        h = act(z) if i < len(layers) - 1 else z
    return h
