"""The lottery-ticket runner: train, prune, reset, repeat, for any Flax model (paper section 1).

A :class:`Lottery` names the five things an experiment is made of, each a small value with
pure functions behind it:

- ``network``: a :class:`Network`, any Flax module and the shape of one input;
- ``procedure``: a :class:`Procedure`, one-shot / iterative / Han et al., seeds, controls, levels;
- ``prune``: a rule of :mod:`lth_jax.rules` (layer-wise magnitude, hidden units, or your own
  ``params, masks -> masks``);
- ``trainer``: one of :mod:`lth_jax.trainers` (mini-batch with test curves, or full-batch);
- ``judge``: one of :mod:`lth_jax.judges` (footnote 5's convergence, XOR's DB/ZL, or your own),

plus ``keys``, the documented derivation of every random draw from the seeds
(:class:`SeedKeys` below; the XOR experiment brings its own).

:func:`run` executes one lottery; :func:`run_groups` executes several that share a compiled
program (same network shape and trainer) together, as section 6's studies and the XOR sweep
need. Every level whose source level is stored (:func:`depends_on`: the originals for a
one-shot level, the previous round otherwise) trains in the next program (:func:`next_program`):
the originals first, then every one-shot level at once, iterative rounds one after another. A
program's trials (the winning tickets of all seeds and all their controls, of every level in
it) form ONE leading trial axis, trained as one vmapped :class:`lth_jax.programs.Program`
(identical trials, such as the unpruned round shared by several rates, are trained once),
split into chunks of at most ``memory_budget_mb`` of estimated device memory. Each level is
stored (:mod:`lth_jax.store`) the moment its trials are trained, so a killed run resumes where
it stopped and gives exactly the numbers an uninterrupted run gives.

Modes (``Procedure.mode``):

- ``oneshot`` (section 3): train the originals (the full level), then prune their trained
  weights to each level of ``levels`` in one step and rewind.
- ``iterative`` (section 4): train, prune one round, rewind to the initialisation, repeat
  (``rounds`` prunings, or until fewer than ``min_remaining`` percent of all weights remain;
  that last, sub-threshold level is trained too).
- ``han`` (section 6.4, Han et al.): the chain is pruned from, and keeps training, its
  *trained* survivors ("continue" trials); at every round a copy rewound to the
  initialisation (the "ticket" trials) is trained and measured.

Trial layout of every level: tickets (one per seed), then ``reinit`` controls per ticket
(fresh draws, control 1 of sections 3.2/4.2), then ``shuffle`` controls per ticket (control
2), then ``random`` controls per ticket (the random-mask control,
:func:`lth_jax.transforms.random_mask`), then (han) the continuing chain, seed-major within
each role. All of them train in one vmapped program.

Late rewinding (Frankle et al. 2019, "Stabilizing the lottery ticket hypothesis";
``Procedure.rewind_step = k``, one of ``Procedure.snapshot_steps``): the originals' training
(level 0) keeps a snapshot of every original network, params and optimiser state, after each
snapshot step (stored in the level-0 record as ``snapshots/<step>/params/...`` and
``snapshots/<step>/opt/<i>``, the i-th leaf of the optimiser state). Every later level then
starts from step ``k``: tickets from the step-``k`` snapshot under their masks
(:func:`lth_jax.transforms.rewind` of the snapshot), shuffle and random-mask controls from the
snapshot's values, reinit controls from fresh draws, and all of them train steps ``k`` ..
``iterations - 1`` with their usual batch order (a ticket sees at step ``t`` the batch its
original saw at step ``t``). The optimiser state at ``k`` (none for plain SGD) is the
snapshot's, moved like the weights: masked for tickets, permuted with the values for shuffle
controls, taken at the new positions for random-mask controls; a reinit control has no
history and starts from a fresh optimiser state. Curves keep absolute steps: evaluations
before ``k`` are NaN and ``curves/start_step`` holds ``k``, so a convergence iteration means
the same as the original's.

Level 0 does not depend on ``k``, so a run with ``rewind_step = k`` (its own directory: ``k``
enters the hash) trains no original: its level 0 is the level-0 record of its *base* run (the
same lottery with ``rewind_step = 0``, :func:`base_lottery`, in the same root), trained there
if it is not stored yet, and copied (verified, checksummed, only the step-``k`` snapshot kept)
into the run's own directory, so every reader sees a complete run. ``snapshot_steps`` is not
hashed (it changes no trained number), so a later run with another ``k`` finds the same base;
if the base's stored original lacks the step-``k`` snapshot, only the originals are trained
again, and only up to step ``k``, to add it.

The package, one concept a module (each depends only on those above it):

- :mod:`~lth_jax.runner.spec`: the parts of an experiment and their hashing, the key scheme;
- :mod:`~lth_jax.runner.plan`: levels, the trial axis, which levels train together;
- :mod:`~lth_jax.runner.check`: what is refused before anything is written;
- :mod:`~lth_jax.runner.trials`: what each trial starts from;
- :mod:`~lth_jax.runner.tickets`: pruning between levels;
- :mod:`~lth_jax.runner.rewind`: late rewinding's base run;
- :mod:`~lth_jax.runner.stored`: what a level stores, and reading it back;
- :mod:`~lth_jax.runner.execute`: running it all, program by program.
"""

from lth_jax.runner.check import SetupError, check
from lth_jax.runner.execute import default_budget_mb, run, run_groups
from lth_jax.runner.plan import depends_on, layout, next_program, plan, signature, source_role, stoppable
from lth_jax.runner.rewind import base_lottery, copy_original
from lth_jax.runner.spec import (
    CONTROLS,
    INIT,
    INIT_STATE,
    MAX_ROUNDS,
    MODES,
    ROLES,
    SNAPSHOTS,
    STATE,
    Judge,
    Keys,
    Level,
    Lottery,
    Network,
    Procedure,
    Progress,
    Rule,
    SeedKeys,
    Trainer,
    Trial,
    frozen,
    layer_name,
    quick_options,
    run_dir,
    thawed,
)
from lth_jax.runner.stored import diverged_sources, level_arrays, level_metrics, records, stored_masks
from lth_jax.runner.tickets import ticket_masks
from lth_jax.runner.trials import (
    build_trials,
    concat_trials,
    initial_params,
    initial_state,
    original_snapshot,
    rewound_trials,
    snapshot_model_state,
    stored_init,
    stored_init_state,
    trial_states,
)

_concat = concat_trials  # the name tests/test_programs.py uses

__all__ = [
    "CONTROLS", "INIT", "INIT_STATE", "Judge", "Keys", "Level", "Lottery", "MAX_ROUNDS", "MODES", "Network",
    "Procedure", "Progress", "ROLES", "Rule", "SNAPSHOTS", "STATE", "SeedKeys", "SetupError", "Trainer", "Trial",
    "base_lottery", "build_trials", "check", "concat_trials", "copy_original", "default_budget_mb", "depends_on",
    "diverged_sources", "frozen", "initial_params", "initial_state", "layer_name", "layout", "level_arrays",
    "level_metrics", "next_program", "original_snapshot", "plan", "quick_options", "records", "rewound_trials",
    "run", "run_dir", "run_groups", "signature", "snapshot_model_state", "source_role", "stoppable", "stored_init",
    "stored_init_state", "stored_masks", "thawed", "ticket_masks", "trial_states",
]
