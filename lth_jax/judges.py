"""Judges: how a level's trained trials are scored, as stored in the level's JSON (each applies the
per-trial criteria of :mod:`lth_jax.criteria`).

A judge's settings never enter a run's hash (they judge stored outcomes), so a run can be
re-judged under another rule without retraining (:func:`lth_jax.runner.records` + the
judge's ``summarize``).

- :class:`Convergence`: footnote 5's convergence iteration and the accuracy there, final and
  best accuracy, the gain after convergence, divergence (MNIST, sections 3-6).
- :class:`XorSuccess`: section 2's decision boundary (DB) and zero loss (ZL) per trial.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import criteria as metrics_lib
from lth_jax import datasets
from lth_jax.runner.spec import ROLES
from lth_jax.store import ondisk

METRICS: tuple[str, ...] = ("convergence_iteration", "convergence_accuracy", "final_accuracy", "best_accuracy",
                            "gain_after_convergence")


def finite_summary(values: np.ndarray) -> dict[str, float | int | None]:
    """Mean, min, max, sample std and n over the finite values (None where there are none)."""
    v = np.asarray(values, np.float64)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return {"mean": None, "min": None, "max": None, "std": None, "n": 0}
    return {"mean": float(ok.mean()), "min": float(ok.min()), "max": float(ok.max()),
            "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0, "n": int(ok.size)}


def _roles(trials: Sequence[Any]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for role in ROLES:
        idx = [i for i, t in enumerate(trials) if t.role == role]
        if idx:
            out[role] = idx
    return out


@dataclasses.dataclass(frozen=True)
class Convergence:
    """Footnote 5: converged at the first iteration from which the ``average_over``-iteration
    moving average of test accuracy stays within ``tolerance`` for ``stable_for`` iterations."""

    eval_every: int = 100
    average_over: int = 1000
    stable_for: int = 1000
    tolerance: float = 0.002

    def __post_init__(self) -> None:
        for name in ("average_over", "stable_for"):
            v = getattr(self, name)
            if v <= 0 or v % self.eval_every:
                raise ValueError(f"{name} ({v}) must be a positive multiple of eval_every")
        if not (self.tolerance > 0 and np.isfinite(self.tolerance)):
            raise ValueError(f"tolerance must be a positive number, not {self.tolerance}")

    def extra(self) -> dict[str, Any]:
        return {"average_over": self.average_over, "stable_for": self.stable_for, "tolerance": self.tolerance}

    def per_trial(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per trial: convergence iteration and accuracy there, final and best accuracy, the gain
        after convergence (the paper: +0.0019 on average for one-shot tickets), divergence step."""
        acc = np.asarray(outputs[ondisk.ACCURACY], np.float64)
        # A late-rewound trial's curve starts at its rewind step (NaN before): judged from there, at absolute steps.
        start = np.asarray(outputs.get(ondisk.START_STEP, np.zeros(len(acc), np.int64)))
        conv = metrics_lib.ConvergencePoint(np.full(len(acc), np.nan), np.full(len(acc), np.nan))
        for s in np.unique(start):
            rows = start == s
            c = metrics_lib.convergence(acc[rows, int(s) // self.eval_every:], self.eval_every, self.average_over,
                                        self.stable_for, self.tolerance)
            conv.iteration[rows], conv.accuracy[rows] = c.iteration + s, c.accuracy
        final = acc[:, -1]
        if ondisk.STOP_STEP in outputs:  # stopped at convergence: the final accuracy is the one at the stop
            last = np.asarray(outputs[ondisk.STOP_STEP]) // self.eval_every - 1
            final = acc[np.arange(len(acc)), last]
        with np.errstate(invalid="ignore"):
            best = np.where(np.all(np.isnan(acc), axis=1), np.nan,
                            np.nanmax(np.where(np.isnan(acc), -np.inf, acc), axis=1))
        out = {"convergence_iteration": conv.iteration, "convergence_accuracy": conv.accuracy,
               "final_accuracy": final, "best_accuracy": best, "gain_after_convergence": final - conv.accuracy,
               "diverged_at": np.asarray(outputs[ondisk.DIVERGED_AT])}
        if ondisk.STOP_STEP in outputs:
            out["stop_step"] = np.asarray(outputs[ondisk.STOP_STEP])
        return out

    def stop(self, every: int) -> Stop:
        """Stop measured trainings that have settled, checking every ``every`` steps."""
        return Stop(self, every)

    def settled(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per trial: converged by footnote 5 with its whole stability window seen, or diverged;
        either way nothing later on its curve can change its convergence iteration or accuracy."""
        per = self.per_trial(outputs)
        return np.isfinite(per["convergence_iteration"]) | (per["diverged_at"] >= 0)

    def summarize(self, outputs: Mapping[str, np.ndarray], trials: Sequence[Any]) -> dict[str, Any]:
        """Per-trial metrics and, per role, mean/min/max/std/n over the trials that have a value."""
        per = self.per_trial(outputs)
        rows = []
        for i, t in enumerate(trials):
            row = {"role": t.role, "seed": t.seed, "replicate": t.replicate}
            row.update({k: float(per[k][i]) for k in METRICS})
            d = int(per["diverged_at"][i])
            row["diverged_at"] = None if d < 0 else d
            if "stop_step" in per:
                row["stop_step"] = int(per["stop_step"][i])
            rows.append(row)
        roles = {}
        for role, idx in _roles(trials).items():
            roles[role] = {k: finite_summary(per[k][idx]) for k in METRICS}
            roles[role]["trials"] = len(idx)
            roles[role]["converged"] = int(np.isfinite(per["convergence_iteration"][idx]).sum())
            roles[role]["diverged"] = int((per["diverged_at"][idx] >= 0).sum())
            if "stop_step" in per:  # final_accuracy is then the accuracy at the stop
                roles[role]["stop_step"] = finite_summary(per["stop_step"][idx])
        out = {"convergence_rule": {**self.extra(), "eval_every": self.eval_every}, "trials": rows, "roles": roles}
        if "stop_step" in per:
            out["final_accuracy_at"] = "stop"
        return out


@dataclasses.dataclass(frozen=True)
class Stop:
    """When a measured training may end early: every ``every`` steps, a trial that ``judge``
    finds settled (:meth:`Convergence.settled`) stops (:class:`lth_jax.trainers.Minibatch`)."""

    judge: Convergence
    every: int

    def settled(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.judge.settled(outputs)


@dataclasses.dataclass(frozen=True)
class XorSuccess:
    """Section 2: a network "found the decision boundary" (DB) when every point is on the right
    side, and "reached zero loss" (ZL) when every example's (``over="every"``) or the mean
    (``over="mean"``) cross-entropy is at most ``zero_loss``; see :mod:`lth_jax.criteria`."""

    zero_loss: float = 5.62e-4
    over: str = "every"
    db_rule: str = "strict"

    def __post_init__(self) -> None:
        if not (self.zero_loss >= 0 and np.isfinite(self.zero_loss)):
            raise ValueError(f"zero_loss threshold must be a number >= 0, not {self.zero_loss}")
        if self.over not in ("every", "mean"):
            raise ValueError(f"unknown zero-loss reduction {self.over!r}; choose every or mean")
        if self.db_rule not in ("strict", "round"):
            raise ValueError(f"unknown decision-boundary rule {self.db_rule!r}; choose strict or round")

    def extra(self) -> dict[str, Any]:
        return {"zero_loss": self.zero_loss, "zero_loss_over": self.over, "db_rule": self.db_rule}

    def judge(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(DB, ZL) per trial from final logits (trials, 4)."""
        db, zl = _xor_judge(jnp.asarray(logits), self.db_rule, self.zero_loss, self.over)
        return np.asarray(db), np.asarray(zl)

    def summarize(self, outputs: Mapping[str, np.ndarray], trials: Sequence[Any]) -> dict[str, Any]:
        db, zl = self.judge(outputs[ondisk.LOGITS])
        roles = {role: {"trials": len(idx), "db": int(db[idx].sum()), "zl": int(zl[idx].sum())}
                 for role, idx in _roles(trials).items()}
        return {"success_rule": self.extra(), "roles": roles}


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _xor_judge(z: jax.Array, rule: str, threshold: float, over: str) -> tuple[jax.Array, jax.Array]:
    _, y = datasets.xor_points()
    return metrics_lib.decision_boundary(z, y, rule=rule), metrics_lib.zero_loss(z, y, threshold, over)
