"""lth-jax: lottery-ticket experiments as pure functions over JAX pytrees.

The framework is this package: masks and pruning rules, transforms, the training contract, the
trainers and :mod:`lth_jax.runner`, which carries the paper's procedure for any Flax model, and
:mod:`lth_jax.store`, which alone owns the on-disk format. The paper's own experiments are
configurations of it in :mod:`lth_jax.reproduction`, which depends on the framework and never
the other way round.
"""

from lth_jax import (
    contract,
    conv,
    criteria,
    data,
    datasets,
    devices,
    instability,
    judges,
    masks,
    models,
    optimizers,
    programs,
    pruning,
    rules,
    runner,
    store,
    trainers,
    transforms,
)

__all__ = ["contract", "conv", "criteria", "data", "datasets", "devices", "instability", "judges", "masks", "models",
           "optimizers", "programs", "pruning", "rules", "runner", "store", "trainers", "transforms"]
