"""What a run costs (lth_jax.reproduction.cost): the work the plan counts, in LeNet seed-steps."""

from __future__ import annotations

import numpy as np
import pytest

from lth_jax import store
from lth_jax.reproduction import cost, mnist

TINY = dict(mode="iterative", hidden=(300, 100), iterations=1000, eval_every=100, seeds=(0, 1), reinit=1, shuffle=1,
            random=1, min_remaining=60.0, snapshot_steps=(0, 500))


def test_a_level_costs_its_trials_times_its_iterations():
    s = mnist.Settings(**TINY)
    levels = len(mnist.plan(s))
    need = cost.seed_steps([s])
    assert need["levels"] == levels
    assert need["total"] == pytest.approx(s.trials_per_level() * s.iterations * levels)


def test_a_late_rewound_level_trains_only_steps_k_to_the_end():
    """Rewound to k = 500, every level after the originals trains 500 of its 1000 steps."""
    s = mnist.Settings(**TINY, rewind_step=500)
    levels = len(mnist.plan(s))
    per_level = s.trials_per_level()
    assert cost.seed_steps([s])["total"] == pytest.approx(per_level * (1000 + 500 * (levels - 1)))


def test_the_originals_shared_by_settings_of_another_k_count_once():
    base, late = mnist.Settings(**TINY), mnist.Settings(**TINY, rewind_step=500)
    both = cost.seed_steps([base, late])["total"]
    assert both == pytest.approx(cost.seed_steps([base])["total"] + cost.seed_steps([late])["total"]
                                 - base.trials_per_level() * base.iterations)


def test_a_level_stopped_at_convergence_is_timed_over_the_steps_its_trials_trained(tmp_path):
    """Two LeNets stopped at 1,000 and 3,000 of 50,000 steps in 4 s: 1 ms a seed-step, not 0.04."""
    s = mnist.Settings(mode="oneshot", levels=(100,), seeds=(0, 1), reinit=0, shuffle=0, stop_at_convergence=True)
    lt = s.lottery()
    path = store.open_run(tmp_path, lt.hashed(), prefix="oneshot", extra=lt.unhashed())
    rows = [{"role": "ticket", "seed": i, "replicate": 0, "stop_step": step} for i, step in enumerate((1000, 3000))]
    store.save_level(path, "p100", {"curves/stop_step": np.asarray([1000, 3000])},
                     {"seconds": 4.0, "device": "cpu", "roles": {"ticket": {"trials": 2}}, "trials": rows})
    assert cost.measured(tmp_path) == {"cpu": [pytest.approx(4.0 / 4000)]}
