"""SimplerEnv's official numbers from stored episodes, and its sim-to-real metrics.

Aggregation as SimplerEnv's tools/calc_metrics_evaluation_videos.py computes it:
mean over the episodes of each variant (a URDF colouring in visual matching, a scene /
lighting / distractor / texture variant in variant aggregation), unweighted mean over
variants, then over groups (coke-can orientations, or the three drawers). "Drawer" is the
mean of open and close; "Avg" the mean of Coke Can, Move Near and Drawer, as papers print.
Episodes are mapped back to their grid entry (variant, group) from (suite, task, init index).

Sim-to-real (`evalkit report RUN... --sim2real ALIAS,...`): each run stands for one reference
checkpoint whose real-robot success rate is known; MMRV and Pearson r across the runs, per task
and for the drawers together, against the real rates tools/calc_metrics_evaluation_videos.py uses
(REAL_PERF: coke can as the unrounded mean of its per-orientation rates, not metrics.py's
3-decimal copy, which moves the third decimal of MMRV).

An episode stored under two suite names (a per-task suite inside its full suite) counts once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from evalkit.core.types import EpisodeResult

# Real-robot coke-can success per orientation, as tools/calc_metrics_evaluation_videos.py holds it
# (order as there: horizontal, vertical, standing). The script compares sim rates with their mean.
COKE_CAN_REAL_BY_ORIENTATION = {
    "horizontal": {"rt-2-x": 0.92, "rt-1-converged": 0.96, "rt-1-15pct": 1.0, "rt-1-x": 0.88, "rt-1-begin": 0.20,
                   "octo-base": 0.44},
    "vertical": {"rt-2-x": 0.80, "rt-1-converged": 0.88, "rt-1-15pct": 0.96, "rt-1-x": 0.56, "rt-1-begin": 0.00,
                 "octo-base": 0.20},
    "standing": {"rt-2-x": 1.00, "rt-1-converged": 0.72, "rt-1-15pct": 0.80, "rt-1-x": 0.84, "rt-1-begin": 0.20,
                 "octo-base": 0.24},
}


def _mean_over(tables: Sequence[dict]) -> dict:
    """Per checkpoint, np.mean over the tables in order (the script's arithmetic, bit for bit)."""
    return {alias: float(np.mean([table[alias] for table in tables])) for alias in tables[0]}


# Real-robot success rates of the reference checkpoints: move near, drawers and Bridge as
# SimplerEnv's script and simpler_env/utils/metrics.py list them; coke can and "drawer" (open and
# close together) as the script derives them. metrics.py's coke-can rates are these rounded.
REAL_PERF = {
    "pick_coke_can": _mean_over(list(COKE_CAN_REAL_BY_ORIENTATION.values())),
    "move_near": {"rt-2-x": 0.733, "rt-1-converged": 0.633, "rt-1-15pct": 0.583, "rt-1-x": 0.450,
                  "rt-1-begin": 0.017, "octo-base": 0.350},
    "open_drawer": {"rt-2-x": 0.333, "rt-1-converged": 0.815, "rt-1-15pct": 0.704, "rt-1-x": 0.519,
                    "rt-1-begin": 0.000, "octo-base": 0.148},
    "close_drawer": {"rt-2-x": 0.630, "rt-1-converged": 0.926, "rt-1-15pct": 0.889, "rt-1-x": 0.741,
                     "rt-1-begin": 0.000, "octo-base": 0.519},
    "spoon_on_towel": {"rt-1-x": 0.000, "octo-base": 0.333, "octo-small": 0.417},
    "carrot_on_plate": {"rt-1-x": 0.000, "octo-base": 0.250, "octo-small": 0.083},
    "stack_cube": {"rt-1-x": 0.000, "octo-base": 0.000, "octo-small": 0.125},
    "eggplant_in_basket": {"rt-1-x": 0.000, "octo-base": 0.250, "octo-small": 0.400},
}
REAL_PERF["drawer"] = _mean_over([REAL_PERF["open_drawer"], REAL_PERF["close_drawer"]])
GOOGLE_COLUMNS = (("pick_coke_can", "Coke Can"), ("move_near", "Move Near"), ("drawer", "Drawer"))
BRIDGE_COLUMNS = (("spoon_on_towel", "Spoon on Towel"), ("carrot_on_plate", "Carrot on Plate"),
                  ("stack_cube", "Stack Cube"), ("eggplant_in_basket", "Eggplant in Basket"))
SETTINGS = {"vm": "Visual Matching", "va": "Variant Aggregation", "bridge": "Bridge (visual matching)"}


def is_simpler(suite_name: str) -> bool:
    return suite_name.startswith("simpler_")


def _all_params(results: Sequence[EpisodeResult]) -> list[tuple[EpisodeResult, dict]]:
    """(result, its grid entry and setting) for every stored result: the entry stored with the result
    (schema v3), else, for older stores, the entry of today's grid."""
    from suites.simpler.suite import simpler_suite

    suites: dict = {}
    out = []
    for r in results:
        suite = suites.setdefault(r.suite, simpler_suite(r.suite))
        params = dict(r.params) if r.params else suite.episode_params(r.task_id, r.init_index)
        out.append((r, params | {"setting": suite.setting}))
    return out


def _identity(params: dict) -> tuple:
    """What makes an episode the same episode whatever suite name it ran under: its grid entry."""
    return tuple(sorted(params.items(), key=lambda kv: kv[0]))


def _params_of(results: Sequence[EpisodeResult]) -> list[tuple[EpisodeResult, dict]]:
    """As _all_params, each episode once: the first stored of the copies under several suite names
    (simpler_coke_can_vm inside simpler_google_vm), which would otherwise weigh twice in the means."""
    seen, out = set(), []
    for r, params in _all_params(results):
        identity = _identity(params)
        if identity not in seen:
            seen.add(identity)
            out.append((r, params))
    return out


def duplicate_notes(results: Sequence[EpisodeResult]) -> list[str]:
    """Say that episodes stored under several suite names were counted once, and whether the copies disagree."""
    copies: dict = defaultdict(list)
    for r, params in _all_params(results):
        copies[_identity(params)].append(r)
    repeated = [rs for rs in copies.values() if len(rs) > 1]
    if not repeated:
        return []
    suites = sorted({r.suite for rs in repeated for r in rs})
    disagree = sum(len({r.success for r in rs}) > 1 for rs in repeated)
    return [f"{len(repeated)} episodes are stored under more than one suite name ({', '.join(suites)}): each "
            "counts once in the SimplerEnv tables (the first stored)"
            + (f"; {disagree} of them have copies with different outcomes" if disagree else "")]


def task_rates(results: Sequence[EpisodeResult], field: str = "success") -> dict:
    """(setting, task) -> official rate: mean over groups of the mean over variants of the
    per-variant success rate. `field`: "success", or "partial_success" (Bridge: source grasped)."""
    cells: dict = defaultdict(list)  # (setting, task, group, variant) -> outcomes
    for r, params in _params_of(results):
        value = r.success if field == "success" else bool(r.stats.get(field, False))
        cells[(params["setting"], params["task"], params["group"], params["variant"])].append(value)
    groups: dict = defaultdict(list)
    for (setting, task, group, _variant), outcomes in cells.items():
        groups[(setting, task, group)].append(float(np.mean(outcomes)))
    tasks: dict = defaultdict(list)
    for (setting, task, _group), variant_means in groups.items():
        tasks[(setting, task)].append(float(np.mean(variant_means)))
    return {key: float(np.mean(group_means)) for key, group_means in sorted(tasks.items())}


def google_row(rates: dict, setting: str) -> dict:
    """Coke Can, Move Near, Drawer (mean of open and close) and Avg of one setting; None where missing."""
    get = lambda task: rates.get((setting, task))  # noqa: E731
    drawers = [v for v in (get("open_drawer"), get("close_drawer")) if v is not None]
    row = {"pick_coke_can": get("pick_coke_can"), "move_near": get("move_near"),
           "drawer": float(np.mean(drawers)) if len(drawers) == 2 else None,
           "open_drawer": get("open_drawer"), "close_drawer": get("close_drawer")}
    columns = [row[key] for key, _ in GOOGLE_COLUMNS]
    row["avg"] = float(np.mean(columns)) if all(v is not None for v in columns) else None
    return row


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def google_table(labelled: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    """Rows per (run, setting): Coke Can / Move Near / Drawer / Avg, plus open and close drawer."""
    headers = ["run", "setting", *(title for _, title in GOOGLE_COLUMNS), "Avg", "Open Drawer", "Close Drawer"]
    rows = []
    for label, rates in labelled:
        for setting in ("vm", "va"):
            if any(key[0] == setting for key in rates):
                row = google_row(rates, setting)
                rows.append([label, SETTINGS[setting], *(_pct(row[k]) for k, _ in GOOGLE_COLUMNS), _pct(row["avg"]),
                             _pct(row["open_drawer"]), _pct(row["close_drawer"])])
    return headers, rows


def bridge_table(labelled: Sequence[tuple[str, dict, dict]]) -> tuple[list[str], list[list[str]]]:
    """Rows per run: success and partial success (source grasped) per Bridge task and their mean."""
    headers = ["run", "metric", *(title for _, title in BRIDGE_COLUMNS), "Avg"]
    rows = []
    for label, rates, partial in labelled:
        for metric, table in (("success", rates), ("grasp (partial)", partial)):
            values = [table.get(("bridge", task)) for task, _ in BRIDGE_COLUMNS]
            avg = float(np.mean(values)) if all(v is not None for v in values) else None
            rows.append([label, metric, *(_pct(v) for v in values), _pct(avg)])
    return headers, rows


def coverage_notes(results: Sequence[EpisodeResult]) -> list[str]:
    """Say where a run covers only part of a task's official grid: its numbers are then not the official ones."""
    from suites.simpler.suite import simpler_suite

    done: dict = defaultdict(int)
    for r in results:
        done[(r.suite, r.task_id)] += 1
    notes = []
    for (suite_name, task_id), count in sorted(done.items()):
        suite = simpler_suite(suite_name)
        total = suite.info["episodes"][suite.task_names[task_id]]
        if count < total:
            notes.append(f"{suite_name} {suite.task_names[task_id]}: {count} of {total} episodes of the official "
                         "grid (rates over the variants present; not the official number)")
    return notes


# -- sim-to-real metrics (as SimplerEnv's simpler_env/utils/metrics.py) -------------------------------

def mean_maximum_rank_violation(sim: Sequence[float], real: Sequence[float]) -> float:
    """Mean over i of the largest |real_i - real_j| over the j whose order sim and real disagree on."""
    sim, real = np.asarray(sim, dtype=float), np.asarray(real, dtype=float)
    if sim.shape != real.shape:
        raise ValueError(f"sim and real rates differ in length: {sim.shape} vs {real.shape}")
    violations = []
    for i in range(len(sim)):
        worst = 0.0
        for j in range(len(sim)):
            if (sim[i] > sim[j]) != (real[i] > real[j]):
                worst = max(worst, abs(real[i] - real[j]))
        violations.append(worst)
    return float(np.mean(violations))


def pearson_correlation(sim: Sequence[float], real: Sequence[float]) -> float:
    """Pearson r, with SimplerEnv's conventions: 1 when the centred vectors are equal, and
    a 1e-8 guard in the denominator (so a constant vector gives 0, not NaN)."""
    sim, real = np.asarray(sim, dtype=float), np.asarray(real, dtype=float)
    sim, real = sim - sim.mean(), real - real.mean()
    if np.all(sim == real):
        return 1.0
    return float(np.sum(sim * real) / (np.sqrt(np.sum(sim ** 2) * np.sum(real ** 2)) + 1e-8))


def sim2real_table(labelled: Sequence[tuple[str, dict]], aliases: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Per (setting, task): the runs' sim rates against the aliases' real rates, MMRV and Pearson r."""
    if len(aliases) != len(labelled):
        raise ValueError(f"--sim2real names {len(aliases)} reference checkpoints for {len(labelled)} runs; "
                         "give one per run directory, in the same order")
    labelled = [(label, with_drawer_rates(rates)) for label, rates in labelled]
    keys = sorted({key for _, rates in labelled for key in rates})
    rows = []
    for setting, task in keys:
        known = REAL_PERF.get(task, {})
        unknown = [a for a in aliases if a not in known]
        if unknown:
            raise ValueError(f"no real-robot rate of {task} for {', '.join(unknown)}; known: {', '.join(known)}")
        if not all((setting, task) in rates for _, rates in labelled):
            continue
        sim = [rates[(setting, task)] for _, rates in labelled]
        real = [known[a] for a in aliases]
        rows.append([SETTINGS[setting], task, " ".join(f"{s:.3f}" for s in sim), " ".join(f"{r:.3f}" for r in real),
                     f"{mean_maximum_rank_violation(sim, real):.3f}", f"{pearson_correlation(sim, real):.3f}"])
    return ["setting", "task", "sim (runs in order)", f"real ({', '.join(aliases)})", "MMRV", "Pearson r"], rows


def with_drawer_rates(rates: dict) -> dict:
    """rates plus (setting, "drawer"), the mean of open and close, where both are present (the script
    also scores the drawers together)."""
    out = dict(rates)
    for setting in {key[0] for key in rates}:
        drawer = google_row(rates, setting)["drawer"] if setting != "bridge" else None
        if drawer is not None:
            out[(setting, "drawer")] = drawer
    return out


def simpler_sections(runs: Sequence[tuple[str, Sequence[EpisodeResult]]],
                     sim2real: Sequence[str] = ()) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    """The report sections of the SimplerEnv runs among `runs` ((label, results) per run directory)."""
    runs = [(label, [r for r in results if is_simpler(r.suite)]) for label, results in runs]
    runs = [(label, results) for label, results in runs if results]
    if not runs:
        if sim2real:
            raise ValueError("--sim2real needs SimplerEnv runs")
        return []
    rates = [(label, task_rates(results)) for label, results in runs]
    sections = []
    google = [(label, r) for label, r in rates if any(k[0] in ("vm", "va") for k in r)]
    if google:
        sections.append(("SimplerEnv Google Robot (success %, official aggregation)", google_table(google)))
    bridge = [(label, r, task_rates(results, "partial_success"))
              for (label, r), (_, results) in zip(rates, runs) if any(k[0] == "bridge" for k in r)]
    if bridge:
        sections.append(("SimplerEnv Bridge / WidowX (success %)", bridge_table(bridge)))
    if sim2real:
        sections.append(("Sim-to-real (MMRV lower is better, Pearson r higher)", sim2real_table(rates, sim2real)))
    return sections


def deviation_notes(run_dir, suites_meta: dict, results: Sequence[EpisodeResult]) -> list[str]:
    """Recorded deviations from the SimplerEnv protocol of one run directory, as report notes."""
    simpler = [r for r in results if is_simpler(r.suite)]
    notes = [f"{run_dir}: {name}: {deviation}" for name, info in suites_meta.items() if is_simpler(name)
             for deviation in info.get("deviations", [])]
    standins = sum(bool(r.stats.get("stand_in_assets")) for r in simpler)
    if standins:
        from suites.simpler.suite import STANDINS_NOTE

        notes.append(f"{run_dir}: {standins} of {len(simpler)} SimplerEnv episodes ran on stand-in assets; "
                     f"{STANDINS_NOTE}")
    notes.extend(f"{run_dir}: {note}" for note in duplicate_notes(simpler) + coverage_notes(simpler))
    return notes


class SimplerReport:
    """SimplerEnv's part of `evalkit report` (evalkit.core.suite.ReportHook)."""

    options = ("sim2real",)

    def notes(self, run_dir, suites_meta: dict, results: Sequence[EpisodeResult]) -> list[str]:
        return deviation_notes(run_dir, suites_meta, results)

    def sections(self, runs, options: dict) -> list:
        return simpler_sections(runs, options.get("sim2real", ()))


HOOK = SimplerReport()
