"""`evalkit sweep SWEEP.yaml`: a grid (or list) of runs sharing one results directory.

    out: runs/sweep-modes            # each grid point is a run in OUT/<point name>/
    base:                            # run settings shared by every point (as in `evalkit run`)
      suites: [libero_spatial]
      policy: random
      episodes_per_task: 2
    grid:                            # every combination; dotted keys reach into policy_args
      mode: [open_loop, "receding:2"]
      policy_args.chunk_size: [1, 5]
    # or, instead of grid, an explicit list of points, optionally labelled and grouped:
    # points:
    #   - {group: R_a, label: ra-seed0, policy_args: {checkpoint: ckpt/ra-0}}
    #   - {group: R_a, label: ra-seed1, policy_args: {checkpoint: ckpt/ra-1}}
    #   - {group: R_g-subgoal, label: rg-seed0, policy_args: {checkpoint: ckpt/rg-0}}

Each point is an ordinary run, so re-running the sweep finishes only what is missing.
The report is one table (a row per point, a column per suite, success % with Wilson
intervals) and a PNG of success against the first swept setting, a line per suite.
With groups (e.g. the reward variant each checkpoint was post-trained with: R_a, R_g end- or
sub-goal, R_tot), the table's first column is the group, rows are grouped by it in order of first
appearance, and a group of several points gets a "pooled" row over all their episodes.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from evalkit.results.report import render, tally_by, wilson_interval
from evalkit.run.driver import RunConfig, execute
from evalkit.results.store import ResultStore


@dataclass
class SweepPoint:
    name: str  # folder name under the sweep directory
    label: str  # what the table shows
    settings: dict  # the swept values, e.g. {"mode": "receding:2", "policy_args.chunk_size": 5}
    config: RunConfig
    group: str = ""  # rows of one group are shown together (e.g. a reward variant)


def load_sweep(path: str | Path) -> tuple[Path, list[SweepPoint]]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sweep file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    return expand(spec, default_out=Path("runs") / f"sweep-{path.stem}")


def expand(spec: dict, default_out: Path = Path("runs/sweep")) -> tuple[Path, list[SweepPoint]]:
    if not isinstance(spec, dict):
        raise ValueError(f"a sweep file holds a mapping (out, base, and grid or points); got {type(spec).__name__}")
    unknown = set(spec) - {"out", "base", "grid", "points"}
    if unknown:
        raise ValueError(f"unknown sweep key(s) {sorted(unknown)}; use out, base, and grid or points")
    if ("grid" in spec) == ("points" in spec):
        raise ValueError("a sweep needs exactly one of 'grid' (combinations) or 'points' (a list)")
    if not isinstance(spec.get("out") or "", str):
        raise ValueError(f"sweep 'out' must be a directory path; got {spec['out']!r}")
    out = Path(spec.get("out") or default_out)
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        raise ValueError(f"sweep 'base' must be a mapping of run settings; got {base!r}")
    combos = _grid_combos(spec["grid"]) if "grid" in spec else _point_list(spec["points"])
    points = []
    for settings in combos:
        group = str(settings.pop("group", ""))
        label = str(settings.pop("label", "")) or ", ".join(f"{k}={v}" for k, v in settings.items())
        name = _folder_name(label)
        config = RunConfig.from_dict({**_apply(base, settings), "out": str(out / name)})
        points.append(SweepPoint(name, label, settings, config, group))
    if len({p.name for p in points}) != len(points):
        raise ValueError("two sweep points have the same name; give them distinct labels")
    return out, points


def _grid_combos(grid) -> list[dict]:
    """Every combination; each key needs a list of values (a bare string would be swept char by char)."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"sweep 'grid' must map settings to lists of values (e.g. mode: [open_loop, "
                         f"\"receding:2\"]); got {grid!r}")
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ValueError(f"sweep grid key {key!r} must be a list of values; got {values!r} "
                             f"({type(values).__name__}): write {key}: [{values}] for one value")
        if not values:
            raise ValueError(f"sweep grid key {key!r} has no values; give it at least one (or remove it)")
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _point_list(points) -> list[dict]:
    if not isinstance(points, list) or not points or not all(isinstance(p, dict) for p in points):
        raise ValueError(f"sweep 'points' must be a non-empty list of mappings (e.g. - {{label: a, policy_args: "
                         f"{{seed: 1}}}}); got {points!r}")
    return [dict(point) for point in points]


def _folder_name(label: str) -> str:
    """The point's folder under the sweep directory: never the directory itself or its parent."""
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "-", label.replace(", ", "__"))
    if not name.strip(".-"):
        raise ValueError(f"sweep point label {label!r} cannot name a folder inside the sweep directory; "
                         f"use letters or digits")
    return name


def _apply(base: dict, settings: dict) -> dict:
    """Base settings with the point's values; 'policy_args.x' sets one policy argument."""
    merged = {**base, "policy_args": dict(base.get("policy_args") or {})}
    for key, value in settings.items():
        if key.startswith("policy_args."):
            merged["policy_args"][key.split(".", 1)[1]] = value
        elif key == "policy_args":
            if not isinstance(value, dict):
                raise ValueError(f"a sweep point's policy_args must be a mapping; got {value!r}")
            merged["policy_args"].update(value)
        else:
            merged[key] = value
    return merged


def run_sweep(points: list[SweepPoint], progress: bool = True) -> None:
    for index, point in enumerate(points, 1):
        if progress:
            print(f"[sweep {index}/{len(points)}] {point.label}", flush=True)
        execute(point.config, progress=progress, supervise=True)  # a dying point costs one episode, as in `run`


def sweep_table(points: list[SweepPoint]) -> tuple[list[str], list[list[str]], dict]:
    """Rows per point (grouped, when points have groups), a column per suite; also
    {suite: {point name: (rate, low, high, n)}} for the plot."""
    results = {}
    for point in points:
        with ResultStore(point.config.out_dir(), readonly=True) as store:
            results[point.name] = store.results()
    rates = {}
    for point in points:
        for suite, stats in _suite_rates(results[point.name]).items():
            rates.setdefault(suite, {})[point.name] = stats
    suites = sorted(rates)
    if not any(point.group for point in points):
        return ["point", *suites], [[p.label, *_cells(results[p.name], suites)] for p in points], rates
    rows = []
    for group, members in _by_group(points).items():
        rows += [[group, p.label, *_cells(results[p.name], suites)] for p in members]
        if len(members) > 1:  # the group's checkpoints together: more episodes, a tighter interval
            rows.append([group, "pooled", *_cells([r for p in members for r in results[p.name]], suites)])
    return ["group", "point", *suites], rows, rates


def _suite_rates(results) -> dict:
    """{suite: (rate, Wilson low, Wilson high, n)}"""
    return {suite: (tally.rate, *wilson_interval(tally.successes, tally.n), tally.n)
            for suite, tally in tally_by(results, lambda r: r.suite).items()}


def _cells(results, suites: list[str]) -> list[str]:
    rates = _suite_rates(results)
    return [f"{100 * rates[s][0]:.1f} [{100 * rates[s][1]:.1f}, {100 * rates[s][2]:.1f}] (n={rates[s][3]})"
            if s in rates else "-" for s in suites]


def _by_group(points: list[SweepPoint]) -> dict[str, list[SweepPoint]]:
    groups: dict[str, list[SweepPoint]] = {}
    for point in points:  # dicts keep the order of first appearance
        groups.setdefault(point.group, []).append(point)
    return groups


def plot_sweep(points: list[SweepPoint], rates: dict, path: Path) -> Path:
    """Success against the first swept setting, one line per suite (and per value of the others)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(points[0].settings), None)
    x_labels = list(dict.fromkeys(str(p.settings.get(first, p.label)) if first else p.label for p in points))
    fig, ax = plt.subplots(figsize=(7, 4))
    for suite, by_point in sorted(rates.items()):
        series: dict[str, list] = {}
        for point in points:
            if point.name not in by_point:
                continue
            rest = ", ".join(f"{k}={v}" for k, v in point.settings.items() if k != first)
            x = x_labels.index(str(point.settings.get(first, point.label)) if first else point.label)
            series.setdefault(rest, []).append((x, *by_point[point.name][:3]))
        for rest, values in series.items():
            xs, ys, lows, highs = zip(*values)
            ys = [100 * y for y in ys]
            # clipped at 0: at 0% or 100% the Wilson bound equals the rate up to rounding
            err = [[max(0.0, y - 100 * lo) for y, lo in zip(ys, lows)],
                   [max(0.0, 100 * hi - y) for y, hi in zip(ys, highs)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{suite}" + (f" ({rest})" if rest else ""))
    ax.set_xticks(range(len(x_labels)), x_labels, rotation=20)
    ax.set_xlabel(first or "point")
    ax.set_ylabel("success % (95% Wilson)")
    ax.set_ylim(-5, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sweep_report(out: Path, points: list[SweepPoint], fmt: str = "markdown") -> str:
    headers, rows, rates = sweep_table(points)
    plot = plot_sweep(points, rates, out / "sweep.png")
    text = render(headers, rows, fmt)
    suffix = {"markdown": "md", "csv": "csv", "latex": "tex"}[fmt]
    (out / f"sweep.{suffix}").write_text(text + "\n")
    return f"{text}\n\nplot: {plot}"
