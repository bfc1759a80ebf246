"""The optimisers the experiments name, and TensorFlow 1's form of Adam.

The paper gives no optimiser for XOR; calibrating one (benchmarks/xor_calibration.py) needs
the variants a 2018 implementation may have used: plain, momentum and Adam updates, Adam's
epsilon, TensorFlow 1's ``AdamOptimizer`` (epsilon added before bias correction, "epsilon
hat"), and a decaying learning rate.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

NAMES: tuple[str, ...] = ("sgd", "momentum", "adam", "adam_tf1")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")
ADAM_EPS = 1e-8  # optax's and TensorFlow 1's default


class ScaleByAdamTf1State(NamedTuple):
    """Step count and the two moment estimates."""

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_adam_tf1(b1: float = 0.9, b2: float = 0.999, eps: float = ADAM_EPS) -> optax.GradientTransformation:
    """Adam as ``tf.compat.v1.train.AdamOptimizer`` computes it:
    ``m / (sqrt(v) + eps) * sqrt(1 - b2^t) / (1 - b1^t)``.

    The same as optax's ``scale_by_adam`` with ``eps`` divided by ``sqrt(1 - b2^t)``: early
    steps see a larger effective epsilon (about 32x at step 1 for b2 = 0.999).
    """

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return ScaleByAdamTf1State(jnp.zeros([], jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
        count = state.count + 1
        t = count.astype(jnp.float32)
        scale = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        out = jax.tree.map(lambda m, v: scale * m / (jnp.sqrt(v) + eps), mu, nu)
        return out, ScaleByAdamTf1State(count, mu, nu)

    return optax.GradientTransformation(init, update)


def schedule(name: str, learning_rate: float, steps: int | None) -> optax.ScalarOrSchedule:
    """A constant rate, or one decaying to 0 over ``steps`` (cosine or linear)."""
    if name == "constant":
        return learning_rate
    if steps is None or steps < 1:
        raise ValueError(f"a {name} learning-rate schedule needs the number of steps, not {steps}")
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, steps)
    if name == "linear":
        return optax.linear_schedule(learning_rate, 0.0, steps)
    raise ValueError(f"unknown learning-rate schedule {name!r}; choose from {', '.join(SCHEDULES)}")


def make(name: str, learning_rate: float, *, momentum: float = 0.9, eps: float = ADAM_EPS,
         lr_schedule: str = "constant", steps: int | None = None) -> optax.GradientTransformation:
    """The optimiser ``name`` (one of :data:`NAMES`); ``eps`` is Adam's epsilon."""
    lr = schedule(lr_schedule, learning_rate, steps)
    if name == "sgd":
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=momentum)
    if name == "adam":
        return optax.adam(lr, eps=eps)
    if name == "adam_tf1":
        return optax.chain(scale_by_adam_tf1(eps=eps), optax.scale_by_learning_rate(lr))
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(NAMES)}")
