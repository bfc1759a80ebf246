"""Result storage: every level is kept exactly, written atomically, found again by its settings."""

import json

import numpy as np
import pytest

from lth_jax import store


def test_same_settings_give_the_same_directory_whatever_the_spelling():
    a = {"hidden": (300, 100), "std": 0.1, "seeds": [0, 1]}
    b = {"seeds": (0, 1), "std": 0.1, "hidden": [300, 100]}
    assert store.run_dir("root", a, "oneshot") == store.run_dir("root", b, "oneshot")
    assert store.run_dir("root", a) != store.run_dir("root", {**a, "std": 0.2})


def test_a_level_round_trips_arrays_and_metrics_exactly(tmp_path):
    params = {"Dense_0": {"kernel": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32),
                          "bias": np.zeros(4, np.float32)}}
    masks = {"Dense_0": {"kernel": np.array([[True, False, True, True]] * 3), "bias": np.ones(4, bool)}}
    arrays = {**store.flatten(params, "trained"), **store.flatten(masks, "masks"), "curves/accuracy": np.ones((2, 5))}
    store.save_level(tmp_path, "r00", arrays, {"order": 0, "accuracy": float("nan"), "n": np.int64(3)})
    rec = store.load_level(tmp_path, "r00")
    stored = store.subtree(rec.arrays, "trained")
    np.testing.assert_array_equal(stored["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
    assert store.subtree(rec.arrays, "masks")["Dense_0"]["kernel"].dtype == bool
    assert rec.metrics["accuracy"] is None  # NaN is stored as null, JSON has no NaN
    assert rec.metrics["n"] == 3 and rec.metrics["level"] == "r00"


def test_levels_are_listed_in_their_recorded_order_and_only_when_complete(tmp_path):
    for name, order in (("p5", -5000), ("p100", -100000), ("p25", -25000)):
        store.save_level(tmp_path, name, {"x": np.zeros(1)}, {"order": order})
    store.write_npz(tmp_path / "p1.npz", {"x": np.zeros(1)})  # arrays written, metrics not yet: unfinished
    assert store.levels(tmp_path) == ["p100", "p25", "p5"]
    assert not store.done(tmp_path, "p1")
    with pytest.raises(FileNotFoundError):
        store.load_level(tmp_path, "p1")


def test_a_failed_write_leaves_the_old_file_and_no_partial_or_temporary_file(tmp_path):
    target = tmp_path / "r00.json"
    store.write_json(target, {"old": 1})

    def dies_half_way(f):
        f.write(b'{"new": ')
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.atomic_write(target, dies_half_way)
    assert json.loads(target.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r00.json"]


def test_a_failed_array_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial zip")
        raise MemoryError

    monkeypatch.setattr(np, "savez_compressed", broken_savez)
    with pytest.raises(MemoryError):
        store.save_level(tmp_path, "p50", {"x": np.zeros(3)}, {"order": 1})
    assert list(tmp_path.iterdir()) == []
    assert not store.done(tmp_path, "p50")


def test_object_arrays_are_refused_and_pickles_are_not_read(tmp_path):
    with pytest.raises(TypeError):
        store.write_npz(tmp_path / "bad.npz", {"x": np.array([{"a": 1}], dtype=object)})
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object))  # written by someone else
    with pytest.raises(ValueError):
        store.read_npz(tmp_path / "pickled.npz")


def test_open_run_records_settings_and_find_runs_selects_by_them(tmp_path):
    a = store.open_run(tmp_path, {"mode": "oneshot", "std": 0.1}, "oneshot", extra={"levels": [100, 50]})
    store.open_run(tmp_path, {"mode": "iterative", "std": 0.1}, "iterative")
    assert store.load_settings(a)["extra"]["levels"] == [100, 50]
    assert store.find_runs(tmp_path, mode="oneshot") == [a]
    assert len(store.find_runs(tmp_path, std=0.1)) == 2
