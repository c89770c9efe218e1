"""Round-trip latency and throughput of `evalkit serve`, batching off and on, against the same
policy in-process.

The served policy is a synthetic model standing in for a GPU VLA: one forward pass costs
`--fixed-ms` plus `--per-item-ms` per observation in the batch (sleeps, so the numbers do not
depend on this machine's CPU), reads one 224x224 camera (the payload a VLA query ships) and
returns a (chunk, 7) action chunk. Two measurements:

- latency: one client, queries one after another; median round trip.
- throughput: `--clients` clients (threads, one connection each, as W simulator workers on
  other machines would be) querying as fast as they get answers for `--seconds`.

The in-process baseline calls the policy directly: `act` for latency, and for throughput one
`act_batch` over all clients' observations per call (what the in-process parallel runner does).

    python scripts/bench_serve.py --out results/bench_serve.md
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evalkit.core.types import Observation, PolicySpec  # noqa: E402


class SyntheticModel:
    """Sleeps fixed_ms + per_item_ms * batch per forward pass; a stand-in for a batched GPU model."""

    def __init__(self, fixed_ms: float = 20.0, per_item_ms: float = 2.0, chunk_size: int = 5):
        self.fixed_s, self.per_item_s = float(fixed_ms) / 1000, float(per_item_ms) / 1000
        self.spec = PolicySpec(cameras=("agentview",), chunk_size=int(chunk_size))

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        return self.act_batch([obs], [instruction])[0]

    def act_batch(self, observations, instructions) -> list[np.ndarray]:
        time.sleep(self.fixed_s + self.per_item_s * len(observations))
        return [np.full((self.spec.chunk_size, 7), float(o.images["agentview"][0, 0, 0])) for o in observations]


def observation(i: int) -> Observation:
    image = np.random.default_rng(i).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    return Observation(images={"agentview": image}, state={"eef_pos": np.zeros(3)}, episode_key=f"bench/{i}", step=i)


# -- measurements ----------------------------------------------------------------------------

def latency_ms(call, queries: int) -> float:
    times = []
    for i in range(queries):
        obs = observation(i)
        start = time.perf_counter()
        call(obs)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def throughput(make_caller, clients: int, seconds: float) -> float:
    """Queries per second answered to `clients` concurrent callers."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def loop(index):
        call = make_caller()
        obs = observation(index)
        while time.perf_counter() < stop:
            call(obs)
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def start_server(args, max_batch: int, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, __file__, "serve", "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
               "--fixed-ms", str(args.fixed_ms), "--per-item-ms", str(args.per_item_ms)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"ws://\S+", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"bench server did not start: {line!r}")
    return proc, match.group(0)


def measure_remote(args, max_batch: int, max_wait_ms: float) -> dict:
    from policies.remote import RemotePolicy

    proc, url = start_server(args, max_batch, max_wait_ms)
    try:
        single = RemotePolicy(url=url)
        single.act(observation(0), "warm up")
        latency = latency_ms(lambda obs: single.act(obs, "pick"), args.queries)
        single.close()

        def make_caller():
            policy = RemotePolicy(url=url)
            return lambda obs: policy.act(obs, "pick")

        rate = throughput(make_caller, args.clients, args.seconds)
    finally:
        proc.kill()
        proc.wait()
    return {"latency_ms": latency, "throughput": rate}


def measure_in_process(args) -> dict:
    model = SyntheticModel(args.fixed_ms, args.per_item_ms)
    latency = latency_ms(lambda obs: model.act(obs, "pick"), args.queries)
    batch = [observation(i) for i in range(args.clients)]
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        model.act_batch(batch, ["pick"] * len(batch))
        calls += 1
    return {"latency_ms": latency, "throughput": calls * len(batch) / (time.perf_counter() - start)}


def report(args, rows: dict) -> str:
    base = rows["in-process"]
    lines = [
        "# `evalkit serve`: round-trip latency and throughput, batching off and on",
        "",
        f"Command: `python scripts/bench_serve.py --queries {args.queries} --clients {args.clients} "
        f"--seconds {args.seconds:g} --fixed-ms {args.fixed_ms:g} --per-item-ms {args.per_item_ms:g} --out {args.out}`",
        "",
        f"Synthetic model: {args.fixed_ms:g} ms per forward pass + {args.per_item_ms:g} ms per observation, one "
        f"224x224 uint8 camera per query, (5, 7) float64 chunks back. Server on loopback in its own process; "
        f"clients are threads with one connection each. Machine: 2 shared CPU cores, no GPU (numbers include "
        f"contention with other work on it). Latency: median of {args.queries} sequential queries from one "
        f"client. Throughput: {args.clients} concurrent clients for {args.seconds:g} s (in-process: one "
        f"act_batch over {args.clients} observations per call, as the in-process parallel runner batches).",
        "",
        "| setting | median latency (ms) | latency / in-process | throughput (queries/s) | throughput / in-process |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['latency_ms']:.1f} | {row['latency_ms'] / base['latency_ms']:.2f} | "
                     f"{row['throughput']:.1f} | {row['throughput'] / base['throughput']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fixed-ms", type=float, default=20.0)
    parser.add_argument("--per-item-ms", type=float, default=2.0)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args(argv)
    if args.mode == "serve":  # the server process: the synthetic model behind `evalkit serve`
        from evalkit.core import registry
        from evalkit.serve.server import serve_policy

        registry.register("policy", "synthetic", "__main__:SyntheticModel")
        serve_policy("synthetic", {"fixed_ms": args.fixed_ms, "per_item_ms": args.per_item_ms}, port=0,
                     max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
        return 0
    rows = {"in-process": measure_in_process(args),
            "served, batching off (--max-batch 1)": measure_remote(args, 1, 0.0),
            f"served, batching on (--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g})":
                measure_remote(args, args.max_batch, args.max_wait_ms)}
    text = report(args, rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
