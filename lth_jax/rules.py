"""Pruning rules as the runner uses them: how a ticket is cut from a trained network, built on
the mask arithmetic of :mod:`lth_jax.pruning`.

A rule is a small frozen value (hashable, so compiled programs are shared) with pure
functions over ONE network's trees (the runner vmaps them over seeds):

- ``to_level(network, trained, masks, value) -> masks``: one-shot, from the original's
  trained weights and masks to the level ``value`` (percent kept, units kept, ...);
- ``step(network, trained, masks) -> masks``: one iterative round;
- ``start(network, params) -> masks``: the originals' masks;
- ``value_after(rounds)``, ``counts(network, value=, rounds=)``: the nominal level and the
  exact survivors per layer, where the rule can say in advance (the plan and its checks);
- ``hashed(mode)``: what enters the run's hash.

:class:`LayerwiseMagnitude` is the paper's MNIST rule, :class:`Units` its XOR rule, and
:class:`Custom` wraps your own ``params, masks -> masks``.

Rules that also see the initialisation and data (``uses_context = True``: :class:`ScoreRule`,
:class:`Score`, :class:`SNIP`, :class:`MagnitudeAtInit`) take a :class:`Context` instead of the
trained weights: ``to_level_ctx(network, ctx, value)`` and ``step_ctx(network, ctx)``. A new
pruning criterion is then one function ``score(ctx) -> tree``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import masks as masks_lib
from lth_jax import pruning, store

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LayerwiseMagnitude:
    """Sections 3-4: remove the lowest-|w| fraction of each layer's remaining weights.

    One-shot level ``p`` keeps ``p`` percent of every hidden layer and prunes the output
    layer at ``output_rate_factor`` of that rate; an iterative round removes ``rate`` of each
    hidden layer's remaining weights (the output layer ``rate * output_rate_factor``).

    ``conv_rate`` prunes convolutions at their own rate (the paper's later versions: 10-15% a
    round for convolutions, 20% for dense layers), the kind read from the kernel's rank
    (:func:`lth_jax.pruning.layer_kind`), never the layer's name. One-shot level ``p`` then
    keeps ``p`` percent of each dense hidden layer and, of each convolution, what the same
    number of iterative rounds would keep (``(1 - conv_rate) ** (log(p / 100) / log(1 - rate))``).
    """

    rate: float = 0.2
    output_rate_factor: float = 0.5
    full: float = 100.0
    conv_rate: float | None = None  # None: convolutions at ``rate`` like any hidden layer

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), not {self.rate}")
        if not 0 <= self.output_rate_factor <= 1:
            raise ValueError(f"output_rate_factor must be in [0, 1], not {self.output_rate_factor}")
        if self.conv_rate is not None and not 0 < self.conv_rate < 1:
            raise ValueError(f"conv_rate must be in (0, 1), not {self.conv_rate}")

    def _rates(self, network: Any, params: PyTree, rate: Any, conv_rate: Any = None) -> PyTree:
        if self.conv_rate is None:
            return pruning.layer_rates(params, rate, rate * self.output_rate_factor, output=network.output_layer())
        return pruning.kind_rates(params, {"dense": rate, "conv": conv_rate, "output": rate * self.output_rate_factor},
                                  output=network.output_layer())

    def _conv_rate_at(self, value: Any) -> Any:
        """The convolutions' rate for one-shot level ``value``: as many rounds as the dense layers take."""
        rounds = jnp.log(jnp.float32(value) / 100.0) / jnp.log(jnp.float32(1.0 - self.rate))
        return 1.0 - jnp.float32(1.0 - self.conv_rate) ** rounds

    def to_level(self, network: Any, trained: PyTree, masks: PyTree, value: Any) -> PyTree:
        r = 1.0 - value / 100.0
        conv = self._conv_rate_at(value) if self.conv_rate is not None else None
        return pruning.magnitude(trained, masks_lib.ones_like(trained), self._rates(network, trained, r, conv))

    def step(self, network: Any, trained: PyTree, masks: PyTree) -> PyTree:
        return pruning.magnitude(trained, masks, self._rates(network, trained, self.rate, self.conv_rate))

    def start(self, network: Any, params: PyTree) -> PyTree:
        return masks_lib.ones_like(params)

    def value_after(self, rounds: int) -> float:
        return round(100.0 * (1 - self.rate) ** rounds, 6)

    def counts(self, network: Any, value: float | None = None, rounds: int | None = None) -> dict[str, int] | None:
        """Exact weights per layer after pruning, with :func:`lth_jax.pruning.magnitude`'s rounding
        (None for a one-shot level of convolutions at their own rate: their rate is computed in
        the program, and a host copy of it could round the other way)."""
        counts = network.weight_counts()
        out_name = masks_lib.layer_name(network.output_layer())
        kinds = self._kinds(network) if self.conv_rate is not None else {
            n: "output" if n == out_name else "dense" for n in counts}  # the paper's rule: hidden or output
        if value is not None:
            if "conv" in kinds.values():
                return None
            r = np.float32(1.0) - np.float32(value) / np.float32(100.0)  # float32, exactly as to_level computes it
            return {n: _survivors(k, r * np.float32(self.output_rate_factor) if kinds[n] == "output" else r)
                    for n, k in counts.items()}
        rate = {"dense": self.rate, "output": self.rate * self.output_rate_factor,
                "conv": self.rate if self.conv_rate is None else self.conv_rate}
        for _ in range(rounds or 0):
            counts = {n: _survivors(k, rate[kinds[n]]) for n, k in counts.items()}
        return counts

    @staticmethod
    def _kinds(network: Any) -> dict[str, str]:
        shapes, out = network.shapes(), network.output_layer()
        return {masks_lib.layer_name(p): pruning.layer_kind(masks_lib.get(shapes, (*p, "kernel")).shape, p == out)
                for p in network.layers()}

    def hashed(self, mode: str) -> dict[str, Any]:
        # One-shot prunes to each level directly, so its rate does not enter the hash.
        d = {"output_rate_factor": self.output_rate_factor, **store.added_later({"conv_rate": self.conv_rate},
                                                                                 {"conv_rate": None})}
        if mode != "oneshot":
            d["rate"] = self.rate
        return d


def _survivors(count: int, rate: float | np.floating) -> int:
    return int(pruning.survivors_after(jnp.int32(count), jnp.float32(rate)))


@dataclasses.dataclass(frozen=True)
class Units:
    """Section 2: prune whole hidden units of one layer by a heuristic (input / output / product).

    Level values are units kept. One-shot removes ``full - value`` units at once by rank;
    an iterative round removes ``per_round`` units. ``start_units`` keeps only the first
    units of the originals (a narrower network inside a wide one, ``pruning.first_units``).
    """

    heuristic: str = "product"
    full: float = 10.0
    per_round: int = 2
    layer: int = 0
    start_units: int | None = None
    with_bias: bool = False  # the bias counts as an incoming weight of its unit (pruning.unit_scores)

    def __post_init__(self) -> None:
        if self.heuristic not in pruning.HEURISTICS:
            raise ValueError(f"unknown heuristic {self.heuristic!r}; choose from {', '.join(pruning.HEURISTICS)}")

    def to_level(self, network: Any, trained: PyTree, masks: PyTree, value: Any) -> PyTree:
        num = jnp.int32(self.full) - jnp.asarray(value, jnp.int32)
        return pruning.units(trained, masks, num, self.heuristic, self.layer, order=network.layers(),
                             with_bias=self.with_bias)

    def step(self, network: Any, trained: PyTree, masks: PyTree) -> PyTree:
        return pruning.units(trained, masks, jnp.int32(self.per_round), self.heuristic, self.layer,
                             order=network.layers(), with_bias=self.with_bias)

    def start(self, network: Any, params: PyTree) -> PyTree:
        ones = masks_lib.ones_like(params)
        if self.start_units is None:
            return ones
        return pruning.first_units(ones, jnp.int32(self.start_units), self.layer, order=network.layers())

    def value_after(self, rounds: int) -> float:
        return float(self.full - self.per_round * rounds)

    def counts(self, network: Any, value: float | None = None, rounds: int | None = None) -> None:
        return None

    def hashed(self, mode: str) -> dict[str, Any]:
        return {"heuristic": self.heuristic, "units": self.full, "per_round": self.per_round, "layer": self.layer,
                "start_units": self.start_units,
                **store.added_later({"with_bias": self.with_bias}, {"with_bias": False})}


@dataclasses.dataclass(frozen=True)
class Custom:
    """Your own rule: ``step(params, masks) -> masks`` for iterative rounds and, optionally,
    ``to_level(params, masks, value) -> masks`` for one-shot levels. ``name`` enters the hash,
    so give each distinct rule its own."""

    name: str
    step_fn: Callable[[PyTree, PyTree], PyTree]
    to_level_fn: Callable[[PyTree, PyTree, Any], PyTree] | None = None
    full: float = 100.0
    value_fn: Callable[[int], float] | None = None

    def to_level(self, network: Any, trained: PyTree, masks: PyTree, value: Any) -> PyTree:
        if self.to_level_fn is None:
            raise ValueError(f"rule {self.name!r} has no one-shot form (to_level_fn)")
        return self.to_level_fn(trained, masks, value)

    def step(self, network: Any, trained: PyTree, masks: PyTree) -> PyTree:
        return self.step_fn(trained, masks)

    def start(self, network: Any, params: PyTree) -> PyTree:
        return masks_lib.ones_like(params)

    def value_after(self, rounds: int) -> float:
        return float(self.value_fn(rounds)) if self.value_fn else float(rounds)

    def counts(self, network: Any, value: float | None = None, rounds: int | None = None) -> None:
        return None

    def hashed(self, mode: str) -> dict[str, Any]:
        return {"rule": self.name}


@dataclasses.dataclass(frozen=True)
class GlobalMagnitude:
    """Global magnitude pruning (not the paper's, which prunes layer by layer): remove
    the lowest-|w| fraction of the remaining weights of ALL layers together, one threshold
    across layers (:func:`lth_jax.pruning.global_magnitude`), so layers with many small
    weights (LeNet's input layer) lose more than the others and the output layer has no rate
    of its own.

    Level values are percents of all weights (kernel entries) kept. One-shot level ``p`` keeps
    ``p`` percent of all weights; an iterative round removes ``rate`` of the remaining ones.
    Biases are never pruned.

    Only the total is known in advance (how it splits across layers depends on the trained
    weights), so :meth:`counts` has one entry, named by the layers' ``"+"``-joined names
    (``"Dense_0+Dense_1+Dense_2"``): the plan's ``min_remaining`` stop and the stored
    ``expected_weights`` use that total.
    """

    rate: float = 0.2
    full: float = 100.0
    # Layers left unpruned, by kind ("conv", "dense", "output": open_lth leaves the output layer
    # out) or by name (e.g. a ResNet's first convolution or its 1x1 shortcuts).
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), not {self.rate}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def _pruned(self, network: Any) -> list[str]:
        """The layers pruned together: every layer but the excluded ones, in forward order."""
        if not self.exclude:
            return list(network.weight_counts())
        kinds = LayerwiseMagnitude._kinds(network)
        unknown = [e for e in self.exclude if e not in pruning.KINDS and e not in kinds]
        if unknown:
            raise ValueError(f"exclude names no layer or kind: {', '.join(unknown)} (kinds: "
                             f"{', '.join(pruning.KINDS)}; layers: {', '.join(kinds)})")
        pruned = [n for n, k in kinds.items() if k not in self.exclude and n not in self.exclude]
        if not pruned:
            raise ValueError(f"exclude={self.exclude} leaves no layer to prune")
        return pruned

    def _where(self, network: Any) -> Callable[[tuple[str, ...]], bool]:
        if not self.exclude:
            return masks_lib.is_kernel
        pruned = set(self._pruned(network))
        return lambda path: masks_lib.is_kernel(path) and masks_lib.layer_name(path[:-1]) in pruned

    def to_level(self, network: Any, trained: PyTree, masks: PyTree, value: Any) -> PyTree:
        r = 1.0 - value / 100.0
        return pruning.global_magnitude(trained, masks_lib.ones_like(trained), r, where=self._where(network))

    def step(self, network: Any, trained: PyTree, masks: PyTree) -> PyTree:
        return pruning.global_magnitude(trained, masks, self.rate, where=self._where(network))

    def start(self, network: Any, params: PyTree) -> PyTree:
        return masks_lib.ones_like(params)

    def value_after(self, rounds: int) -> float:
        return round(100.0 * (1 - self.rate) ** rounds, 6)

    def pooled_name(self, network: Any) -> str:
        """The one key of :meth:`counts`: the pruned layers' names, in forward order, joined by ``"+"``."""
        return "+".join(self._pruned(network))

    def counts(self, network: Any, value: float | None = None, rounds: int | None = None) -> dict[str, int]:
        """Exact weights of the pruned layers together after pruning, with
        :func:`lth_jax.pruning.global_magnitude`'s rounding (one entry, see the class docstring)."""
        weights = network.weight_counts()
        total = sum(weights[n] for n in self._pruned(network))
        if value is not None:
            r = np.float32(1.0) - np.float32(value) / np.float32(100.0)  # float32, exactly as to_level computes it
            return {self.pooled_name(network): _survivors(total, r)}
        for _ in range(rounds or 0):
            total = _survivors(total, self.rate)
        return {self.pooled_name(network): total}

    def hashed(self, mode: str) -> dict[str, Any]:
        # "pruning" names the rule (LayerwiseMagnitude, the default, adds nothing, so its hashes
        # stay as they were); one-shot prunes to each level directly, so its rate does not enter.
        d: dict[str, Any] = {"pruning": "global", **store.added_later({"exclude": list(self.exclude)}, {"exclude": []})}
        if mode != "oneshot":
            d["rate"] = self.rate
        return d


# ------------------------------------------------------------------ rules that see init and data


class Context(NamedTuple):
    """What a :class:`ScoreRule` may look at, for ONE network (the runner builds it inside its
    jit/vmap, so every field but ``loss`` is traced; ``loss`` closes over traced values and is
    why a Context is built inside the traced function, never passed into one).

    ``trained`` is None when pruning at initialisation (:attr:`ScoreRule.at_init`). ``batch`` is
    ``(x, y)`` drawn for pruning (``batch_size`` examples); ``loss(params) -> scalar`` is the
    training loss on that batch with ``masks`` applied inside it and the model state at hand.
    The level value is not here: it is passed next to the context.
    """

    init: PyTree
    trained: PyTree | None
    masks: PyTree
    batch: tuple[Any, Any]
    loss: Callable[[PyTree], jax.Array]
    key: jax.Array

    @property
    def params(self) -> PyTree:
        """The weights being pruned: the trained ones, else the initial ones."""
        return self.init if self.trained is None else self.trained

    def grads(self) -> PyTree:
        """``jax.grad(loss)`` at the masked :attr:`params`, the gradient w.r.t. the weights the
        network uses (zero for pruned ones, through the mask inside ``loss``). A method, not a
        field, so rules that need no gradient cost no backward pass."""
        return jax.grad(self.loss)(masks_lib.apply(self.params, self.masks))


SCOPES: tuple[str, ...] = ("layerwise", "global")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreRule:
    """Base of the rules that rank weights by a score of a :class:`Context`: a concrete rule
    defines only ``score(self, ctx) -> tree`` (mirroring the params; only kernel leaves are
    ranked, the highest survive) and inherits the levels, counts and hash from these fields.

    ``scope="layerwise"`` prunes as :class:`LayerwiseMagnitude` (each layer at ``rate``, the
    output layer at ``output_rate_factor`` of it); ``"global"`` as :class:`GlobalMagnitude` (one
    threshold across all kernels, the output layer not special). ``at_init`` rules score the
    initial weights (the runner passes ``trained=None``); the others the trained ones.
    ``batch_size`` is how many examples the runner draws into ``ctx.batch``. Level values are
    percents of weights kept, as for the magnitude rules, and the exact counts are theirs.

    ``name`` (the lower-cased class name unless a subclass sets its own) enters the run's hash:
    two different scores must not share one.
    """

    name: ClassVar[str]
    uses_context: ClassVar[bool] = True  # the runner builds a Context and calls the *_ctx methods

    rate: float = 0.2
    output_rate_factor: float = 0.5
    scope: str = "layerwise"
    at_init: bool = True
    batch_size: int = 100
    full: float = 100.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = "name" in cls.__dict__ or "name" in cls.__dict__.get("__annotations__", {})
        if not own and "name" not in {f.name for f in dataclasses.fields(cls)}:  # Score's is a field
            cls.name = cls.__name__.lower()

    def __post_init__(self) -> None:
        if type(self).score is ScoreRule.score:
            raise ValueError(f"{type(self).__name__} defines no score(ctx): subclass ScoreRule with one, "
                             "or use Score(name, fn)")
        if not isinstance(getattr(self, "name", None), str) or not self.name:
            raise ValueError(f"{type(self).__name__} needs a non-empty name (it enters the run's hash)")
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), not {self.rate}")
        if not 0 <= self.output_rate_factor <= 1:
            raise ValueError(f"output_rate_factor must be in [0, 1], not {self.output_rate_factor}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {self.scope!r}")
        if not isinstance(self.at_init, bool):
            raise ValueError(f"at_init must be True or False, not {self.at_init!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {self.batch_size!r}")
        if not 0 < self.full <= 100:
            raise ValueError(f"full is a percent of weights kept, in (0, 100], not {self.full}")

    def score(self, ctx: Context) -> PyTree:
        """Per-weight scores mirroring the params (higher survives). Subclasses define it."""
        raise NotImplementedError

    # -- what the runner calls

    def to_level_ctx(self, network: Any, ctx: Context, value: Any) -> PyTree:
        """One-shot: keep ``value`` percent (of each layer, or of all weights when global) of the
        unpruned network, ranked by ``score(ctx)``; ``ctx.masks`` gives only the tree's shape."""
        r = jnp.float32(1.0) - jnp.asarray(value, jnp.float32) / jnp.float32(100.0)  # as counts() computes it
        return self._prune(network, self._scores(ctx), masks_lib.ones_like(ctx.masks), r)

    def step_ctx(self, network: Any, ctx: Context) -> PyTree:
        """One iterative round: remove ``rate`` of the weights alive in ``ctx.masks``."""
        return self._prune(network, self._scores(ctx), ctx.masks, self.rate)

    def start(self, network: Any, params: PyTree) -> PyTree:
        return masks_lib.ones_like(params)

    def value_after(self, rounds: int) -> float:
        return round(100.0 * (1 - self.rate) ** rounds, 6)

    def counts(self, network: Any, value: float | None = None, rounds: int | None = None) -> dict[str, int]:
        """Exact survivors, as the magnitude rule of the same scope counts them (per layer, or one
        pooled entry named by :meth:`GlobalMagnitude.pooled_name`)."""
        return self._magnitude_twin().counts(network, value=value, rounds=rounds)

    def hashed(self, mode: str) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.name, "scope": self.scope, "at_init": self.at_init,
                             "batch_size": self.batch_size, "output_rate_factor": self.output_rate_factor}
        if mode != "oneshot":  # one-shot prunes to each level directly: the rate plays no part
            d["rate"] = self.rate
        return d

    def to_level(self, network: Any, trained: PyTree, masks: PyTree, value: Any) -> PyTree:
        raise ValueError(f"rule {self.name!r} needs the runner's Context: call to_level_ctx(network, ctx, value)")

    def step(self, network: Any, trained: PyTree, masks: PyTree) -> PyTree:
        raise ValueError(f"rule {self.name!r} needs the runner's Context: call step_ctx(network, ctx)")

    # -- helpers

    def _magnitude_twin(self) -> LayerwiseMagnitude | GlobalMagnitude:
        if self.scope == "global":
            return GlobalMagnitude(rate=self.rate, full=self.full)
        return LayerwiseMagnitude(rate=self.rate, output_rate_factor=self.output_rate_factor, full=self.full)

    def _scores(self, ctx: Context) -> PyTree:
        if self.at_init and ctx.trained is not None:
            raise ValueError(f"rule {self.name!r} prunes at initialisation: build its Context with trained=None")
        if not self.at_init and ctx.trained is None:
            raise ValueError(f"rule {self.name!r} scores trained weights: its Context has trained=None")
        scores = self.score(ctx)
        if jax.tree.structure(scores) != jax.tree.structure(ctx.masks):
            raise ValueError(f"rule {self.name!r}: score(ctx) must return a tree mirroring the params, got "
                             f"{jax.tree.structure(scores)}")
        for (path, s), m in zip(jax.tree_util.tree_leaves_with_path(scores), jax.tree.leaves(ctx.masks), strict=True):
            if jnp.shape(s) != jnp.shape(m):
                raise ValueError(f"rule {self.name!r}: score of {masks_lib.layer_name(masks_lib.keys(path))!r} "
                                 f"has shape {jnp.shape(s)}, its weights {jnp.shape(m)}")
        return scores

    def _prune(self, network: Any, scores: PyTree, masks: PyTree, rate: Any) -> PyTree:
        if self.scope == "global":
            return pruning.global_by_score(scores, masks, rate)
        rates = pruning.layer_rates(masks, rate, rate * self.output_rate_factor, output=network.output_layer())
        return pruning.by_score(scores, masks, rates)


@dataclasses.dataclass(frozen=True)
class Score(ScoreRule):
    """Your own score as a one-liner: ``Score("snip-abs", lambda ctx: ..., scope="global")``.
    ``name`` enters the hash, so give each distinct score its own; the other fields are
    :class:`ScoreRule`'s (keywords)."""

    name: str
    fn: Callable[[Context], PyTree]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ValueError(f"Score {self.name!r}: fn must be a function of a Context, not {self.fn!r}")
        super().__post_init__()

    def score(self, ctx: Context) -> PyTree:
        return self.fn(ctx)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SNIP(ScoreRule):
    """SNIP (Lee et al. 2019): connection sensitivity |g * w|, the loss's first-order change when
    a weight is removed, with g = ``ctx.grads()`` on one batch at the weights the context holds
    (the initial ones, at_init). The paper divides by the sum over all weights; one positive
    constant changes no ranking, so it is left out. The paper pools all layers: ``scope="global"``.
    """

    def score(self, ctx: Context) -> PyTree:
        return jax.tree.map(lambda g, w: jnp.abs(g * w), ctx.grads(), ctx.params)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MagnitudeAtInit(ScoreRule):
    """|w| of the initial weights: the "magnitude at initialisation" baseline of the pruning-at-init
    literature (Frankle et al. 2021), no data and no gradient needed. For trained weights use
    :class:`LayerwiseMagnitude` or :class:`GlobalMagnitude`."""

    def __post_init__(self) -> None:
        if not self.at_init:
            raise ValueError("MagnitudeAtInit scores the initial weights: at_init must be True")
        super().__post_init__()

    def score(self, ctx: Context) -> PyTree:
        return jax.tree.map(jnp.abs, ctx.init)
