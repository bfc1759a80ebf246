"""The optimisers the experiments name, and TensorFlow 1's form of Adam.

The paper gives no optimiser for XOR; calibrating one (benchmarks/xor_calibration.py) needs
the variants a 2018 implementation may have used: plain, momentum and Adam updates, Adam's
epsilon, TensorFlow 1's ``AdamOptimizer`` (epsilon added before bias correction, "epsilon
hat"), and a decaying learning rate.

The papers after the lottery ticket (Frankle et al. 2019-2020, open_lth) train with SGD with
momentum and coupled weight decay, step-decayed or warmed-up rates, and AdamW. Those are
described here by *specs*: small frozen values that build their optax transformation
(``make()``), hash into a run directory's name (``hashed()``: JSON-able, naming its kind) and
print in tables (``name``). :func:`resolve` is what a trainer calls with whichever of a name,
a spec or a bare optax transformation it was given.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

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


def make(name: str, learning_rate: optax.ScalarOrSchedule, *, momentum: float = 0.9, eps: float = ADAM_EPS,
         lr_schedule: str = "constant", steps: int | None = None) -> optax.GradientTransformation:
    """The optimiser ``name`` (one of :data:`NAMES`); ``eps`` is Adam's epsilon.

    ``learning_rate`` may also be a schedule (a callable step -> rate, as optax takes) when
    ``lr_schedule`` is "constant".
    """
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


# ---------------------------------------------------------------------------------------------
# Specs: self-describing, hashable optimisers and learning-rate schedules.


@runtime_checkable
class ScheduleSpec(Protocol):
    """A learning-rate schedule described by value: builds it, hashes it, names it."""

    @property
    def name(self) -> str: ...

    def make(self) -> optax.Schedule: ...

    def hashed(self) -> dict[str, Any]: ...


@runtime_checkable
class Spec(Protocol):
    """An optimiser described by value: builds it, hashes it, names it."""

    @property
    def name(self) -> str: ...

    def make(self) -> optax.GradientTransformation: ...

    def hashed(self) -> dict[str, Any]: ...


LearningRate = float | ScheduleSpec


def is_schedule(x: Any) -> bool:
    """Whether ``x`` is a schedule spec: its ``hashed()`` names a "schedule" kind."""
    return not isinstance(x, type) and isinstance(x, ScheduleSpec) and "schedule" in x.hashed()


def is_spec(x: Any) -> bool:
    """Whether ``x`` is an optimiser spec: its ``hashed()`` names an "optimizer" kind.

    The kind key tells the two apart, since schedule specs have the same methods.
    """
    return not isinstance(x, type) and isinstance(x, Spec) and "optimizer" in x.hashed()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _float(what: str, x: Any) -> float:
    """``x`` as a finite Python float (numpy scalars too), so hashes and equality see one type."""
    _require(isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x),
             f"{what} must be a finite number, not {x!r}")
    return float(x)


def _int(what: str, x: Any) -> int:
    _require(isinstance(x, numbers.Integral) and not isinstance(x, bool), f"{what} must be an int, not {x!r}")
    return int(x)


def _set(spec: Any, **fields: Any) -> None:
    """Normalise fields of a frozen dataclass in ``__post_init__``."""
    for key, value in fields.items():
        object.__setattr__(spec, key, value)


def _num(x: float) -> str:
    """A short form of ``x`` for names, exact where the short one is not."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _rate(what: str, lr: Any) -> LearningRate:
    """A positive float rate, or a schedule spec (kept as is)."""
    if is_schedule(lr):
        return lr
    _require(isinstance(lr, numbers.Real) and not isinstance(lr, bool),
             f"{what} lr must be a positive number or a schedule spec (Constant, StepDecay, Warmup, Cosine), "
             f"not {lr!r}")
    lr = _float(f"{what} lr", lr)
    _require(lr > 0, f"{what} lr must be positive, not {lr!r}")
    return lr


def _lr_make(lr: LearningRate) -> optax.ScalarOrSchedule:
    return lr.make() if is_schedule(lr) else lr


def _lr_hashed(lr: LearningRate) -> float | dict[str, Any]:
    return lr.hashed() if is_schedule(lr) else lr


def _lr_name(lr: LearningRate) -> str:
    return lr.name if is_schedule(lr) else _num(lr)


def _positive(what: str, x: Any) -> float:
    x = _float(what, x)
    _require(x > 0, f"{what} must be positive, not {x!r}")
    return x


def _fraction(what: str, x: Any, *, one: bool) -> float:
    """A float in [0, 1] (``one``) or [0, 1)."""
    x = _float(what, x)
    _require(0 <= x <= 1 if one else 0 <= x < 1, f"{what} must be in [0, 1{']' if one else ')'}, not {x!r}")
    return x


@dataclass(frozen=True)
class Constant:
    """The rate ``value`` at every step."""

    value: float

    def __post_init__(self):
        _set(self, value=_positive("Constant value", self.value))

    @property
    def name(self) -> str:
        return f"constant({_num(self.value)})"

    def make(self) -> optax.Schedule:
        return optax.constant_schedule(self.value)

    def hashed(self) -> dict[str, Any]:
        return {"schedule": "constant", "value": self.value}


@dataclass(frozen=True)
class StepDecay:
    """open_lth's ``milestone_steps``/``gamma``: ``value * gamma ** (milestones <= step)``."""

    value: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self):
        milestones = tuple(self.milestones) if isinstance(self.milestones, (tuple, list)) else None
        _require(milestones is not None
                 and all(isinstance(m, numbers.Integral) and not isinstance(m, bool) and m > 0 for m in milestones)
                 and all(a < b for a, b in itertools.pairwise(milestones)),
                 f"StepDecay milestones must be strictly increasing positive ints, not {self.milestones!r}")
        gamma = _float("StepDecay gamma", self.gamma)
        _require(0 < gamma <= 1, f"StepDecay gamma must be in (0, 1], not {gamma!r}")
        _set(self, value=_positive("StepDecay value", self.value), milestones=tuple(int(m) for m in milestones),
             gamma=gamma)

    @property
    def name(self) -> str:
        at = ",".join(str(m) for m in self.milestones)
        return f"step({_num(self.value)}, x{_num(self.gamma)} at {at})"

    def make(self) -> optax.Schedule:
        milestones = jnp.asarray(self.milestones, jnp.int32)

        def rate(step):
            return self.value * self.gamma ** jnp.sum(jnp.asarray(step) >= milestones)

        return rate

    def hashed(self) -> dict[str, Any]:
        return {"schedule": "step", "value": self.value, "milestones": list(self.milestones), "gamma": self.gamma}


@dataclass(frozen=True)
class Cosine:
    """``optax.cosine_decay_schedule``: from ``value`` to ``alpha * value`` over ``steps``."""

    value: float
    steps: int
    alpha: float = 0.0

    def __post_init__(self):
        steps = _int("Cosine steps", self.steps)
        _require(steps > 0, f"Cosine steps must be positive, not {steps}")
        _set(self, value=_positive("Cosine value", self.value), steps=steps,
             alpha=_fraction("Cosine alpha", self.alpha, one=True))

    @property
    def name(self) -> str:
        alpha = f", alpha={_num(self.alpha)}" if self.alpha else ""
        return f"cosine({_num(self.value)}, {self.steps}{alpha})"

    def make(self) -> optax.Schedule:
        return optax.cosine_decay_schedule(self.value, self.steps, self.alpha)

    def hashed(self) -> dict[str, Any]:
        return {"schedule": "cosine", "value": self.value, "steps": self.steps, "alpha": self.alpha}


@dataclass(frozen=True)
class Warmup:
    """A linear ramp from ``start * peak`` to ``then``'s rate at its step 0 (the peak) over
    ``steps``; then ``then``, counting its steps from the end of the ramp (optax.join_schedules).
    """

    steps: int
    then: ScheduleSpec
    start: float = 0.0

    def __post_init__(self):
        steps = _int("Warmup steps", self.steps)
        _require(steps > 0, f"Warmup steps must be positive, not {steps}")
        _require(is_schedule(self.then), f"Warmup then must be a schedule spec, not {self.then!r}")
        _set(self, steps=steps, start=_fraction("Warmup start", self.start, one=True))

    @property
    def name(self) -> str:
        start = f" from x{_num(self.start)}" if self.start else ""
        return f"warmup({self.steps}{start}, {self.then.name})"

    def make(self) -> optax.Schedule:
        then = self.then.make()

        def ramp(step):
            frac = jnp.clip(jnp.asarray(step) / self.steps, 0.0, 1.0)
            return then(0) * (self.start + (1.0 - self.start) * frac)

        return optax.join_schedules([ramp, then], [self.steps])

    def hashed(self) -> dict[str, Any]:
        return {"schedule": "warmup", "steps": self.steps, "then": self.then.hashed(), "start": self.start}


@dataclass(frozen=True)
class SGD:
    """SGD, with heavy-ball or Nesterov momentum, and weight decay coupled as an L2 term:
    ``wd * w`` joins the gradient before momentum, as in torch.optim.SGD and open_lth.
    """

    lr: LearningRate = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self):
        _require(isinstance(self.nesterov, bool), f"SGD nesterov must be a bool, not {self.nesterov!r}")
        momentum = _fraction("SGD momentum", self.momentum, one=False)
        _require(momentum > 0 or not self.nesterov, "SGD nesterov needs momentum > 0")
        weight_decay = _float("SGD weight_decay", self.weight_decay)
        _require(weight_decay >= 0, f"SGD weight_decay must be >= 0, not {weight_decay!r}")
        _set(self, lr=_rate("SGD", self.lr), momentum=momentum, weight_decay=weight_decay)

    @property
    def name(self) -> str:
        parts = [f"lr={_lr_name(self.lr)}"]
        parts += [f"momentum={_num(self.momentum)}"] if self.momentum else []
        parts += ["nesterov"] if self.nesterov else []
        parts += [f"wd={_num(self.weight_decay)}"] if self.weight_decay else []
        return f"sgd({', '.join(parts)})"

    def make(self) -> optax.GradientTransformation:
        sgd = optax.sgd(_lr_make(self.lr), self.momentum or None, self.nesterov)
        # No decay term at all without weight decay: the state and the updates stay make("sgd")'s.
        return optax.chain(optax.add_decayed_weights(self.weight_decay), sgd) if self.weight_decay else sgd

    def hashed(self) -> dict[str, Any]:
        return {"optimizer": "sgd", "lr": _lr_hashed(self.lr), "momentum": self.momentum,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}


def _adam_fields(kind: str, spec: Any) -> dict[str, Any]:
    return {"lr": _rate(kind, spec.lr), "b1": _fraction(f"{kind} b1", spec.b1, one=False),
            "b2": _fraction(f"{kind} b2", spec.b2, one=False), "eps": _positive(f"{kind} eps", spec.eps)}


def _adam_name(kind: str, spec: Any, *extra: str) -> str:
    parts = [f"lr={_lr_name(spec.lr)}"]
    parts += [f"{key}={_num(getattr(spec, key))}" for key, default in (("b1", 0.9), ("b2", 0.999), ("eps", ADAM_EPS))
              if getattr(spec, key) != default]
    return f"{kind}({', '.join(parts + list(extra))})"


@dataclass(frozen=True)
class Adam:
    """optax's Adam (epsilon after the bias correction)."""

    lr: LearningRate = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = ADAM_EPS

    def __post_init__(self):
        _set(self, **_adam_fields("Adam", self))

    @property
    def name(self) -> str:
        return _adam_name("adam", self)

    def make(self) -> optax.GradientTransformation:
        return optax.adam(_lr_make(self.lr), b1=self.b1, b2=self.b2, eps=self.eps)

    def hashed(self) -> dict[str, Any]:
        return {"optimizer": "adam", "lr": _lr_hashed(self.lr), "b1": self.b1, "b2": self.b2, "eps": self.eps}


@dataclass(frozen=True)
class AdamW:
    """Adam with decoupled weight decay (optax.adamw): ``-lr * (adam_step + wd * w)``, the decay
    bypassing Adam's normalisation.
    """

    lr: LearningRate = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = ADAM_EPS
    weight_decay: float = 1e-4

    def __post_init__(self):
        weight_decay = _float("AdamW weight_decay", self.weight_decay)
        _require(weight_decay >= 0, f"AdamW weight_decay must be >= 0, not {weight_decay!r}")
        _set(self, weight_decay=weight_decay, **_adam_fields("AdamW", self))

    @property
    def name(self) -> str:
        return _adam_name("adamw", self, f"wd={_num(self.weight_decay)}")

    def make(self) -> optax.GradientTransformation:
        return optax.adamw(_lr_make(self.lr), b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay)

    def hashed(self) -> dict[str, Any]:
        return {"optimizer": "adamw", "lr": _lr_hashed(self.lr), "b1": self.b1, "b2": self.b2, "eps": self.eps,
                "weight_decay": self.weight_decay}


def resolve(optimizer: str | Spec | optax.GradientTransformation, lr: LearningRate | None = None,
            optimizer_name: str | None = None) -> tuple[optax.GradientTransformation, dict[str, Any]]:
    """The transformation a trainer runs and the fields its run's hash takes, from any of:

    - a name in :data:`NAMES` with ``lr`` a float or a schedule spec: hash fields
      ``{"optimizer": name, "lr": lr}`` (for a float, exactly the fields runs have always hashed);
    - an optimiser spec, which carries its own rate (``lr`` stays None): ``{"optimizer": spec.hashed()}``;
    - a bare optax transformation, which cannot describe itself, so ``optimizer_name`` must:
      ``{"optimizer": {"name": optimizer_name}}``.
    """
    if isinstance(optimizer, str):
        _require(optimizer_name is None, "optimizer_name= is only for a bare optax transformation")
        _require(lr is not None, f"optimizer {optimizer!r} needs lr (a float or a schedule spec)")
        if is_schedule(lr):
            return make(optimizer, lr.make()), {"optimizer": optimizer, "lr": lr.hashed()}
        _require(isinstance(lr, numbers.Real) and not isinstance(lr, bool),
                 f"lr must be a float or a schedule spec, not {lr!r}")
        return make(optimizer, lr), {"optimizer": optimizer, "lr": lr}
    if is_spec(optimizer):
        _require(optimizer_name is None, "optimizer_name= is only for a bare optax transformation")
        _require(lr is None, f"lr belongs to the optimiser spec {optimizer.name}; pass lr=None")
        return optimizer.make(), {"optimizer": optimizer.hashed()}
    if isinstance(optimizer, optax.GradientTransformation):
        _require(bool(optimizer_name) and isinstance(optimizer_name, str),
                 "a bare optax transformation needs optimizer_name= (a str for the run's hash), as it cannot "
                 "describe itself")
        _require(lr is None, f"lr belongs to the optax transformation {optimizer_name!r}; pass lr=None")
        return optimizer, {"optimizer": {"name": optimizer_name}}
    raise ValueError(f"optimizer must be a name ({', '.join(NAMES)}), an optimiser spec (SGD, Adam, AdamW) or an "
                     f"optax.GradientTransformation, not {optimizer!r}")


def state_floats(transformation: optax.GradientTransformation, params_shapes: Any) -> int:
    """How many float entries ``transformation``'s state holds for params of these shapes (a
    tree of shape tuples, arrays or ``jax.ShapeDtypeStruct``s): for a memory estimate. Nothing is
    allocated (``jax.eval_shape``); step counts and other integer entries are not counted.
    """

    def is_shape(x: Any) -> bool:
        return isinstance(x, tuple) and all(isinstance(d, numbers.Integral) for d in x)

    def struct(x: Any) -> jax.ShapeDtypeStruct:
        if is_shape(x):
            return jax.ShapeDtypeStruct(tuple(int(d) for d in x), jnp.float32)
        return jax.ShapeDtypeStruct(tuple(x.shape), getattr(x, "dtype", jnp.float32))

    structs = jax.tree.map(struct, params_shapes, is_leaf=lambda x: is_shape(x) or hasattr(x, "shape"))
    state = jax.eval_shape(transformation.init, structs)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.floating))
