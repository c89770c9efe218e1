"""`evalkit view RUN... --out SITE`: a static, self-contained site of one or more runs (issue 15).

It opens from disk and asks nothing of the network: one index.html with inline CSS, inline SVG
charts and a little inline JavaScript (the episode browser's filters), the data embedded as JSON;
`tables/` beside it with the same tables as CSV and Markdown (evalkit.results.report.write_tables,
what `evalkit report --out-dir` writes), and `videos/<run>/` with copies of (or, with
`link_videos`, relative links to) the episodes' videos. Everything comes from the stores: run
directories or `evalkit export` files. `sweeps` adds a sweep's table and plot, from its points'
stores, or, where those are gone, from the table committed beside the sweep file.

The page, per run: the protocol, execution mode, action conventions, image path, package versions,
git revision and simulator fingerprint; recorded deviations in plain words just above the tables
(and marked on the rows of the suites they name); the tables `evalkit report` prints with their
Wilson intervals drawn. Across runs: success per task side by side, and for each later run the
paired differences `evalkit compare` computes against the first run, with the rows it flags.
Then every episode, filterable by run, task and outcome, with its video and error text.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from evalkit.core.types import EpisodeResult
from evalkit.results.report import (SUCCESS_CHECKS, ReportData, collect_report, run_labels, table_slug, tally_by,
                                    wilson_interval, write_tables)

COLOURS = ("#3366cc", "#dc7633", "#2e9e5b", "#9b59b6", "#c0392b", "#17a2b8", "#7f8c8d", "#b7950b")
esc = html.escape


# -- what the page shows ----------------------------------------------------------------------------

@dataclass
class RunView:
    label: str
    source: str
    meta: dict  # identity, semantics, suites, policy_spec, reference_fingerprints
    sessions: list
    results: list
    report: ReportData  # `evalkit report SOURCE`
    videos: dict = field(default_factory=dict)  # episode key -> path of its video inside the site


@dataclass
class Comparison:
    baseline: str
    candidate: str
    error: str = ""  # why the runs are not comparable
    tasks: list = field(default_factory=list)  # evalkit.results.compare.Row
    suites: list = field(default_factory=list)
    flagged: list = field(default_factory=list)  # labels of the rows compare calls regressions


@dataclass
class SweepView:
    source: str
    headers: list
    rows: list
    x_name: str
    x_labels: list
    series: list  # [(name, [(x index, rate, low, high)])]
    note: str = ""


def load_runs(sources: Sequence) -> list[RunView]:
    from evalkit.results.store import open_run

    runs = []
    for label, source in zip(run_labels(sources), sources):
        with open_run(source) as store:
            meta = {key: store.meta(key, {}) for key in
                    ("identity", "semantics", "suites", "policy_spec", "reference_fingerprints")}
            runs.append(RunView(label, str(source), meta, store.sessions(), store.results(), collect_report([source])))
    return runs


def compare_runs(runs: list[RunView], alpha: float, threshold: float, allow_errors: bool) -> list[Comparison]:
    """Each later run against the first, episode by episode, as `evalkit compare FIRST LATER` does."""
    from evalkit.results.compare import NotComparable, pair_runs, paired_rows

    out = []
    for run in runs[1:]:
        comparison = Comparison(runs[0].label, run.label)
        try:
            pairs = pair_runs(runs[0].source, run.source, allow_errors)
        except NotComparable as exc:
            comparison.error = str(exc)
        else:
            comparison.tasks, comparison.suites, flagged = paired_rows(pairs, alpha, threshold)
            comparison.flagged = [row.label for row in flagged]
        out.append(comparison)
    return out


def copy_videos(runs: list[RunView], out: Path, link: bool = False) -> None:
    """Each stored video into SITE/videos/<run>/ (a copy, or a relative link); the page names these."""
    for run in runs:
        folder = out / "videos" / run.label
        shutil.rmtree(folder, ignore_errors=True)  # a rebuilt site holds only the videos the runs hold now
        base = Path(run.source) if Path(run.source).is_dir() else Path(run.source).parent
        for result in run.results:
            source = find_video(result.video, base)
            if source is not None:
                _place(source, folder / source.name, link)
                run.videos[result.key] = f"videos/{run.label}/{source.name}"


def _place(source: Path, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        target.symlink_to(os.path.relpath(source.resolve(), target.parent.resolve()))
    else:
        shutil.copyfile(source, target)


def find_video(stored: str, run_dir: Path) -> Optional[Path]:
    if not stored:
        return None
    for candidate in (run_dir / "videos" / Path(stored).name, Path(stored)):
        if candidate.is_file():
            return candidate
    return None


# -- sweeps -----------------------------------------------------------------------------------------

def load_sweep_view(sweep_file) -> SweepView:
    """A sweep's table and plot data: from its points' stores when all are there (the table `evalkit sweep`
    writes), else from the table committed beside the sweep file (`<stem>.md`), saying so."""
    from evalkit.run.sweep import load_sweep, sweep_table

    _, points = load_sweep(sweep_file)
    if all((p.config.out_dir() / "results.sqlite").exists() for p in points):
        headers, rows, rates = sweep_table(points)
        note = "from the points' stores"
    else:
        committed = Path(sweep_file).with_suffix(".md")
        if not committed.exists():
            raise FileNotFoundError(f"{sweep_file}: the points' run directories are missing and there is no committed "
                                    f"table {committed}; run `evalkit sweep {sweep_file}` first")
        headers, rows = markdown_table(committed.read_text())
        rates = _rates_from_cells(headers, rows, points)
        note = (f"from the committed table {committed.name} (the points' run directories are not here: "
                f"`evalkit sweep {sweep_file}` re-creates them)")
    x_name, x_labels, series = sweep_series(points, rates)
    return SweepView(str(sweep_file), headers, rows, x_name, x_labels, series, note)


def markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table of a Markdown text: (headers, rows)."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        raise ValueError("no Markdown table found")
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return cells[0], [row for row in cells[2:]]


CELL = re.compile(r"^\s*([\d.]+) \[([\d.]+), ([\d.]+)\] \(n=(\d+)\)")  # evalkit.run.sweep's cell


def _rates_from_cells(headers, rows, points) -> dict:
    by_label = {p.label: p for p in points}
    first = headers.index("point") + 1 if "point" in headers else 1
    rates: dict = {}
    for row in rows:
        point = by_label.get(row[first - 1])
        for suite, cell in zip(headers[first:], row[first:]):
            match = CELL.match(cell)
            if point and match:
                rate, low, high, n = (float(match[1]) / 100, float(match[2]) / 100, float(match[3]) / 100, int(match[4]))
                rates.setdefault(suite, {})[point.name] = (rate, low, high, n)
    return rates


def sweep_series(points, rates: dict) -> tuple[str, list[str], list]:
    """As evalkit.run.sweep.plot_sweep: success against the first swept setting, a line per suite and
    per value of the other settings."""
    first = next(iter(points[0].settings), None)
    x_of = lambda p: str(p.settings.get(first, p.label)) if first else p.label
    x_labels = list(dict.fromkeys(x_of(p) for p in points))
    series = []
    for suite, by_point in sorted(rates.items()):
        lines: dict = {}
        for point in points:
            if point.name in by_point:
                rest = ", ".join(f"{k}={v}" for k, v in point.settings.items() if k != first)
                lines.setdefault(rest, []).append((x_labels.index(x_of(point)), *by_point[point.name][:3]))
        series += [(suite + (f" ({rest})" if rest else ""), values) for rest, values in lines.items()]
    return first or "point", x_labels, series


# -- build ------------------------------------------------------------------------------------------

def build_site(sources: Sequence, out, sweeps: Sequence = (), alpha: float = 0.05, threshold: float = 0.0,
               allow_errors: bool = False, link_videos: bool = False) -> Path:
    """Write SITE/index.html, SITE/tables/ and SITE/videos/; returns the page's path."""
    out = Path(out)
    _check_out(out, sources, sweeps)
    runs = load_runs(sources)  # everything is read (and refused) before anything is written
    sweep_views = [load_sweep_view(s) for s in sweeps]
    comparisons = compare_runs(runs, alpha, threshold, allow_errors)
    out.mkdir(parents=True, exist_ok=True)
    copy_videos(runs, out, link_videos)
    if sources:
        write_tables(sources, out, labels=[run.label for run in runs])
    page = render_page(runs, comparisons, sweep_views)
    (out / "index.html").write_text(page)
    return out / "index.html"


def _check_out(out: Path, sources: Sequence, sweeps: Sequence) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder for the site")
    if (out / "results.sqlite").exists() or any(out.resolve() == Path(s).resolve() for s in sources):
        raise ValueError(f"--out {out} is a run directory; name a folder of its own for the site")
    if not sources and not sweeps:
        raise ValueError("nothing to show: give run directories, export files or --sweep files")


def render_page(runs: list[RunView], comparisons: list[Comparison], sweeps: list[SweepView]) -> str:
    body = [_nav(runs, comparisons, sweeps)]
    if runs:
        body += [_section("runs", "Runs", "".join(_run_card(run, i) for i, run in enumerate(runs))),
                 _section("per-task", "Success per task", _task_chart(runs))]
    if comparisons:
        body.append(_section("compare", "Paired differences (evalkit compare)",
                             "".join(_comparison(c, runs) for c in comparisons)))
    if runs:
        body.append(_section("episodes", "Episodes", EPISODE_BROWSER))
    if sweeps:
        body.append(_section("sweeps", "Sweeps", "".join(_sweep(s) for s in sweeps)))
    data = json.dumps(page_data(runs), sort_keys=True).replace("</", "<\\/").replace("<!--", "<\\!--")
    parts = {"CSS": CSS, "BODY": "\n".join(body), "DATA": data, "SCRIPT": SCRIPT}
    pieces = re.split(r"@@([A-Z]+)@@", PAGE)  # filled in one pass: nothing inserted is scanned again
    return "".join(parts[piece] if i % 2 else piece for i, piece in enumerate(pieces))


def page_data(runs: list[RunView]) -> dict:
    """What the episode browser reads (embedded in the page as JSON)."""
    episodes = [{"run": run.label, "suite": r.suite, "task": r.task_id, "task_name": r.task_name,
                 "init": r.init_index, "seed": r.seed, "success": bool(r.success), "termination": r.termination,
                 "steps": r.steps, "queries": r.queries, "wall_s": round(r.wall_s, 2), "policy_s": round(r.policy_s, 2),
                 "error": r.error, "video": run.videos.get(r.key, ""), "video_missing": bool(r.video) and
                 r.key not in run.videos} for run in runs for r in run.results]
    return {"runs": [run.label for run in runs], "episodes": episodes}


# -- page parts -------------------------------------------------------------------------------------

def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{content}</section>'


def _nav(runs, comparisons, sweeps) -> str:
    links = [("runs", "Runs"), ("per-task", "Per task")] if runs else []
    links += [("compare", "Differences")] if comparisons else []
    links += [("episodes", "Episodes")] if runs else []
    links += [("sweeps", "Sweeps")] if sweeps else []
    names = ", ".join(f'<span class="swatch" style="background:{_colour(i)}"></span>{esc(run.label)}'
                      for i, run in enumerate(runs))
    return (f'<header><h1>evalkit results</h1><nav>{" ".join(f"<a href=#{a}>{t}</a>" for a, t in links)}</nav>'
            f'<p class="runs">{names}</p></header>')


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _run_card(run: RunView, index: int) -> str:
    n, wins = len(run.results), sum(r.success for r in run.results)
    title = (f'<h3 id="run-{esc(run.label)}"><span class="swatch" style="background:{_colour(index)}"></span>'
             f'{esc(run.label)} <small>{esc(run.source)} &middot; {wins}/{n} episodes succeeded</small></h3>')
    warnings = "".join(f"<li>{esc(w)}</li>" for w in run.report.warnings)
    deviations = f'<div class="deviation"><b>Deviations recorded with this run</b><ul>{warnings}</ul></div>' \
        if warnings else ""
    tables = "".join(_report_table(title, headers, rows, run) for title, (headers, rows) in run.report.sections()) \
        if run.results else "<p>no finished episodes yet</p>"
    return (f'<article class="run">{title}{_provenance(run)}{deviations}{tables}'
            f'<details><summary>report notes (as <code>evalkit report</code> prints them)</summary>'
            f'{"".join(f"<p>{esc(note)}</p>" for note in run.report.notes)}</details></article>')


def _provenance(run: RunView) -> str:
    identity, semantics = run.meta["identity"], run.meta["semantics"]
    protocol = semantics.get("protocol") or identity.get("protocol") or {}
    conventions = semantics.get("policy_conventions", {})
    mode = semantics.get("execution_mode") or identity.get("mode")
    if semantics.get("mode_requested") not in (None, mode):
        mode = f"{mode} (requested: {semantics['mode_requested']})"
    rows = [
        ("policy", f"{identity.get('policy')}, arguments: {_plain(identity.get('policy_args') or {}, 'none')}"),
        ("protocol", _protocol_words(protocol)),
        ("execution mode", mode),
        ("action conventions", _plain(semantics.get("action_postprocess", {})) +
         f"; sticky gripper variant {conventions.get('sticky_gripper_variant', '-')}"),
        ("image path", f"{_plain(conventions.get('image_path', {}))}; policy input "
                       f"{conventions.get('image_size', '-')} px, rendered {identity.get('image_size', '-')} px"),
        ("assets, seed", f"{identity.get('assets', '-')}, seed {identity.get('seed', '-')}"),
        ("simulator", _plain({name: info.get("simulator", "-") for name, info in run.meta["suites"].items()})),
        ("settled-state fingerprint", fingerprint_words(run.meta.get("reference_fingerprints") or {}, run.results)),
        ("git revision", _sessions_value(run.sessions, lambda s: s.get("git"))),
        ("package versions", _sessions_value(run.sessions, lambda s: _plain(s.get("versions") or {}))),
    ]
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="provenance">{cells}</table>'


def _plain(values: dict, empty: str = "-") -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items()) if values else empty


def _protocol_words(protocol: dict) -> str:
    if not protocol:
        return "-"
    budget = protocol.get("budget") or "suite limit"
    words = [f"{protocol.get('name')}: wait {protocol.get('wait_steps')} steps, budget {budget} "
             f"{protocol.get('budget_unit')}, success checked at "
             f"{SUCCESS_CHECKS.get(protocol.get('success_rule'), protocol.get('success_rule'))}",
             f"gripper rule {protocol.get('gripper_rule', 'as_mapped')}"]
    if protocol.get("sim_horizon"):
        words.append(f"simulator horizon {protocol['sim_horizon']}")
    return ", ".join(words)


def _sessions_value(sessions: list, get) -> str:
    """The value of the last session, and any other value an earlier session of the run had."""
    if not sessions:
        return "not recorded (an export made before exports carried sessions)"
    values = list(dict.fromkeys(str(get(s)) for s in sessions))
    if len(values) == 1:
        return values[0]
    return "; ".join(f"session {s.get('id', i + 1)}: {get(s)}" for i, s in enumerate(sessions))


def fingerprint_words(reference: dict, results: Sequence[EpisodeResult]) -> str:
    """The run's settled states against the pinned reference, in words, with a digest of all of them."""
    printed = [r for r in results if r.settle_fingerprint]
    if not printed:
        return "not recorded"
    digest = hashlib.sha256("\n".join(sorted(f"{r.key}={r.settle_fingerprint}" for r in printed)).encode()).hexdigest()
    checked = [r for r in printed if r.key in reference.get(r.suite, {})]
    differ = sorted({f"{r.suite} task {r.task_id}" for r in checked if reference[r.suite][r.key] != r.settle_fingerprint})
    verdict = ("no pinned reference recorded with these episodes" if not checked else
               f"all {len(checked)} with a pinned reference match it" if not differ else
               f"DIFFERS from the pinned reference in {', '.join(differ)} (another simulator; see evalkit doctor)")
    return f"digest {digest[:12]} of {len(printed)} episodes; {verdict}"


def _report_table(title: str, headers: list, rows: list, run: RunView) -> str:
    marks = _deviation_marks(run)
    counts = "episodes" in headers and "successes" in headers
    head = "".join(f"<th>{esc(h)}</th>" for h in headers) + ("<th>success, 95% Wilson</th>" if counts else "")
    body = []
    for row in rows:
        mark = marks.get(row[0], "")
        cells = "".join(f"<td>{esc(str(c))}</td>" for c in row)
        if mark:
            cells = f'<td>{esc(str(row[0]))} <span class="mark" title="{esc(mark)}">&#9888;</span></td>' + \
                "".join(f"<td>{esc(str(c))}</td>" for c in row[1:])
        if counts:
            cells += f"<td>{_ci_bar(int(row[headers.index('successes')]), int(row[headers.index('episodes')]))}</td>"
        body.append(f"<tr>{cells}</tr>")
    return (f'<h4>{esc(title)}</h4><table class="report" data-table="{table_slug(title)}" data-run="{esc(run.label)}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _deviation_marks(run: RunView) -> dict:
    """{suite: the warnings naming it}: a mark on that suite's rows, beside the numbers it affects."""
    marks: dict = {}
    for warning in run.report.warnings:
        for suite in {r.suite for r in run.results}:
            if re.search(rf"\b{re.escape(suite)}\b", warning):
                marks[suite] = (marks.get(suite, "") + " " + warning).strip()
    return marks


def _ci_bar(successes: int, n: int, width: int = 140) -> str:
    low, high = wilson_interval(successes, n)
    rate = successes / n if n else 0.0
    x = lambda v: 2 + v * (width - 4)
    return (f'<svg class="ci" width="{width}" height="14" role="img"><title>{successes}/{n} = {100 * rate:.1f}% '
            f'[{100 * low:.1f}, {100 * high:.1f}]</title><rect x="2" y="3" width="{width - 4}" height="8" fill="#eee"/>'
            f'<rect x="2" y="3" width="{x(rate) - 2:.1f}" height="8" fill="#7aa6e0"/>'
            f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="7" y2="7" stroke="#222"/>'
            f'<line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="3" y2="11" stroke="#222"/>'
            f'<line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="3" y2="11" stroke="#222"/></svg>')


# -- charts (inline SVG) ----------------------------------------------------------------------------

def _task_chart(runs: list[RunView]) -> str:
    """Success % per task, a bar per run with its 95% Wilson interval."""
    tallies = [tally_by(run.results, lambda r: (r.suite, r.task_id)) for run in runs]
    names = {(r.suite, r.task_id): r.task_name for run in runs for r in run.results}
    tasks = sorted(names)
    bar, gap, label_w, plot_w = 11, 10, 330, 420
    group = bar * len(runs) + gap
    height = 30 + group * len(tasks)
    parts = [_axis(label_w, plot_w, height)]
    for t, task in enumerate(tasks):
        y0 = 24 + t * group
        parts.append(f'<text x="{label_w - 6}" y="{y0 + group / 2}" text-anchor="end" class="label">'
                     f'{esc(_short(f"{task[0]} {task[1]}: {names[task]}", 52))}<title>{esc(names[task])}</title></text>')
        for i, tally in enumerate(tallies):
            if task in tally:
                parts.append(_bar(label_w, plot_w, y0 + i * bar, bar - 2, tally[task], _colour(i), runs[i].label))
    return f'<svg class="chart" width="{label_w + plot_w + 20}" height="{height}">{"".join(parts)}</svg>'


def _axis(left: int, width: int, height: int) -> str:
    ticks = "".join(f'<line x1="{left + width * v / 100}" x2="{left + width * v / 100}" y1="18" y2="{height - 4}" '
                    f'class="grid"/><text x="{left + width * v / 100}" y="12" text-anchor="middle" class="tick">{v}%'
                    f'</text>' for v in (0, 25, 50, 75, 100))
    return ticks


def _bar(left: int, width: int, y: float, h: float, tally, colour: str, run: str) -> str:
    low, high = wilson_interval(tally.successes, tally.n)
    x = lambda v: left + width * v
    tip = f"{run}: {tally.successes}/{tally.n} = {100 * tally.rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    return (f'<g><title>{esc(tip)}</title><rect x="{left}" y="{y}" width="{width * tally.rate:.1f}" height="{h}" '
            f'fill="{colour}" opacity="0.85"/><line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y + h / 2}" '
            f'y2="{y + h / 2}" class="whisker"/><line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="{y + 1}" '
            f'y2="{y + h - 1}" class="whisker"/><line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="{y + 1}" '
            f'y2="{y + h - 1}" class="whisker"/></g>')


def _short(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1] + "\u2026"


def _comparison(c: Comparison, runs: list[RunView]) -> str:
    title = f"<h3>{esc(c.candidate)} vs baseline {esc(c.baseline)}</h3>"
    if c.error:
        return f'{title}<p class="deviation">Not comparable: {esc(c.error)}</p>'
    verdict = (f'<p class="regression">Regression in {len(c.flagged)} row(s): {esc("; ".join(c.flagged))}</p>'
               if c.flagged else '<p class="ok">No significant regression.</p>')
    return (f'{title}{verdict}<p class="small">McNemar exact on paired episodes, Holm-adjusted (as '
            f'<code>evalkit compare</code>); a flagged row is a significant drop beyond the threshold.</p>'
            f'{_delta_chart(c.tasks, c.flagged)}{_compare_table("Per suite", c.suites, c.flagged)}'
            f'{_compare_table("Per task", c.tasks, c.flagged)}')


def _delta_chart(rows: list, flagged: list) -> str:
    label_w, half, bar = 330, 200, 16
    height = 30 + bar * len(rows)
    zero = label_w + half
    parts = [f'<line x1="{zero}" x2="{zero}" y1="16" y2="{height}" class="axis"/>'] + [
        f'<text x="{zero + half * v / 100}" y="12" text-anchor="middle" class="tick">{v:+d}</text>'
        for v in (-100, -50, 0, 50, 100)]
    for i, row in enumerate(rows):
        y, width = 20 + i * bar, half * row.delta_pp / 100
        colour = "#c0392b" if row.label in flagged else "#7f8c8d" if row.delta_pp <= 0 else "#2e9e5b"
        parts.append(f'<text x="{label_w - 6}" y="{y + 11}" text-anchor="end" class="label">{esc(_short(row.label, 52))}'
                     f'</text><rect x="{min(zero, zero + width):.1f}" y="{y + 2}" width="{abs(width):.1f}" '
                     f'height="{bar - 4}" fill="{colour}"><title>{esc(row.label)}: {row.delta_pp:+.1f} pp, p (Holm) '
                     f'{row.p_adjusted:.3g}</title></rect><text x="{zero + half + 8}" y="{y + 11}" class="label">'
                     f'{row.delta_pp:+.1f} pp{" REGRESSION" if row.label in flagged else ""}</text>')
    return f'<svg class="chart" width="{label_w + 2 * half + 130}" height="{height}">{"".join(parts)}</svg>'


def _compare_table(title: str, rows: list, flagged: list) -> str:
    headers = ["", "episodes", "baseline %", "candidate %", "delta pp", "only baseline", "only candidate", "p",
               "p (Holm)"]
    body = "".join(
        f'<tr class="{"flagged" if r.label in flagged else ""}"><td>{esc(r.label)}</td><td>{r.n}</td>'
        f"<td>{100 * r.baseline / r.n:.1f}</td><td>{100 * r.candidate / r.n:.1f}</td><td>{r.delta_pp:+.1f}</td>"
        f"<td>{r.baseline_only}</td><td>{r.candidate_only}</td><td>{r.p:.3g}</td><td>{r.p_adjusted:.3g}</td></tr>"
        for r in rows)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f'<h4>{esc(title)}</h4><table class="report"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _sweep(sweep: SweepView) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in sweep.headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in sweep.rows)
    return (f'<h3>{esc(sweep.source)}</h3><p class="small">Table and plot {esc(sweep.note)}.</p>'
            f'<table class="report sweep"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'{_sweep_plot(sweep)}')


def _sweep_plot(sweep: SweepView) -> str:
    """Success against the first swept setting, a line per series, 95% Wilson error bars."""
    left, top, width, height = 50, 16, max(240, 110 * len(sweep.x_labels)), 220
    x = lambda i: left + (i + 0.5) * width / max(1, len(sweep.x_labels))
    y = lambda v: top + height * (1 - v)
    parts = [f'<line x1="{left}" x2="{left + width}" y1="{y(v / 100):.1f}" y2="{y(v / 100):.1f}" class="grid"/>'
             f'<text x="{left - 6}" y="{y(v / 100) + 4:.1f}" text-anchor="end" class="tick">{v}%</text>'
             for v in (0, 25, 50, 75, 100)]
    parts += [f'<text x="{x(i):.1f}" y="{top + height + 16}" text-anchor="middle" class="tick">{esc(label)}</text>'
              for i, label in enumerate(sweep.x_labels)]
    for k, (name, values) in enumerate(sweep.series):
        colour = _colour(k)
        points = " ".join(f"{x(i):.1f},{y(rate):.1f}" for i, rate, _, _ in values)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, rate, low, high in values:
            parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(low):.1f}" y2="{y(high):.1f}" stroke="{colour}"/>'
                         f'<circle cx="{x(i):.1f}" cy="{y(rate):.1f}" r="3.5" fill="{colour}"><title>{esc(name)}: '
                         f'{100 * rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}]</title></circle>')
        parts.append(f'<line x1="{left + width + 10}" x2="{left + width + 26}" y1="{top + 14 * k + 6}" '
                     f'y2="{top + 14 * k + 6}" stroke="{colour}" stroke-width="2"/><text x="{left + width + 30}" '
                     f'y="{top + 14 * k + 10}" style="fill:{colour}" class="label">{esc(name)}</text>')
    parts.append(f'<text x="{left + width / 2}" y="{top + height + 34}" text-anchor="middle" class="label">'
                 f'{esc(sweep.x_name)}</text>')
    return f'<svg class="chart" width="{left + width + 320}" height="{top + height + 44}">{"".join(parts)}</svg>'


# -- the page's fixed parts -------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; media-src 'self' file:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>evalkit results</title><style>@@CSS@@</style></head>
<body>
@@BODY@@
<script type="application/json" id="evalkit-data">@@DATA@@</script>
<script>@@SCRIPT@@</script>
</body></html>
"""

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 24px 48px;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 0;z-index:2}
h1{font-size:20px;margin:4px 0}h2{border-bottom:2px solid #333;margin-top:28px}h3 small{font-weight:normal;color:#666}
nav a{margin-right:14px}.runs{margin:2px 0;color:#444}
.swatch{display:inline-block;width:11px;height:11px;margin:0 5px 0 10px;border-radius:2px}
table{border-collapse:collapse;margin:6px 0 14px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}table.report td{max-width:380px;overflow-wrap:anywhere}table.provenance th{width:190px}table.provenance td{max-width:900px;word-break:break-word}
.deviation{background:#fff4e0;border-left:4px solid #e67e22;padding:6px 12px;margin:8px 0}
.mark{color:#d35400;cursor:help}.regression{color:#c0392b;font-weight:bold}.ok{color:#2e7d32;font-weight:bold}
tr.flagged td{background:#fdecea}.small{color:#555;font-size:12px}
svg.chart text{font-size:11px;fill:#333}svg.chart .tick{fill:#777}svg .grid{stroke:#e5e5e5}svg .axis{stroke:#333}
svg .whisker{stroke:#111;stroke-width:1.2}
section{scroll-margin-top:90px}.filters label{margin-right:14px}.filters select{max-width:360px}.browser{display:flex;gap:16px;align-items:flex-start}
.list{flex:1 1 auto;min-width:0;overflow-x:auto}#player-box{position:sticky;top:96px;flex:0 0 420px}#episodes-table td{white-space:nowrap}
#episodes-table td.task{max-width:240px;overflow:hidden;text-overflow:ellipsis}
#player{width:100%;background:#000}#episodes-table{font-size:13px}#episodes-table td.ok{color:#2e7d32}
#episodes-table td.fail{color:#c0392b}pre{white-space:pre-wrap;font-size:11px;max-width:700px}
"""

EPISODE_BROWSER = """
<div class="filters"><label>run <select id="filter-run"></select></label>
<label>task <select id="filter-task"></select></label>
<label>outcome <select id="filter-outcome"></select></label> <span id="episode-count"></span></div>
<div class="browser"><div class="list"><table id="episodes-table"><thead><tr><th>run</th><th>suite</th><th>task</th><th>init</th>
<th>seed</th><th>outcome</th><th>termination</th><th>steps</th><th>queries</th><th>time s</th><th>policy s</th>
<th>video</th><th>error</th></tr></thead><tbody id="episode-rows"></tbody></table></div>
<div id="player-box"><video id="player" controls muted preload="auto"></video>
<div id="player-caption" class="small"></div></div></div>
"""

SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('evalkit-data').textContent);
  const $ = (id) => document.getElementById(id);
  if (!$('episode-rows')) return;
  const taskKey = (e) => e.suite + '/' + e.task;
  const outcome = (e) => e.success ? 'success' : e.termination;
  function options(select, pairs) {
    for (const [value, text] of pairs) {
      const o = document.createElement('option'); o.value = value; o.textContent = text; select.appendChild(o);
    }
  }
  const byTask = data.episodes.slice().sort((a, b) => a.suite < b.suite ? -1 : a.suite > b.suite ? 1 : a.task - b.task);
  const tasks = new Map(byTask.map((e) => [taskKey(e), e.suite + ' ' + e.task + ': ' + e.task_name]));
  const ends = [...new Set(data.episodes.map(outcome))].sort();
  options($('filter-run'), [['', 'all runs'], ...data.runs.map((r) => [r, r])]);
  options($('filter-task'), [['', 'all tasks'], ...tasks]);
  options($('filter-outcome'), [['', 'all'], ['failure', 'any failure'], ...ends.map((t) => [t, t])]);
  function shown(e) {
    const run = $('filter-run').value, task = $('filter-task').value, end = $('filter-outcome').value;
    return (!run || e.run === run) && (!task || taskKey(e) === task) &&
      (!end || (end === 'failure' ? !e.success : outcome(e) === end));
  }
  function cell(row, text, cls) {
    const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
  }
  function play(e) {
    $('player').src = e.video;
    $('player-caption').textContent = e.run + ': ' + e.suite + ' task ' + e.task + ' init ' + e.init + ' (' +
      outcome(e) + ')';
  }
  function render() {
    const body = $('episode-rows'); body.textContent = '';
    const rows = data.episodes.filter(shown);
    for (const e of rows) {
      const row = body.insertRow();
      row.dataset.run = e.run; row.dataset.outcome = outcome(e);
      cell(row, e.run); cell(row, e.suite); cell(row, e.task + ': ' + e.task_name, 'task').title = e.task_name;
      cell(row, e.init);
      cell(row, e.seed); cell(row, e.success ? 'success' : 'failure', e.success ? 'ok' : 'fail');
      cell(row, e.termination); cell(row, e.steps); cell(row, e.queries); cell(row, e.wall_s); cell(row, e.policy_s);
      const video = cell(row, e.video_missing ? 'missing' : '');
      if (e.video) {
        const a = document.createElement('a'); a.href = e.video; a.textContent = 'play'; a.className = 'play';
        a.addEventListener('click', (ev) => { ev.preventDefault(); play(e); });
        video.appendChild(a);
      }
      const error = cell(row, '');
      if (e.error) {
        const d = document.createElement('details'), s = document.createElement('summary');
        const pre = document.createElement('pre');
        s.textContent = e.error.trim().split('\n').pop().slice(0, 80); pre.textContent = e.error;
        d.append(s, pre); error.appendChild(d);
      }
    }
    $('episode-count').textContent = rows.length + ' of ' + data.episodes.length + ' episodes';
  }
  for (const id of ['filter-run', 'filter-task', 'filter-outcome']) $(id).addEventListener('change', render);
  render();
  const first = data.episodes.find((e) => e.video && !e.success) || data.episodes.find((e) => e.video);
  if (first) play(first); else $('player-box').style.display = 'none';
})();
"""
