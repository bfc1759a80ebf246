"""Trainers as the runner uses them: a stack of trials in, trained weights and outputs out.

Each is a small frozen value whose ``__call__(network, params, masks, keys, data, on_steps)``
trains trials laid out on a leading axis and returns ``(trained, outputs)``:

- :class:`Minibatch` (:mod:`lth_jax.trainers.minibatch`; MNIST, sections 3-6, and any Flax
  model through the training contract);
- :class:`FullBatch` (:mod:`lth_jax.trainers.fullbatch`; XOR, section 2).

Both are built on :mod:`lth_jax.trainers.step`: the masked step itself (masks on gradients,
updates and weights), the losses, and whole trainings as one compiled function.
"""

from lth_jax.trainers import step
from lth_jax.trainers.fullbatch import FullBatch, sigmoid_ce_trials_last
from lth_jax.trainers.minibatch import Minibatch, positive

__all__ = ["FullBatch", "Minibatch", "positive", "sigmoid_ce_trials_last", "step"]
