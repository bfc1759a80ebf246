"""What the follow-up papers state about LeNet-300-100 on MNIST, each with its source: the
statements the report's "Beyond the paper" section puts beside our runs.

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


LTH_ICLR = "Frankle & Carbin 2019, *The lottery ticket hypothesis* (ICLR version, arXiv v5), Figure 2's table"
RESNET = "He, Zhang, Ren & Sun 2016, *Deep residual learning for image recognition* (CVPR), Table 6"

ZOO_WEIGHTS: dict[str, tuple[float, str]] = {
    # model: (weights the source prints, source). The ICLR version calls the 16-32-64 CIFAR
    # ResNet of depth 20 "Resnet-18"; its Conv-6 entry (1.7M) is below what its own architecture
    # column gives (2.26M: six convolutions of 64-64-128-128-256-256 and dense 4096-256-256-10).
    "conv2": (4.3e6, LTH_ICLR),
    "conv4": (2.4e6, LTH_ICLR),
    "conv6": (1.7e6, LTH_ICLR),
    "vgg19": (20.0e6, LTH_ICLR),
    "resnet20": (0.27e6, RESNET),
    "resnet56": (0.85e6, RESNET),
}
