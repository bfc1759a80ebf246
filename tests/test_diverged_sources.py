"""Issue 8: a level pruned from a training that diverged is recorded as such, shown in the
table, and left out of the means with a count."""

from __future__ import annotations

from conftest import synthetic_mnist

from lth_jax import store
from lth_jax.reproduction import mnist

TINY = dict(hidden=(16, 8), iterations=100, eval_every=50, seeds=(0, 1), reinit=1, shuffle=0,
            average_over=50, stable_for=50, levels=(100, 50))


def _data():
    return synthetic_mnist(256, 128)


def test_tickets_pruned_from_diverged_originals_are_flagged_and_left_out_of_the_means(tmp_path):
    data = _data()
    wild = mnist.Settings(mode="oneshot", std=1e8, **TINY)   # logits overflow float32: every original diverges
    path = mnist.run(wild, data, tmp_path)
    original = store.load_level(path, "p100").metrics
    assert original["roles"]["ticket"]["diverged"] == 2 and "pruned_from_diverged" not in original
    pruned = store.load_level(path, "p50").metrics
    assert pruned["pruned_from_diverged"] == [0, 1]
    assert all(row["pruned_from_diverged"] for row in pruned["trials"])
    for role in ("ticket", "reinit"):
        stats = pruned["roles"][role]
        assert stats["excluded_pruned_from_diverged"] == 2
        assert stats["trials"] == 0 and stats["final_accuracy"]["mean"] is None and stats["final_accuracy"]["n"] == 0
    rows = {(r["level"], r["role"]): r for r in mnist.table(path)}
    assert rows[("p50", "ticket")]["pruned_from_diverged"] == 2
    assert rows[("p100", "ticket")]["pruned_from_diverged"] == 0


def test_healthy_runs_store_no_trace_of_the_rule(tmp_path):
    path = mnist.run(mnist.Settings(mode="oneshot", **TINY), _data(), tmp_path)
    m = store.load_level(path, "p50").metrics
    assert "pruned_from_diverged" not in m and all("pruned_from_diverged" not in r for r in m["trials"])
    assert m["roles"]["ticket"]["trials"] == 2
