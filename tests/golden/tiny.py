"""The tiny settings whose stored outputs tests/golden/digests.json holds (recorded at commit 37a418c,
before the framework refactor, by that commit's tests/golden/record_before.py)."""

TINY = dict(hidden=(16, 8), iterations=200, eval_every=50, seeds=(0, 1), reinit=1, shuffle=1,
            average_over=100, stable_for=100)
RUNS = {
    "oneshot": dict(mode="oneshot", levels=(100, 50, 20), **TINY),
    "iterative": dict(mode="iterative", min_remaining=55.0, **TINY),
    "han": dict(mode="han", min_remaining=55.0, **TINY),
}
GROUPS = [dict(mode="oneshot", levels=(100, 40), std=s, **{**TINY, "reinit": 0, "shuffle": 0}) for s in (0.1, 0.4)]
XOR = dict(trials=64, iterations=400, chunk=256)  # recorded as steps=400 (the flag's old name)
