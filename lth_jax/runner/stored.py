"""What a trained level stores (its arrays and metrics) and how a run's records are read back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import store
from lth_jax.runner.plan import depends_on, layout, source_role
from lth_jax.runner.spec import INIT, Level, Lottery, PyTree, Trial, at_path, layer_name
from lth_jax.store import ondisk


def level_arrays(lottery: Lottery, masks: PyTree, trained: PyTree, outputs: Mapping[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """What a level stores: ticket masks, the tickets' trained weights, the trainer's outputs
    (of the originals alone for their snapshots), and (han) the continuing chain's trained weights."""
    n = len(lottery.procedure.seeds)
    arrays = {**store.flatten(jax.device_get(masks), ondisk.MASKS),
              **store.flatten(jax.tree.map(lambda x: np.asarray(x)[:n], trained), ondisk.TRAINED),
              **{k: np.asarray(v)[:n] if ondisk.is_snapshot(k) else np.asarray(v)
                 for k, v in outputs.items()}}
    if lottery.procedure.mode == "han":
        arrays.update(store.flatten(jax.tree.map(lambda x: np.asarray(x)[-n:], trained), ondisk.CHAIN))
    return arrays


def level_metrics(lottery: Lottery, level: Level, masks: PyTree, outputs: Mapping[str, np.ndarray],
                  seconds: float, pruned_from_diverged: Sequence[int] = ()) -> dict[str, Any]:
    """Per-level metrics as stored in ``<level>.json``: weight counts, percents, and the judge's summary.

    ``pruned_from_diverged`` names the seeds whose masks were pruned from a training that
    diverged (NaN/inf): their trials are flagged in the per-trial rows and left out of the
    per-role statistics, which say how many were left out."""
    net = lottery.network
    counts = {layer_name(p): int(np.sum(np.asarray(at_path(masks, p)["kernel"])[0])) for p in net.layers()}
    totals = net.weight_counts()
    hidden = [n for n in totals if n != layer_name(net.output_layer())]
    trials = layout(lottery.procedure, level)
    return {
        "order": level.order, "level_id": level.level_id, "percent_nominal": level.value,
        "percent_hidden": 100.0 * sum(counts[n] for n in hidden) / max(1, sum(totals[n] for n in hidden)),
        "percent_overall": 100.0 * sum(counts.values()) / sum(totals.values()),
        "weights": counts, "weights_total": sum(counts.values()),
        "expected_weights": level.counts,
        "seconds": seconds, "device": str(jax.devices()[0].platform),
        **_judged(lottery.judge, outputs, trials, set(pruned_from_diverged)),
    }


def _judged(judge: Any, outputs: Mapping[str, np.ndarray], trials: list[Trial], bad: set[int]) -> dict[str, Any]:
    summary = judge.summarize(outputs, trials)
    if not bad:
        return summary
    keep = [i for i, t in enumerate(trials) if t.seed not in bad]
    clean = judge.summarize({k: np.asarray(v)[keep] for k, v in outputs.items()}, [trials[i] for i in keep])
    for role, stats in clean.get("roles", {}).items():
        stats["excluded_pruned_from_diverged"] = sum(1 for t in trials if t.role == role and t.seed in bad)
    for role, stats in summary.get("roles", {}).items():  # every trial of the role came from a diverged training
        if role not in clean.get("roles", {}):
            clean.setdefault("roles", {})[role] = {**_emptied(stats), "excluded_pruned_from_diverged": sum(
                1 for t in trials if t.role == role)}
    for row, t in zip(summary.get("trials", []), trials, strict=False):
        row["pruned_from_diverged"] = t.seed in bad
    return {**summary, "roles": clean["roles"], "pruned_from_diverged": sorted(bad)}


def _emptied(stats: Any) -> Any:
    """The statistics of no trials, in the shape of ``stats`` (counts 0, values None)."""
    if isinstance(stats, dict):
        return {k: _emptied(v) for k, v in stats.items()}
    return 0 if isinstance(stats, int) and not isinstance(stats, bool) else None


def diverged_sources(lottery: Lottery, path: Path, plan_: Sequence[Level], index: int) -> list[int]:
    """Seeds whose level-``index`` masks were pruned from a training that diverged: the original
    (one-shot) or the previous level's ticket (iterative) or chain (han)."""
    source = depends_on(lottery, index)
    if source is None:
        return []
    role = source_role(lottery)
    rows = store.load_level(path, plan_[source].name, arrays=False).metrics.get("trials", [])
    return sorted({r["seed"] for r in rows if r.get("role") == role and r.get("diverged_at") is not None})


def records(path: str | Path, arrays: bool = False) -> Iterator[store.Record]:
    """The stored levels of a run in plan order (largest first)."""
    for name in store.levels(path):
        if name != INIT:
            yield store.load_level(path, name, arrays=arrays)


def stored_masks(masks_tree: PyTree) -> PyTree:
    """Masks as loaded from the store (numpy) back to bool jax arrays."""
    return jax.tree.map(lambda m: jnp.asarray(m, bool), masks_tree)
