"""Pruning rules as the runner uses them: how a ticket is cut from a trained network.

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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from lth_jax import masks as masks_lib
from lth_jax import pruning

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LayerwiseMagnitude:
    """Sections 3-4: remove the lowest-|w| fraction of each layer's remaining weights.

    One-shot level ``p`` keeps ``p`` percent of every hidden layer and prunes the output
    layer at ``output_rate_factor`` of that rate; an iterative round removes ``rate`` of each
    hidden layer's remaining weights (the output layer ``rate * output_rate_factor``).
    """

    rate: float = 0.2
    output_rate_factor: float = 0.5
    full: float = 100.0

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), not {self.rate}")
        if not 0 <= self.output_rate_factor <= 1:
            raise ValueError(f"output_rate_factor must be in [0, 1], not {self.output_rate_factor}")

    def _rates(self, network: Any, params: PyTree, rate: Any) -> PyTree:
        return pruning.layer_rates(params, rate, rate * self.output_rate_factor, output=network.output_layer())

    def to_level(self, network: Any, trained: PyTree, masks: PyTree, value: Any) -> PyTree:
        r = 1.0 - value / 100.0
        return pruning.magnitude(trained, masks_lib.ones_like(trained), self._rates(network, trained, r))

    def step(self, network: Any, trained: PyTree, masks: PyTree) -> PyTree:
        return pruning.magnitude(trained, masks, self._rates(network, trained, self.rate))

    def start(self, network: Any, params: PyTree) -> PyTree:
        return masks_lib.ones_like(params)

    def value_after(self, rounds: int) -> float:
        return round(100.0 * (1 - self.rate) ** rounds, 6)

    def counts(self, network: Any, value: float | None = None, rounds: int | None = None) -> dict[str, int]:
        """Exact weights per layer after pruning, with :func:`lth_jax.pruning.magnitude`'s rounding."""
        counts = network.weight_counts()
        out_name = "/".join(network.output_layer())
        if value is not None:
            r = np.float32(1.0) - np.float32(value) / np.float32(100.0)  # float32, exactly as to_level computes it
            return {n: _survivors(k, r * np.float32(self.output_rate_factor) if n == out_name else r)
                    for n, k in counts.items()}
        for _ in range(rounds or 0):
            counts = {n: _survivors(k, self.rate * self.output_rate_factor if n == out_name else self.rate)
                      for n, k in counts.items()}
        return counts

    def hashed(self, mode: str) -> dict[str, Any]:
        # One-shot prunes to each level directly, so its rate does not enter the hash.
        d = {"output_rate_factor": self.output_rate_factor}
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
        out = {"heuristic": self.heuristic, "units": self.full, "per_round": self.per_round, "layer": self.layer,
               "start_units": self.start_units}
        if self.with_bias:  # named only when set, so runs stored before it keep their hashes
            out["with_bias"] = True
        return out


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
    """Global magnitude pruning (issue 9; not the paper's, which prunes layer by layer): remove
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

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), not {self.rate}")

    def to_level(self, network: Any, trained: PyTree, masks: PyTree, value: Any) -> PyTree:
        r = 1.0 - value / 100.0
        return pruning.global_magnitude(trained, masks_lib.ones_like(trained), r)

    def step(self, network: Any, trained: PyTree, masks: PyTree) -> PyTree:
        return pruning.global_magnitude(trained, masks, self.rate)

    def start(self, network: Any, params: PyTree) -> PyTree:
        return masks_lib.ones_like(params)

    def value_after(self, rounds: int) -> float:
        return round(100.0 * (1 - self.rate) ** rounds, 6)

    @staticmethod
    def pooled_name(network: Any) -> str:
        """The one key of :meth:`counts`: every layer's name, in forward order, joined by ``"+"``."""
        return "+".join(network.weight_counts())

    def counts(self, network: Any, value: float | None = None, rounds: int | None = None) -> dict[str, int]:
        """Exact weights of all layers together after pruning, with
        :func:`lth_jax.pruning.global_magnitude`'s rounding (one entry, see the class docstring)."""
        total = sum(network.weight_counts().values())
        if value is not None:
            r = np.float32(1.0) - np.float32(value) / np.float32(100.0)  # float32, exactly as to_level computes it
            return {self.pooled_name(network): _survivors(total, r)}
        for _ in range(rounds or 0):
            total = _survivors(total, self.rate)
        return {self.pooled_name(network): total}

    def hashed(self, mode: str) -> dict[str, Any]:
        # "pruning" names the rule (LayerwiseMagnitude, the default, adds nothing, so its hashes
        # stay as they were); one-shot prunes to each level directly, so its rate does not enter.
        d: dict[str, Any] = {"pruning": "global"}
        if mode != "oneshot":
            d["rate"] = self.rate
        return d
