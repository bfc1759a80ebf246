"""The optimisers the XOR calibration compares (lth_jax.optimizers): TensorFlow 1's Adam, Adam's
epsilon, and learning rates that decay over the run."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax import optimizers


def run(opt: optax.GradientTransformation, grads: list[float]) -> list[float]:
    """The updates an optimiser gives one scalar parameter for a sequence of gradients."""
    state = opt.init(jnp.zeros(()))
    out = []
    for g in grads:
        u, state = opt.update(jnp.float32(g), state, jnp.zeros(()))
        out.append(float(u))
    return out


GRADS = [0.3, -0.1, 0.05, 1e-6, -2.0]


def test_tf1_adam_adds_epsilon_before_the_bias_correction():
    """tf.compat.v1.train.AdamOptimizer: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); step = lr_t m / (sqrt(v) + eps)."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-3  # a large eps makes the difference to optax's form visible
    m = v = 0.0
    expected = []
    for t, g in enumerate(GRADS, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        expected.append(-lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps))
    got = run(optimizers.make("adam_tf1", lr, eps=eps), GRADS)
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    optax_form = run(optimizers.make("adam", lr, eps=eps), GRADS)
    assert not np.allclose(got, optax_form, rtol=1e-3)  # the two forms differ where eps matters


def test_adams_epsilon_reaches_optax():
    np.testing.assert_allclose(run(optimizers.make("adam", 0.01), GRADS), run(optax.adam(0.01), GRADS), rtol=1e-6)
    tiny = [1e-6] * 3
    small, large = (run(optimizers.make("adam", 0.01, eps=e), tiny) for e in (1e-8, 1.0))
    assert small[-1] == pytest.approx(-0.01, rel=0.02)  # Adam's step is about lr whatever the gradient's size...
    assert abs(large[-1]) < 1e-7                         # ...unless eps dwarfs it: then it is SGD-like


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_a_decaying_learning_rate_starts_at_the_rate_and_ends_at_zero(name):
    sched = optimizers.schedule(name, 0.5, 100)
    assert float(sched(0)) == pytest.approx(0.5) and float(sched(100)) == pytest.approx(0.0, abs=1e-7)
    assert 0 < float(sched(50)) < 0.5
    assert optimizers.schedule("constant", 0.5, None) == 0.5


def test_unknown_names_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimizers.make("rmsprop", 0.1)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        optimizers.make("sgd", 0.1, lr_schedule="step", steps=10)
