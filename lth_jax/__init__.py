"""lth-jax: lottery-ticket experiments as pure functions over JAX pytrees.

``lth_jax.experiment`` (the MNIST procedure) is imported on its own: ``from lth_jax import experiment``.
"""

from lth_jax import analysis, connectivity, data, lottery, masks, metrics, models, pruning, store, train, transforms

__all__ = ["analysis", "connectivity", "data", "lottery", "masks", "metrics", "models", "pruning", "store", "train",
           "transforms"]
