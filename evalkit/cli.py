"""Command line: `evalkit run`, `report`, `compare`, `sweep`, `doctor`, `list`, ..."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evalkit.core import registry
from evalkit.results.report import report_runs

# `run` runs in a watched child process (evalkit/run/supervisor.py); tests that install fakes into this
# process (sys.modules, monkeypatches) turn it off, since a spawned child would not see them.
SUPERVISE = True


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from evalkit.run.supervisor import RunInterrupted

    try:
        return args.handler(args)
    except RunInterrupted as exc:
        print(f"evalkit: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("evalkit: interrupted", file=sys.stderr)
        return 130
    except (registry.UnknownNameError, ValueError, FileNotFoundError, TypeError, RuntimeError,
            ConnectionError, OSError) as exc:
        print(f"evalkit: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalkit", description="Benchmark robot VLA policies in simulation.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run episodes and store results (re-run to finish an interrupted run)")
    run.add_argument("--config", help="YAML file with the same keys as these flags (flags win)")
    run.add_argument("--suite", dest="suites", help="suite name(s), comma-separated (default libero_spatial)")
    run.add_argument("--policy", help="policy name (default oracle)")
    run.add_argument("--policy-arg", dest="policy_args", action="append", metavar="KEY=VALUE",
                     help="policy argument, repeatable (e.g. checkpoint=PATH)")
    run.add_argument("--mode", help="chunk execution: open_loop | receding:K | ensemble:TEMP | reference "
                                    "(the mode of the policy's published numbers on the suite's robot)")
    run.add_argument("--preset", help="protocol preset (default: the suite's own): " + ", ".join(registry.names("preset")))
    run.add_argument("--max-steps", type=int, help="override the budget (env steps or queries, per the preset)")
    run.add_argument("--budget-unit", choices=["env_steps", "queries"], help="override what the budget counts")
    run.add_argument("--success-rule", choices=["first", "chunk_end", "last"],
                     help="override when success is checked: every step (first success ends the episode), "
                          "the last step of each chunk, or the episode's last step")
    run.add_argument("--wait-steps", type=int, help="override the number of settling steps")
    run.add_argument("--tasks", help="task ids, comma-separated (default: all)")
    run.add_argument("--episodes-per-task", type=int, help="init states 0..N-1 per task (default: the suite's 50)")
    run.add_argument("--seed", type=int)
    run.add_argument("--workers", "-w", type=int, help="simulator processes (default 1)")
    run.add_argument("--out", help="run directory (default runs/<suite>__<policy>__<mode>__<preset>)")
    run.add_argument("--shard", metavar="I/N",
                     help="run only shard I (0-based) of N: episodes I, I+N, I+2N, ... of the run, into their own "
                          "directory (default out gets __shard-I-of-N); combine the shards with `evalkit merge`")
    run.add_argument("--video", nargs="?", const="all", default=None, metavar="all|failures|successes|N",
                     help="save an mp4 per episode: all (a bare --video), failures, successes, or N: the first N "
                          "init states of each task")
    run.add_argument("--log", choices=["wandb", "trackio"],
                     help="also log the finished run to an experiment tracker (extras 'wandb', 'trackio'): config, rates, "
                          "report table, a few failure videos")
    run.add_argument("--log-project", default="evalkit", help="the tracker's project name (default evalkit)")
    run.add_argument("--render-all", action="store_true", default=None,
                     help="render both cameras every step like a bare loop (slower; same outcomes)")
    run.add_argument("--assets", help="LIBERO assets folder or libero-assets.tar.gz")
    run.add_argument("--query-timeout-s", type=float,
                     help="a policy query taking longer ends its episode as timeout (default 600; 0: no limit)")
    run.add_argument("--episode-timeout-s", type=float,
                     help="an episode taking longer ends as timeout (default 3600; 0: no limit)")
    run.add_argument("--retry-errors", action="store_true",
                     help="run episodes stored as error or timeout again (lost to an outage, say); the old "
                          "results are kept in the store's `retried` table")
    ray = run.add_argument_group("Ray backend (evalkit/run/ray_backend.py; pip install 'evalkit[ray]')")
    ray.add_argument("--backend", choices=["local", "ray"], help="where episodes run (default local)")
    ray.add_argument("--ray-address", help="join this Ray cluster ('auto' or HOST:PORT; default: start a local Ray)")
    ray.add_argument("--ray-sim-cpus", type=float, help="CPUs per simulator actor (default 1); -w sets their number")
    ray.add_argument("--ray-sim-resources", metavar="NAME=AMOUNT,...",
                     help="custom resources per simulator actor, to place them on chosen nodes (e.g. sim=1)")
    ray.add_argument("--ray-policy-gpus", type=float, help="GPUs per policy actor (default 0)")
    ray.add_argument("--ray-policy-replicas", type=int, help="policy actors (default 1)")
    ray.add_argument("--ray-max-batch", type=int, help="most queries per act_batch in a policy actor (default 8)")
    ray.add_argument("--ray-max-wait-ms", type=float, help="how long a batch waits for more queries (default 2)")
    ray.add_argument("--episode-retries", type=int,
                     help="times an episode whose simulator actor died is run again (default 2)")
    run.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(handler=_cmd_run)

    report = sub.add_parser("report", help="success-rate tables of one or more run directories")
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    report.add_argument("--sim2real", metavar="ALIAS,...",
                        help="SimplerEnv: the reference checkpoint each run directory stands for, in order "
                             "(rt-2-x, rt-1-converged, rt-1-15pct, rt-1-x, rt-1-begin, octo-base, octo-small); "
                             "adds MMRV and Pearson r against their real-robot success rates")
    report.add_argument("--out-dir", metavar="DIR",
                        help="also write the tables as CSV and Markdown under DIR/tables/ (a folder per run, and all/ "
                             "for several), the files `evalkit view --out DIR` writes beside its page")
    report.set_defaults(handler=_cmd_report)

    view = sub.add_parser("view", help="a static HTML site of runs (tables, charts, episodes with videos); "
                                       "opens from disk, no server or network")
    view.add_argument("runs", nargs="*", metavar="RUN", help="run directories or `evalkit export` files")
    view.add_argument("--out", required=True, metavar="SITE_DIR", help="folder for index.html, tables/ and videos/")
    view.add_argument("--sweep", action="append", default=[], metavar="SWEEP.yaml",
                      help="add a sweep's table and plot (from its runs, else the table committed beside the file)")
    view.add_argument("--alpha", type=float, default=0.05, help="as evalkit compare, for the paired differences")
    view.add_argument("--threshold", type=float, default=0.0, help="as evalkit compare (percentage points)")
    view.add_argument("--allow-errors", action="store_true", help="as evalkit compare")
    view.add_argument("--link-videos", action="store_true",
                      help="relative links to the runs' videos instead of copies (the site then needs the runs)")
    view.set_defaults(handler=_cmd_view)

    sweep = sub.add_parser("sweep", help="run a grid or list of runs (resumable); table and PNG per sweep")
    sweep.add_argument("sweep_file")
    sweep.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    sweep.add_argument("--report-only", action="store_true", help="only rebuild the table and plot")
    sweep.add_argument("--no-progress", action="store_true")
    sweep.set_defaults(handler=_cmd_sweep)

    comp = sub.add_parser("compare", help="paired comparison of two runs; exit 0 ok, 1 regression, 2 not comparable")
    comp.add_argument("baseline", help="run directory or `evalkit export` file")
    comp.add_argument("candidate")
    comp.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm adjustment")
    comp.add_argument("--threshold", type=float, default=0.0,
                      help="only drops larger than this many percentage points count as regressions")
    comp.add_argument("--out", help="also write the Markdown report to this file")
    comp.add_argument("--allow-errors", action="store_true",
                      help="compare even when episodes are stored as error or timeout, counting them as failures "
                           "(by default such runs are not comparable: exit 2)")
    comp.set_defaults(handler=_cmd_compare)

    merge = sub.add_parser("merge", help="combine the shard directories of one run (evalkit run --shard I/N); "
                                         "exit 0 complete, 1 written with episodes missing (listed), 2 refused")
    merge.add_argument("shard_dirs", nargs="+", metavar="DIR", help="shard directories of one run")
    merge.add_argument("--out", required=True, help="run directory to write (new, or holding this run already)")
    merge.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    merge.set_defaults(handler=_cmd_merge)

    export = sub.add_parser("export", help="write a run's episodes as JSON lines (a baseline small enough to commit)")
    export.add_argument("run_dir")
    export.add_argument("out")
    export.set_defaults(handler=_cmd_export)

    serve = sub.add_parser("serve", help="serve a policy over openpi's websocket wire format (see evalkit/serve/server.py)")
    serve.add_argument("--policy", required=True, help="policy name (as for run)")
    serve.add_argument("--policy-arg", dest="policy_args", action="append", default=[], metavar="KEY=VALUE",
                       help="policy argument, repeatable")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all interfaces)")
    serve.add_argument("--port", type=int, default=8000, help="port (0: any free one, printed at start)")
    serve.add_argument("--max-batch", type=int, default=8, help="most queries answered by one act_batch call (1: off)")
    serve.add_argument("--max-wait-ms", type=float, default=2.0,
                       help="how long the first query of a batch waits for others to join it")
    serve.add_argument("--max-frame-mb", type=float, default=64.0,
                       help="largest frame read from a client (MB); a larger one closes its connection unread")
    serve.add_argument("--token", help="shared token clients must send (default: $EVALKIT_TOKEN; "
                                       "prefer the variable: arguments show in `ps`)")
    serve.set_defaults(handler=_cmd_serve)

    pairs = sub.add_parser("pairs", help="NORA-1.5 preference pairs: score K candidate chunks per state, export parquet")
    source = pairs.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", action="append", metavar="FILE.npz",
                        help="episode file (format: evalkit/posttrain/pairs.py), repeatable")
    source.add_argument("--rollout", metavar="SUITE", help="record one episode of this suite and score its states")
    pairs.add_argument("--policy", required=True, help="policy sampling the candidates")
    pairs.add_argument("--policy-arg", dest="policy_args", action="append", default=[], metavar="KEY=VALUE")
    pairs.add_argument("--rollout-policy", help="policy that plays the rollout (default: --policy)")
    pairs.add_argument("--rollout-policy-arg", dest="rollout_policy_args", action="append", default=[],
                       metavar="KEY=VALUE")
    pairs.add_argument("--task", type=int, default=0, help="rollout task id")
    pairs.add_argument("--init", type=int, default=0, help="rollout init state")
    pairs.add_argument("--save-episode", metavar="FILE.npz", help="also keep the recorded rollout as an episode file")
    pairs.add_argument("--world-model", help="for R_g variants: " + ", ".join(registry.names("world_model")))
    pairs.add_argument("--world-model-arg", dest="world_model_args", action="append", default=[], metavar="KEY=VALUE",
                       help="e.g. checkpoint=vjepa2-ac-vitg.pt repo=PATH predictor=FILE")
    pairs.add_argument("--variant", default="R_tot", help="R_a | R_g_end | R_g_sub | R_tot | R_tot_sub")
    pairs.add_argument("--k", type=int, default=8, help="candidate chunks per state")
    pairs.add_argument("--stride", type=int, default=1, help="score every STRIDE-th state")
    pairs.add_argument("--subgoal-offset", type=int, help="sub-goal frame t+N (default N = chunk length)")
    pairs.add_argument("--action-weight", type=float, default=0.5, help="w in R_tot = R_g + w R_a")
    pairs.add_argument("--min-margin", type=float, default=0.0, help="skip pairs whose rewards differ by less")
    pairs.add_argument("--max-pairs-per-state", type=int)
    pairs.add_argument("--out", required=True, help="parquet file to write")
    pairs.add_argument("--no-progress", action="store_true")
    pairs.set_defaults(handler=_cmd_pairs)

    lister = sub.add_parser("list", help="registered suites, policies and protocol presets")
    lister.set_defaults(handler=_cmd_list)

    check = sub.add_parser("check", help="contract checks of a policy or suite (your own adapter too); exit 0 pass, "
                                         "1 a check failed, 2 bad input")
    check_kinds = check.add_subparsers(dest="check_kind", required=True)
    check_policy = check_kinds.add_parser("policy", help="spec, chunk shape/dtype/finite values, determinism, "
                                                         "act_batch equal to a loop of act")
    check_policy.add_argument("name", help="a registered policy or module:attr")
    check_policy.add_argument("--policy-arg", dest="policy_args", action="append", default=[], metavar="KEY=VALUE")
    check_policy.add_argument("--suite", help="query observations of this suite's env (default: synthetic ones; the "
                                              "fake suite's for a privileged policy)")
    check_suite = check_kinds.add_parser("suite", help="episode grid, reset determinism, cameras, step flags")
    check_suite.add_argument("name", help="a registered suite or module:attr")
    check_suite.add_argument("--cameras", help="cameras to request, comma-separated (default: the suite's "
                                               "info['cameras'], else agentview)")
    check_suite.add_argument("--assets", help="suite assets folder or tarball")
    check.set_defaults(handler=_cmd_check)

    doctor = sub.add_parser("doctor", help="check this install's simulator physics against the pinned reference "
                                           "(settled-state fingerprints) and package versions; exit 1 on drift")
    doctor.add_argument("--suite", dest="suites", help="suites to check, comma-separated (default: every suite "
                                                        "with a committed reference)")
    doctor.add_argument("--assets", help="LIBERO/SimplerEnv assets folder or tarball")
    doctor.set_defaults(handler=_cmd_doctor)
    return parser


def run_config_from_args(args: argparse.Namespace):
    from evalkit.run.driver import RunConfig

    values: dict = {}
    if args.config:
        values.update(_load_yaml(Path(args.config)))
    flags = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("config", "handler", "command", "format", "no_progress", "retry_errors",
                                            "log", "log_project")}
    if "policy_args" in flags:
        values["policy_args"] = {**values.get("policy_args", {}), **_parse_key_values(flags.pop("policy_args"))}
    if "ray_sim_resources" in flags:
        flags["ray_sim_resources"] = {k: _amount(k, v) for k, v in _parse_key_values(
            flags.pop("ray_sim_resources").split(","), "--ray-sim-resources").items()}
    # --tasks stays a string: RunConfig.from_dict parses it and names a bad or repeated id
    values.update(flags)
    return RunConfig.from_dict(values)


def _load_yaml(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of run settings at the top level")
    if "suite" in data and "suites" not in data:
        data["suites"] = data.pop("suite")
    return data


def _parse_key_values(items: list[str], flag: str = "--policy-arg") -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _amount(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--ray-sim-resources: {key}={value!r} is not a number") from None


def _cmd_run(args) -> int:
    from evalkit.run.driver import execute

    config = run_config_from_args(args)
    out = execute(config, progress=not args.no_progress, retry_errors=args.retry_errors, supervise=SUPERVISE)
    print(report_runs([out], args.format))
    print(f"results: {out}")
    if args.log:  # the tracker is imported only here (extras "wandb", "trackio")
        from evalkit.results.tracking import log_run

        print(f"logged to {args.log}: {log_run(args.log, out, project=args.log_project)}")
    return 0


def _cmd_report(args) -> int:
    sim2real = [a.strip() for a in args.sim2real.split(",") if a.strip()] if args.sim2real else []
    print(report_runs(args.run_dirs, args.format, sim2real=sim2real))
    if args.out_dir:
        from evalkit.results.report import write_tables

        written = write_tables(args.run_dirs, args.out_dir, sim2real=sim2real)
        print(f"tables: {len(written)} files under {Path(args.out_dir) / 'tables'}", file=sys.stderr)
    return 0


def _cmd_view(args) -> int:
    import time

    from evalkit.results.view import build_site

    start = time.perf_counter()
    page = build_site(args.runs, args.out, args.sweep, args.alpha, args.threshold, args.allow_errors, args.link_videos)
    print(f"site: {page} ({time.perf_counter() - start:.2f} s); open it in a browser, no server needed")
    return 0


def _cmd_sweep(args) -> int:
    from evalkit.run.sweep import load_sweep, run_sweep, sweep_report

    out, points = load_sweep(args.sweep_file)
    if not args.report_only:
        run_sweep(points, progress=not args.no_progress)
    print(sweep_report(out, points, args.format))
    return 0


def _cmd_compare(args) -> int:
    """Exit codes a CI script can trust: 0 no regression, 1 regression, 2 not comparable; 3 bad
    input (a missing or unreadable run, a threshold or alpha that is not a finite number in range),
    4 evalkit itself failed."""
    import math
    import traceback

    from evalkit.results.compare import BAD_INPUT, CRASHED, compare

    if not math.isfinite(args.threshold) or args.threshold < 0 or not 0 < args.alpha < 1:
        print(f"evalkit compare: error: --threshold must be a finite number >= 0 (got {args.threshold}) and "
              f"--alpha within (0, 1) (got {args.alpha})", file=sys.stderr)
        return BAD_INPUT
    try:
        code, report = compare(args.baseline, args.candidate, args.alpha, args.threshold, args.allow_errors)
    except (FileNotFoundError, ValueError) as exc:
        print(f"evalkit compare: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except Exception:
        print("evalkit compare: internal error:\n" + traceback.format_exc(), file=sys.stderr)
        return CRASHED
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return code


def _cmd_merge(args) -> int:
    """Exit 0: every episode of the run is in OUT; 1: OUT written, episodes missing (listed); 2: refused
    (shards of different runs, simulators or splits; conflicting duplicates; OUT holds another run)."""
    from evalkit.results.merge import merge_runs
    from evalkit.run.driver import git_revision

    merged = merge_runs(args.shard_dirs, args.out, provenance={"git": git_revision()})
    print(report_runs([merged.out], args.format))
    print(merged.text())
    return 0 if merged.complete else 1


def _cmd_export(args) -> int:
    from evalkit.results.store import export_run

    print(f"wrote {export_run(args.run_dir, args.out)} episodes to {args.out}")
    return 0


def _cmd_serve(args) -> int:
    from evalkit.serve.server import serve_policy

    serve_policy(args.policy, _parse_key_values(args.policy_args), args.host, args.port, args.max_batch,
                 args.max_wait_ms, token=args.token, max_frame_mb=args.max_frame_mb)
    return 0


def _cmd_pairs(args) -> int:
    from evalkit.posttrain.pairs import PairSettings, load_episode, make_world_model, record_rollout, save_episode, write_pairs

    settings = PairSettings(args.variant, args.k, args.stride, args.subgoal_offset, args.action_weight,
                            args.min_margin, args.max_pairs_per_state)
    policy = registry.make_policy(args.policy, _parse_key_values(args.policy_args))
    if args.rollout:
        player = (registry.make_policy(args.rollout_policy, _parse_key_values(args.rollout_policy_args))
                  if args.rollout_policy else policy)
        episodes = [record_rollout(args.rollout, player, args.task, args.init)]
        if args.save_episode:  # then the rows' observation_ref points into that file
            episodes[0].source = str(save_episode(episodes[0], args.save_episode))
    else:
        episodes = [load_episode(path) for path in args.dataset]
    world = make_world_model(args.world_model, _parse_key_values(args.world_model_args)) if args.world_model else None
    count = write_pairs(policy, episodes, settings, args.out, world, progress=not args.no_progress)
    print(f"wrote {count} preference pairs ({settings.variant}, k={settings.k}) to {args.out}")
    return 0


def _cmd_doctor(args) -> int:
    from evalkit.checks.doctor import doctor

    return doctor([s for s in args.suites.split(",") if s] if args.suites else None, args.assets)


def _cmd_list(args) -> int:
    """Every name with one line about it, aligned on the longest name; a name that is not built in
    (an installed package's entry point) says where it comes from."""
    sections = [(kind, title, registry.names(kind)) for kind, title in (
        ("suite", "suites"), ("policy", "policies"), ("preset", "protocol presets"),
        ("world_model", "world models (evalkit pairs)"))]
    width = max(len(name) for _, _, names in sections for name in names)
    for kind, title, names in sections:
        print(f"{title}:")
        for name in names:
            origin = registry.origin_of(kind, name)
            where = "" if origin == "built in" else f"  [{origin}]"
            print(f"  {name:{width}s}  {registry.describe(kind, name)}{where}")
    return 0


def _cmd_check(args) -> int:
    """Exit 0 when every check passes (skipped ones too), 1 when one fails, 2 for bad input (an
    unknown name or argument)."""
    from evalkit.checks.contracts import check_policy, check_suite, failed, format_findings

    try:
        if args.check_kind == "policy":
            findings = check_policy(args.name, _parse_key_values(args.policy_args), args.suite)
        else:
            cameras = tuple(c for c in (args.cameras or "").split(",") if c) or None
            findings = check_suite(args.name, cameras, args.assets)
    except (registry.UnknownNameError, ValueError) as exc:
        print(f"evalkit check: error: {exc}", file=sys.stderr)
        return 2
    print(format_findings(f"evalkit check {args.check_kind} {args.name}", findings))
    return 1 if failed(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
