"""lth_jax.reproduction.claims: our value of each of the paper's claims, with its sample size, from the
stored results."""

from __future__ import annotations

from pathlib import Path

import pytest

from lth_jax.reproduction import claims, mnist, paper, results
from tests.stored_runs import converging, store_run

ROLES = ("ticket", "reinit", "shuffle")
ITERATIVE = mnist.Settings(mode="iterative", hidden=(30, 10), seeds=(0, 1), reinit=1, shuffle=1, iterations=1000,
                           eval_every=100, average_over=200, stable_for=200, min_remaining=40.0)


def view(**parts) -> results.View:
    return results.View(Path("."), parts.pop("mnist", {}), parts.pop("xor", None), parts.pop("examine", None), {})


def test_every_claim_without_stored_results_has_no_answer_but_the_computed_rules():
    answered = {c.key for c in paper.CLAIMS if claims.ours(c, view()) is not None}
    assert answered == {"it_trainings", "rate_10_trainings"}


@pytest.mark.parametrize("rate, trainings", [(0.2, 14), (0.1, 28)])
def test_iterative_pruning_needs_the_papers_number_of_trainings_to_about_5_percent(rate, trainings):
    t = claims.trainings_to_about_5(rate)
    assert t["trainings"] == trainings and t["percent_overall"] < claims.ABOUT_5_PERCENT
    assert claims.trainings_to_about_5(rate, target=t["percent_overall"] + 1e-9)["trainings"] == trainings


def test_the_iterative_drops_are_the_first_round_more_than_0_15_points_below_the_original(tmp_path):
    # tickets hold 0.980 throughout; reinit controls fall to 0.975 from round 2, shuffles from round 1
    plateau = {r: {"ticket": 0.980, "reinit": 0.980 if r < 2 else 0.975, "shuffle": 0.980 if r < 1 else 0.970}
               for r in range(5)}
    path = store_run(tmp_path, ITERATIVE, {r: {"knee": dict.fromkeys(ROLES, 3), "plateau": plateau[r]}
                                           for r in range(5)})
    run = results.Run(path)
    answer = {k: claims.ours(paper.CLAIM[k], view(mnist={"iterative": run}))
              for k in ("it_ticket_drop", "it_reinit_drop", "it_shuffle_drop")}
    assert answer["it_reinit_drop"].value == run.levels[2]["percent_nominal"]
    assert answer["it_shuffle_drop"].value == run.levels[1]["percent_nominal"]
    assert answer["it_ticket_drop"].value == f"none down to {run.levels[-1]['percent_nominal']:.3g}%"
    assert answer["it_reinit_drop"].n == "2 reinit trials/level" and answer["it_reinit_drop"].origin is run


def test_xor_claims_read_their_row_and_say_how_many_trials_stand_behind_them():
    xor = {"rows": [{"table": "conditional", "strategy": "iterative product", "units": 2, "kind": "ticket",
                     "setting": "iterative product: 2-unit ticket | original succeeded", "trials": 1000,
                     "db": 92.0, "db_se": 0.9, "n_db": 990, "zl": 85.0, "zl_se": 1.2, "n_zl": 900}]}
    zl = claims.ours(paper.CLAIM["xor_iter2_zl_cond"], view(xor=xor))
    assert (zl.value, zl.n) == ("85.0 ± 1.2", "900 of 1000 trials")
    assert claims.ours(paper.CLAIM["xor_random2_db"], view(xor=xor)) is None  # its row is not stored


def test_section_5_reads_the_level_nearest_the_papers():
    layer = {"units": 100, "disconnected": 30, "fraction": 0.3, "se": 0.046}
    ex = {"runs": 10, "settings": {"iterations": 500},
          "figure10": [{"target": t, "remaining": t, "layers": {"Dense_1": {**layer, "fraction": t}}}
                       for t in (0.8, 0.168, 0.055)]}
    dead = claims.ours(paper.CLAIM["ex_dead_hidden2"], view(examine=ex))
    assert dead.value == "5.5 ± 4.6" and dead.n == "100 units (10 runs)" and "level 5.5%" in dead.details
    assert claims.ours(paper.CLAIM["ex_dead_hidden1"], view(examine=ex)) is None  # no Dense_0 stored


def test_section_6_2_ticket_sizes_follow_both_definitions():
    rows = [{"weights": w, "trials": 2, "convergence_iteration_mean": c, "convergence_accuracy_mean": a,
             "final_accuracy_mean": a} for w, c, a in ((1000, 500, 0.980), (500, 300, 0.981), (250, 300, 0.979),
                                                       (100, 400, 0.970))]
    (sizes,) = claims.study_ticket_sizes({"groups": [{"label": "300-100", "rows": rows}]})
    assert sizes["by_convergence"] == 250 and sizes["min_convergence"] == 300  # the smallest of the fastest
    assert sizes["by_accuracy"] == 250  # the last before falling 0.15 points below 0.980


def test_each_claim_says_whether_it_came_from_the_papers_settings_or_a_cpu_sized_run(tmp_path):
    paper_size = mnist.Settings(mode="oneshot", levels=(100, 25), stop_at_convergence=True)  # 50,000 its, 5 + 3 + 3
    cpu_size = paper_size.replace(iterations=8000, seeds=(0, 1), reinit=1, shuffle=1)
    spec = {p: converging(ROLES, 30, 0.98) for p in (100, 25)}
    for settings, want in ((paper_size, results.PAPER_SETTINGS), (cpu_size, results.CPU_SIZE)):
        run = results.Run(store_run(tmp_path / want, settings, spec))
        rows = {r["key"]: r for _, _, r in claims.table(view(mnist={"oneshot": run}), sources=["oneshot"])}
        assert rows["os_25_faster"]["settings"] == want, settings
    assert rows["os_25_faster"]["settings"] == results.CPU_SIZE
    xor = {"rows": [], "settings": {"trials": 1000, "iterations": 10_000}}
    assert claims.scale(claims.Ours(1, "-", "-", xor)) == results.PAPER_SETTINGS
    assert claims.scale(claims.Ours(1, "-", "-", {**xor, "settings": {"trials": 100, "iterations": 10_000}})) == \
        results.CPU_SIZE
    assert claims.scale(claims.ours(paper.CLAIM["it_trainings"], view())) == "computed"
