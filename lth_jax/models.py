"""Fully-connected networks of the paper, as Flax linen modules.

Initialisation follows the paper: weights from N(0, std^2) with values beyond
two standard deviations resampled (a truncated normal whose *untruncated*
deviation is ``std``), biases 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any


def truncated_normal(std: float) -> nn.initializers.Initializer:
    """N(0, std^2) resampled beyond +-2 std (jax's bounds are in units of std)."""
    return jax.nn.initializers.truncated_normal(stddev=std, lower=-2.0, upper=2.0)


class MLP(nn.Module):
    """ReLU hidden layers, linear output (the loss applies sigmoid or softmax).

    Layers are named ``Dense_0 .. Dense_k``; the last one is the output layer.
    """

    hidden: Sequence[int]
    outputs: int
    std: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = truncated_normal(self.std)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=init, bias_init=nn.initializers.zeros)(x))
        return nn.Dense(self.outputs, kernel_init=init, bias_init=nn.initializers.zeros)(x)


def xor_net(hidden: int = 10, std: float = 0.1) -> MLP:
    """2 inputs, one ReLU hidden layer, 1 sigmoid output (paper section 2)."""
    return MLP(hidden=(hidden,), outputs=1, std=std)


def lenet(hidden: Sequence[int] = (300, 100), std: float = 0.1) -> MLP:
    """LeNet-300-100 (784-300-100-10) and its wider variants (paper section 3.1)."""
    return MLP(hidden=tuple(hidden), outputs=10, std=std)


def init_params(model: nn.Module, key: jax.Array, input_dim: int) -> PyTree:
    """The ``params`` collection of ``model`` for inputs of width ``input_dim``."""
    return model.init(key, jnp.zeros((1, input_dim), jnp.float32))["params"]


def layer_names(params: PyTree) -> list[str]:
    """Dense layer names in forward order (``Dense_10`` after ``Dense_9``)."""
    return sorted(params, key=lambda name: int(name.rsplit("_", 1)[1]))


def param_counts(params: PyTree) -> dict[str, int]:
    """Number of weights (kernel entries) per layer, in forward order."""
    return {name: int(params[name]["kernel"].size) for name in layer_names(params)}
