"""`evalkit compare BASELINE CANDIDATE`: paired per-task and per-suite deltas, fit for a CI gate.

Both runs must hold the same episodes (suite, task, init state, seed) under the same
protocol, so outcomes pair up episode by episode. Each task is tested with McNemar's exact
test on its discordant pairs (baseline succeeded / candidate failed, and the reverse); the
p-values of all tasks are Holm-adjusted together, so a run of many tasks does not flag
regressions by chance. A regression is a significant (adjusted p < alpha) drop larger than
`threshold` percentage points.

Exit codes: 0 no significant regression; 1 regression; 2 the runs are not comparable (including
empty runs); 3 bad input (missing run, non-finite threshold); 4 evalkit failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Optional

from evalkit.core.protocol import same_protocol
from evalkit.results.report import render
from evalkit.results.store import FAULTS, ResultStore, read_export
from evalkit.core.types import EpisodeResult

NO_REGRESSION, REGRESSION, NOT_COMPARABLE = 0, 1, 2
BAD_INPUT, CRASHED = 3, 4  # never 0/1/2, whose meanings a CI gate relies on


class NotComparable(ValueError):
    pass


def mcnemar_exact(baseline_only: int, candidate_only: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts (binomial, p = 1/2)."""
    n = baseline_only + candidate_only
    if n == 0:
        return 1.0
    k = min(baseline_only, candidate_only)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass
class Row:
    label: str
    n: int
    baseline: int  # successes
    candidate: int
    baseline_only: int  # pairs where only the baseline succeeded
    candidate_only: int
    p: float
    p_adjusted: Optional[float] = None

    @property
    def delta_pp(self) -> float:
        return 100.0 * (self.candidate - self.baseline) / self.n


def _row(label: str, pairs: list[tuple[EpisodeResult, EpisodeResult]]) -> Row:
    b_only = sum(b.success and not c.success for b, c in pairs)
    c_only = sum(c.success and not b.success for b, c in pairs)
    return Row(label, len(pairs), sum(b.success for b, _ in pairs), sum(c.success for _, c in pairs),
               b_only, c_only, mcnemar_exact(b_only, c_only))


def load_run(run) -> tuple[dict, dict[str, EpisodeResult]]:
    """(semantics, results by episode key) of a run directory or of an `evalkit export` file."""
    if Path(run).is_file():
        meta, results = read_export(run)
        return meta.get("semantics") or {}, {r.key: r for r in results}
    with ResultStore(run, readonly=True) as store:
        return store.meta("semantics", {}), {r.key: r for r in store.results()}


def pair_runs(baseline_dir, candidate_dir, allow_errors: bool = False) -> list[tuple[EpisodeResult, EpisodeResult]]:
    """Episode-by-episode pairs; raises NotComparable saying what differs."""
    base_sem, base = load_run(baseline_dir)
    cand_sem, cand = load_run(candidate_dir)
    if not same_protocol(base_sem.get("protocol"), cand_sem.get("protocol")):
        raise NotComparable(f"different protocols: baseline {base_sem.get('protocol')}, "
                            f"candidate {cand_sem.get('protocol')}")
    empty = [name for name, results in (("baseline", base), ("candidate", cand)) if not results]
    if empty:
        raise NotComparable(f"the {' and the '.join(empty)} holds no episodes; nothing to compare")
    base_suites = {r.suite for r in base.values()}
    cand_suites = {r.suite for r in cand.values()}
    if base_suites != cand_suites:
        raise NotComparable(f"different suites: baseline {sorted(base_suites)}, candidate {sorted(cand_suites)}")
    missing, extra = sorted(set(base) - set(cand)), sorted(set(cand) - set(base))
    if missing or extra:
        raise NotComparable(f"different episodes (init states or seeds): {len(missing)} only in the baseline "
                            f"(e.g. {missing[:3]}), {len(extra)} only in the candidate (e.g. {extra[:3]}); "
                            "finish both runs or compare runs of the same episode grid")
    if not allow_errors:
        _refuse_faults(base, cand)
    pairs = [(base[key], cand[key]) for key in sorted(base)]
    _check_same_physics(pairs)
    return pairs


def _refuse_faults(base: dict, cand: dict) -> None:
    """An episode lost to a fault (a crash, an outage, a hang) says nothing of the policy; counted as
    failures, such episodes would make an identical policy look like a regression."""
    counts = {name: sum(r.termination in FAULTS for r in results.values())
              for name, results in (("baseline", base), ("candidate", cand))}
    if any(counts.values()):
        raise NotComparable(
            f"episodes stored as error or timeout: {counts['baseline']} in the baseline, {counts['candidate']} in the "
            "candidate. Run them again with `evalkit run <same flags> --retry-errors`, or pass --allow-errors "
            "to count them as failures")


def _check_same_physics(pairs) -> None:
    """Refuse runs whose episodes settled differently: another simulator version, other physics."""
    drifted = sorted({f"{b.suite} task {b.task_id}" for b, c in pairs
                      if b.settle_fingerprint and c.settle_fingerprint and b.settle_fingerprint != c.settle_fingerprint})
    if drifted:
        raise NotComparable(
            f"the simulator settled episodes differently (settled-state fingerprints differ) in {len(drifted)} "
            f"task(s): {', '.join(drifted)}. The runs were made on different physics (simulator versions?); "
            "`evalkit doctor` on each machine says which packages differ from the pinned ones")


def compare(baseline_dir, candidate_dir, alpha: float = 0.05, threshold_pp: float = 0.0,
            allow_errors: bool = False) -> tuple[int, str]:
    """Returns (exit code, Markdown report)."""
    try:
        pairs = pair_runs(baseline_dir, candidate_dir, allow_errors)
    except NotComparable as exc:
        return NOT_COMPARABLE, f"# Not comparable\n\n{baseline_dir} vs {candidate_dir}: {exc}\n"
    tasks, suites, regressed = paired_rows(pairs, alpha, threshold_pp)
    verdict = (f"**Regression** in {len(regressed)} row(s): " + "; ".join(r.label for r in regressed)
               if regressed else "No significant regression.")
    report = "\n\n".join([
        f"# {candidate_dir} vs baseline {baseline_dir}",
        f"{verdict} (McNemar exact on paired episodes, Holm-adjusted, alpha {alpha}, threshold {threshold_pp} pp)",
        "## Per suite", _table(suites), "## Per task", _table(tasks),
    ]) + "\n"
    return (REGRESSION if regressed else NO_REGRESSION), report


def paired_rows(pairs, alpha: float = 0.05, threshold_pp: float = 0.0) -> tuple[list[Row], list[Row], list[Row]]:
    """(task rows, suite rows, the rows flagged as regressions) of paired episodes (`evalkit view` draws them)."""
    tasks = _group(pairs, task_label)
    suites = _group(pairs, lambda r: r.suite)
    for group in (tasks, suites):  # tasks are one family of tests, suites another
        for row, p in zip(group, holm([row.p for row in group])):
            row.p_adjusted = p
    regressed = [row for row in tasks + suites
                 if row.p_adjusted < alpha and row.delta_pp < -threshold_pp]
    return tasks, suites, regressed


def task_label(result: EpisodeResult) -> str:
    return f"{result.suite} task {result.task_id} ({result.task_name})"


def _group(pairs, key) -> list[Row]:
    groups: dict[str, list] = {}
    for b, c in pairs:
        groups.setdefault(key(b), []).append((b, c))
    return [_row(label, group) for label, group in sorted(groups.items())]


def _table(rows: list[Row]) -> str:
    headers = ["", "episodes", "baseline %", "candidate %", "delta pp", "only baseline", "only candidate",
               "p", "p (Holm)"]
    cells = [[r.label, str(r.n), f"{100 * r.baseline / r.n:.1f}", f"{100 * r.candidate / r.n:.1f}",
              f"{r.delta_pp:+.1f}", str(r.baseline_only), str(r.candidate_only), f"{r.p:.3g}",
              f"{r.p_adjusted:.3g}"] for r in rows]
    return render(headers, cells)
