"""Issue 8: a stored record that fails verification is named in one line and recomputed, and the
final results equal an uninterrupted run's bit for bit (MNIST levels and init, XOR lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import synthetic_mnist

from lth_jax import runner
from lth_jax.reproduction import mnist, xor
from tests.golden.digest import digest_run

TINY = dict(hidden=(16, 8), iterations=100, eval_every=50, seeds=(0, 1), reinit=1, shuffle=1,
            average_over=50, stable_for=50, levels=(100, 50))


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(256, 128)


class Notes(runner.Progress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


DAMAGE = {
    "truncated npz": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbage json": lambda p: p.write_bytes(b"\x89\xff garbage"),
    "empty npz": lambda p: p.write_bytes(b""),
    "wrong checksum": lambda p: p.write_text(p.read_text().replace('"level_id"', '"level_id" ', 1).replace(
        '"order": ', '"order": 1', 1)),
}


@pytest.mark.parametrize("record", ["p50", "init"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_mnist_record_is_named_and_recomputed_to_identical_results(damage, record, data, tmp_path):
    settings = mnist.Settings(mode="oneshot", **TINY)
    whole = digest_run(mnist.run(settings, data, tmp_path / "whole"))
    path = mnist.run(settings, data, tmp_path / "damaged")
    suffix = ".json" if "json" in damage or "checksum" in damage else ".npz"
    DAMAGE[damage](path / f"{record}{suffix}")
    notes = Notes()
    mnist.run(settings, data, tmp_path / "damaged", progress=notes)
    assert any(record + suffix in line for line in notes.lines), notes.lines
    assert all("\n" not in line for line in notes.lines)
    assert digest_run(path) == whole


def test_a_damaged_xor_line_is_recomputed_to_identical_rates(tmp_path):
    s = xor.Settings(trials=8, iterations=50, widths=(10, 2), heuristics=("product",))
    want = xor.results(s, xor.outcomes(s, xor.run(s, tmp_path / "whole")))["rows"]
    paths = xor.run(s, tmp_path / "damaged")
    DAMAGE["truncated npz"](Path(paths["iterative/product"]) / "r02.npz")
    notes = Notes()
    got = xor.results(s, xor.outcomes(s, xor.run(s, tmp_path / "damaged", notes)))["rows"]
    assert any("r02.npz" in line for line in notes.lines), notes.lines
    same = lambda rows: json.dumps(rows, sort_keys=True)  # noqa: E731  (NaN rates compare equal as text)
    assert same(got) == same(want)
