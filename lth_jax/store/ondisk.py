"""The on-disk names: every file, record and array key a run directory holds, in one place.

A run directory (:mod:`lth_jax.store.runs`) holds :data:`SETTINGS` and one record per level
(:mod:`lth_jax.store.records`). A record's arrays are flat ``/``-joined keys; a pytree (params,
masks, model state) is stored under a prefix (:func:`lth_jax.store.records.flatten`):

- record :data:`INIT`: the initial weights of every seed under :data:`INIT`, their model state
  under :data:`INIT_STATE` (stateful modules only);
- a level record: :data:`MASKS`, :data:`TRAINED` (every trial's trained weights), :data:`STATE`
  (their model state), :data:`CHAIN` (Han et al.'s continuing chain), the trainer's curves
  (:data:`ACCURACY` ... :data:`STOP_STEP`) or :data:`LOGITS`, and on level 0 of a run with late
  rewinding the originals' snapshots (:func:`snapshot`, :func:`snapshot_opt`).
"""

from __future__ import annotations

SEP = "/"
SETTINGS = "settings.json"   # the settings a run directory's hash was taken of (+ extras)
EXPORT_MARK = "export.json"  # marks a light exported copy and names its source
EXPORT = "export"            # the key of an exported copy's settings extras saying what it left out
LOCK_FILE = ".lock"          # a run in progress holds it (its pid inside)

INIT = "init"                # record (and array prefix) of the initial weights of every seed
INIT_STATE = "init_state"    # beside them: the initial model state
MASKS = "masks"
TRAINED = "trained"
STATE = "state"              # every trial's trained model state
CHAIN = "chain"              # han: the chain's trained weights, pruned for the next round
SNAPSHOTS = "snapshots"      # level 0 with late rewinding: the originals at each snapshot step

CURVES = "curves"
ACCURACY = "curves/accuracy"        # (trials, evaluations) test accuracy
LOSS = "curves/loss"                # (trials, evaluations) training loss
DIVERGED_AT = "curves/diverged_at"  # (trials,) first step with a non-finite loss, -1 if none
START_STEP = "curves/start_step"    # (trials,) the step a late-rewound trial started from
STOP_STEP = "curves/stop_step"      # (trials,) the step a trial stopped at (stopping at convergence)
LOGITS = "logits"                   # full-batch trainers: each trial's final logits


def join(*parts: object) -> str:
    """A key from its parts: ``join("snapshots", 500, "params") == "snapshots/500/params"``."""
    return SEP.join(str(p) for p in parts)


def snapshot(step: int, part: str = "") -> str:
    """The prefix of the originals' snapshot at ``step`` (``part``: "params", "state" or "opt")."""
    return join(SNAPSHOTS, step, part) if part else join(SNAPSHOTS, step)


def snapshot_opt(step: int, leaf: int) -> str:
    """The ``leaf``-th leaf of the optimiser state in the snapshot at ``step``."""
    return join(SNAPSHOTS, step, "opt", leaf)


def is_snapshot(key: str) -> bool:
    return key.startswith(SNAPSHOTS + SEP)
