"""Paired controls (issue 12): with ``paired_batches`` every control trains on its ticket's batch
order, so a ticket and its controls differ only in their weights; the tickets are the very same
trainings as without pairing, and the option is part of a run's identity."""

from __future__ import annotations

import jax
import numpy as np
from conftest import synthetic_mnist

from lth_jax import runner, store
from lth_jax.reproduction import mnist

TINY = dict(mode="oneshot", levels=(100, 50), hidden=(16, 8), iterations=100, eval_every=25, lr=0.2, seeds=(0, 1),
            reinit=2, shuffle=1, random=1, average_over=25, stable_for=25)


def test_every_control_draws_its_tickets_batch_key_and_only_then():
    for paired in (True, False):
        lt = mnist.Settings(**TINY, paired_batches=paired).lottery()
        level = runner.plan(lt)[1]
        init = runner.initial_params(lt)
        *_, keys = runner.build_trials(lt, init, runner.ticket_masks(lt, None, init, runner.plan(lt)[0], None), level)
        data = np.asarray(jax.random.key_data(keys))
        ticket_of = {t.seed: i for i, t in enumerate(runner.layout(lt.procedure, level)) if t.role == "ticket"}
        for i, t in enumerate(runner.layout(lt.procedure, level)):
            if t.role != "ticket":
                assert np.array_equal(data[i], data[ticket_of[t.seed]]) == paired, (t, paired)


def test_pairing_changes_the_controls_trainings_and_leaves_the_tickets_as_they_were(tmp_path):
    d = synthetic_mnist(256, 128)
    own = mnist.run(mnist.Settings(**TINY), d, tmp_path)
    paired = mnist.run(mnist.Settings(**TINY, paired_batches=True), d, tmp_path)
    assert own != paired and store.load_settings(paired)["settings"]["paired_batches"] is True
    assert "paired_batches" not in store.load_settings(own)["settings"]  # runs stored before it keep their hash
    a, b = store.load_level(own, "p50"), store.load_level(paired, "p50")
    n = len(TINY["seeds"])
    np.testing.assert_array_equal(a.arrays["trained/Dense_0/kernel"], b.arrays["trained/Dense_0/kernel"])
    np.testing.assert_array_equal(a.arrays["curves/accuracy"][:n], b.arrays["curves/accuracy"][:n])
    assert not np.array_equal(a.arrays["curves/loss"][n:], b.arrays["curves/loss"][n:])
