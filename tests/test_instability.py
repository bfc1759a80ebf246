"""Instability analysis (issue 9, item 4; Frankle et al. 2020, "Linear mode connectivity and the
lottery ticket hypothesis"): the error along the straight line between two trained networks, and
its barrier, max over the path of the error minus the mean of the endpoints' errors.

Trees are hand-made; the classifier is a small Flax MLP on random data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import instability, models
from lth_jax import masks as masks_lib

ALPHAS = instability.grid(31)


def pair():
    """Two nested trees of mixed ranks, masked alike (zeros at the same places)."""
    rng = np.random.default_rng(0)
    mask = {"enc": {"kernel": rng.random((3, 4)) > 0.5}, "head": {"kernel": rng.random((4,)) > 0.5, "bias": True}}
    a = {"enc": {"kernel": rng.standard_normal((3, 4))}, "head": {"kernel": rng.standard_normal(4), "bias": 0.5}}
    b = {"enc": {"kernel": rng.standard_normal((3, 4))}, "head": {"kernel": rng.standard_normal(4), "bias": -2.0}}
    as32 = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float32), t)  # noqa: E731
    return masks_lib.apply(as32(a), mask), masks_lib.apply(as32(b), mask), mask


def test_interpolation_at_alpha_0_and_1_equals_the_endpoints_leaf_for_leaf():
    a, b, mask = pair()
    path = instability.interpolate(a, b, ALPHAS)
    assert jax.tree.structure(path) == jax.tree.structure(a)
    for pa, pb, p in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(path), strict=True):
        assert p.shape == (31, *np.shape(pa)) and p.dtype == jnp.float32
        np.testing.assert_array_equal(p[0], pa)   # bit for bit
        np.testing.assert_array_equal(p[-1], pb)
        np.testing.assert_allclose(p[10], (2 / 3) * np.asarray(pa) + (1 / 3) * np.asarray(pb), rtol=1e-6, atol=1e-7)
    for i in range(31):  # masked at both ends, masked all the way
        assert not np.asarray(path["enc"]["kernel"][i])[~mask["enc"]["kernel"]].any()


def test_the_barrier_of_two_identical_networks_is_0():
    a, _, _ = pair()
    loss = lambda p: jnp.sum(p["enc"]["kernel"] ** 2) + jnp.abs(p["head"]["bias"])  # noqa: E731
    out = jax.jit(instability.error_barrier, static_argnums=0)(loss, a, a, ALPHAS)
    assert out.barrier == 0.0
    np.testing.assert_array_equal(out.errors, np.full(31, out.errors[0]))


def test_a_hand_made_pair_gives_what_the_formula_gives():
    """E(w) = 1 - w^2 from a = 1 to b = -1: E is 0 at both ends and 1 at alpha 1/2, so the barrier
    is 1 - (0 + 0) / 2 = 1; from a = 1 to b = 0.5 the path rises monotonically: E(a) = 0,
    E(b) = 0.75, max 0.75, barrier 0.75 - 0.375."""
    error = lambda p: 1.0 - p["w"] ** 2  # noqa: E731
    out = instability.error_barrier(error, {"w": jnp.float32(1.0)}, {"w": jnp.float32(-1.0)}, ALPHAS)
    w = 1.0 - 2.0 * np.linspace(0, 1, 31)
    np.testing.assert_allclose(out.errors, 1.0 - w ** 2, atol=1e-6)
    np.testing.assert_allclose(out.endpoints, [0.0, 0.0], atol=1e-7)
    assert float(out.barrier) == pytest.approx(1.0, abs=1e-6)
    out = instability.error_barrier(error, {"w": jnp.float32(1.0)}, {"w": jnp.float32(0.5)}, ALPHAS)
    assert float(out.barrier) == pytest.approx(0.75 - 0.375, abs=1e-6)
    out = instability.barrier_of(ALPHAS, jnp.asarray([[0.1, 0.4, 0.3], [0.2, 0.2, 0.2]]))  # straight from errors
    np.testing.assert_allclose(out.barrier, [0.4 - 0.2, 0.0], atol=1e-7)


def test_alphas_must_run_from_0_to_1():
    a, b, _ = pair()
    with pytest.raises(ValueError, match="start at 0 and end at 1"):
        instability.error_barrier(lambda p: 0.0, a, b, jnp.linspace(0.1, 1.0, 5))
    with pytest.raises(ValueError, match="at least"):
        instability.grid(1)


MLP = models.lenet((12, 6))


def networks(n, seed):
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.vmap(lambda k: models.init_params(MLP, k, 784))(keys)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.random((100, 784), np.float32)), jnp.asarray(rng.integers(0, 10, 100).astype(np.int32))


def test_the_batched_path_equals_the_alphas_evaluated_one_by_one(data):
    """Three pairs in one program (chunks of 32 test examples, the last piece 4) against each pair,
    each alpha, one network at a time over the whole test set."""
    x, y = data
    a, b = networks(3, 1), networks(3, 2)
    batched = instability.path_errors(MLP.apply, a, b, ALPHAS, x, y, chunk=32)
    assert batched.errors.shape == (3, 31) and batched.barrier.shape == (3,) and batched.endpoints.shape == (3, 2)
    one = jax.jit(lambda p: jnp.mean(jnp.argmax(MLP.apply({"params": p}, x), axis=-1) != y))
    for i in range(3):
        ai, bi = jax.tree.map(lambda t, i=i: t[i], a), jax.tree.map(lambda t, i=i: t[i], b)
        alone = [float(one(jax.tree.map(lambda u, v, t=t: (1 - t) * u + t * v, ai, bi))) for t in ALPHAS]
        np.testing.assert_array_equal(batched.errors[i], np.asarray(alone, np.float32))
        assert batched.endpoints[i, 0] == one(ai) and batched.endpoints[i, 1] == one(bi)
        assert batched.barrier[i] == pytest.approx(max(alone) - (alone[0] + alone[-1]) / 2, abs=1e-6)
    whole = instability.path_errors(MLP.apply, a, b, ALPHAS, x, y)  # chunking changes nothing
    np.testing.assert_array_equal(whole.errors, batched.errors)


def test_path_errors_take_further_leading_axes(data):
    """Levels x pairs (batch_dims=2) give what each level's pairs give."""
    x, y = data
    a = jax.tree.map(lambda t: t.reshape(2, 2, *t.shape[1:]), networks(4, 3))
    b = jax.tree.map(lambda t: t.reshape(2, 2, *t.shape[1:]), networks(4, 4))
    both = instability.path_errors(MLP.apply, a, b, ALPHAS, x, y, batch_dims=2)
    assert both.errors.shape == (2, 2, 31)
    for level in range(2):
        pick = lambda t, level=level: t[level]  # noqa: E731
        one_level = instability.path_errors(MLP.apply, jax.tree.map(pick, a), jax.tree.map(pick, b), ALPHAS, x, y)
        np.testing.assert_array_equal(both.errors[level], one_level.errors)


def test_evaluating_the_alphas_in_groups_gives_the_same_path(data):
    """alpha_batch=1 (a loop in the program) and 4 (groups of 4, the last of 3) equal all at once."""
    x, y = data
    a, b = networks(2, 5), networks(2, 6)
    at_once = instability.path_errors(MLP.apply, a, b, ALPHAS, x, y)
    for group in (1, 4):
        grouped = instability.path_errors(MLP.apply, a, b, ALPHAS, x, y, alpha_batch=group)
        np.testing.assert_array_equal(grouped.errors, at_once.errors)
        np.testing.assert_array_equal(grouped.barrier, at_once.barrier)
    with pytest.raises(ValueError, match="alpha_batch"):
        instability.error_barrier(lambda p: 0.0, a, b, ALPHAS, alpha_batch=0)
