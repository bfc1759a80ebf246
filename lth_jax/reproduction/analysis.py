"""Summaries of stored results: what winning tickets look like (section 5) and
how to read curves of convergence and accuracy against size (sections 3-6).

Everything here is host-side numpy on finished arrays (no tracing): inputs are
masks/params trees, optionally with leading trial axes, and per-level arrays.
Proportions come with their sample size and binomial standard error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lth_jax import masks as masks_lib
from lth_jax.reproduction import connectivity

PyTree = Any
Order = Sequence[masks_lib.LayerRef] | None


def binomial_se(successes: int, n: int) -> float:
    """Standard error of a proportion ``successes / n`` (NaN when ``n == 0``)."""
    if n == 0:
        return float("nan")
    p = successes / n
    return math.sqrt(p * (1.0 - p) / n)


# ------------------------------------------------------------------ Figure 9


def survivor_initial_values(init: PyTree, masks: PyTree, *, order: Order = None) -> dict[str, np.ndarray]:
    """Per layer (keyed by name, in ``order``: see :mod:`lth_jax.masks`), the initial
    values of the surviving weights (kernel entries of any rank), pooled over any
    leading trial axes into one flat array."""
    return {masks_lib.layer_name(path[:-1]): np.asarray(masks_lib.get(init, path))[
                np.asarray(masks_lib.get(masks, path), bool)]
            for path in masks_lib.kernel_paths(masks, order)}


def histogram(values: np.ndarray, bins: int, range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Density-normalised histogram on fixed bins: ``(density, edges)``.

    Fixed ``bins`` and ``range`` make histograms of different levels and layers
    comparable; the density integrates to the fraction of ``values`` inside
    ``range`` (1 when all are), and is all zeros for an empty sample.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    counts, edges = np.histogram(values, bins=bins, range=range)
    if values.size == 0:
        return np.zeros(bins), edges
    return counts / (values.size * np.diff(edges)), edges


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def truncated_normal_share(within: float = 1.0, bound: float = 2.0) -> float:
    """Share of N(0, 1) truncated to ``[-bound, bound]`` that lies in ``[-within, within]``.

    The paper's initialisation truncates at 2 std, so within 1 std the share is
    (Phi(1) - Phi(-1)) / (Phi(2) - Phi(-2)), about 0.7165.
    """
    inside = _phi(min(within, bound)) - _phi(-min(within, bound))
    return inside / (_phi(bound) - _phi(-bound))


def bimodality(values: np.ndarray, std: float, within: float = 1.0, bound: float = 2.0) -> dict[str, float]:
    """How hollow the middle of a sample of initial values is.

    ``fraction_within`` is the share of ``values`` within ``within * std`` of 0;
    ``normal_share`` is what an unpruned draw from the init distribution gives.
    ``ratio`` near 1 means no selection by magnitude; near 0 means the centre
    has been pruned away (Figure 9's two peaks). ``std`` is the init
    distribution's (untruncated) deviation, not the survivors' sample deviation,
    which pruning itself changes.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    n = int(values.size)
    hits = int(np.sum(np.abs(values) <= within * std))
    share = truncated_normal_share(within, bound)
    frac = hits / n if n else float("nan")
    return {"n": n, "within": hits, "fraction_within": frac, "se": binomial_se(hits, n),
            "normal_share": share, "ratio": frac / share}


# ----------------------------------------------------------------- Figure 10


def sorted_incoming(masks: PyTree, disconnect: bool = True, *, order: Order = None) -> dict[str, np.ndarray]:
    """Figure 10: per layer, each unit's number of surviving incoming connections,
    pooled over leading trial axes and sorted in descending order.

    With ``disconnect`` (the paper's footnote 7), edges with no path to an output
    are removed first. Masks of a chain of Dense layers (see :mod:`lth_jax.reproduction.connectivity`).
    """
    if disconnect:
        masks = connectivity.remove_disconnected(masks, order=order)
    return {name: np.sort(np.asarray(c).reshape(-1))[::-1]
            for name, c in connectivity.incoming_counts(masks, order=order).items()}


def disconnected_summary(masks: PyTree, disconnect: bool = True, *,
                         order: Order = None) -> dict[str, dict[str, float]]:
    """Per layer, how many units (pooled over trials) have no surviving incoming
    connection, after footnote 7's removal when ``disconnect``."""
    if disconnect:
        masks = connectivity.remove_disconnected(masks, order=order)
    out = {}
    for name, dead in connectivity.disconnected_units(masks, order=order).items():
        dead = np.asarray(dead)
        n, k = int(dead.size), int(dead.sum())
        out[name] = {"units": n, "disconnected": k, "fraction": k / n if n else float("nan"),
                     "se": binomial_se(k, n)}
    return out


def section5(init: PyTree, chain: dict[float, PyTree], fig9: Sequence[float], fig10: Sequence[float], std: float,
             bins: int = 40, *, order: Order = None) -> dict[str, Any]:
    """Figures 9 and 10 from the initial weights and the masks of an iterative chain.

    ``init`` and every mask tree carry a leading run axis; ``chain`` maps each level's
    fraction remaining (the paper's name for it: the hidden layers' nominal 0.8 ** round)
    to its masks; each target is shown at the nearest level. Returns the JSON summary
    (bimodality of the survivors' initial values, disconnected units after footnote 7's
    removal, each with its sample size) plus the plotted arrays under ``"_plot"``.
    """
    levels = sorted(chain, reverse=True)
    pick = {t: levels[nearest_level(levels, t)] for t in (*fig9, *fig10)}
    rng = (-2.0 * std, 2.0 * std)
    out: dict[str, Any] = {"figure9": [], "figure10": [], "_plot": {"figure9": [], "figure10": []}}
    runs = int(np.shape(jax_leaves(init)[0])[0])
    for t in fig9:
        d = pick[t]
        values = survivor_initial_values(init, chain[d], order=order)
        layers = {name: bimodality(v, std) for name, v in values.items()}
        out["figure9"].append({"target": t, "remaining": d, "remaining_overall": _overall(chain[d]),
                               "runs": runs, "layers": layers})
        out["_plot"]["figure9"].append((t, d, {name: histogram(v, bins, rng) for name, v in values.items()}))
    for t in fig10:
        d = pick[t]
        layers = disconnected_summary(chain[d], order=order)
        raw = disconnected_summary(chain[d], disconnect=False, order=order)
        counts = sorted_incoming(chain[d], order=order)
        for name, c in counts.items():
            # how many had lost every input to pruning itself, before footnote 7's removal
            layers[name].update({"disconnected_before_removal": raw[name]["disconnected"],
                                 "max_incoming": int(c[0]), "median_incoming": float(np.median(c)),
                                 "mean_incoming": float(np.mean(c))})
        out["figure10"].append({"target": t, "remaining": d, "remaining_overall": _overall(chain[d]),
                                "runs": runs, "layers": layers})
        out["_plot"]["figure10"].append((t, d, counts))
    return out


def jax_leaves(tree: PyTree) -> list[Any]:
    """The leaves of a nested dict of arrays, in key order (no jax needed)."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in jax_leaves(tree[k])]
    return [tree]


def _overall(masks: PyTree) -> float:
    """Fraction of all weights (output layer included) remaining, pooled over runs."""
    kernels = [np.asarray(masks_lib.get(masks, p)) for p in masks_lib.kernel_paths(masks)]
    return sum(int(k.sum()) for k in kernels) / sum(k.size for k in kernels)


def nearest_level(densities: Sequence[float], target: float) -> int:
    """Index of the level whose fraction remaining is closest to ``target``
    (the paper names iterative levels by rounded percentages: 51.2%, 16.8%...)."""
    d = np.asarray(densities, np.float64)
    return int(np.argmin(np.abs(d - target)))


# ------------------------------------------------------------- divergence


def divergence_summary(diverged_at: np.ndarray) -> dict[str, Any]:
    """Trials that produced NaN/inf: ``diverged_at`` holds each trial's first bad
    step, or -1 for a trial that stayed finite (as :class:`lth_jax.trainers.step.Curve`)."""
    d = np.asarray(diverged_at).reshape(-1)
    bad = d >= 0
    n, k = int(d.size), int(bad.sum())
    return {"n": n, "diverged": k, "fraction": k / n if n else float("nan"), "se": binomial_se(k, n),
            "first_step": int(d[bad].min()) if k else None,
            "steps": sorted(int(s) for s in d[bad])}


# ------------------------------------------- reading curves against size


def _by_size(sizes: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Levels ordered from the largest network (least pruned) to the smallest."""
    s = np.asarray(sizes, np.float64)
    v = np.asarray(values, np.float64)
    if s.shape != v.shape or s.ndim != 1 or s.size == 0:
        raise ValueError(f"need two equal-length 1-d arrays, got shapes {s.shape} and {v.shape}")
    order = np.argsort(-s, kind="stable")
    return s[order], v[order]


def accuracy_drop(sizes: Sequence[float], accuracy: Sequence[float], tolerance: float = 0.0015,
                  reference: float | None = None) -> dict[str, float | None]:
    """Where mean accuracy falls more than ``tolerance`` below the reference.

    ``sizes`` are any measure of size (percent remaining, number of weights);
    ``reference`` defaults to the accuracy of the largest size (the unpruned
    network). The paper's "drops off (more than 0.15% lower than the original
    network's accuracy) when pruned to about 31%" is ``first_below`` with the
    default tolerance 0.0015 (absolute, on accuracies in [0, 1]).

    Returns, in units of ``sizes``:

    - ``first_below``: the first size, pruning from the largest down, whose
      accuracy is below ``reference - tolerance`` (None if none is);
    - ``last_before_drop``: the size just before it (the smallest size when
      none drops): Figures 13-14's second ticket-size definition;
    - ``smallest_within``: the smallest size anywhere whose accuracy is at least
      ``reference - tolerance`` (with ``tolerance=0``: "returns to the
      original's accuracy at 2.8%").

    A NaN accuracy (a level that never converged) counts as below.
    """
    s, a = _by_size(sizes, accuracy)
    ref = float(a[0]) if reference is None else float(reference)
    ok = a >= ref - tolerance   # False for NaN
    below = np.flatnonzero(~ok[1:]) + 1
    first = int(below[0]) if below.size else None
    last = s[first - 1] if first is not None else s[-1]
    within = np.flatnonzero(ok)
    return {"reference": ref, "tolerance": float(tolerance),
            "first_below": None if first is None else float(s[first]),
            "last_before_drop": float(last),
            "smallest_within": float(s[within[-1]]) if within.size else None}


def fastest_ticket(sizes: Sequence[float], convergence: Sequence[float]) -> dict[str, float | None]:
    """Figures 13-14's first ticket-size definition: the minimal network that
    minimises convergence time. Levels that never converged (NaN) are ignored;
    among equal minima the smallest size wins."""
    s, c = _by_size(sizes, convergence)
    finite = np.isfinite(c)
    if not finite.any():
        return {"size": None, "convergence": None}
    best = np.min(c[finite])
    idx = np.flatnonzero(finite & (c == best))[-1]
    return {"size": float(s[idx]), "convergence": float(best)}


def ticket_sizes(sizes: Sequence[float], convergence: Sequence[float], accuracy: Sequence[float],
                 tolerance: float = 0.0015) -> dict[str, float | None]:
    """Both of section 6.2's definitions of a winning ticket's size, in units of ``sizes``:
    ``by_convergence`` (:func:`fastest_ticket`) and ``by_accuracy`` (the last size
    before accuracy drops ``tolerance`` below the unpruned network's)."""
    return {"by_convergence": fastest_ticket(sizes, convergence)["size"],
            "by_accuracy": accuracy_drop(sizes, accuracy, tolerance)["last_before_drop"]}
