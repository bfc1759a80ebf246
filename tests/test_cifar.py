"""The CIFAR-10 experiment: the zoo's conv nets as configurations of the runner, at the paper's
later settings, on real CIFAR-10 or on synthetic data that says so everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.configs import cifar as configs
from lth_jax import datasets, optimizers, rules, runner, zoo
from lth_jax.reproduction import cifar

ROOT = Path(__file__).resolve().parents[1]


def settings(preset: str, model: str, **changes) -> cifar.Settings:
    """The preset's settings (seeds and controls are the driver's flags)."""
    p = {k: v for k, v in configs.preset(preset, model).items() if k not in ("controls", "seeds")}
    return cifar.Settings(**{**p, **changes})


@pytest.mark.parametrize("model", ["conv2", "conv4", "conv6"])
def test_the_conv_nets_paper_settings_are_the_later_versions(model):
    """Adam 2e-4 / 3e-4 / 3e-4, 20K / 25K / 30K iterations, batch 60, convolutions 10 / 10 / 15% and
    dense layers 20% a round, the output layer at half of that."""
    s = settings("paper", model)
    lottery = cifar.lottery(s, data=cifar.dataset(s.replace(synthetic=True)))
    want = {"conv2": (2e-4, 20_000, 0.1), "conv4": (3e-4, 25_000, 0.1), "conv6": (3e-4, 30_000, 0.15)}[model]
    assert (s.lr, s.iterations, s.conv_rate) == want and s.batch_size == 60
    assert lottery.prune == rules.LayerwiseMagnitude(0.2, 0.5, conv_rate=want[2])
    assert lottery.trainer.optimizer == optimizers.Adam(want[0])


def test_vgg_and_resnet_prune_globally_with_the_output_layer_left_out():
    for model in ("vgg19_bn", "resnet20"):
        s = settings("paper", model)
        assert cifar.prune_rule(s) == rules.GlobalMagnitude(0.2, exclude=("output",))
        assert isinstance(cifar.optimizer(s), optimizers.SGD)


def test_synthetic_data_is_named_so_in_the_hash_and_the_run_directory(tmp_path):
    s = cifar.Settings(iterations=20, eval_every=10, synthetic=True)
    lottery = cifar.lottery(s)
    assert lottery.hashed()["data"]["name"] == "cifar10-synthetic"
    real = cifar.lottery(s.replace(synthetic=False), data=datasets.cifar10("/nonexistent"))  # only hashed
    assert runner.run_dir(lottery, tmp_path) != runner.run_dir(real, tmp_path)


def test_synthetic_labels_are_a_deterministic_learnable_function_of_the_images():
    (x, y), (tx, ty) = cifar.synthetic_arrays(train=200, test=50)
    (x2, y2), _ = cifar.synthetic_arrays(train=200, test=50)
    assert x.shape == (200, 32, 32, 3) and tx.shape == (50, 32, 32, 3)
    assert (x == x2).all() and (y == y2).all() and len(set(y.tolist())) > 5


def cifar_driver(*args: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.cifar", "--synthetic", "--preset=smoke",
                           "--iterations=20", "--eval_every=10", "--average_over=10", "--stable_for=10",
                           "--batch_size=8", "--mode=oneshot", "--levels=100", f"--out_dir={out}", "--progress=false",
                           *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ})


def test_the_synthetic_smoke_run_stores_a_resumable_run_and_says_it_is_synthetic(tmp_path):
    first = cifar_driver(out=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("SYNTHETIC DATA") >= 2
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    stored = {p.name: p.stat().st_mtime_ns for p in run.glob("*.npz")}
    assert set(stored) == {"init.npz", "p100.npz"} and (run / "cifar.png").is_file()
    again = cifar_driver(out=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in run.glob("*.npz")} == stored  # nothing trained again
    def table(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.split()[:1] == ["p100"]]

    assert table(again.stdout) == table(first.stdout) and table(first.stdout)  # the same table, read back


def test_an_unknown_model_is_one_line_and_exit_2(tmp_path):
    done = cifar_driver("--model=vgg13", out=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--model" in done.stderr
    assert not any(tmp_path.iterdir())


def test_every_zoo_model_has_paper_settings():
    assert set(configs.PAPER) == set(zoo.NAMES)
