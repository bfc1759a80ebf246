"""The XOR experiment (paper section 2) in the library (lth_jax.reproduction.xor): how success is judged, the
network it trains and its loss, the lines of Figures 1 and 2 as lotteries of the runner, and the
sweep's fast full-batch training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax import criteria, datasets, judges, masks, models, pruning, runner, trainers
from lth_jax.reproduction import paper, xor
from lth_jax.trainers import step as train_step

X, Y = datasets.xor_points()


def footnote2_net(n: float, output_sign: float = 1.0) -> dict:
    """Footnote 2's two-unit solution: first layer [[n, -n], [-n, n]], output weights [1, 1],
    output bias -n/2 (``output_sign=-1`` flips the output: the XNOR network)."""
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return {"Dense_0": {"kernel": f32([[n, -n], [-n, n]]), "bias": f32([0, 0])},
            "Dense_1": {"kernel": f32([[output_sign], [output_sign]]), "bias": f32([-output_sign * n / 2])}}


def logits(params: dict, relu_grad_at_zero: float = 1.0) -> jax.Array:
    """The XOR net's output logit on the four points (the sweep's forward pass)."""
    return models.mlp_logits_trials_last(params, X, relu_grad_at_zero)[:, 0]


def xor_loss(relu_grad_at_zero: float = 0.0, reduction: str = "mean") -> train_step.LossFn:
    return trainers.sigmoid_ce_trials_last(models.xor_net(10, relu_grad_at_zero=relu_grad_at_zero), reduction)


# ---------------------------------------------------------------- DB and ZL on hand-made networks


def test_footnote2_network_with_large_n_finds_the_boundary_and_reaches_zero_loss():
    z = logits(footnote2_net(100.0))
    np.testing.assert_allclose(z, [-50, 50, 50, -50])
    assert criteria.decision_boundary(z, Y)
    assert criteria.zero_loss(z, Y, threshold=0.0)  # hard 0/1 outputs: the loss is exactly 0


def test_footnote2_network_with_small_n_finds_the_boundary_but_not_zero_loss():
    z = logits(footnote2_net(1.0))  # outputs sigmoid(+-0.5): right side, far from hard
    assert criteria.decision_boundary(z, Y)
    assert not criteria.zero_loss(z, Y, threshold=0.0)
    assert not criteria.zero_loss(z, Y, threshold=1e-3)


def test_zero_loss_threshold_asks_every_example_for_a_margin_of_about_log_1_over_t():
    z = logits(footnote2_net(2 * 8.0))  # margin 8 on every point: loss ~ e^-8 = 3.4e-4
    assert criteria.zero_loss(z, Y, threshold=1e-3)
    assert not criteria.zero_loss(z, Y, threshold=1e-4)
    z_one_weak = z.at[0].set(-4.0)  # one example with margin 4 (loss ~ 0.018) spoils ZL
    assert not criteria.zero_loss(z_one_weak, Y, threshold=1e-3)


def test_a_wrong_network_fails_the_boundary_and_zero_loss():
    z = logits(footnote2_net(100.0, output_sign=-1.0))  # XNOR, confidently
    assert not criteria.decision_boundary(z, Y)
    assert not criteria.zero_loss(z, Y, threshold=1e-3)
    three_of_four = jnp.array([-3.0, 3.0, -0.7, -3.0])  # the common local minimum: one point wrong
    assert not criteria.decision_boundary(three_of_four, Y)


def test_an_output_of_exactly_one_half_is_wrong_under_the_strict_rule_and_class_1_when_rounding():
    z = jnp.array([-1.0, 0.0, 1.0, -1.0])  # (0,1) sits exactly on the boundary
    assert not criteria.decision_boundary(z, Y, rule="strict")
    assert criteria.decision_boundary(z, Y, rule="round")
    dead = jnp.zeros(4)  # a network whose units all died outputs 0.5 everywhere
    assert not criteria.decision_boundary(dead, Y, rule="strict")
    assert not criteria.decision_boundary(dead, Y, rule="round")


def test_the_experiments_judge_scores_each_trial_and_counts_per_role():
    """XorSuccess (the sweep's defaults: every example's loss <= 5.62e-4, strict DB) on a stack of
    footnote 2's nets: confident (margin 50), timid (margin 0.5) and XNOR."""
    z = np.stack([logits(footnote2_net(n, sign)) for n, sign in ((100.0, 1.0), (1.0, 1.0), (100.0, -1.0))])
    judge = xor.Settings().judge()
    db, zl = judge.judge(z)
    np.testing.assert_array_equal(db, [True, True, False])
    np.testing.assert_array_equal(zl, [True, False, False])
    trials = [runner.Trial("ticket", 0, 0), runner.Trial("ticket", 1, 0), runner.Trial("reinit", 0, 0)]
    summary = judge.summarize({"logits": z}, trials)
    assert summary["roles"] == {"ticket": {"trials": 2, "db": 2, "zl": 1}, "reinit": {"trials": 1, "db": 0, "zl": 0}}
    assert summary["success_rule"] == {"zero_loss": 5.62e-4, "zero_loss_over": "every", "db_rule": "strict"}
    with pytest.raises(ValueError, match="zero-loss reduction"):
        judges.XorSuccess(over="median")


# ---------------------------------------------------------------- the network and its loss


def test_the_sweeps_forward_pass_is_the_flax_xor_net():
    net = models.xor_net(10, relu_grad_at_zero=1.0)
    params = models.init_params(net, jax.random.key(3), 2)
    params = jax.tree.map(lambda a: a + 0.05, params)  # nonzero biases too
    np.testing.assert_allclose(logits(params), net.apply({"params": params}, X)[:, 0], rtol=1e-6, atol=1e-6)


def test_loss_is_the_sigmoid_cross_entropy_mean_or_sum_over_the_four_points():
    params = models.init_params(models.xor_net(10), jax.random.key(4), 2)
    ref = optax.sigmoid_binary_cross_entropy(logits(params), Y)
    np.testing.assert_allclose(xor_loss(0.0, "mean")(params, (X, Y)), jnp.mean(ref), rtol=1e-6)
    np.testing.assert_allclose(xor_loss(1.0, "sum")(params, (X, Y)), jnp.sum(ref), rtol=1e-6)


def test_relu_derivative_at_zero_decides_whether_a_unit_dead_at_init_gets_a_first_gradient():
    """Zero biases put every unit at exactly 0 on input (0, 0). A unit whose incoming weights are
    both negative is below 0 on every other input: with relu'(0)=0 (jax, tf.nn.relu) it never
    receives a gradient; with relu'(0)=1 (tf.maximum(x, 0)) the (0, 0) example moves its bias."""
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    params = {"Dense_0": {"kernel": f32([[0.1, -0.1], [0.1, -0.2]]), "bias": f32([0, 0])},
              "Dense_1": {"kernel": f32([[0.1], [-0.1]]), "bias": f32([0])}}
    dead_bias = lambda g: jax.grad(xor_loss(g))(params, (X, Y))["Dense_0"]["bias"][1]  # noqa: E731
    assert dead_bias(0.0) == 0.0
    assert dead_bias(1.0) != 0.0
    np.testing.assert_array_equal(models.relu(1.0)(jnp.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])
    assert jax.grad(models.relu(1.0))(0.0) == 1.0 and jax.grad(models.relu(0.5))(0.0) == 0.5
    assert jax.grad(models.relu(0.0))(0.0) == 0.0 and jax.grad(models.relu(1.0))(-1e-30) == 0.0


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_batched_training_gives_the_numbers_of_vmapped_training(opt):
    """full_batch(batched=True), the sweep's fast path (trainers.FullBatch), trains each trial of a
    stack (different widths, inits, masks) exactly as vmapping the one-trial trainer does."""
    net = models.xor_net(10)
    params = jax.vmap(lambda k: models.init_params(net, k, 2))(jax.random.split(jax.random.key(5), 6))
    ones = masks.ones_like(jax.tree.map(lambda a: a[0], params))
    m = jax.vmap(pruning.first_units, in_axes=(None, 0))(ones, jnp.array([10, 8, 6, 4, 2, 3]))
    loss, optimizer = xor_loss(1.0), train_step.make_optimizer(opt, 0.05)
    alone = jax.jit(jax.vmap(train_step.full_batch(loss, optimizer, 60), in_axes=(0, 0, None)))(params, m, (X, Y))
    batched = jax.jit(train_step.full_batch(loss, optimizer, 60, batched=True))(params, m, (X, Y))
    native = jax.jit(train_step.full_batch(loss, optimizer, 60, batched=True, loss_takes_trials=True))(
        params, m, (X, Y))
    every = jax.jit(train_step.full_batch(loss, optimizer, 60, loss_every=20, batched=True))(params, m, (X, Y))
    for other in (batched, native):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), alone, other)
    np.testing.assert_array_equal(every[0]["Dense_0"]["kernel"], batched[0]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(every[1], batched[1][:, ::20])  # the loss before steps 0, 20, 40
    pruned = np.asarray(~m["Dense_0"]["kernel"])
    assert np.all(np.asarray(batched[0]["Dense_0"]["kernel"])[pruned] == 0.0)


def test_the_loss_of_a_stack_with_a_trailing_trial_axis_is_each_trials_loss():
    params = jax.vmap(lambda k: models.init_params(models.xor_net(10), k, 2))(jax.random.split(jax.random.key(6), 3))
    loss = xor_loss(1.0)
    last = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), params)
    np.testing.assert_allclose(jax.jit(loss)(last, (X, Y)), jax.jit(jax.vmap(loss, in_axes=(0, None)))(params, (X, Y)),
                               rtol=1e-6)


# ---------------------------------------------------------------- the plan: Figures 1 and 2 as lotteries


def test_the_plan_prunes_ten_units_two_at_a_time_down_to_the_smallest_ticket():
    s = xor.Settings()
    assert s.rounds() == [8, 6, 4, 2]
    lines = xor.lotteries(s)
    levels = {name: [lv.value for lv in runner.plan(lt)] for name, lt in lines.items()}
    assert levels == {**{f"random/{w}": [w] for w in (10, 8, 6, 4, 2)}, "oneshot/product": [10, 4, 2],
                      **{f"iterative/{h}": [10, 8, 6, 4, 2] for h in ("input", "output", "product")}}
    for name, lt in lines.items():
        assert lt.procedure.seeds == tuple(range(1000))  # every line: the same 1000 trials
        for lv in runner.plan(lt):
            roles = [t.role for t in runner.layout(lt.procedure, lv)]
            # a reinit control for every 4- and 2-unit ticket, none for random nets or wider levels
            with_control = not name.startswith("random/") and lv.value in s.ticket_units
            assert roles == ["ticket"] * 1000 + ["reinit"] * (1000 if with_control else 0), (name, lv.name)
    # Every level whose source is trained can train in the next program: the ten-unit originals
    # (the first level of each Figure 2 line, the same networks as random/10) once, then both
    # one-shot tickets with the first iterative round (levels merged), or one program per level
    # of the plan; 27 trainings per trial either way.
    runs = list(lines.values())
    plans = [runner.plan(lt) for lt in runs]
    for merged, sizes in ((True, [5, 7, 3, 6, 6]), (False, [5, 5, 5, 6, 6])):
        stored, per_level = set(), []
        while todo := runner.next_program(runs, plans, stored, merged):
            per_level.append(sum(len(runner.layout(runs[g].procedure, plans[g][i])) for g, i in todo))
            stored |= set(todo)
        per_level[0] -= 4 * 1000
        assert [n // 1000 for n in per_level] == xor.program_sizes(s, merged) == sizes
    assert xor.trainings(s) == sum(per_level) == 27_000


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    s = xor.Settings(trials=4, iterations=40, widths=(10, 2), heuristics=("product",), chunk=32)
    return s, xor.run(s, tmp_path_factory.mktemp("xor"))


def test_the_ten_unit_originals_are_trained_once_and_shared_by_figure_1_and_every_figure_2_line(tiny_sweep):
    s, paths = tiny_sweep
    assert list(paths) == ["random/10", "random/2", "oneshot/product", "iterative/product"]
    first = {name: next(runner.records(path, arrays=True)) for name, path in paths.items()}
    group = first["random/10"].metrics["group"]
    assert group["trials"] == 4 * s.trials and group["unique_trials"] == 2 * s.trials  # random/2 is the other half
    for name in ("oneshot/product", "iterative/product"):
        np.testing.assert_array_equal(first[name].arrays["logits"], first["random/10"].arrays["logits"])
    outcomes = xor.outcomes(s, paths)
    tickets = [f"{line}/{u}{c}" for line in ("oneshot/product", "iterative/product") for u in (4, 2)
               for c in ("", "/reinit")]
    assert sorted(outcomes) == sorted(["random/10", "random/2", "iterative/product/8", "iterative/product/6", *tickets])
    assert all(z.shape == (s.trials, 4) for z in outcomes.values())
    seen = StepCounter()
    assert xor.run(s, paths["random/10"].parent, progress=seen) == paths
    assert seen.total == 0  # everything stored: a rerun trains nothing


class StepCounter(runner.Progress):
    """Counts the training steps the runner reports."""

    def __init__(self):
        self.total = 0

    def steps(self, n):
        self.total += n


# ---------------------------------------------------------------- the calibration's options (issue 11)


@pytest.mark.parametrize("per_step", [1, 2])
def test_stochastic_steps_walk_each_trials_own_permutation_of_the_examples_every_epoch(per_step):
    """examples_per_step=k: step t of trial i trains on positions k*(t mod 4/k) .. of the permutation
    ``permutation(fold_in(key_i, t // (4/k)), 4)``, the loss a mean over those examples; written out
    here as a plain loop over trials and steps with optax, it gives the trainer's numbers."""
    net = models.xor_net(10)
    params = jax.vmap(lambda k: models.init_params(net, k, 2))(jax.random.split(jax.random.key(7), 3))
    m = jax.vmap(lambda _: masks.ones_like(jax.tree.map(lambda a: a[0], params)))(jnp.arange(3))
    keys = jax.random.split(jax.random.key(8), 3)
    steps = 12
    trainer = trainers.FullBatch("sgd", 0.5, steps, chunk=3, examples_per_step=per_step)
    network = runner.Network(net, (2,), {"test": "stochastic"})
    trained, _ = trainer(network, params, m, keys, (X, Y))
    opt = train_step.make_optimizer("sgd", 0.5)

    def loss(p, idx):
        z = net.apply({"params": p}, X[idx])[:, 0]
        return jnp.mean(jax.nn.softplus(z) - Y[idx] * z)

    @jax.jit  # one program a step instead of one per operation
    def step(p, state, idx):
        u, state = opt.update(jax.grad(loss)(p, idx), state, p)
        return optax.apply_updates(p, u), state

    per_epoch = 4 // per_step
    for i in range(3):
        p = jax.tree.map(lambda a, i=i: a[i], params)
        state = opt.init(p)
        for t in range(steps):
            order = jax.random.permutation(jax.random.fold_in(keys[i], t // per_epoch), 4)
            idx = order[per_step * (t % per_epoch):per_step * (t % per_epoch + 1)]
            p, state = step(p, state, idx)
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6), trained, p)


def test_stochastic_xor_runs_draw_one_example_order_per_trial_shared_by_its_tickets():
    s = xor.Settings(trials=4, examples_per_step=1)
    lines = xor.lotteries(s)
    keys = lines["oneshot/product"].keys
    assert keys.ordered and not xor.lotteries(xor.Settings(trials=4))["oneshot/product"].keys.ordered
    order = jax.random.key_data(keys.batches(jnp.arange(4), 0))
    np.testing.assert_array_equal(order, jax.random.key_data(lines["random/2"].keys.batches(jnp.arange(4), 1)))
    assert len({tuple(r) for r in np.asarray(order)}) == 4  # each trial its own order


def test_options_at_their_defaults_leave_the_stored_runs_identity_unchanged():
    """Runs stored before these options existed keep their hashes (tests/golden holds such runs)."""
    assert xor.Settings().trainer().hashed() == {"optimizer": "adam", "lr": 0.001, "iterations": 10_000,
                                                 "loss": "mean"}
    assert "with_bias" not in rules_of(xor.Settings())["oneshot/product"].hashed("oneshot")
    changed = xor.Settings(adam_eps=1e-7, lr_schedule="cosine", examples_per_step=2, score_bias=True)
    assert set(changed.trainer().hashed()) >= {"eps", "lr_schedule", "examples_per_step"}
    assert rules_of(changed)["oneshot/product"].hashed("oneshot")["with_bias"] is True


def rules_of(s: xor.Settings) -> dict:
    return {name: lt.prune for name, lt in xor.lotteries(s).items()}


def test_counting_the_bias_as_an_input_weight_can_change_which_unit_goes_first():
    """Unit 0 has small incoming weights and a large bias, unit 1 the reverse: the input heuristic
    prunes unit 0 first unless the bias counts (mean |k| 0.1 vs 0.3; with the bias 0.73 vs 0.2)."""
    params = {"Dense_0": {"kernel": np.array([[0.1, 0.3], [0.1, 0.3]], np.float32),
                          "bias": np.array([2.0, 0.0], np.float32)},
              "Dense_1": {"kernel": np.ones((2, 1), np.float32), "bias": np.zeros(1, np.float32)}}
    ones = masks.ones_like(params)
    plain = pruning.unit_scores(params, ones, "input")
    biased = pruning.unit_scores(params, ones, "input", with_bias=True)
    np.testing.assert_allclose(plain, [0.1, 0.3], rtol=1e-6)
    np.testing.assert_allclose(biased, [2.2 / 3, 0.2], rtol=1e-6)
    np.testing.assert_allclose(pruning.unit_scores(params, ones, "product", with_bias=True), [2.2, 0.6], rtol=1e-6)
    kept = lambda **kw: np.asarray(pruning.units(params, ones, 1, "input", **kw)["Dense_0"]["bias"])  # noqa: E731
    assert kept().tolist() == [False, True] and kept(with_bias=True).tolist() == [True, False]


def fig_rows(db: float, zl: float, n: int = 1000) -> list[dict]:
    """Rows of both figures in which every rate of ours is ``db`` / ``zl``."""
    rows = []
    for w, (pdb, pzl) in paper.FIGURE1.items():
        rows.append(xor._row("figure1", f"random {w}", np.arange(n) < db * n / 100, np.arange(n) < zl * n / 100,
                             (pdb, pzl), units=w))
    for label, cells in paper.FIGURE2.items():
        for u, pc in cells.items():
            rows.append(xor._row("figure2", f"{label} {u}", np.arange(n) < db * n / 100, np.arange(n) < zl * n / 100,
                                 pc, units=u, strategy=label))
    return rows


def test_fidelity_scores_the_26_cells_of_figures_1_and_2_by_their_combined_standard_error():
    """Figure 1's ten cells and Figure 2's sixteen ticket cells (its originals' column is Figure 1's
    ten-unit networks again); a cell is within when |ours - paper| <= 2 sqrt(SE_ours^2 + SE_paper^2)."""
    fid = xor.fidelity(fig_rows(90.0, 60.0))
    assert fid["total"] == 26 and len(fid["cells"]) == 26
    for c in fid["cells"]:
        se = np.hypot(xor.binomial_se_pp(c["ours"], 1000), xor.binomial_se_pp(c["paper"], 1000))
        assert c["gap_in_se"] == pytest.approx((c["ours"] - c["paper"]) / se)
        assert c["within"] == (abs(c["ours"] - c["paper"]) <= 2 * se)
    # DB 90 vs paper 92.5 at six units: SE sqrt(.09*.91 + .075*.925)/sqrt(1000) ~ 1.24 points -> 2.0 SE
    six = next(c for c in fid["cells"] if c["units"] == 6 and c["table"] == "figure1" and c["metric"] == "DB")
    assert six["gap_in_se"] == pytest.approx(-2.5 / (100 * np.sqrt((0.9 * 0.1 + 0.925 * 0.075) / 1000)))
    assert fid["within"] == sum(c["within"] for c in fid["cells"])
