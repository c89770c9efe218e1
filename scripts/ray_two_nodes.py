"""A two-node Ray cluster on this machine, a LIBERO run across both nodes, then one node stopped
mid-run: the run must finish with every episode stored exactly once (issue 14).

    .venv/bin/python scripts/ray_two_nodes.py [--out results/ray_two_nodes.md]

A head node and a second node (`ray start --address ...`) get 1 CPU and one `sim` each, so the two
simulator actors (`--ray-sim-resources sim=1`) land one per node. When two episodes are stored,
the second node's raylet is SIGKILLed (what a lost machine looks like to Ray). The same episodes
are then run with `-w 1` locally, and the outcomes compared.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PORT = 6390
RUN = ["--suite", "libero_spatial", "--policy", "oracle", "--tasks", "0,1", "--episodes-per-task", "3", "--no-progress"]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def ray(*args: str) -> str:
    return subprocess.run([str(BIN / "ray"), *args], capture_output=True, text=True, env=ENV, check=True).stdout


def start_cluster() -> None:
    ray("stop", "--force")
    ray("start", "--head", "--port", str(PORT), "--num-cpus", "1", "--resources", json.dumps({"sim": 1, "head": 1}),
        "--include-dashboard", "false")
    ray("start", "--address", f"127.0.0.1:{PORT}", "--num-cpus", "1", "--resources", json.dumps({"sim": 1, "second": 1}))


def second_node_raylet() -> int:
    """The pid of the second node's raylet (its resources hold `second`)."""
    code = ("import ray, json; ray.init(address='127.0.0.1:%d', log_to_driver=False); "
            "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive'] and 'second' in n['Resources']]))" % PORT)
    node_ids = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                                         check=True).stdout.strip().splitlines()[-1])
    found = subprocess.run(["pgrep", "-f", f"raylet.*--node_id={node_ids[0]}"], capture_output=True, text=True)
    return int(found.stdout.split()[0])


def stored(out: Path) -> list[tuple]:
    try:
        db = sqlite3.connect(out / "results.sqlite")
        rows = db.execute("SELECT key, termination, steps, queries FROM episodes ORDER BY key").fetchall()
        db.close()
        return rows
    except sqlite3.Error:
        return []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/ray_two_nodes.md")
    parser.add_argument("--runs", default="runs/ray-two-nodes")
    args = parser.parse_args()
    runs = ROOT / args.runs
    subprocess.run(["rm", "-rf", str(runs)], check=True)
    start_cluster()
    victim = second_node_raylet()
    cluster_run = runs / "cluster"
    command = [str(BIN / "evalkit"), "run", *RUN, "--backend", "ray", "--ray-address", f"127.0.0.1:{PORT}", "-w", "2",
               "--ray-sim-resources", "sim=1", "--out", str(cluster_run)]
    started = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    while len(stored(cluster_run)) < 2 and proc.poll() is None:
        time.sleep(0.5)
    killed_at = (len(stored(cluster_run)), time.time() - started)
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=1800)
    cluster_s = time.time() - started
    ray("stop", "--force")
    local_run = runs / "local"
    started = time.time()
    subprocess.run([str(BIN / "evalkit"), "run", *RUN, "-w", "1", "--out", str(local_run)], check=True, env=ENV,
                   cwd=ROOT, capture_output=True)
    local_s = time.time() - started
    write_report(Path(args.out), command, proc.returncode, err, killed_at, stored(cluster_run), stored(local_run),
                 cluster_s, local_s)


def write_report(path: Path, command, code, err, killed_at, cluster, local, cluster_s, local_s) -> None:
    keys = [row[0] for row in cluster]
    lost = [line for line in err.splitlines() if "simulator actor lost" in line or "no room" in line]
    lines = [
        "# Two Ray nodes on one machine, one stopped mid-run (issue 14)", "",
        "Command: `.venv/bin/python scripts/ray_two_nodes.py` (head node and a second node, 1 CPU and `sim=1` each; "
        "the second node's raylet SIGKILLed once 2 episodes were stored; then the same episodes with `-w 1`).", "",
        f"Cluster run: `{' '.join(str(c) for c in command[1:])}`", "",
        f"- exit code {code}; {len(cluster)} episodes stored, {len(set(keys))} distinct (every episode exactly once: "
        f"{len(keys) == len(set(keys)) == len(local)})",
        f"- the second node was killed after {killed_at[0]} episodes, {killed_at[1]:.0f} s into the run",
        f"- outcomes (termination, steps, queries) equal to `-w 1`: {cluster == local}",
        f"- wall time: {cluster_s:.0f} s on the cluster (Ray start-up and the lost node included), {local_s:.0f} s "
        "with `-w 1` (2 shared cores: this shows correctness, not speed)", "",
        "What the driver said about the lost node:", "", "```", *(lost or ["(nothing)"]), "```", "",
        "| episode | termination | steps | queries |", "|---|---|---|---|",
        *[f"| {k} | {t} | {s} | {q} |" for k, t, s, q in cluster],
    ]
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


if __name__ == "__main__":
    main()
