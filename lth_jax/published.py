"""What the follow-up papers state about LeNet-300-100 on MNIST, each with its source: the
statements the report's "Beyond the paper" section puts beside our runs (issue 9).

Only what could be read in the papers' abstracts is here; a statement whose exact figures we
could not confirm from the text is not (the papers' own LeNet settings differ from ours: they
are listed for the direction of the effect, not for numbers).
"""

from __future__ import annotations

from typing import NamedTuple


class Statement(NamedTuple):
    key: str        # what experiments/beyond.py computes ours for
    source: str     # paper, venue, where in it
    statement: str  # what it states, paraphrased


LMC = "Frankle, Dziugaite, Roy & Carbin 2020, *Linear mode connectivity and the lottery ticket hypothesis* (ICML)"
STABILIZING = "Frankle, Dziugaite, Roy & Carbin 2019, *Stabilizing the lottery ticket hypothesis* (arXiv 1903.01611)"

STATEMENTS: tuple[Statement, ...] = (
    Statement("tickets_stable_at_0", f"{LMC}, abstract",
              "IMP subnetworks reach full accuracy only when they are stable to SGD noise; in small-scale settings "
              "(MNIST) that is already the case at initialization (k = 0)."),
    Statement("dense_stable_early", f"{LMC}, abstract",
              "Standard vision networks become stable to SGD noise early in training: the barrier falls as k grows."),
    Statement("rewinding_not_needed", f"{STABILIZING}, abstract",
              "IMP reliably finds winning tickets on small vision tasks by resetting to the initialisation; late "
              "resetting (k > 0) is what deeper networks need."),
)
