"""One-off: record digests of today's outputs (run on the code *before* the framework refactor).

    python -m tests.golden.record_before tiny   # -> tests/golden/digests.json (what the test compares)
    python -m tests.golden.record_before full   # -> /tmp/golden_full.json (recorded in WORKSPACE.md)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from experiments import xla_cpu

xla_cpu.speed_up_xla_cpu()

from experiments import studies, xor_sweep  # noqa: E402
from lth_jax import data, experiment  # noqa: E402
from tests.golden.digest import digest_run  # noqa: E402

TINY = dict(hidden=(16, 8), iterations=200, eval_every=50, seeds=(0, 1), reinit=1, shuffle=1,
            average_over=100, stable_for=100)
TINY_RUNS = {
    "oneshot": dict(mode="oneshot", levels=(100, 50, 20), **TINY),
    "iterative": dict(mode="iterative", min_remaining=55.0, **TINY),
    "han": dict(mode="han", min_remaining=55.0, **TINY),
}
TINY_GROUPS = [dict(mode="oneshot", levels=(100, 40), std=s, **{**TINY, "reinit": 0, "shuffle": 0}) for s in (0.1, 0.4)]
TINY_XOR = dict(trials=64, steps=400, chunk=256)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def xor_digest(settings: xor_sweep.Settings, out: Path) -> dict:
    sw = xor_sweep.Sweep(settings, out)
    jobs = sw.run()
    res = xor_sweep.results(settings, jobs)
    logits = {name: hashlib.sha256(np.ascontiguousarray(job.logits, np.float32).tobytes()).hexdigest()
              for name, job in sorted(jobs.items())}
    rates = [{k: r[k] for k in ("table", "setting", "db", "zl", "n_db", "n_zl")} for r in res["rows"]]
    return {"settings": settings.training(), "logits": logits, "rates": rates}


def main(which: str) -> None:
    out: dict = {"cpu": cpu_model(), "jax": __import__("jax").__version__}
    mnist_dir = os.environ[data.MNIST_DIR_ENV]
    d = experiment.device_data(data.mnist(mnist_dir))
    with tempfile.TemporaryDirectory() as tmp:
        if which == "tiny":
            runs = {k: experiment.Settings(**v) for k, v in TINY_RUNS.items()}
            for name, s in runs.items():
                out[f"mnist/{name}"] = {"settings": s.hashed(), "records": digest_run(experiment.run(s, d, tmp))}
            groups = [experiment.Settings(**g) for g in TINY_GROUPS]
            paths = studies.run_groups(groups, d, Path(tmp) / "groups")
            for s, p in zip(groups, paths, strict=True):
                out[f"groups/std{s.std}"] = {"settings": s.hashed(), "records": digest_run(p)}
            out["xor"] = xor_digest(xor_sweep.Settings(**TINY_XOR), Path(tmp) / "xor")
            target = Path(__file__).with_name("digests.json")
        else:
            from experiments.configs.mnist import PRESETS
            cfg = dict(PRESETS["smoke"])
            reinit, shuffle = cfg.pop("controls")
            seeds = tuple(range(cfg.pop("seeds")))
            for mode in ("oneshot", "iterative", "han"):
                s = experiment.Settings(mode=mode, seeds=seeds, reinit=reinit, shuffle=shuffle, **cfg)
                if mode == "han":
                    s = s.replace(reinit=0, shuffle=0)
                out[f"mnist-smoke/{mode}"] = {"settings": s.hashed(), "records": digest_run(experiment.run(s, d, tmp))}
                print(mode, "done", file=sys.stderr, flush=True)
            out["xor1000"] = xor_digest(xor_sweep.Settings(trials=1000), Path(tmp) / "xor")
            target = Path("/tmp/golden_full.json")
    target.write_text(json.dumps(out, indent=1, sort_keys=True, default=list) + "\n")
    print("wrote", target)


if __name__ == "__main__":
    main(sys.argv[1])
