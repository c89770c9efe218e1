"""What the Ray backend costs and gives, on this machine (issue 14).

    .venv/bin/python scripts/bench_ray.py [--out results/bench_ray.md]

1. Overhead per episode: the same episodes with local workers (-w 2) and with the Ray backend (-w 2
   simulator actors on a local Ray, started beforehand so its start-up is reported apart), on the fake
   suite (the overhead alone: its episodes cost microseconds) and on LIBERO (the oracle).
2. Throughput with one and two Ray nodes (1 CPU and one `sim` each, on this machine), fake suite and
   LIBERO: episodes per second with 1 simulator actor on one node, then 2 across two nodes.
Wall times are medians of `--repeats` runs, each into a fresh directory; all figures come from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from evalkit.run.driver import RunConfig, execute  # noqa: E402

WORKLOADS = {
    "fake": dict(suites=["fake"], policy="scripted-reach", policy_args={"chunk_size": 2}, episodes_per_task=10),
    "libero": dict(suites=["libero_spatial"], policy="oracle", tasks=[0, 1], episodes_per_task=2),
}
PORT = 6391


def timed_run(workload: str, scratch: Path, **settings) -> tuple[float, int]:
    out = Path(tempfile.mkdtemp(dir=scratch))
    config = RunConfig.from_dict({**WORKLOADS[workload], "out": str(out), **settings})
    start = time.perf_counter()
    execute(config, progress=False)
    seconds = time.perf_counter() - start
    count = _episodes(out)
    shutil.rmtree(out)
    return seconds, count


def _episodes(out: Path) -> int:
    from evalkit.results.store import ResultStore

    with ResultStore(out, readonly=True) as store:
        return len(store.results())


def median_run(workload, scratch, repeats, **settings) -> tuple[float, int]:
    runs = [timed_run(workload, scratch, **settings) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), runs[0][1]


def ray_cli(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "ray"), *args], check=True, capture_output=True)


def overhead(scratch: Path, repeats: int) -> list[dict]:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    timed_run("fake", scratch, backend="ray", workers=2, episodes_per_task=1)  # warm: worker processes, imports
    rows = []
    for workload in WORKLOADS:
        local, n = median_run(workload, scratch, repeats, workers=2)
        on_ray, _ = median_run(workload, scratch, repeats, backend="ray", workers=2)
        rows.append({"workload": workload, "episodes": n, "local_s": local, "ray_s": on_ray,
                     "overhead_per_episode_s": (on_ray - local) / n, "ray_startup_s": startup})
    ray.shutdown()
    return rows


def nodes(scratch: Path, repeats: int) -> list[dict]:
    import ray

    rows = []
    ray_cli("stop", "--force")
    ray_cli("start", "--head", "--port", str(PORT), "--num-cpus", "1", "--resources", json.dumps({"sim": 1}),
            "--include-dashboard", "false")
    try:
        for count in (1, 2):
            if count == 2:
                ray_cli("start", "--address", f"127.0.0.1:{PORT}", "--num-cpus", "1", "--resources",
                        json.dumps({"sim": 1}))
                time.sleep(3)
            ray.init(address=f"127.0.0.1:{PORT}", log_to_driver=False)
            for workload in WORKLOADS:
                seconds, n = median_run(workload, scratch, repeats, backend="ray", workers=count,
                                        ray_sim_resources={"sim": 1})
                rows.append({"workload": workload, "nodes": count, "episodes": n, "seconds": seconds,
                             "episodes_per_s": n / seconds})
            ray.shutdown()
    finally:
        ray_cli("stop", "--force")
    return rows


def report(over: list[dict], scaling: list[dict], repeats: int) -> str:
    lines = ["# Ray backend: overhead and node scaling on this machine (issue 14)", "",
             f"Command: `.venv/bin/python scripts/bench_ray.py` (median of {repeats} runs each; one run of the script; "
             "2 shared CPU cores, no GPU).", "",
             "## Overhead per episode (same episodes, -w 2 local workers vs 2 Ray simulator actors)", "",
             "| workload | episodes | local workers s | Ray s | Ray overhead per episode s |", "|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['episodes']} | {r['local_s']:.2f} | {r['ray_s']:.2f} | "
              f"{r['overhead_per_episode_s']:+.3f} |" for r in over]
    lines += ["", f"Starting the local Ray itself took {over[0]['ray_startup_s']:.1f} s (once per run process).", "",
              READING, "",
              "## Throughput with one and two nodes (1 CPU and one simulator actor per node)", "",
              "| workload | nodes | episodes | s | episodes/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['nodes']} | {r['episodes']} | {r['seconds']:.2f} | {r['episodes_per_s']:.2f} |"
              for r in scaling]
    lines += ["", ARITHMETIC]
    return "\n".join(lines) + "\n"


READING = ("Reading: the fake suite's overhead is Ray's cost per episode proper (dispatch, the result through the object store, each query through the policy actor: scripted-reach is stateless). The LIBERO difference also holds per-run fixed costs (simulator actor processes start and import the simulator) spread over 4 episodes.")

ARITHMETIC = """## What this machine can and cannot show, and the arithmetic for a real cluster

Both "nodes" here share the same two cores, so the two-node row shows that episodes are spread over
nodes and that the second node's simulator adds throughput while a core is free; it cannot show network
costs between machines, GPU policy actors, or scaling beyond two cores. The overhead row is the part that
carries over: what Ray adds per episode (task dispatch, the result through the object store, for a
stateless policy each query through the policy actor) against local workers.

For a real cluster, episodes per second is bounded by the simulators and by the policy:
- simulators: N CPU nodes x C cores, one simulator actor per core, each running 1 / (T_step x S)
  episodes per second, with T_step about 0.2 s per LIBERO step with two cameras on one core
  (`results/bench_libero_steps.md`) and S the steps of an episode (about 100-300 for a good policy on
  LIBERO, up to the 220-520 step budget for failures);
- policy: each policy actor answers a batch of B queries in L(B) seconds (`results/bench_serve.md` for the
  serving path; a 7B VLA on one A100/H100: roughly 0.1-0.3 s for B = 8-32), so R replicas answer
  R x B / L(B) queries per second, and an episode needs S / K queries (K actions executed per query).
Example: 4 CPU nodes x 32 cores = 128 simulator actors at 200 steps per episode is 128 / (0.2 x 200) =
3.2 episodes/s, i.e. 3.2 x 200 / K queries per second; with K = 5 (a NORA-LONG chunk executed open loop)
that is 128 queries/s, which two GPU replicas at B = 32, L = 0.25 s (256 queries/s) serve with room to
spare. 2,000 LIBERO episodes then take about 2000 / 3.2 = 10-11 minutes, against about 40 hours for
the same episodes one after another on one core.
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/bench_ray.md")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        over = overhead(scratch, args.repeats)
        scaling = nodes(scratch, args.repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(over, scaling, args.repeats)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
