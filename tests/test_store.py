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
    with pytest.raises(store.CorruptRecord, match=r"p1.json: missing beside p1.npz \(half stored"):
        store.load_level(tmp_path, "p1")
    with pytest.raises(store.NotStored):  # a level never started: also a FileNotFoundError
        store.load_level(tmp_path, "p2")
    assert store.problem(tmp_path, "p2") is None and store.problem(tmp_path, "p5") is None


def test_a_failed_write_leaves_the_old_file_and_no_partial_or_temporary_file(tmp_path):
    target = tmp_path / "r00.json"
    store.write_json(target, {"old": 1})

    def dies_half_way(f):
        f.write(b'{"new": ')
        raise OSError("disk full")

    with pytest.raises(store.StoreError, match=f"^cannot write {target}: disk full$"):
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
    with pytest.raises(store.CorruptRecord, match="pickled.npz: holds pickled"):
        store.read_npz(tmp_path / "pickled.npz")


def test_open_run_records_settings_and_find_runs_selects_by_them(tmp_path):
    a = store.open_run(tmp_path, {"mode": "oneshot", "std": 0.1}, "oneshot", extra={"levels": [100, 50]})
    store.open_run(tmp_path, {"mode": "iterative", "std": 0.1}, "iterative")
    assert store.load_settings(a)["extra"]["levels"] == [100, 50]
    assert store.find_runs(tmp_path, mode="oneshot") == [a]
    assert len(store.find_runs(tmp_path, std=0.1)) == 2


def test_the_level_json_vouches_for_both_files_with_sha256_digests(tmp_path):
    arrays = {"masks/Dense_0/kernel": np.ones((2, 3), bool), "curves/loss": np.arange(4.0)}
    store.save_level(tmp_path, "p50", arrays, {"order": 1, "accuracy": 0.5})
    stored = json.loads((tmp_path / "p50.json").read_text())
    assert stored["checksum"] == {"arrays": store.arrays_digest(arrays),
                                  "metrics": store.metrics_digest({"order": 1, "accuracy": 0.5, "level": "p50"})}
    # Readers see the metrics without the checksum: a record loaded, changed and saved again is verified again.
    rec = store.load_level(tmp_path, "p50")
    assert "checksum" not in rec.metrics
    store.save_level(tmp_path, "p50", rec.arrays, {**rec.metrics, "accuracy": 0.75})
    assert store.done(tmp_path, "p50") and store.load_level(tmp_path, "p50").metrics["accuracy"] == 0.75


def test_a_record_without_a_checksum_was_written_by_an_older_version_and_is_not_trusted(tmp_path):
    store.write_npz(tmp_path / "p50.npz", {"x": np.zeros(2)})
    store.write_json(tmp_path / "p50.json", {"order": 1, "level": "p50"})  # how records were stored before
    assert not store.done(tmp_path, "p50") and store.levels(tmp_path) == []
    assert store.problem(tmp_path, "p50") == f"{tmp_path / 'p50.json'}: no checksum (written by an older version " \
                                             "of lth_jax; cannot be verified)"


def test_a_record_copied_under_another_name_is_refused(tmp_path):
    store.save_level(tmp_path, "p50", {"x": np.zeros(2)}, {"order": 1})
    for suffix in (".json", ".npz"):
        (tmp_path / f"p40{suffix}").write_bytes((tmp_path / f"p50{suffix}").read_bytes())
    assert store.problem(tmp_path, "p40") == f"{tmp_path / 'p40.json'}: holds level 'p50', not 'p40'"


def test_a_damaged_settings_file_is_named_by_find_runs_instead_of_dropping_the_run(tmp_path):
    good = store.open_run(tmp_path, {"mode": "oneshot"}, "oneshot")
    bad = store.open_run(tmp_path, {"mode": "iterative"}, "iterative")
    (bad / "settings.json").write_bytes(b'{"hash": "abc", "sett')
    assert store.load_settings(good)["settings"] == {"mode": "oneshot"}
    with pytest.raises(store.CorruptRecord, match=f"^{bad / 'settings.json'}: cut short"):
        store.find_runs(tmp_path, mode="oneshot")
    (bad / "settings.json").write_text("[1, 2]")
    with pytest.raises(store.CorruptRecord, match="not a run's settings"):
        store.load_settings(bad)
    with pytest.raises(store.NotStored, match="is not a stored run"):
        store.load_settings(tmp_path)
