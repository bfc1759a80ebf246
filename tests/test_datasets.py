"""Specifications of the data set value (lth_jax.datasets), on small synthetic images."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import datasets as ds


def images(n=8, h=8, w=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, h, w, c), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return x, y


def toy(**kw):
    train, test = images(8), images(4, seed=1)
    return ds.from_arrays("toy", train, test, **kw)


# ---------------------------------------------------------------- fingerprint and hash


def test_changing_one_pixel_changes_the_fingerprint():
    (x, y), test = images(8), images(4, seed=1)
    x2 = x.copy()
    x2[3, 2, 5, 1] += 1e-3
    a, b, same = (ds.from_arrays("toy", (v, y), test) for v in (x, x2, x.copy()))
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == same.fingerprint()
    assert ds.from_arrays("toy", (x.astype(np.float64), y), (test[0].astype(np.float64), test[1])).fingerprint() \
        != a.fingerprint()  # the dtype counts, not only the values


def test_the_fingerprint_is_computed_once_and_a_loader_called_once(monkeypatch):
    digests, loads = [], []
    real = ds.digest
    monkeypatch.setattr(ds, "digest", lambda splits: digests.append(1) or real(splits))

    def load():
        loads.append(1)
        return images(8), images(4, seed=1)

    d = ds.Dataset("toy", loader=load)
    assert loads == []  # lazy: nothing is loaded before first use
    first = d.fingerprint()
    assert d.fingerprint() == first and d.hashed()["fingerprint"] == first and d.hashed()["fingerprint"] == first
    d.arrays(), d.device_arrays(), d.examples_shape, d.classes
    assert digests == [1] and loads == [1]


def test_a_canonical_data_set_hashes_as_its_name_so_old_run_hashes_stay(monkeypatch):
    monkeypatch.setattr(ds, "digest", lambda splits: pytest.fail("a canonical name needs no fingerprint"))
    canonical = toy(canonical=True)
    assert canonical.hashed() == "toy"
    assert ds.xor().hashed() == "xor"
    assert ds.mnist("/nonexistent").hashed() == "mnist"  # and nothing is loaded to say so


def test_augmentation_and_normalisation_enter_the_hash():
    plain = toy().hashed()
    assert set(plain) == {"name", "fingerprint"}
    crop = toy(augment=ds.RandomCrop(4)).hashed()
    assert crop["augment"] == {"kind": "random_crop", "padding": 4} and crop["fingerprint"] == plain["fingerprint"]
    assert toy(augment=ds.RandomCrop(2)).hashed() != crop
    composed = toy(augment=ds.Compose((ds.RandomCrop(), ds.HorizontalFlip()))).hashed()
    assert composed["augment"] == {"kind": "compose", "steps": [{"kind": "random_crop", "padding": 4},
                                                                {"kind": "horizontal_flip", "p": 0.5}]}
    normed = toy(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)).hashed()
    assert normed["mean"] == [0.5, 0.4, 0.3] and normed["std"] == [0.2, 0.2, 0.2]
    # canonical: the name stays, the fingerprint stays out, the pipeline comes in
    assert toy(canonical=True, augment=ds.Augment("noise", lambda k, x, y: (x, y))).hashed() == \
        {"name": "toy", "augment": {"kind": "function", "name": "noise"}}
    for h in (plain, crop, composed, normed):
        json.dumps(h)


# ---------------------------------------------------------------- augmentations


def test_random_crop_keeps_the_shape_and_is_a_shifted_window_of_the_zero_padded_image():
    x, y = images(8)
    p = 2
    out, out_y = jax.jit(ds.RandomCrop(p).__call__)(jax.random.key(0), jnp.asarray(x), jnp.asarray(y))
    assert out.shape == x.shape and np.array_equal(out_y, y)
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
        assert hits, f"image {i} is no window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # per-example offsets, not one for the batch
    unchanged, _ = ds.RandomCrop(0)(jax.random.key(0), jnp.asarray(x), jnp.asarray(y))
    assert np.array_equal(unchanged, x)


def test_flip_with_p_1_mirrors_every_image_and_p_0_none():
    x, y = images(8)
    key = jax.random.key(3)
    all_, _ = ds.HorizontalFlip(1.0)(key, jnp.asarray(x), jnp.asarray(y))
    none, _ = ds.HorizontalFlip(0.0)(key, jnp.asarray(x), jnp.asarray(y))
    assert np.array_equal(all_, x[:, :, ::-1]) and np.array_equal(none, x)
    half, _ = ds.HorizontalFlip(0.5)(key, jnp.asarray(x), jnp.asarray(y))
    flipped = [np.array_equal(half[i], x[i, :, ::-1]) for i in range(8)]
    assert all(f or np.array_equal(half[i], x[i]) for i, f in enumerate(flipped))


def test_augmentations_refuse_what_they_cannot_do_in_one_line():
    flat = jnp.zeros((4, 12))
    for aug, words in ((ds.RandomCrop(), "RandomCrop needs NHWC"), (ds.HorizontalFlip(), "HorizontalFlip needs")):
        with pytest.raises(ValueError, match=words) as e:
            aug(jax.random.key(0), flat, jnp.zeros(4))
        assert "\n" not in str(e.value)
    bad = [(lambda: ds.Augment("", lambda k, x, y: (x, y)), "non-empty name"),
           (lambda: ds.RandomCrop(-1), "non-negative"), (lambda: ds.HorizontalFlip(1.5), r"\[0, 1\]"),
           (lambda: ds.Compose(()), "at least one"), (lambda: toy(augment=lambda k, x, y: (x, y)), "Augment")]
    for make, words in bad:
        with pytest.raises(ValueError, match=words):
            make()
    shrink = ds.Pipeline(ds.Augment("shrink", lambda k, x, y: (x[:2], y[:2])))
    with pytest.raises(ValueError, match="changed the batch"):
        shrink.train(jax.random.key(0), jnp.zeros((4, 8, 8, 3)), jnp.zeros(4, jnp.int32))


# ---------------------------------------------------------------- the pipeline


def test_the_pipeline_is_traceable_inside_jit_vmap_and_deterministic_for_a_key():
    d = toy(augment=ds.Compose((ds.RandomCrop(2), ds.HorizontalFlip())), mean=(0.5,) * 3, std=(0.25,) * 3)
    pipe = d.pipeline()
    assert pipe == d.pipeline() and hash(pipe) == hash(d.pipeline())  # equal values: one compiled program
    (x, y), _ = d.device_arrays()
    trials = 3
    keys = jax.random.split(jax.random.key(7), trials)
    xs, ys = jnp.stack([x] * trials), jnp.stack([y] * trials)
    step = jax.jit(jax.vmap(pipe.train))
    a, ay = step(keys, xs, ys)
    b, _ = step(keys, xs, ys)
    assert a.shape == xs.shape and np.array_equal(a, b) and np.array_equal(ay, ys)
    assert not np.array_equal(a[0], a[1])  # each trial its own key
    one, _ = pipe.train(keys[1], x, y)  # the same numbers outside vmap and jit
    np.testing.assert_allclose(a[1], one, rtol=1e-6)


def test_normalisation_uses_per_channel_mean_and_std_and_is_applied_in_evaluation_too():
    (x, y), (tx, _) = images(8), images(4, seed=1)
    x = x * np.array([1.0, 2.0, 4.0], np.float32) + np.array([0.0, 1.0, -3.0], np.float32)
    mean, std = ds.channel_stats(x)
    assert len(mean) == len(std) == 3
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, x.reshape(-1, 3).std(0), rtol=1e-5)
    pipe = ds.from_arrays("toy", (x, y), (tx, y[:4]), mean=mean, std=std).pipeline()
    out, _ = pipe.train(jax.random.key(0), jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(out).reshape(-1, 3).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out).reshape(-1, 3).std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(pipe.test(jnp.asarray(tx)), (tx - np.array(mean)) / np.array(std), rtol=1e-5)
    assert toy().pipeline() is None
    with pytest.raises(ValueError, match="both mean and std"):
        toy(mean=(0.5,) * 3)
    with pytest.raises(ValueError, match="2 normalisation channels"):
        toy(mean=(0.5, 0.5), std=(1.0, 1.0)).arrays()


# ---------------------------------------------------------------- the arrays


def test_arrays_shape_and_classes():
    d = toy()
    (x, y), (tx, ty) = d.arrays()
    assert isinstance(x, np.ndarray) and not x.flags.writeable  # a cached fingerprint: the arrays stay put
    assert d.examples_shape == (8, 8, 3) and d.classes == int(max(y.max(), ty.max())) + 1
    assert ds.is_dataset(d) and not ds.is_dataset(d.arrays())
    assert d != toy() and len({d, d}) == 1  # identity equality: hashable inside a frozen Lottery
    x4 = ds.xor()
    (xx, xy), _ = x4.arrays()
    assert xx.shape == (4, 2) and xy.dtype == np.float32 and x4.classes == 2


def test_mismatched_lengths_non_integer_labels_and_wrong_test_shapes_are_refused_in_one_line():
    (x, y), test = images(8), images(4, seed=1)
    cases = [(((x, y[:5]), test), {}, "one label per example"),
             (((x, y.astype(np.float32)), test), {}, "labels must be int"),
             (((x, y), (test[0][:, :4], test[1])), {}, "test examples of shape"),
             (((x, y[:, None]), test), {}, "1-D"),
             (((x.astype(np.uint8), y), test), {}, "floating point"),
             (((x[:0], y[:0]), test), {}, "no examples"),
             (((x, y), test), {"labels": "float"}, "labels must be float")]
    for (train, tst), kw, words in cases:
        with pytest.raises(ValueError, match=words) as e:
            ds.from_arrays("toy", train, tst, **kw).arrays()
        assert "\n" not in str(e.value)
    for kw in ({}, {"train": (x, y)}, {"train": (x, y), "test": test, "loader": lambda: ((x, y), test)}):
        with pytest.raises(ValueError, match="train and test arrays, or a loader") as e:
            ds.Dataset("toy", **kw)
        assert "\n" not in str(e.value)


@pytest.mark.skipif(not os.environ.get("LTH_MNIST_DIR"), reason="needs LTH_MNIST_DIR (the four MNIST .gz files)")
def test_mnist_is_canonical_and_loads_the_idx_files():
    d = ds.mnist()
    assert d.name == "mnist" and d.canonical and d.hashed() == "mnist"
    (x, y), (tx, ty) = d.arrays()
    assert x.shape == (60000, 784) and tx.shape == (10000, 784) and y.dtype == np.int32
    assert d.examples_shape == (784,) and d.classes == 10
