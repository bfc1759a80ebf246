"""Stopping measured trainings at convergence (issue 12): a training whose weights nothing else
uses (a one-shot ticket, every control, a chain's last round) ends once footnote 5's rule has
found its convergence and the stability window has passed; its convergence iteration and the
accuracy there are exactly those of the full-length run, and trainings that are pruned next
always run the full length."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_mnist

from experiments.figures import mnist as mnist_figures
from experiments.figures.tables import print_table
from lth_jax import runner, store
from lth_jax.reproduction import mnist, results

TINY = dict(hidden=(16, 8), iterations=800, eval_every=25, lr=0.2, seeds=(0, 1), reinit=1, shuffle=1, random=1,
            average_over=50, stable_for=50, tolerance=0.01)
FULL = mnist.Settings(mode="oneshot", levels=(100, 50, 20), **TINY)
STOP = FULL.replace(stop_at_convergence=True, stop_every=50)


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(256, 128)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("stop")
    return mnist.run(FULL, data, root), mnist.run(STOP, data, root)


def _trials(path, name):
    return store.load_level(path, name).metrics["trials"]


def test_a_stopped_training_converges_at_the_same_iteration_with_the_same_accuracy_as_the_full_run(runs):
    full, stop = runs
    stopped_early = 0
    for name in ("p50", "p20"):  # every trial of a one-shot ticket level: tickets and all three controls
        a, b = store.load_level(full, name), store.load_level(stop, name)
        steps = b.arrays["curves/stop_step"]
        for i, (x, y) in enumerate(zip(_trials(full, name), _trials(stop, name), strict=True)):
            assert y["convergence_iteration"] == x["convergence_iteration"], (name, i)
            assert y["convergence_accuracy"] == x["convergence_accuracy"], (name, i)
            # it stopped at the first check after its stability window had passed
            assert steps[i] >= x["convergence_iteration"] + STOP.stable_for
            assert steps[i] - STOP.stop_every < x["convergence_iteration"] + STOP.stable_for + STOP.eval_every
            seen = steps[i] // STOP.eval_every
            np.testing.assert_array_equal(b.arrays["curves/accuracy"][i, :seen], a.arrays["curves/accuracy"][i, :seen])
            assert np.isnan(b.arrays["curves/accuracy"][i, seen:]).all()  # the curve ends at the stop
            assert y["final_accuracy"] == pytest.approx(float(a.arrays["curves/accuracy"][i, seen - 1]))
            assert y["stop_step"] == steps[i]
            stopped_early += steps[i] < STOP.iterations
        assert b.metrics["final_accuracy_at"] == "stop"
    assert stopped_early >= 12  # of 16: this test would say nothing if nothing stopped


def test_the_originals_that_every_ticket_is_pruned_from_train_the_full_length_and_their_controls_stop(runs):
    full, stop = runs
    a, b = store.load_level(full, "p100"), store.load_level(stop, "p100")
    n = len(FULL.seeds)
    steps = b.arrays["curves/stop_step"]
    assert (steps[:n] == FULL.iterations).all() and (steps[n:] < FULL.iterations).all()
    for key in a.arrays:  # the very same trainings of the originals
        if key.startswith(("trained/", "masks/")):
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)
        elif key.startswith("curves/") and key != "curves/stop_step":
            np.testing.assert_array_equal(a.arrays[key][:n], b.arrays[key][:n], err_msg=key)


def test_an_iterative_chain_trains_each_ticket_in_full_and_stops_its_controls_and_last_round(data, tmp_path):
    s = mnist.Settings(mode="iterative", min_remaining=60.0, **TINY).replace(stop_at_convergence=True, stop_every=50)
    path = mnist.run(s, data, tmp_path)
    names = [lv.name for lv in mnist.plan(s)]
    n = len(s.seeds)
    for name in names[:-1]:  # each round's tickets are pruned to make the next
        steps = store.load_level(path, name).arrays["curves/stop_step"]
        assert (steps[:n] == s.iterations).all() and (steps[n:] < s.iterations).any(), name
    assert (store.load_level(path, names[-1]).arrays["curves/stop_step"][:n] < s.iterations).any()


def test_where_a_trial_stops_does_not_depend_on_the_trials_trained_beside_it(runs, data, tmp_path):
    """Level by level instead of all levels in one program, and 4 trials a chunk: the same bits."""
    _, stop = runs
    lt = STOP.lottery()
    budget = -(-4 * lt.trainer.trial_bytes(lt.network) // 2**20)
    other = runner.run(lt, data, tmp_path, merge_levels=False, memory_budget_mb=budget)
    for name in ("p100", "p50", "p20"):
        a, b = store.load_level(stop, name), store.load_level(other, name)
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=f"{name}/{key}")


def test_stopping_is_part_of_a_runs_identity_and_reads_back(runs):
    full, stop = runs
    assert full != stop
    assert store.load_settings(stop)["settings"]["stop_rule"] == {"average_over": 50, "stable_for": 50,
                                                                  "tolerance": 0.01}
    assert mnist.load_settings(stop) == STOP and mnist.load_settings(full) == FULL
    late = dataclasses.replace(STOP, rewind_step=100, snapshot_steps=(0, 100))
    # a late-rewound stopping run takes its originals from the run that trains them in full
    assert runner.run_dir(runner.base_lottery(late.lottery()), "r") == \
        runner.run_dir(FULL.replace(snapshot_steps=(0, 100)).lottery(), "r")


@pytest.mark.parametrize("bad, says", [(dict(stop_every=30), "multiple of eval_every"),
                                       (dict(stop_every=0), "at least 1")])
def test_a_check_interval_off_the_evaluation_grid_is_refused(bad, says):
    with pytest.raises(ValueError, match=says):
        STOP.replace(**bad)


def test_the_plotted_mean_curve_of_a_role_ends_where_its_first_training_stopped(runs):
    full, stop = results.Run(runs[0]), results.Run(runs[1])
    level = stop.at(20)
    steps = stop.stop_steps(level, "reinit")
    acc = stop.curves(level, "reinit")
    x = (np.arange(acc.shape[1]) + 1) * STOP.eval_every
    mean = mnist_figures.mean_curve(stop, level, "reinit", acc, x)
    assert np.isfinite(mean[x <= steps.min()]).all() and np.isnan(mean[x > steps.min()]).all()
    assert full.stop_steps(full.at(20), "reinit") is None  # a run trained in full: curves to the end


def test_the_drivers_table_says_the_final_accuracy_is_at_the_stop_and_where_it_stopped(runs, capsys):
    print_table(mnist.table(runs[1]))
    header = capsys.readouterr().out.splitlines()[0]
    assert "final accuracy (at stop)" in header and "stopped at (mean)" in header
    print_table(mnist.table(runs[0]))
    assert "at stop" not in capsys.readouterr().out.splitlines()[0]  # a full-length run: the plain header
