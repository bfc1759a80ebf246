"""The paper's numbers, once: every figure value and numeric claim of Frankle & Carbin (arXiv v1).

Everything here is data read off the paper (the text in ``../shared/paper/``): the two XOR
tables (Figures 1-2), every numeric or directional claim of sections 1-6 with the words that
state it (:data:`CLAIMS`; ``tests/test_paper.py`` finds each quote in the paper's text and the
value in its quote), the levels the figures of section 5 show and the experimental set-up of
sections 2.1, 3.1 and 4.1. The report, the plots, the XOR tables and the analyses read them
from here; nothing else types a number of the paper. Pure data, no I/O.

Units: percentages are percent (``38.0`` = 38%); accuracy gaps are percentage points of test
accuracy (the paper's "0.15%" = 0.0015 accuracy = ``0.15``); sizes are weights.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# ---------------------------------------------------------------- section 2: XOR (Figures 1-2)

FIGURE1: dict[int, tuple[float, float]] = {  # hidden units -> (DB %, ZL %) of 1000 random networks
    10: (98.5, 92.9), 8: (96.8, 87.5), 6: (92.5, 76.8), 4: (78.3, 55.3), 2: (49.1, 17.6)}
"""Figure 1: % of 1000 random XOR networks that found the decision boundary (DB) / reached zero loss (ZL)."""

FIGURE2: dict[str, dict[int, tuple[float, float]]] = {
    "one-shot product": {10: (99.2, 93.3), 4: (98.0, 90.3), 2: (82.4, 65.3)},
    "iterative input": {10: (98.9, 93.5), 4: (97.9, 92.2), 2: (83.8, 76.5)},
    "iterative output": {10: (99.0, 93.3), 4: (96.9, 85.9), 2: (78.6, 56.1)},
    "iterative product": {10: (98.5, 92.9), 4: (97.6, 90.3), 2: (91.5, 79.4)},
}
"""Figure 2 as printed: strategy -> hidden units -> (DB %, ZL %) over 1000 trials. The 10-unit
column is the original networks; the pruned columns are joint: % of all trials in which both the
original and its ticket succeeded. (The text of 2.2 attributes the "Input Magnitude" row's
98.9 / 93.5 to the product row's originals and gives the product row's conditional two-unit
rates, 92.8% (DB) and 84.9% (ZL, footnote 4): see :data:`CLAIMS`.)"""

FIGURE2_ROWS: dict[str, str] = {"one-shot product": "One-shot Product", "iterative input": "Input Magnitude",
                                "iterative output": "Output Magnitude", "iterative product": "Product"}
"""The row names Figure 2 prints for each strategy label of :data:`FIGURE2`."""


class XorSetup(NamedTuple):
    """Section 2.1 and footnote 3."""

    trials: int = 1000          # "1000 training runs"
    steps: int = 10_000         # "Train for 10,000 iterations on the entire training set"
    hidden: int = 10            # "a network with ten hidden units"
    ticket_units: tuple[int, ...] = (4, 2)  # "pruned them down to both four and two hidden units"
    std: float = 0.1            # footnote 3: N(0, 0.1) resampled beyond two std; biases 0


XOR = XorSetup()

# ---------------------------------------------------------------- sections 3-4: MNIST set-up


class MnistSetup(NamedTuple):
    """Sections 3.1 and 4.1 and footnote 5."""

    inputs: int = 784                       # "784 input units"
    hidden: tuple[int, ...] = (300, 100)    # LeNet-300-100
    classes: int = 10                       # "ten fully-connected output units"
    std: float = 0.1                        # N(0, 0.1), resampled beyond two std; biases 0
    lr: float = 0.05                        # SGD, "a learning rate of 0.05"
    batch_size: int = 100                   # "100-example mini-batches"
    iterations: int = 50_000                # "Train for 50,000 iterations"
    eval_every: int = 100                   # footnote 5: "test accuracy every 100 iterations"
    average_over: int = 1000                # footnote 5: "1000-iteration moving average"
    stable_for: int = 1000                  # footnote 5: "for 1000 consecutive iterations"
    tolerance: float = 0.002                # footnote 5: "changed by less than 0.002"
    tickets: int = 5                        # "the average of five different runs"
    controls: int = 3                       # "three control experiments for each winning ticket"
    rate: float = 0.2                       # 4.1: "Prune 20% of the weights from within each hidden layer"
    output_rate: float = 0.1                # 4.1: "and 10% of the weights in the output layer"
    output_rate_factor: float = 0.5         # 3.1: the output layer "pruned by half of the percentage"
    min_remaining: float = 1.0              # 4.1: "until just under 1% of the original weights remained"


MNIST = MnistSetup()

ONESHOT_LEVELS: tuple[float, ...] = (100, 90, 75, 55, 40, 35, 25, 15, 10, 7.5, 5, 3.5, 2)
"""One-shot levels (percent of each hidden layer kept) of Figures 3 and 7: the text names 90, 75,
55, 40, 35, 25, 15 and 10; the others are read off the figures."""

ACCURACY_GAP = 0.0015
"""Sections 3.2 and 4.2: "within 0.15% of the original network's accuracy" (test accuracy)."""

# ---------------------------------------------------------------- section 5 (Figures 9-10)

SECTION5_RUNS = 10          # "across ten iterative pruning runs"
FIGURE9_LEVELS: tuple[float, ...] = (100.0, 51.2, 16.8, 5.5)    # percent remaining, Figure 9's four panels
FIGURE10_LEVELS: tuple[float, ...] = (80.0, 16.8, 5.5)          # percent remaining, Figure 10's three lines
SECTION5: dict[str, str] = {
    "figure10": "by 5.5% remaining, nearly a third of the units in the second hidden layer are fully disconnected",
    "figure9": "survivors' initial values: first and second hidden layers bimodal (centre hollowed), "
               "the output layer closer to the original normal",
}
"""What section 5 reports about each figure, in words (it gives no numbers): stored with the analysis."""

# ---------------------------------------------------------------- section 6 (Figures 11-15)

FIGURE11_STDS: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8)     # "standard deviations larger than 0.1 (0.2, 0.4, and 0.8)"
FIGURE12_STDS: tuple[float, ...] = (0.025, 0.05, 0.1)       # 0.025 and 0.1 from the text, 0.05 from the figure
SIZES_STD = 0.05            # Figures 13-14: "All networks were initialized with a standard deviation of 0.05"
FIGURE15_RATES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # the text names 10%, 20%, 50% and 70%

# ---------------------------------------------------------------- the claims of the text


class Claim(NamedTuple):
    """One claim of the paper's text that a stored result of ours can answer."""

    key: str
    section: str          # where the text makes it ("3.2", "1, 4.1", "3.2 fn. 5")
    figure: str           # the figure it is about ("-" for none)
    text: str             # what it measures, in our words (the report's *claim* column)
    value: Any            # the paper's value: a number in the unit ``text`` names, or words where it gives none
    source: str           # the experiment of ours that answers it: xor | oneshot | iterative | han | examine |
                          # init_std | sizes_oneshot | sizes_iterative | rates | rates_rule
    quote: str            # the paper's own words (verbatim, whitespace aside)
    percent: float | None = None  # the level (percent of weights remaining) the claim is about, where it names one


# Sentences of the paper that state two claims each.
_FOUR_UNIT_TICKETS = (
    "They found the correct decision boundary and reached zero loss respectively in 99% and 97% of "
    "cases where the ten hidden unit network did so")
_CONTROL_RATIOS = (
    "the average 35% and 25% winning tickets converged 1.91 and 2.28 times as fast as the "
    "corresponding average controls")
_LARGE_STDS = (
    "As expected, convergence times increase and accuracy decreases as the standard deviations "
    "increase")

CLAIMS: tuple[Claim, ...] = (
    # section 2 (XOR)
    Claim("xor_random2_db", "2", "1", "random 2-unit networks: found the decision boundary (%)", 49.1, "xor",
          "learned a correct decision boundary in only 49.1% of trials"),
    Claim("xor_random2_zl", "1, 2", "1", "random 2-unit networks: reached zero loss (%)", 17.6, "xor",
          "Cross-entropy loss reached 0 (meaning the network learned to output a hard 0 or 1) in only 17.6% of trials"),
    Claim("xor_random10_db", "2", "1", "random 10-unit networks: found the decision boundary (%)", 98.5, "xor",
          "learned the decision boundary in 98.5% of trials"),
    Claim("xor_random10_zl", "2", "1", "random 10-unit networks: reached zero loss (%)", 92.9, "xor",
          "reached 0 loss in 92.9% of trials"),
    Claim("xor_oneshot2_db", "2.2", "2", "one-shot product, 2-unit tickets: decision boundary (% of all trials)", 82.4,
          "xor", "The winning tickets with two hidden units found the correct decision boundary 82.4% of the time"),
    Claim("xor_oneshot2_zl", "2.2", "2", "one-shot product, 2-unit tickets: zero loss (% of all trials)", 65.3, "xor",
          "reached zero loss 65.3% of the time"),
    Claim("xor_iter2_zl", "1, 2.2", "2", "iterative product, 2-unit tickets: original and ticket reach zero loss "
          "(% of all trials)", 79.4, "xor", "79.4% of networks started with ten units, reached zero loss, and were "
          "pruned to into two-unit networks that also reached zero loss"),
    Claim("xor_iter2_zl_cond", "2.2", "2", "... of the 10-unit networks that reached zero loss (%, footnote 4)", 84.9,
          "xor", "79.4% of 93.5% is 84.9%"),
    Claim("xor_iter2_db_cond", "2.2", "2", "iterative product, 2-unit tickets: decision boundary, of the 10-unit "
          "networks that found it (%)", 92.8, "xor", "of the 98.9% of ten hidden unit networks that found the correct "
          "decision boundary, 92.8% had a two-unit winning ticket that did the same"),
    Claim("xor_iter4_db_cond", "2.2", "2", "iterative product, 4-unit tickets: decision boundary, of the 10-unit "
          "networks that found it (%)", 99.0, "xor", _FOUR_UNIT_TICKETS),
    Claim("xor_iter4_zl_cond", "2.2", "2", "iterative product, 4-unit tickets: zero loss, of the 10-unit networks "
          "that reached it (%)", 97.0, "xor", _FOUR_UNIT_TICKETS),
    # section 3 (one-shot MNIST)
    Claim("os_25_faster", "1, 3.2", "3", "one-shot: the 25% ticket converges faster than the original (%)", 38.0,
          "oneshot", "The winning ticket that was pruned to 25% of the original size converged on average 38% faster "
          "than the original network", 25),
    Claim("os_range_faster", "3.2", "3", "one-shot: tickets of 75%..25% converge at least this much faster (smallest "
          "speed-up, %)", 25.0, "oneshot", "When pruned to between 75% and 25% of the size of the original network, "
          "the winning tickets converged on average at least 25% faster"),
    Claim("os_range_acc", "3.2", "3", "one-shot: ... with accuracy within this of the original (largest gap, "
          "percentage points)", 0.15, "oneshot", "while accuracy remained on average within 0.15% of the original "
          "network's accuracy"),
    Claim("os_back_conv", "3.2; 4.1", "3, 7", "one-shot: tickets return to the original's convergence time at "
          "(percent remaining)", "10-15 (3.2); 5-10 (4.1)", "oneshot", "When the winning ticket is between 10% and 15% "
          "of the original size of the network, it returns to the performance of the unpruned network"),
    Claim("os_acc_to", "3.2, 4.1", "5", "one-shot: tickets stay within 0.15% of the original's accuracy down to "
          "(percent)", 15.0, "oneshot", "maintans accuracy within 0.15% of the original network when pruned down to "
          "15%, after which accuracy drops off"),
    Claim("os_gain", "3.2 fn. 5", "3", "one-shot tickets: test accuracy gained after convergence (mean, "
          "percentage points)", 0.19, "oneshot", "the one-shot-pruned winning tickets improved their test accuracy by "
          "an average of 0.0019 (standard deviation 0.00085) after convergence"),
    Claim("os_ratio35", "3.2", "4", "one-shot: the 35% ticket converges this many times as fast as its reinit "
          "controls", 1.91, "oneshot", _CONTROL_RATIOS, 35),
    Claim("os_ratio25", "3.2", "4", "one-shot: the 25% ticket converges this many times as fast as its reinit "
          "controls", 2.28, "oneshot", _CONTROL_RATIOS, 25),
    Claim("os_ctrl35_slower", "3.2", "4", "one-shot: the 35% reinit controls converge slower than the original (%)",
          27.0, "oneshot", "the average 35% control trial convergence time converged 27% slower than the average "
          "original network", 35),
    Claim("os_ctrl15_gap", "3.2", "5", "one-shot: reinit controls at 15% fall below the original's accuracy by "
          "(percentage points)", 0.6, "oneshot", "falling precipitously when pruned by 15% (0.6% below the original "
          "network's accuracy)", 15),
    Claim("os_55_faster", "4.1", "7", "one-shot: the 55% ticket converges faster than the original (%)", 44.0,
          "oneshot", "between 55% (44% faster than the original network)", 55),
    Claim("os_40_faster", "4.1", "7", "one-shot: the 40% ticket converges faster than the original (%)", 41.0,
          "oneshot", "as compared to between 55% (44% faster than the original network) and 40% (41% faster "
          "than the", 40),
    # section 4 (iterative MNIST)
    Claim("it_41_faster", "4.1", "7", "iterative: the 41% ticket converges faster than the original (%)", 36.0,
          "iterative", "between 41% (36% faster than the original network)", 41),
    # "91% smaller": the 8.6% level (0.8^11 of each hidden layer)
    Claim("it_9_faster", "1", "7", "iterative: tickets 91% smaller (8.6%) converge faster than the original (%)",
          39.0, "iterative", "winning tickets 91% smaller than the original network converged on average 39% faster",
          8.6),
    Claim("it_8.5_faster", "4.1", "7", "iterative: the 8.5% ticket converges faster than the original (%)", 38.0,
          "iterative", "and 8.5% (38% faster than the original network)", 8.5),
    Claim("it_back_conv", "1, 4.1", "7", "iterative: tickets return to the original's convergence time at (percent)",
          1.8, "iterative", "The average iteratively pruned network returns to the original convergence time when "
          "pruned to 1.8%"),
    Claim("it_acc_back", "4.1", "7", "iterative: tickets are still as accurate as the original down to (percent)",
          2.8, "iterative", "returning to the original network's accuracy at a winning ticket size of 2.8% on "
          "average"),
    Claim("it_trainings", "4.1", "-", "iterative at 20%: trainings to extract a ticket of about 5% (computed from "
          "the exact survivor counts)", 14, "rates_rule", "iteratively pruning a network by 20% at each iteration "
          "until it is about 5% of the original network's size requires training the network 14 times"),
    Claim("it_ticket_drop", "4.2", "8", "iterative tickets fall more than 0.15% below the original's accuracy at "
          "(percent)", 1.5, "iterative", "whereas the average iteratively pruned network drops below this level when "
          "pruned to 1.5%"),
    Claim("it_reinit_drop", "4.2", "8", "iterative reinit controls fall more than 0.15% below at (percent)", 31.0,
          "iterative", "The average control trial's accuracy begins dropping off (more than 0.15% lower than the "
          "original networks accuracy) when the network is pruned to about 31%"),
    Claim("it_shuffle_drop", "4.2", "8", "iterative shuffle controls fall more than 0.15% below at (percent)", 51.2,
          "iterative", "Accuracy begins dropping off earlier, at about 51.2% and more steeply"),
    # section 5
    Claim("ex_dead_hidden2", "5", "10", "second hidden layer: units fully disconnected at 5.5% (%)", "nearly a third",
          "examine", "By the time the network is pruned to 5.50%, nearly a third of the units in the second hidden "
          "layer have been fully disconnected", 5.5),
    Claim("ex_dead_hidden1", "5", "10", "first hidden layer: units fully disconnected at 5.5% (%)", "a small fraction",
          "examine", "Even when the network is pruned to 5.50%, only a small fraction of the hidden units in the first "
          "layer have been eliminated entirely", 5.5),
    Claim("ex_bimodal", "5", "9", "hidden layers' surviving initial values at 51.2%: share within 1 std of 0, "
          "relative to the normal's (1 = no selection)", "bimodal: centre hollowed", "examine",
          "At 51.2%, the remaining weights already show the impact of pruning. The first and second hidden layer's "
          "distributions are bimodal", 51.2),
    # section 6
    Claim("std_fastest", "6.1", "11-12", "initialisation std whose tickets converge fastest", 0.1, "init_std",
          "A standard deviation of 0.1 produces the fastest convergence times"),
    Claim("std_accurate", "6.1", "12", "initialisation std whose tickets reach the highest accuracy", 0.025,
          "init_std", "a standard deviation of 0.025 causes winning tickets to converge more slowly but to "
          "higher-accuracy optima"),
    Claim("std_large_slower", "6.1", "11", "std 0.1 -> 0.2 -> 0.4 -> 0.8: fastest convergence iteration of each",
          "increases with std", "init_std", _LARGE_STDS),
    Claim("std_large_less_acc", "6.1", "11", "std 0.1 -> 0.2 -> 0.4 -> 0.8: best accuracy at convergence of each",
          "decreases with std", "init_std", _LARGE_STDS),
    Claim("size_conv_300", "6.2", "13", "one-shot 300-100: ticket size by convergence (weights)", 140_000,
          "sizes_oneshot", "The LeNet-300-100 architecture appears to reach this point at about 140,000 weights"),
    Claim("size_conv_600", "6.2", "13", "one-shot 600-x: ticket size by convergence (weights)", 200_000,
          "sizes_oneshot", "where the LeNet-600-300 does so at about 200,000 weights"),
    Claim("size_min_conv", "6.2", "13", "one-shot: lowest convergence iteration of each size (smaller to larger "
          "network)", "decreases with size", "sizes_oneshot", "the larger the network, the lower the convergence times "
          "its winning tickets were able to achieve"),
    Claim("size_acc_oneshot", "6.2", "13", "one-shot: ticket size by accuracy (last before the 0.15% drop; weights) "
          "per network size", "about 150,000, nearly uniform", "sizes_oneshot", "Whereas the accuracy dropoff took "
          "place when the networks had about 150,000 weights in the one-shot experiments"),
    Claim("size_acc_iter", "6.2", "14", "iterative: ticket size by accuracy (weights) per network size",
          "tens of thousands", "sizes_iterative", "it occurs when the iteratively-derived winning tickets have just "
          "tens of thousands of weights"),
    Claim("rate_10_trainings", "6.3", "15", "iterative at 10%: trainings to extract a ticket of 5% (computed)", 28,
          "rates_rule", "iteratively pruning by 10% appears to achieve the best convergence times and accuracy but "
          "would require training the network 28 times to extract a winning ticket 5% of the original network's "
          "size"),
    Claim("rate_best", "6.3", "15", "pruning rate per round with the fastest and the most accurate tickets",
          "10% (both)", "rates", "iteratively pruning by 10% appears to achieve the best convergence times and "
          "accuracy"),
    Claim("han_acc_to", "6.4", "16", "smallest percent within 0.15% of the original's accuracy: reset every round "
          "vs Han et al.", "reset lasts slightly longer", "han", "our strategy of resetting weights at each iteration "
          "maintains lower convergence times and higher accuracy for slightly longer"),
)

CLAIM: dict[str, Claim] = {c.key: c for c in CLAIMS}
""":data:`CLAIMS` by key."""

RATE_OF_RULE: dict[str, float] = {"it_trainings": 0.2, "rate_10_trainings": 0.1}
"""The pruning rate per round each ``rates_rule`` claim is about."""

# ---------------------------------------------------------------- figure titles (the report's headings)

FIGURE_TITLES: dict[int, str] = {
    1: "Success rates of 1000 random XOR networks by hidden units",
    2: "XOR success rates of pruning strategies (1000 trials each)",
    3: "Test accuracy while training, one-shot winning tickets",
    4: "Winning tickets vs randomly reinitialised controls while training",
    5: "One-shot: convergence and accuracy vs percent remaining, tickets and reinit controls",
    6: "One-shot: tickets, reinit controls and shuffle controls",
    7: "One-shot vs iterative pruning",
    8: "Iterative pruning with both controls and one-shot",
    9: "Initial values of weights surviving iterative pruning",
    10: "Incoming connections per unit of iterative winning tickets",
    11: "Winning tickets initialised with std >= 0.1",
    12: "Winning tickets initialised with std <= 0.1",
    13: "One-shot winning tickets of networks of several sizes",
    14: "Iterative winning tickets of networks of several sizes",
    15: "Iterative pruning at several rates per round",
    16: "Weight resetting vs Han et al.'s continued training",
}
