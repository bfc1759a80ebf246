"""Presets and groups of ``python -m experiments.studies`` (section 6, Figures 11-15).

Every group is one :class:`lth_jax.reproduction.mnist.Settings` (five winning tickets, no controls: the
figures show tickets only). Decisions (see the report):

- Sizes (Figures 13-14): "networks whose sizes were multiples of the original network size",
  legend "300-100 means hidden layers of 300 and 100 units": k x (300-100) for k = 1..5. The
  text's one mention of "LeNet-600-300" is read as 600-200 (``--sizes=600-300`` runs it
  anyway). All at std 0.05 (the captions).
- Rates (Figure 15): 10%..70% of each hidden layer's remaining weights a round (output layer at
  half the rate). Each chain runs until the first level under 5.5% of all weights (the paper's
  "about 5%", its 5.50% level); the trainings that extract that ticket are its round number
  (:func:`lth_jax.reproduction.mnist.trainings_to`): 20% -> 14 and 10% -> 28, the two numbers the paper states.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, NamedTuple

from lth_jax.reproduction import mnist
from lth_jax.reproduction.mnist import Settings

STUDIES: tuple[str, ...] = ("init_std", "sizes", "rates")
STDS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
SIZES: tuple[tuple[int, int], ...] = tuple((300 * k, 100 * k) for k in range(1, 6))
RATES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SIZES_STD = 0.05           # Figures 13-14's captions
ABOUT_5_PERCENT = 5.5      # Figure 15's chains stop at the first level under this percent of all weights

# Which paper figure each (study, mode) draws.
FIGURES: dict[tuple[str, str], tuple[int, ...]] = {
    ("init_std", "oneshot"): (11, 12), ("init_std", "iterative"): (11, 12),
    ("sizes", "oneshot"): (13,), ("sizes", "iterative"): (14,), ("rates", "iterative"): (15,),
}
# The paper's variants: one-shot for the stds (iterative behind --mode), both for sizes.
PAPER_MODES: dict[str, tuple[str, ...]] = {"init_std": ("oneshot",), "sizes": ("oneshot", "iterative"),
                                           "rates": ("iterative",)}

_PAPER_LEVELS = (100, 90, 75, 55, 40, 35, 25, 15, 10, 7.5, 5, 3.5, 2)

# Each preset: training and analysis settings shared by every group, plus the study axes.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's settings (sections 3.1, 4.1, 6; footnote 5): five tickets a group, 50,000 iterations.
    "paper": {"iterations": 50_000, "eval_every": 100, "seeds": 5, "average_over": 1000, "stable_for": 1000,
              "levels": _PAPER_LEVELS, "min_remaining": 1.0, "stds": STDS, "sizes": SIZES, "rates": RATES,
              "rates_iterations": 50_000, "base_hidden": (300, 100)},
    # What fits a few minutes of 2 shared CPU cores per study: 2 tickets a group, 1000 iterations
    # (500 for the rate chains), footnote 5's windows scaled to 300 iterations (as experiments.mnist's
    # smoke preset), four one-shot levels, iterative sizes down to ~41%, three rates, two sizes.
    "cpu": {"iterations": 1000, "eval_every": 100, "seeds": 2, "average_over": 300, "stable_for": 300,
            "levels": (100, 50, 20, 8), "min_remaining": 45.0, "stds": STDS, "sizes": SIZES[:2],
            "rates": (0.2, 0.5, 0.7), "rates_iterations": 500, "base_hidden": (300, 100)},
    # A pipeline check in seconds: narrow networks (multiples of 30-10), 200 iterations.
    "smoke": {"iterations": 200, "eval_every": 50, "seeds": 2, "average_over": 100, "stable_for": 100,
              "levels": (100, 50, 20), "min_remaining": 45.0, "stds": (0.1, 0.8), "sizes": ((30, 10), (60, 20)),
              "rates": (0.2, 0.7), "rates_iterations": 200, "base_hidden": (30, 10)},
}




@dataclasses.dataclass(frozen=True)
class Axes:
    """What a study's command line sets (the flags of ``experiments.studies`` are its fields;
    a preset above gives every value a flag leaves unset)."""

    iterations: int = field(default=50_000, metadata={"help": "Training iterations per network (the paper: 50,000).",
                                                       "min": 1})
    rates_iterations: int = field(default=50_000, metadata={"help": "Iterations of the rates study.", "min": 1})
    eval_every: int = field(default=100, metadata={"help": "Test accuracy every this many iterations.", "min": 1})
    seeds: int = field(default=5, metadata={"help": "Winning tickets per group (the paper: 5).", "min": 1})
    first_seed: int = field(default=0, metadata={"help": "First seed.", "min": 0})
    average_over: int = field(default=1000, metadata={"help": "Footnote 5: moving-average window.", "min": 1})
    stable_for: int = field(default=1000, metadata={"help": "Footnote 5: iterations the average stays put.", "min": 1})
    levels: tuple[float, ...] = field(default=_PAPER_LEVELS, metadata={
        "help": "One-shot: percents of each hidden layer to keep.", "above": 0, "max": 100})
    min_remaining: float = field(default=1.0, metadata={
        "help": "Iterative stds/sizes: stop after the first level under this percent.", "above": 0, "below": 100})
    stds: tuple[float, ...] = field(default=STDS, metadata={"help": "init_std: standard deviations.", "above": 0})
    sizes: tuple[tuple[int, ...], ...] = field(default=SIZES, metadata={
        "help": "sizes: hidden widths as A-B (300-100,600-200,...)."})
    rates: tuple[float, ...] = field(default=RATES, metadata={"help": "rates: pruning rates per round.", "above": 0,
                                                              "below": 1})
    base_hidden: tuple[int, ...] = field(default=(300, 100), metadata={
        "help": "Hidden widths of the std and rate studies.", "min": 1})


# ---------------------------------------------------------------- the groups of a study


class Group(NamedTuple):
    """One line of a study's figure: a label and the settings of its winning tickets."""

    label: str
    settings: mnist.Settings


def _common(preset: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = {**preset, **{k: v for k, v in overrides.items() if v is not None}}
    return {"iterations": cfg["iterations"], "eval_every": cfg["eval_every"],
            "seeds": tuple(range(cfg.get("first_seed", 0), cfg.get("first_seed", 0) + cfg["seeds"])),
            "reinit": cfg.get("reinit", 0), "shuffle": cfg.get("shuffle", 0),
            "average_over": cfg["average_over"], "stable_for": cfg["stable_for"], "lr": cfg.get("lr", 0.05),
            "optimizer": cfg.get("optimizer", "sgd"), "batch_size": cfg.get("batch_size", 100)}


def study_groups(study: str, mode: str, preset: str = "paper", **overrides: Any) -> list[Group]:
    """The groups (labelled settings) of ``study`` in ``mode`` under ``preset``; keyword
    overrides replace preset entries (``seeds`` is a count; ``stds``, ``sizes``, ``rates``
    the study axes; any :class:`Settings` field of the common part)."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")
    if mode not in ("oneshot", "iterative"):
        raise ValueError(f"mode must be oneshot or iterative, not {mode!r}")
    if study == "rates" and mode != "iterative":
        raise ValueError("the rates study (Figure 15) is iterative only")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    common = _common(cfg, {})
    if common["iterations"] <= 0 or not cfg["seeds"] or cfg["seeds"] < 1:
        raise ValueError("iterations and seeds must be positive")
    per_mode = {"levels": tuple(cfg["levels"])} if mode == "oneshot" else {"min_remaining": cfg["min_remaining"]}
    base = tuple(cfg["base_hidden"])
    if study == "init_std":
        return [Group(f"std {s:g}", Settings(mode=mode, hidden=base, std=s, **common, **per_mode))
                for s in cfg["stds"]]
    if study == "sizes":
        return [Group("-".join(map(str, h)), Settings(mode=mode, hidden=tuple(h), std=cfg.get("sizes_std", SIZES_STD),
                                                      **common, **per_mode)) for h in cfg["sizes"]]
    common["iterations"] = cfg.get("rates_iterations") or common["iterations"]
    return [Group(f"{round(100 * r):d}% a round",
                  Settings(mode="iterative", hidden=base, std=cfg.get("std", 0.1), rate=r,
                           min_remaining=cfg.get("rates_min_remaining", ABOUT_5_PERCENT), **common))
            for r in cfg["rates"]]
