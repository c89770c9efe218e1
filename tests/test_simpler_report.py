"""SimplerEnv aggregation (hand-computed VM/VA tables) and sim-to-real metrics on known vectors."""

import numpy as np
import pytest

from suites.simpler import report as sr
from evalkit.results.report import render
from evalkit.core.types import EpisodeResult

TASKS = ("pick_coke_can", "move_near", "open_drawer", "close_drawer")


def episodes(suite, task_id, outcomes, **stats):
    """{init index: success} -> results of one task."""
    return [EpisodeResult(suite, task_id, TASKS[task_id] if "google" in suite else "t", i, i, ok,
                          "success" if ok else "budget", 80, 80, 1.0, 0.1, stats=dict(stats))
            for i, ok in outcomes.items()]


def vm_results():
    vm = "simpler_google_vm"
    # coke can VM index = urdf * 75 + orientation * 25 + position (orientations: horizontal, standing, vertical)
    coke = {0: 1, 1: 1, 2: 1, 3: 0,  # horizontal, default URDF: 3 of 4
            75: 0,                   # horizontal, recolor_tabletop_1: 0 of 1     -> horizontal (0.75 + 0) / 2 = 0.375
            25: 1, 26: 1,            # standing, default URDF: 2 of 2            -> standing 1.0
            275: 1, 276: 0}          # vertical (225 + 50), recolor_cabinet_1: 1 of 2 -> vertical 0.5
    # move near VM index = urdf * 60 + episode
    near = {0: 1, 1: 0, 2: 0,        # default URDF 1/3
            120: 1}                  # recolor_tabletop_2 1/1                     -> (1/3 + 1) / 2 = 2/3
    # drawer VM index = urdf * 27 + drawer * 9 + overlay (URDF order: cabinet_1 first)
    open_ = {**{i: int(i < 3) for i in range(9)},  # top: 3 of 9
             9: 1, 10: 1}                          # middle: 2 of 2           -> open (1/3 + 1) / 2 = 2/3
    close = {0: 0}                                 # top: 0 of 1              -> close 0
    return (episodes(vm, 0, coke) + episodes(vm, 1, near) + episodes(vm, 2, open_) + episodes(vm, 3, close))


def va_results():
    va = "simpler_google_va"
    coke = {0: 1, 1: 0,   # base, horizontal: 1/2
            225: 1,       # distractors (variant 3), horizontal: 1/1 -> horizontal 0.75
            25: 0}        # base, standing: 0/1                     -> standing 0; coke (0.75 + 0) / 2 = 0.375
    near = {0: 1, 1: 1, 60: 0, 61: 1}  # base 2/2, no_distractor 1/2 -> 0.75
    return episodes(va, 0, coke) + episodes(va, 1, near)


def test_official_aggregation_reproduces_hand_computed_rates():
    rates = sr.task_rates(vm_results() + va_results())
    assert rates[("vm", "pick_coke_can")] == pytest.approx(0.625)  # (0.375 + 1 + 0.5) / 3; pooled would be 6/9
    assert rates[("vm", "move_near")] == pytest.approx(2 / 3)
    assert rates[("vm", "open_drawer")] == pytest.approx(2 / 3)
    assert rates[("vm", "close_drawer")] == 0.0
    assert rates[("va", "pick_coke_can")] == pytest.approx(0.375)
    assert rates[("va", "move_near")] == pytest.approx(0.75)


def test_vm_and_va_table_as_papers_print_it():
    rates = sr.task_rates(vm_results() + va_results())
    headers, rows = sr.google_table([("nora", rates)])
    assert headers == ["run", "setting", "Coke Can", "Move Near", "Drawer", "Avg", "Open Drawer", "Close Drawer"]
    # Drawer = (2/3 + 0) / 2; Avg = (0.625 + 2/3 + 1/3) / 3 = 0.5417; VA has no drawer episodes: no Avg
    assert rows == [["nora", "Visual Matching", "62.5", "66.7", "33.3", "54.2", "66.7", "0.0"],
                    ["nora", "Variant Aggregation", "37.5", "75.0", "-", "-", "-", "-"]]
    assert "| nora | Visual Matching | 62.5 | 66.7 | 33.3 | 54.2 |" in render(headers, rows)


def test_bridge_success_and_partial_success():
    results = (episodes("simpler_bridge", 0, {0: 1, 1: 0}, partial_success=True)
               + episodes("simpler_bridge", 3, {0: 0, 1: 0, 2: 0, 3: 1}, partial_success=False))
    for r in results[2:4]:
        r.stats = {"partial_success": True}
    rates, partial = sr.task_rates(results), sr.task_rates(results, "partial_success")
    _, rows = sr.bridge_table([("octo", rates, partial)])
    assert rows == [["octo", "success", "50.0", "-", "-", "25.0", "-"],
                    ["octo", "grasp (partial)", "100.0", "-", "-", "50.0", "-"]]


def test_coverage_notes_name_incomplete_tasks():
    notes = sr.coverage_notes(va_results())
    assert notes == ["simpler_google_va pick_coke_can: 4 of 675 episodes of the official grid (rates over the "
                     "variants present; not the official number)",
                     "simpler_google_va move_near: 4 of 480 episodes of the official grid (rates over the "
                     "variants present; not the official number)"]


@pytest.mark.parametrize("sim, real, mmrv, pearson", [
    ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], (0.2 + 0.1 + 0.2) / 3, -1.0),  # every pair inverted
    ([0.1, 0.5, 0.3], [0.2, 0.4, 0.6], (0 + 0.2 + 0.2) / 3, 0.5),     # only (1, 2) inverted
    ([0.5, 0.5], [0.2, 0.8], (0 + 0.6) / 2, 0.0),                     # a tie in sim; constant sim: r = 0
    ([0.2, 0.6], [0.2, 0.6], 0.0, 1.0),
])
def test_mmrv_and_pearson_on_known_vectors(sim, real, mmrv, pearson):
    assert sr.mean_maximum_rank_violation(sim, real) == pytest.approx(mmrv)
    assert sr.pearson_correlation(sim, real) == pytest.approx(pearson, abs=1e-6)


def test_sim2real_table_pairs_runs_with_reference_rates():
    a = sr.task_rates(episodes("simpler_coke_can_vm", 0, {0: 1, 1: 1}))  # 1.0
    b = sr.task_rates(episodes("simpler_coke_can_vm", 0, {0: 0, 1: 1}))  # 0.5
    c = sr.task_rates(episodes("simpler_coke_can_vm", 0, {0: 0, 1: 0}))  # 0.0
    headers, rows = sr.sim2real_table([("a", a), ("b", b), ("c", c)], ["rt-1-x", "rt-2-x", "octo-base"])
    # real 0.76, 2.72/3, 0.88/3 (orientation means): pair (a, b) inverted -> MMRV (0.1467 * 2 + 0) / 3 = 0.098;
    # Pearson: centred sim (.5, 0, -.5), real (.10667, .25333, -.36) -> .23333 / (.70711 * .45294) = 0.7285
    # (metrics.py's rounded .907/.293 would give 0.728)
    assert rows == [["Visual Matching", "pick_coke_can", "1.000 0.500 0.000", "0.760 0.907 0.293", "0.098", "0.729"]]
    with pytest.raises(ValueError, match="one per run directory"):
        sr.sim2real_table([("a", a)], ["rt-1-x", "octo-base"])
    with pytest.raises(ValueError, match="no real-robot rate of pick_coke_can for octo-small"):
        sr.sim2real_table([("a", a)], ["octo-small"])


def coke_runs(rates_in_quarters):
    """One run per rate: 4 coke-can VM episodes of one cell (horizontal, default URDF), k of them successful."""
    return [(f"run{i}", sr.task_rates(episodes("simpler_coke_can_vm", 0, {j: int(j < k) for j in range(4)})))
            for i, k in enumerate(rates_in_quarters)]


def test_coke_can_real_rates_are_the_scripts_unrounded_orientation_means():
    # tools/calc_metrics_evaluation_videos.py: real = mean of horizontal, vertical, standing
    assert sr.REAL_PERF["pick_coke_can"]["rt-2-x"] == pytest.approx((0.92 + 0.80 + 1.00) / 3, abs=1e-15)
    assert sr.REAL_PERF["pick_coke_can"]["rt-1-converged"] == pytest.approx((0.96 + 0.88 + 0.72) / 3, abs=1e-15)
    assert sr.REAL_PERF["pick_coke_can"]["octo-base"] == pytest.approx((0.44 + 0.20 + 0.24) / 3, abs=1e-15)
    assert sr.REAL_PERF["pick_coke_can"]["rt-2-x"] != 0.907  # metrics.py's rounded copy


def test_mmrv_and_pearson_as_the_script_computes_them():
    # sim (rt-2-x .75, rt-1-converged .5, rt-1-15pct 1, rt-1-x .5, rt-1-begin 0, octo-base .25): the only
    # violation is i = rt-1-converged, j = rt-1-x (a tie in sim, real .8533 > .76):
    # MMRV = |2.56/3 - 2.28/3| / 6 = 0.09333 / 6 = 0.01556 -> 0.016 (rounded .853/.760 give 0.0155 -> 0.015)
    aliases = ["rt-2-x", "rt-1-converged", "rt-1-15pct", "rt-1-x", "rt-1-begin", "octo-base"]
    _, rows = sr.sim2real_table(coke_runs([3, 2, 4, 2, 0, 1]), aliases)
    assert rows == [["Visual Matching", "pick_coke_can", "0.750 0.500 1.000 0.500 0.000 0.250",
                     "0.907 0.853 0.920 0.760 0.133 0.293", "0.016", "0.903"]]
    real = [sr.REAL_PERF["pick_coke_can"][a] for a in aliases]
    assert sr.mean_maximum_rank_violation([0.75, 0.5, 1.0, 0.5, 0.0, 0.25], real) == pytest.approx(0.28 / 3 / 6)
    assert sr.pearson_correlation([0.75, 0.5, 1.0, 0.5, 0.0, 0.25], real) == pytest.approx(
        np.corrcoef([0.75, 0.5, 1.0, 0.5, 0.0, 0.25], real)[0, 1], abs=1e-7)


def test_sim2real_scores_the_drawers_together_too():
    def drawer_run(open_ok, close_ok):
        return sr.task_rates(episodes("simpler_drawer_vm", 0, {0: open_ok}) + episodes("simpler_drawer_vm", 1, {0: close_ok}))

    _, rows = sr.sim2real_table([("a", drawer_run(1, 1)), ("b", drawer_run(0, 1))], ["rt-1-x", "octo-base"])
    drawer = [row for row in rows if row[1] == "drawer"]
    # real drawer = mean of open and close: rt-1-x (.519 + .741) / 2 = .63, octo-base (.148 + .519) / 2 = .3335
    assert drawer == [["Visual Matching", "drawer", "1.000 0.500", "0.630 0.334", "0.000", "1.000"]]
    assert [row[1] for row in rows] == ["close_drawer", "drawer", "open_drawer"]


def test_an_episode_stored_under_two_suite_names_counts_once():
    full = episodes("simpler_google_vm", 0, {0: 1, 1: 1, 2: 0, 25: 1})
    copies = episodes("simpler_coke_can_vm", 0, {0: 0, 1: 0})  # same grid entries 0 and 1, other outcomes
    alone = sr.task_rates(full)
    assert alone[("vm", "pick_coke_can")] == pytest.approx((2 / 3 + 1) / 2)
    assert sr.task_rates(full + copies) == alone  # pooled: horizontal (2 of 5) would drag it to 0.7
    assert sr.duplicate_notes(full + copies) == [
        "2 episodes are stored under more than one suite name (simpler_coke_can_vm, simpler_google_vm): each counts "
        "once in the SimplerEnv tables (the first stored); 2 of them have copies with different outcomes"]
    assert sr.duplicate_notes(full) == []
    drawers = episodes("simpler_google_vm", 2, {0: 1}) + episodes("simpler_google_vm_rasterized", 2, {0: 0})
    assert sr.task_rates(drawers)[("vm", "open_drawer")] == 0.5  # ray-traced and rasterized: not the same episode
