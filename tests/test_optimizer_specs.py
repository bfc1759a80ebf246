"""Optimiser and learning-rate-schedule specs (lth_jax.optimizers): small frozen values that build
their optax transformation, hash into a run's directory name and name themselves in tables."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax import optimizers
from lth_jax.optimizers import SGD, Adam, AdamW, Constant, Cosine, StepDecay, Warmup


def rates(sched, steps):
    return [float(sched(jnp.int32(s))) for s in steps]


def draw(seed=0):
    rng = np.random.default_rng(seed)
    return {"kernel": rng.standard_normal((3, 4)).astype(np.float32), "bias": rng.standard_normal(4).astype(np.float32)}


def run(opt, steps=4, params=None):
    """The updates ``opt`` gives a small params tree for ``steps`` random gradients, applying each."""
    params = draw(0) if params is None else params
    state = opt.init(params)
    out = []
    for t in range(steps):
        updates, state = opt.update(draw(t + 1), state, params)
        params = optax.apply_updates(params, updates)
        out.append(jnp.concatenate([updates["kernel"].ravel(), updates["bias"]]))
    return np.asarray(out)


def one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# --- schedules -------------------------------------------------------------------------------

def test_step_decay_divides_the_rate_by_10_at_each_milestone():
    sched = StepDecay(0.1, [100, 200]).make()  # a list is taken and kept as a tuple
    got = rates(sched, [0, 99, 100, 199, 200, 10**6])
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
    assert StepDecay(0.1, [100, 200]) == StepDecay(0.1, (100, 200)) and StepDecay(0.1, [100]).milestones == (100,)
    np.testing.assert_allclose(rates(StepDecay(1.0, (5,), gamma=0.5).make(), [4, 5]), [1.0, 0.5])


@pytest.mark.parametrize("milestones, gamma, match", [
    ((200, 100), 0.1, "strictly increasing positive ints"),
    ((100, 100), 0.1, "strictly increasing positive ints"),
    ((0, 100), 0.1, "strictly increasing positive ints"),
    ((1.5,), 0.1, "strictly increasing positive ints"),
    (100, 0.1, "strictly increasing positive ints"),
    ((100,), 0.0, r"gamma must be in \(0, 1\]"),
    ((100,), 1.5, r"gamma must be in \(0, 1\]"),
])
def test_step_decay_refuses_unordered_milestones_and_gammas_outside_0_1(milestones, gamma, match):
    one_line_error(lambda: StepDecay(0.1, milestones, gamma), match)


def test_a_warm_up_rises_linearly_reaches_the_peak_at_its_last_step_and_hands_over_to_cosine():
    cosine = Cosine(0.1, 100, alpha=0.01)
    sched = Warmup(10, cosine, start=0.1).make()
    np.testing.assert_allclose(rates(sched, [0, 5, 9]), [0.01, 0.055, 0.091], rtol=1e-6)
    assert float(sched(jnp.int32(10))) == pytest.approx(0.1, rel=1e-7)  # the peak, at the ramp's end
    after = [1, 50, 100, 500]
    np.testing.assert_array_equal(rates(sched, [10 + k for k in after]), rates(cosine.make(), after))
    assert rates(Warmup(4, Constant(0.2)).make(), [0, 2, 4, 99]) == pytest.approx([0.0, 0.1, 0.2, 0.2])


def test_constant_and_cosine_are_optax_schedules():
    assert rates(Constant(0.3).make(), [0, 10**6]) == pytest.approx([0.3, 0.3])
    steps = [0, 25, 100, 200]
    np.testing.assert_array_equal(rates(Cosine(0.1, 100, alpha=0.1).make(), steps),
                                  rates(optax.cosine_decay_schedule(0.1, 100, 0.1), steps))


@pytest.mark.parametrize("build, match", [
    (lambda: Constant(0), "must be positive"),
    (lambda: Constant(float("nan")), "must be a finite number"),
    (lambda: Constant("0.1"), "must be a finite number"),
    (lambda: Cosine(0.1, 0), "steps must be positive"),
    (lambda: Cosine(0.1, 10.0), "steps must be an int"),
    (lambda: Cosine(0.1, 10, alpha=2), r"alpha must be in \[0, 1\]"),
    (lambda: Warmup(0, Constant(0.1)), "steps must be positive"),
    (lambda: Warmup(10, 0.1), "then must be a schedule spec"),
    (lambda: Warmup(10, SGD()), "then must be a schedule spec"),
    (lambda: Warmup(10, Constant(0.1), start=2), r"start must be in \[0, 1\]"),
    (lambda: SGD(lr=0), "lr must be positive"),
    (lambda: SGD(lr=float("inf")), "must be a finite number"),
    (lambda: SGD(lr="fast"), "lr must be a positive number or a schedule spec"),
    (lambda: SGD(lr=optax.constant_schedule(0.1)), "lr must be a positive number or a schedule spec"),
    (lambda: SGD(momentum=-0.1), r"momentum must be in \[0, 1\)"),
    (lambda: SGD(momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda: SGD(weight_decay=-1e-4), "weight_decay must be >= 0"),
    (lambda: Adam(b1=1.0), r"b1 must be in \[0, 1\)"),
    (lambda: Adam(eps=0), "eps must be positive"),
    (lambda: AdamW(weight_decay=-1), "weight_decay must be >= 0"),
])
def test_specs_refuse_bad_values_in_one_line(build, match):
    one_line_error(build, match)


# --- optimisers ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, name, lr", [
    (SGD(lr=0.05), "sgd", 0.05),
    (SGD(0.05, momentum=0.9), "momentum", 0.05),
    (Adam(0.001), "adam", 0.001),
])
def test_sgd_momentum_and_adam_specs_equal_the_named_optimisers_bit_for_bit(spec, name, lr):
    np.testing.assert_array_equal(run(spec.make()), run(optimizers.make(name, lr)))


def test_nesterov_needs_momentum():
    one_line_error(lambda: SGD(0.1, nesterov=True), "nesterov needs momentum > 0")
    g = draw(1)
    params = draw(0)
    opt = SGD(0.1, momentum=0.9, nesterov=True).make()
    updates, _ = opt.update(g, opt.init(params), params)
    # Nesterov's first step looks ahead along the fresh trace: -lr * (g + 0.9 * g)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 1.9 * g["kernel"], rtol=1e-6)


def test_weight_decay_is_coupled_in_sgd_and_decoupled_in_adamw():
    lr, wd, mom, eps = 0.1, 0.01, 0.9, 1e-8
    w0 = draw(0)["kernel"].astype(np.float64)
    g1, g2 = (draw(t)["kernel"].astype(np.float64) for t in (1, 2))

    # SGD: wd * w joins the gradient, and so the momentum trace.
    t1 = g1 + wd * w0
    w1 = w0 - lr * t1
    t2 = mom * t1 + g2 + wd * w1
    got = run(SGD(lr, momentum=mom, weight_decay=wd).make(), steps=2)
    np.testing.assert_allclose(got[:, :12], [-lr * t1.ravel(), -lr * t2.ravel()], rtol=1e-5)

    # AdamW: the decay bypasses Adam's normalisation; Adam's bias-corrected first step is g / (|g| + eps).
    got = run(AdamW(lr, eps=eps, weight_decay=wd).make(), steps=1)
    np.testing.assert_allclose(got[0, :12], (-lr * (g1 / (np.abs(g1) + eps) + wd * w0)).ravel(), rtol=1e-5)


def test_a_schedule_spec_gives_the_rate_at_each_step():
    got = run(SGD(StepDecay(0.1, (2,))).make(), steps=3)
    grads = np.asarray([np.concatenate([draw(t)["kernel"].ravel(), draw(t)["bias"]]) for t in (1, 2, 3)])
    np.testing.assert_allclose(got, -np.asarray([[0.1], [0.1], [0.01]]) * grads, rtol=1e-6)


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_named_optimisers_take_a_schedule_as_their_rate(name):
    np.testing.assert_allclose(run(optimizers.make(name, Constant(0.01).make()), steps=2),
                               run(optimizers.make(name, 0.01), steps=2), rtol=1e-6)


# --- hashing and names -----------------------------------------------------------------------

VARIANTS = [  # a spec, and another value for each of its fields
    (Constant(0.1), {"value": 0.2}),
    (StepDecay(0.1, (100, 200)), {"value": 0.2, "milestones": (100, 300), "gamma": 0.5}),
    (Cosine(0.1, 100), {"value": 0.2, "steps": 200, "alpha": 0.1}),
    (Warmup(10, Cosine(0.1, 100)), {"steps": 20, "then": Constant(0.1), "start": 0.1}),
    (SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
     {"lr": Constant(0.1), "momentum": 0.5, "nesterov": False, "weight_decay": 0.0}),
    (Adam(1e-3), {"lr": 2e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-7}),
    (AdamW(1e-3), {"lr": Warmup(5, Constant(1e-3)), "b1": 0.8, "b2": 0.99, "eps": 1e-7, "weight_decay": 1e-2}),
]


def test_specs_are_hashable_their_hashed_is_json_able_and_differs_when_any_field_differs():
    seen = {}
    for base, others in VARIANTS:
        assert set(others) == {f.name for f in dataclasses.fields(base)}  # every field is varied
        for spec in [base] + [dataclasses.replace(base, **{k: v}) for k, v in others.items()]:
            hashed = spec.hashed()
            text = json.dumps(hashed, sort_keys=True)
            assert json.loads(text) == hashed  # plain str/int/float/bool/list/dict only
            assert text not in seen, f"{spec} hashes as {seen.get(text)}"
            seen[text] = spec
            assert hash(spec) == hash(dataclasses.replace(spec)) and spec == dataclasses.replace(spec)
            assert ("optimizer" in hashed) == optimizers.is_spec(spec) != optimizers.is_schedule(spec)
    assert len({spec.name for spec in seen.values()}) == len(seen)  # names tell them apart too
    assert len(set(seen.values())) == len(seen)


def test_names_read_like_the_call():
    assert SGD(0.1, momentum=0.9, nesterov=True).name == "sgd(lr=0.1, momentum=0.9, nesterov)"
    warmed = SGD(Warmup(500, StepDecay(0.1, (32000, 48000))))
    assert warmed.name == "sgd(lr=warmup(500, step(0.1, x0.1 at 32000,48000)))"
    assert AdamW(3e-4).name == "adamw(lr=0.0003, wd=0.0001)"


def test_is_spec_tells_optimisers_from_schedules_names_and_transformations():
    assert optimizers.is_spec(Adam()) and optimizers.is_schedule(Constant(0.1))
    assert not any(optimizers.is_spec(x) for x in (Constant(0.1), "sgd", optax.sgd(0.1), SGD, 0.1))
    assert not any(optimizers.is_schedule(x) for x in (SGD(), optax.constant_schedule(0.1), Constant, 0.1))


# --- resolve ---------------------------------------------------------------------------------

def test_resolve_keeps_the_old_hash_fields_of_named_optimisers():
    opt, fields = optimizers.resolve("sgd", 0.05)
    assert json.dumps(fields) == '{"optimizer": "sgd", "lr": 0.05}'
    np.testing.assert_array_equal(run(opt), run(optimizers.make("sgd", 0.05)))
    sched = StepDecay(0.1, (2,))
    opt, fields = optimizers.resolve("momentum", sched)
    assert fields == {"optimizer": "momentum", "lr": sched.hashed()}
    np.testing.assert_array_equal(run(opt), run(optimizers.make("momentum", sched.make())))
    one_line_error(lambda: optimizers.resolve("rmsprop", 0.1), "unknown optimizer 'rmsprop'")
    one_line_error(lambda: optimizers.resolve("sgd"), "needs lr")


def test_resolve_takes_a_spec_with_its_own_rate():
    spec = SGD(0.05, momentum=0.9, weight_decay=1e-4)
    opt, fields = optimizers.resolve(spec)
    assert fields == {"optimizer": spec.hashed()}
    np.testing.assert_array_equal(run(opt), run(spec.make()))
    one_line_error(lambda: optimizers.resolve(spec, 0.1), "lr belongs to the optimiser spec")


def test_a_bare_optax_transformation_without_optimizer_name_is_refused_in_one_line():
    lars = optax.lars(0.1)
    one_line_error(lambda: optimizers.resolve(lars), "optimizer_name=")
    opt, fields = optimizers.resolve(lars, optimizer_name="lars")
    assert opt is lars and fields == {"optimizer": {"name": "lars"}}
    one_line_error(lambda: optimizers.resolve(42, 0.1), "a name .*, an optimiser spec .* or an optax")


# --- memory ----------------------------------------------------------------------------------

def test_state_floats_counts_the_moments_not_the_step_count():
    shapes = {"kernel": (3, 4), "bias": (4,)}  # 16 params
    counts = {name: optimizers.state_floats(optimizers.make(name, 0.1), shapes) for name in optimizers.NAMES}
    assert counts == {"sgd": 0, "momentum": 16, "adam": 32, "adam_tf1": 32}
    assert optimizers.state_floats(SGD(StepDecay(0.1, (5,)), momentum=0.9, weight_decay=1e-4).make(), shapes) == 16
    assert optimizers.state_floats(AdamW().make(), draw(0)) == 32  # arrays work as well as shapes
