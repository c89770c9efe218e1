"""Success-rate tables over stored results: per task, per suite, and a paper-style summary.

Rates count every episode: errors and invalid actions are failures, and their counts
are shown beside the rate so that a broken run cannot pass for a weak policy.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from evalkit.core.types import EpisodeResult

Z95 = 1.959963984540054
PAPER_COLUMNS = ("Spatial", "Object", "Goal", "Long")  # LIBERO tables as papers print them


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sensible at 0% and 100%)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Tally:
    n: int = 0
    successes: int = 0
    faults: int = 0  # error + timeout + invalid_action

    def add(self, result: EpisodeResult) -> None:
        self.n += 1
        self.successes += int(result.success)
        self.faults += int(result.termination in ("error", "timeout", "invalid_action"))

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    def cells(self) -> list[str]:
        low, high = wilson_interval(self.successes, self.n)
        return [str(self.n), str(self.successes), f"{100 * self.rate:.1f}", f"[{100 * low:.1f}, {100 * high:.1f}]",
                str(self.faults)]


TALLY_HEADERS = ["episodes", "successes", "success %", "95% CI (Wilson)", "errors"]


def tally_by(results: Iterable[EpisodeResult], key) -> dict:
    tallies: dict = defaultdict(Tally)
    for result in results:
        tallies[key(result)].add(result)
    return dict(sorted(tallies.items()))


def task_table(results: Sequence[EpisodeResult]) -> tuple[list[str], list[list[str]]]:
    names = {(r.suite, r.task_id): r.task_name for r in results}
    tallies = tally_by(results, lambda r: (r.suite, r.task_id))
    rows = [[suite, str(task_id), names[(suite, task_id)], *t.cells()] for (suite, task_id), t in tallies.items()]
    return ["suite", "task", "name", *TALLY_HEADERS], rows


def suite_table(results: Sequence[EpisodeResult]) -> tuple[list[str], list[list[str]]]:
    tallies = tally_by(results, lambda r: r.suite)
    return ["suite", *TALLY_HEADERS], [[suite, *t.cells()] for suite, t in tallies.items()]


def summary_table(results: Sequence[EpisodeResult], families: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """One row: success % per paper column (Spatial / Object / Goal / Long) and their average.

    The average is over the columns present, and says so when some are missing.
    """
    tallies = tally_by(results, lambda r: families.get(r.suite, r.suite))
    cells, rates = [], []
    for column in PAPER_COLUMNS:
        if column in tallies:
            rates.append(tallies[column].rate)
            cells.append(f"{100 * tallies[column].rate:.1f}")
        else:
            cells.append("-")
    average = f"{100 * sum(rates) / len(rates):.1f}" if rates else "-"
    if 0 < len(rates) < len(PAPER_COLUMNS):
        average += f" ({len(rates)} of {len(PAPER_COLUMNS)})"
    return [*PAPER_COLUMNS, "Avg"], [[*cells, average]]


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], fmt: str = "markdown") -> str:
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    if fmt == "latex":
        escape = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
        lines = [r"\begin{tabular}{" + "l" * len(headers) + "}", r"\toprule", " & ".join(map(escape, headers)) + r" \\",
                 r"\midrule", *(" & ".join(map(escape, row)) + r" \\" for row in rows), r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)
    raise ValueError(f"unknown table format {fmt!r}; use markdown, csv or latex")


def report_sections(results: Sequence[EpisodeResult], families: dict[str, str], extra_sections: Sequence = ()) -> list:
    """[(title, (headers, rows))]: the tables of a report, whatever renders them (text, files, `evalkit view`)."""
    sections = [("Per task", task_table(results)), ("Per suite", suite_table(results))]
    if any(families.get(r.suite) in PAPER_COLUMNS for r in results):
        sections.append(("Summary (success %)", summary_table(results, families)))
    return sections + list(extra_sections)  # benchmark-specific tables (SimplerEnv: suites.simpler.report)


def full_report(results: Sequence[EpisodeResult], families: dict[str, str], fmt: str = "markdown",
                notes: Sequence[str] = (), extra_sections: Sequence = ()) -> str:
    if not results:
        return "no finished episodes yet"
    parts = []
    for title, (headers, rows) in report_sections(results, families, extra_sections):
        table = render(headers, rows, fmt)
        parts.append(table if fmt == "csv" else f"## {title}\n\n{table}")
    parts.extend(notes)
    return "\n\n".join(parts) + "\n"


@dataclass
class ReportData:
    """What `evalkit report` prints for some runs, before rendering."""

    results: list
    families: dict
    notes: list  # in the printed order: each run's description, then the warnings
    warnings: list  # undecodable outputs, drifted simulator, suites' recorded deviations (stand-ins, rasterized)
    extra_sections: list

    def sections(self) -> list:
        return report_sections(self.results, self.families, self.extra_sections)


def collect_report(run_dirs: Sequence, sim2real: Sequence[str] = ()) -> ReportData:
    """The tables and notes of one or more run directories (or `evalkit export` files)."""
    from evalkit.results.store import open_run

    results, families, notes, warnings, per_run, stored = [], {}, [], [], [], []
    for run_dir in run_dirs:
        with open_run(run_dir) as store:
            run_results = store.results()
            results.extend(run_results)
            families.update({name: info["family"] for name, info in store.meta("suites", {}).items()})
            run_warnings = [*undecodable_notes(run_dir, run_results),
                            *drift_notes(run_dir, store.meta("reference_fingerprints", {}), run_results)]
            notes += [describe_stored_run(run_dir, store), *run_warnings]
            warnings += run_warnings
            stored.append((run_dir, store.meta("suites", {}), run_results))
            per_run.append((Path(run_dir).name, run_results))
    hooks = report_hooks({r.suite for r in results})
    options = {"sim2real": tuple(sim2real)} if sim2real else {}
    unknown = set(options) - {option for hook in hooks for option in hook.options}
    if unknown:
        raise ValueError(f"--{' --'.join(sorted(unknown))} needs runs of a suite that reports it (SimplerEnv)")
    hook_notes = [note for hook in hooks for run_dir, meta, run_results in stored
                  for note in hook.notes(run_dir, meta, run_results)]
    sections = [section for hook in hooks for section in hook.sections(per_run, options)]
    return ReportData(results, families, notes + hook_notes, warnings + hook_notes, sections)


def report_runs(run_dirs: Sequence, fmt: str = "markdown", sim2real: Sequence[str] = ()) -> str:
    """The full report of one or more run directories, with each run's protocol spelled out.

    sim2real: one SimplerEnv reference checkpoint alias per run directory (MMRV / Pearson r)."""
    data = collect_report(run_dirs, sim2real)
    return full_report(data.results, data.families, fmt, notes=[] if fmt == "csv" else data.notes,
                       extra_sections=data.extra_sections)


def write_tables(run_dirs: Sequence, out_dir, sim2real: Sequence[str] = (), labels: Sequence[str] = ()) -> list[Path]:
    """The report's tables as CSV and Markdown files under OUT_DIR/tables/: a folder per run (its own
    `evalkit report RUN`) and, for several runs, `all/` (what `evalkit report RUN...` prints), each with
    report.md, the full text. `evalkit view` writes the same files beside its page, so the two never disagree."""
    labels = list(labels) or run_labels(run_dirs)
    groups = [(label, [run], sim2real if len(run_dirs) == 1 else ()) for label, run in zip(labels, run_dirs)]
    if len(run_dirs) > 1:
        groups.append(("all", list(run_dirs), sim2real))
    written = []
    for label, runs, aliases in groups:
        data = collect_report(runs, aliases)
        folder = Path(out_dir) / "tables" / label
        folder.mkdir(parents=True, exist_ok=True)
        for title, (headers, rows) in data.sections() if data.results else []:
            for fmt, suffix in (("csv", "csv"), ("markdown", "md")):
                written.append(folder / f"{table_slug(title)}.{suffix}")
                written[-1].write_text(render(headers, rows, fmt) + "\n")
        written.append(folder / "report.md")
        written[-1].write_text(full_report(data.results, data.families, "markdown", data.notes, data.extra_sections))
    return written


def table_slug(title: str) -> str:
    """'Per task' -> per_task, 'Summary (success %)' -> summary: a table's file name."""
    import re

    return re.sub(r"[^a-z0-9]+", "_", re.sub(r"\(.*?\)", "", title.lower())).strip("_") or "table"


def run_labels(run_dirs: Sequence) -> list[str]:
    """A short distinct name per run: its directory's name (an export file's stem), numbered when repeated."""
    import re

    labels: list[str] = []
    for run in run_dirs:
        path = Path(run)
        base = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", path.stem if path.is_file() else path.resolve().name) or "run"
        label, n = base, 1
        while label in labels or label == "all":
            n += 1
            label = f"{base}-{n}"
        labels.append(label)
    return labels


def report_hooks(suite_names) -> list:
    """The report hooks (evalkit.core.suite.ReportHook) of these suites, each once, loaded by name."""
    import importlib

    from evalkit.core import registry

    targets = []
    for name in sorted(suite_names):
        try:
            target = registry.make_suite(name).report_hook
        except (registry.UnknownNameError, ImportError, ValueError):  # a suite no longer registered: no hook
            continue
        if target and target not in targets:
            targets.append(target)
    return [getattr(importlib.import_module(t.partition(":")[0]), t.partition(":")[2]) for t in targets]


SUCCESS_CHECKS = {"first": "every step (first success ends the episode)", "chunk_end": "each chunk's last step",
                  "last": "the episode's last step"}


def describe_stored_run(run_dir, store) -> str:
    identity, semantics = store.meta("identity", {}), store.meta("semantics", {})
    proto = semantics.get("protocol", {})
    args = f" {identity['policy_args']}" if identity.get("policy_args") else ""
    mode = semantics.get("execution_mode")
    if semantics.get("mode_requested") == "reference":
        mode = f"{mode} (the policy's reference mode)"
    rules = [f"success checked at {SUCCESS_CHECKS.get(proto.get('success_rule'), proto.get('success_rule'))}"]
    if proto.get("gripper_rule", "as_mapped") != "as_mapped":
        rules.append(f"gripper rule {proto['gripper_rule']}")
    if proto.get("sim_horizon"):
        rules.append(f"simulator horizon {proto['sim_horizon']} env steps")
    return (f"{run_dir}: policy {identity.get('policy')}{args}, mode {mode}, "
            f"protocol {proto.get('name')} (wait {proto.get('wait_steps')}, budget "
            f"{proto.get('budget') or 'suite limit'} {proto.get('budget_unit')}, {', '.join(rules)})"
            + _postprocess_note(semantics) + _conventions_note(semantics) + _settings_note(store.meta("policy_spec", {})))


def _settings_note(spec: dict) -> str:
    settings = spec.get("settings") or []
    return "; policy settings: " + ", ".join(f"{k} {v}" for k, v in settings) if settings else ""


def undecodable_notes(run_dir, results: Sequence[EpisodeResult]) -> list[str]:
    """Queries whose output did not decode and were executed as the reference code does."""
    hit = [r for r in results if r.undecodable]
    if not hit:
        return []
    counts: dict = defaultdict(int)
    for r in hit:
        counts[f"{r.suite} task {r.task_id}"] += r.undecodable
    per_task = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items()))
    return [f"{run_dir}: {sum(r.undecodable for r in hit)} undecodable policy outputs in {len(hit)} of "
            f"{len(results)} episodes, executed as the reference code does ({per_task})."]


def _conventions_note(semantics: dict) -> str:
    conventions = semantics.get("policy_conventions", {})
    parts = []
    paths = {suite: path for suite, path in conventions.get("image_path", {}).items() if path != "none"}
    if paths:
        parts.append("image path " + ", ".join(f"{s} {p}" for s, p in paths.items()))
    if any("sticky" in name for name in semantics.get("action_postprocess", {}).values()):
        parts.append(f"sticky gripper variant {conventions.get('sticky_gripper_variant', 'every_step')}")
    return "; " + ", ".join(parts) if parts else ""


def drifted_tasks(reference: dict, results: Sequence[EpisodeResult]) -> list[str]:
    """"suite task N" of the episodes whose settled state differs from the reference's ({suite: {key: fingerprint}})."""
    return sorted({f"{r.suite} task {r.task_id}" for r in results
                   if r.settle_fingerprint and reference.get(r.suite, {}).get(r.key, r.settle_fingerprint)
                   != r.settle_fingerprint})


def checked_against_reference(reference: dict, results: Sequence[EpisodeResult]) -> int:
    """How many of these episodes have a reference settled state to be checked against."""
    return sum(bool(r.settle_fingerprint) and r.key in reference.get(r.suite, {}) for r in results)


def drift_notes(run_dir, reference: dict, results: Sequence[EpisodeResult]) -> list[str]:
    """A warning when episodes settled differently from the committed reference (another simulator)."""
    drifted = drifted_tasks(reference, results)
    if not drifted:
        return []
    return [f"**DRIFTED SIMULATOR** ({run_dir}): the settled states of {', '.join(drifted)} differ from the pinned "
            "reference; this run's physics is not the published numbers' physics (run `evalkit doctor`)."]


def _postprocess_note(semantics: dict) -> str:
    applied = {suite: name for suite, name in semantics.get("action_postprocess", {}).items() if name != "identity"}
    return "; actions postprocessed: " + ", ".join(f"{s} {n}" for s, n in applied.items()) if applied else ""
