"""lth-jax: lottery-ticket experiments as pure functions over JAX pytrees.

The runner (:mod:`lth_jax.runner`) carries the paper's procedure for any Flax model; the
paper's own experiments are its configurations (:mod:`lth_jax.mnist`, :mod:`lth_jax.xor`).
"""

from lth_jax import (
    analysis,
    claims,
    connectivity,
    cost,
    data,
    judges,
    masks,
    metrics,
    mnist,
    models,
    paper,
    pruning,
    results,
    rules,
    runner,
    store,
    train,
    trainers,
    transforms,
    xor,
)

__all__ = ["analysis", "claims", "connectivity", "cost", "data", "judges", "masks", "metrics", "mnist", "models",
           "paper", "pruning", "results", "rules", "runner", "store", "train", "trainers", "transforms", "xor"]
