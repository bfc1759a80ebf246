"""The XOR experiment (paper section 2): how success is judged, the network it trains, and
the command line from flags to tables, JSON and PNG."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import xor_sweep as xs
from lth_jax import masks, metrics, models, pruning, train

ROOT = Path(__file__).resolve().parents[1]
X, Y = metrics.xor_data()


def footnote2_net(n: float, output_sign: float = 1.0) -> dict:
    """Footnote 2's two-unit solution: first layer [[n, -n], [-n, n]], output weights [1, 1],
    output bias -n/2 (``output_sign=-1`` flips the output: the XNOR network)."""
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return {"Dense_0": {"kernel": f32([[n, -n], [-n, n]]), "bias": f32([0, 0])},
            "Dense_1": {"kernel": f32([[output_sign], [output_sign]]), "bias": f32([-output_sign * n / 2])}}


# ---------------------------------------------------------------- DB and ZL on hand-made networks


def test_footnote2_network_with_large_n_finds_the_boundary_and_reaches_zero_loss():
    z = xs.logits(footnote2_net(100.0), X)
    np.testing.assert_allclose(z, [-50, 50, 50, -50])
    assert metrics.decision_boundary(z, Y)
    assert metrics.zero_loss(z, Y, threshold=0.0)  # hard 0/1 outputs: the loss is exactly 0


def test_footnote2_network_with_small_n_finds_the_boundary_but_not_zero_loss():
    z = xs.logits(footnote2_net(1.0), X)  # outputs sigmoid(+-0.5): right side, far from hard
    assert metrics.decision_boundary(z, Y)
    assert not metrics.zero_loss(z, Y, threshold=0.0)
    assert not metrics.zero_loss(z, Y, threshold=1e-3)


def test_zero_loss_threshold_asks_every_example_for_a_margin_of_about_log_1_over_t():
    z = xs.logits(footnote2_net(2 * 8.0), X)  # margin 8 on every point: loss ~ e^-8 = 3.4e-4
    assert metrics.zero_loss(z, Y, threshold=1e-3)
    assert not metrics.zero_loss(z, Y, threshold=1e-4)
    z_one_weak = z.at[0].set(-4.0)  # one example with margin 4 (loss ~ 0.018) spoils ZL
    assert not metrics.zero_loss(z_one_weak, Y, threshold=1e-3)


def test_a_wrong_network_fails_the_boundary_and_zero_loss():
    z = xs.logits(footnote2_net(100.0, output_sign=-1.0), X)  # XNOR, confidently
    assert not metrics.decision_boundary(z, Y)
    assert not metrics.zero_loss(z, Y, threshold=1e-3)
    three_of_four = jnp.array([-3.0, 3.0, -0.7, -3.0])  # the common local minimum: one point wrong
    assert not metrics.decision_boundary(three_of_four, Y)


def test_an_output_of_exactly_one_half_is_wrong_under_the_strict_rule_and_class_1_when_rounding():
    z = jnp.array([-1.0, 0.0, 1.0, -1.0])  # (0,1) sits exactly on the boundary
    assert not metrics.decision_boundary(z, Y, rule="strict")
    assert metrics.decision_boundary(z, Y, rule="round")
    dead = jnp.zeros(4)  # a network whose units all died outputs 0.5 everywhere
    assert not metrics.decision_boundary(dead, Y, rule="strict")
    assert not metrics.decision_boundary(dead, Y, rule="round")


# ---------------------------------------------------------------- the network and its gradient


def test_hand_written_forward_is_the_flax_xor_net():
    net = models.xor_net(10)
    params = models.init_params(net, jax.random.key(3), 2)
    params = jax.tree.map(lambda a: a + 0.05, params)  # nonzero biases too
    np.testing.assert_allclose(xs.logits(params, X), net.apply({"params": params}, X)[:, 0], rtol=1e-6, atol=1e-6)


def test_loss_is_the_sigmoid_cross_entropy_mean_or_sum_over_the_four_points():
    params = models.init_params(models.xor_net(10), jax.random.key(4), 2)
    ref = optax.sigmoid_binary_cross_entropy(xs.logits(params, X), Y)
    np.testing.assert_allclose(xs.make_loss(0.0, "mean")(params, (X, Y)), jnp.mean(ref), rtol=1e-6)
    np.testing.assert_allclose(xs.make_loss(1.0, "sum")(params, (X, Y)), jnp.sum(ref), rtol=1e-6)


def test_relu_derivative_at_zero_decides_whether_a_unit_dead_at_init_gets_a_first_gradient():
    """Zero biases put every unit at exactly 0 on input (0, 0). A unit whose incoming weights are
    both negative is below 0 on every other input: with relu'(0)=0 (jax, tf.nn.relu) it never
    receives a gradient; with relu'(0)=1 (tf.maximum(x, 0)) the (0, 0) example moves its bias."""
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    params = {"Dense_0": {"kernel": f32([[0.1, -0.1], [0.1, -0.2]]), "bias": f32([0, 0])},
              "Dense_1": {"kernel": f32([[0.1], [-0.1]]), "bias": f32([0])}}
    dead_bias = lambda g: jax.grad(xs.make_loss(g))(params, (X, Y))["Dense_0"]["bias"][1]  # noqa: E731
    assert dead_bias(0.0) == 0.0
    assert dead_bias(1.0) != 0.0
    np.testing.assert_array_equal(xs.relu(1.0)(jnp.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])
    assert jax.grad(xs.relu(1.0))(0.0) == 1.0 and jax.grad(xs.relu(0.5))(0.0) == 0.5
    assert jax.grad(xs.relu(0.0))(0.0) == 0.0 and jax.grad(xs.relu(1.0))(-1e-30) == 0.0


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_batched_training_gives_the_numbers_of_vmapped_training(opt):
    """full_batch(batched=True), the sweep's fast path, trains each trial of a stack (different
    widths, inits, masks) exactly as vmapping the one-trial trainer does."""
    net = models.xor_net(10)
    params = jax.vmap(lambda k: models.init_params(net, k, 2))(jax.random.split(jax.random.key(5), 6))
    ones = masks.ones_like(jax.tree.map(lambda a: a[0], params))
    m = jax.vmap(pruning.first_units, in_axes=(None, 0))(ones, jnp.array([10, 8, 6, 4, 2, 3]))
    loss, optimizer = xs.make_loss(1.0), train.make_optimizer(opt, 0.05)
    alone = jax.jit(jax.vmap(train.full_batch(loss, optimizer, 60), in_axes=(0, 0, None)))(params, m, (X, Y))
    batched = jax.jit(train.full_batch(loss, optimizer, 60, batched=True))(params, m, (X, Y))
    native = jax.jit(train.full_batch(loss, optimizer, 60, batched=True, loss_takes_trials=True))(params, m, (X, Y))
    every = jax.jit(train.full_batch(loss, optimizer, 60, loss_every=20, batched=True))(params, m, (X, Y))
    for other in (batched, native):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), alone, other)
    np.testing.assert_array_equal(every[0]["Dense_0"]["kernel"], batched[0]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(every[1], batched[1][:, ::20])  # the loss before steps 0, 20, 40
    pruned = np.asarray(~m["Dense_0"]["kernel"])
    assert np.all(np.asarray(batched[0]["Dense_0"]["kernel"])[pruned] == 0.0)


def test_the_loss_of_a_stack_with_a_trailing_trial_axis_is_each_trials_loss():
    params = jax.vmap(lambda k: models.init_params(models.xor_net(10), k, 2))(jax.random.split(jax.random.key(6), 3))
    loss = xs.make_loss(1.0)
    last = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), params)
    np.testing.assert_allclose(loss(last, (X, Y)), jax.vmap(loss, in_axes=(0, None))(params, (X, Y)), rtol=1e-6)


def test_the_plan_prunes_ten_units_two_at_a_time_down_to_the_smallest_ticket():
    s = xs.Settings()
    assert xs._rounds(s) == [8, 6, 4, 2]
    # stage 0: five widths + one-shot 4 and 2 with controls; then 3 heuristics a round, doubled by
    # the reinit controls at the ticket sizes 4 and 2
    assert xs.count_stages(s) == [9, 3, 3, 6, 6]


# ---------------------------------------------------------------- the command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "experiments.xor_sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


SMALL = ["--trials=8", "--steps=200", "--widths=6,2", "--heuristics=product", "--progress=false"]


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """The same small sweep run twice from scratch in two folders, and once more in the first."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    runs, results = [], []
    for out in (a, b, a):
        runs.append(run_cli(*SMALL, f"--out_dir={out}"))
        assert runs[-1].returncode == 0, runs[-1].stderr[-2000:]
        results.append(json.loads((out / "xor_sweep.json").read_text()))
    return runs, results, a


def test_cli_writes_both_figures_as_json_rows_and_a_png(small_runs):
    runs, (res, _, _), out = small_runs
    assert (out / "xor_sweep.png").stat().st_size > 10_000
    assert "Figure 1" in runs[0].stdout and "Figure 2" in runs[0].stdout
    rows = res["rows"]
    fig1 = [r for r in rows if r["table"] == "figure1"]
    assert [r["units"] for r in fig1] == [6, 2]
    for r in rows:
        assert {"setting", "trials", "db", "zl", "db_se", "zl_se"} <= r.keys()
        assert r["trials"] == 8
    settings = {r["setting"] for r in rows}
    for u in (4, 2):
        assert f"iterative product: {u}-unit ticket (original and ticket)" in settings
        assert f"one-shot product: {u}-unit ticket (original and ticket)" in settings
        assert f"iterative product: {u}-unit ticket reinitialised | original succeeded" in settings
    assert res["trainings_run_now"] == 8 * sum(xs.count_stages(xs.Settings(widths=(6, 2), heuristics=("product",))))


def test_cli_same_flags_give_the_same_numbers_and_a_rerun_reuses_the_stored_results(small_runs):
    _, (first, fresh, rerun), _ = small_runs
    assert first["rows"] == fresh["rows"]
    assert rerun["rows"] == first["rows"]
    assert rerun["trainings_run_now"] == 0


@pytest.mark.parametrize("flag", ["--trials=0", "--heuristics=input,bogus", "--optimizer=rmsprop",
                                  "--learning_rate=-1", "--widths=12", "--ticket_units=3", "--trials=lots"])
def test_bad_flags_exit_with_one_line_and_no_traceback(flag, tmp_path):
    r = run_cli(flag, f"--out_dir={tmp_path}")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xor_sweep: error:"), r.stderr
    assert not (tmp_path / "xor_sweep.json").exists()
