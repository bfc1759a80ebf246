"""The paper's criteria on one trial's outputs: XOR success (DB, ZL) and MNIST convergence
(footnote 5). :mod:`lth_jax.judges` applies them to every trial of a level and writes the verdict."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------- XOR


def decision_boundary(logits: jax.Array, y: jax.Array, rule: str = "strict") -> jax.Array:
    """DB: every point on the right side of the boundary (sigmoid > 0.5 iff class 1).

    ``rule="strict"``: a logit of exactly 0 (an output of exactly 0.5) is on no side
    and counts as wrong. ``rule="round"``: an output of 0.5 counts as class 1 (the
    prediction ``sigmoid >= 0.5``).
    """
    if rule not in ("strict", "round"):
        raise ValueError(f"unknown decision-boundary rule {rule!r}; choose strict or round")
    positive = logits > 0 if rule == "strict" else logits >= 0
    correct = jnp.where(y > 0.5, positive, logits < 0)
    return jnp.all(correct, axis=-1)


def hard_output_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example cross-entropy computed the naive way, from float32 sigmoid outputs.

    It is exactly 0 when the output rounds to a hard 0 or 1 (|logit| > ~16.6 on the
    right side), which is what the paper means by "reached zero loss"; clipping
    log(0) keeps wrong hard outputs finite and large.
    """
    p = jax.nn.sigmoid(logits.astype(jnp.float32))
    tiny = jnp.finfo(jnp.float32).tiny
    return -(y * jnp.log(jnp.maximum(p, tiny)) + (1 - y) * jnp.log(jnp.maximum(1 - p, tiny)))


def zero_loss(logits: jax.Array, y: jax.Array, threshold: float = 0.0, over: str = "every") -> jax.Array:
    """ZL: the :func:`hard_output_loss` is at most ``threshold``, for ``over="every"``
    example, or on average over the examples (``over="mean"``: the training loss as a
    log would print it, e.g. 0.000 at three decimals for ``threshold=5e-4``).

    ``threshold=0`` asks for hard 0/1 outputs (|logit| >= ~17 on the right side); with
    ``over="every"`` a threshold t asks every example for a margin of about log(1/t).
    """
    loss = hard_output_loss(logits, y)
    if over == "every":
        return jnp.all(loss <= threshold, axis=-1)
    if over == "mean":
        return jnp.mean(loss, axis=-1) <= threshold
    raise ValueError(f"unknown zero-loss reduction {over!r}; choose every or mean")


# ---------------------------------------------------------------- convergence


class ConvergencePoint(NamedTuple):
    iteration: np.ndarray  # iteration at which the run converged (NaN if it never did)
    accuracy: np.ndarray   # test accuracy at that iteration (NaN if never)


def moving_average(acc: np.ndarray, width: int) -> np.ndarray:
    """Trailing mean over ``width`` evaluations; the first ``width-1`` points are NaN."""
    acc = np.asarray(acc, np.float64)
    c = np.cumsum(np.insert(acc, 0, 0.0, axis=-1), axis=-1)
    out = np.full(acc.shape, np.nan)
    out[..., width - 1:] = (c[..., width:] - c[..., :-width]) / width
    return out


def convergence(acc: np.ndarray, eval_every: int = 100, average_over: int = 1000,
                stable_for: int = 1000, tolerance: float = 0.002) -> ConvergencePoint:
    """Footnote 5: the first moment the ``average_over``-iteration moving average of
    test accuracy stays within ``tolerance`` of its value for ``stable_for``
    consecutive iterations.

    ``acc[..., i]`` is the accuracy after ``(i + 1) * eval_every`` iterations. We read
    "changed by less than 0.002 for 1000 iterations" as: every moving-average value
    in the next ``stable_for`` iterations differs from the current one by less than
    ``tolerance``; the convergence iteration is the start of that window.
    """
    acc = np.asarray(acc, np.float64)
    width, span = average_over // eval_every, stable_for // eval_every
    ma = moving_average(acc, width)
    n = acc.shape[-1]
    stable = np.zeros(acc.shape, bool)
    for i in range(width - 1, n - span):
        window = ma[..., i + 1:i + span + 1]
        stable[..., i] = np.all(np.abs(window - ma[..., i:i + 1]) < tolerance, axis=-1)
    first = np.argmax(stable, axis=-1)
    found = np.any(stable, axis=-1)
    iteration = np.where(found, (first + 1) * eval_every, np.nan)
    at = np.take_along_axis(acc, first[..., None], axis=-1)[..., 0]
    return ConvergencePoint(iteration=iteration, accuracy=np.where(found, at, np.nan))
