"""lth-jax: lottery-ticket experiments as pure functions over JAX pytrees."""

from lth_jax import lottery, masks, metrics, models, pruning, train, transforms

__all__ = ["lottery", "masks", "metrics", "models", "pruning", "train", "transforms"]
