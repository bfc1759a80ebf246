"""The plan of ``python -m experiments.reproduce_paper``: every step the report needs, headline
figures first, each an entry point of its own with the flags that reproduce it at a preset."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from experiments.configs.examine import PRESETS as EXAMINE_PRESETS
from experiments.configs.examine import window
from experiments.configs.mnist import PRESETS as MNIST_PRESETS
from experiments.configs.studies import FIGURES, PAPER_MODES, study_groups
from lth_jax import store
from lth_jax.reproduction import cost, mnist

PRESETS = ("paper", "cpu", "smoke")
STEPS = ("xor", "oneshot", "iterative", "examine", "studies", "han")
# experiments.examine at each preset (its own presets; smoke is ours): (seeds, iterations a round, eval_every).
EXAMINE = {**{k: (v["seeds"], v["iterations"], v["eval_every"]) for k, v in EXAMINE_PRESETS.items()},
           "smoke": (2, 200, 100)}
XOR_TRIALS = {"paper": 1000, "cpu": 1000, "smoke": 100}
XOR_SECONDS = 60.0  # the target for the whole XOR sweep on 2 CPU cores, unless a stored sweep says


class Step(NamedTuple):
    name: str
    title: str
    figures: tuple[int, ...]
    module: str
    args: tuple[str, ...]
    settings: tuple[Any, ...]  # the lth_jax.reproduction.mnist.Settings whose training the step runs (for its cost)
    root: str                  # where those settings are stored

    @property
    def command(self) -> str:
        return " ".join(["python -m " + self.module, *self.args])


def mnist_settings(preset: str, mode: str, controls: tuple[int, int] | None = None) -> mnist.Settings:
    """The Settings ``experiments.mnist --preset=<preset> --mode=<mode>`` runs."""
    cfg = dict(MNIST_PRESETS[preset])
    reinit, shuffle = controls if controls is not None else cfg["controls"]
    cfg.pop("controls")
    seeds = tuple(range(cfg.pop("seeds")))
    return mnist.Settings(mode=mode, seeds=seeds, reinit=reinit, shuffle=shuffle, **cfg)


def examine_settings(preset: str) -> mnist.Settings:
    """The iterative chain experiments.examine trains (tickets only, down to the 5.5% round)."""
    runs, iterations, every = EXAMINE[preset]
    s = mnist.Settings(mode="iterative", seeds=tuple(range(runs)), reinit=0, shuffle=0, iterations=iterations,
                       eval_every=every, average_over=window(every), stable_for=window(every))
    return mnist.rounds_for(s, [1.0, 0.8, 0.512, 0.168, 0.055])[0]


def steps(preset: str, runs_dir: str | Path = "runs") -> list[Step]:
    """The plan of ``preset``, headline figures first."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    r = Path(runs_dir)
    mnist_root, ex_root, st_root = str(r / "mnist"), str(r / "examine"), str(r / "studies")
    ex_args = ["--preset=" + ("paper" if preset == "paper" else "cpu"), f"--runs_dir={ex_root}",
               f"--out_dir={r / 'examine' / 'figures'}"]
    if preset == "smoke":
        seeds, iterations, every = EXAMINE["smoke"]
        ex_args += [f"--seeds={seeds}", f"--iterations={iterations}", f"--eval_every={every}"]
    study_settings = tuple(g.settings for st, md in FIGURES if md in PAPER_MODES[st]
                           for g in study_groups(st, md, preset))
    return [
        Step("xor", "XOR: random networks and pruned winning tickets", (1, 2), "experiments.xor_sweep",
             (f"--trials={XOR_TRIALS[preset]}", f"--out_dir={r / 'xor'}"), (), str(r / "xor")),
        Step("oneshot", "MNIST one-shot pruning with both controls", (3, 4, 5, 6), "experiments.mnist",
             (f"--preset={preset}", "--mode=oneshot", f"--out_dir={mnist_root}"),
             (mnist_settings(preset, "oneshot"),), mnist_root),
        Step("iterative", "MNIST iterative pruning with both controls", (7, 8), "experiments.mnist",
             (f"--preset={preset}", "--mode=iterative", f"--out_dir={mnist_root}"),
             (mnist_settings(preset, "iterative"),), mnist_root),
        Step("examine", "Section 5: initial values and connectivity of winning tickets", (9, 10),
             "experiments.examine", tuple(ex_args), (examine_settings(preset),), ex_root),
        Step("studies", "Section 6: initialisation, network size, pruning rate", (11, 12, 13, 14, 15),
             "experiments.studies", ("--study=all", f"--preset={preset}", f"--out_dir={st_root}"),
             study_settings, st_root),
        Step("han", "Section 6.4: resetting vs Han et al.'s continued training", (16,), "experiments.mnist",
             (f"--preset={preset}", "--mode=han", "--controls=0,0", f"--out_dir={mnist_root}"),
             (mnist_settings(preset, "han", (0, 0)),), mnist_root),
    ]


def estimate(step: Step, costs: dict[str, Any], remaining: bool = True) -> dict[str, float]:
    """Estimated seconds of a step on the CPU and on a GPU (0 when everything is stored)."""
    if step.name != "xor":
        need = cost.seed_steps(step.settings, step.root if remaining else None)
        return {d: cost.seconds(need, costs, d, remaining) for d in ("cpu", "gpu")}
    stored = Path(step.root) / "xor_sweep.json"
    try:
        res = store.read_json(stored) if stored.is_file() else {}
    except store.StoreError:
        res = {}
    trials = next(a.split("=", 1)[1] for a in step.args if a.startswith("--trials="))
    if remaining and str(res.get("settings", {}).get("trials")) == trials:
        return {"cpu": 0.0, "gpu": 0.0}  # stored with these settings (every level of the sweep is stored)
    seconds = res.get("seconds", {}).get("total") or XOR_SECONDS
    return {"cpu": float(seconds), "gpu": float(seconds)}
