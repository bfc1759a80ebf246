"""lth_jax.reproduction.paper holds the paper's numbers as the paper prints them.

Checked against the paper's text (``../shared/paper/``, skipped where it is not there): the two
XOR tables as printed, and every claim's quote verbatim, with the claim's value in its quote.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lth_jax.reproduction import paper

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "lottery-ticket-hypothesis-v1.md"


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def text() -> str:
    if not PAPER.is_file():
        pytest.skip(f"the paper's text is not at {PAPER}")
    return _flat(PAPER.read_text())


def _numbers(values) -> str:
    return " ".join(f"{v:.1f}" for v in values)


def test_figure_1_is_the_printed_table_10_8_6_4_2_units(text):
    assert list(paper.FIGURE1) == [10, 8, 6, 4, 2]
    assert _numbers(v for units in paper.FIGURE1.values() for v in units) in text


def test_figure_2_is_the_printed_table_row_by_row(text):
    for label, row in paper.FIGURE2.items():
        assert list(row) == [10, 4, 2], label
        printed = f"{paper.FIGURE2_ROWS[label]} " + _numbers(v for units in row.values() for v in units)
        assert printed in text, printed


def test_the_text_of_section_2_agrees_with_its_tables():
    # Section 2's sentences and footnote 4 restate Figures 1-2.
    c = paper.CLAIM
    assert (c["xor_random2_db"].value, c["xor_random2_zl"].value) == paper.FIGURE1[2]
    assert (c["xor_random10_db"].value, c["xor_random10_zl"].value) == paper.FIGURE1[10]
    assert (c["xor_oneshot2_db"].value, c["xor_oneshot2_zl"].value) == paper.FIGURE2["one-shot product"][2]
    assert c["xor_iter2_zl"].value == paper.FIGURE2["iterative product"][2][1]
    # footnote 4: "79.4% of 93.5% is 84.9%" (93.5: the ten-unit originals of the input row)
    zl_original = paper.FIGURE2["iterative input"][10][1]
    assert round(100 * c["xor_iter2_zl"].value / zl_original, 1) == c["xor_iter2_zl_cond"].value


def test_every_claim_is_quoted_verbatim_and_its_value_is_in_the_quote(text):
    for c in paper.CLAIMS:
        assert _flat(c.quote) in text, f"{c.key}: quote not in the paper: {c.quote!r}"
        if isinstance(c.value, int | float):
            spellings = {f"{c.value:g}", f"{c.value:,}", f"{c.value / 100:g}"}  # 0.19 points = "0.0019"
            assert any(s in c.quote for s in spellings), f"{c.key}: {c.value} not in {c.quote!r}"


def test_every_level_a_claim_names_is_in_its_quote_or_its_text():
    for c in paper.CLAIMS:
        if c.percent is not None:
            assert f"{c.percent:g}%" in c.quote + c.text, c.key


def test_claims_have_unique_keys_and_known_sources():
    assert len(paper.CLAIM) == len(paper.CLAIMS)
    sources = {"xor", "oneshot", "iterative", "han", "examine", "init_std", "sizes_oneshot", "sizes_iterative",
               "rates", "rates_rule"}
    assert {c.source for c in paper.CLAIMS} <= sources
    assert set(paper.RATE_OF_RULE) == {c.key for c in paper.CLAIMS if c.source == "rates_rule"}
    assert set(paper.FIGURE_TITLES) == set(range(1, 17))


@pytest.mark.parametrize("words", [
    "a learning rate of 0.05", "Train for 50,000 iterations on 100-example mini-batches",
    "standard deviation 0.1", "Train for 10,000 iterations on the entire training set",
    "Prune 20% of the weights from within each hidden layer and 10% of the weights in the output layer",
    "changed by less than 0.002 for 1000 consecutive iterations", "We measured test accuracy every 100 iterations",
    "pruned to 80% (blue), 16.8% (orange), and 5.50% (green)", "(left to rigth) 100%, 51.2%, 16.8%, and 5.50%",
    "All networks were initialized with a standard deviation of 0.05",
])
def test_the_set_up_is_stated_in_these_words(text, words):
    assert words in text


def test_the_set_up_holds_those_numbers():
    m = paper.MNIST
    assert (m.lr, m.iterations, m.batch_size, m.std, m.rate, m.output_rate) == (0.05, 50_000, 100, 0.1, 0.2, 0.1)
    assert (m.average_over, m.stable_for, m.tolerance, m.eval_every) == (1000, 1000, 0.002, 100)
    assert paper.XOR.steps == 10_000 and paper.FIGURE10_LEVELS == (80.0, 16.8, 5.5)
    assert paper.FIGURE9_LEVELS == (100.0, 51.2, 16.8, 5.5) and paper.SIZES_STD == 0.05
