"""act() latency and act_batch() throughput of the tiny NORA / NORA-LONG / NORA-1.5 on CPU.

    python scripts/bench_nora_latency.py --repeats 20 --out results/bench_nora_tiny.md

Single thread (torch.set_num_threads(1)), the tiny checkpoints of policies/nora/tiny_models.py,
inputs as LIBERO gives them (256x256 frames, resized to 224 by the adapter). Medians of
`--repeats` timed calls after two warm-up calls. These are plumbing costs (prompt building,
image processing, generation loop, flow steps), not the cost of the 3B models.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalkit.core.types import Observation  # noqa: E402


def median_seconds(call, repeats: int) -> float:
    call(), call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def observations(n: int) -> list[Observation]:
    from policies.nora.tiny_models import synthetic_image

    rng = np.random.default_rng(0)
    return [Observation(images={"agentview": synthetic_image(rng, i % 2 == 1, 256)}, episode_key=f"bench/{i}")
            for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch
    import transformers

    from evalkit.core.registry import make_policy
    from policies.nora.tiny_models import cached_tiny_models

    torch.set_num_threads(1)
    checkpoints = cached_tiny_models()
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for name in ("nora", "nora-long", "nora-1.5"):
        policy = make_policy(name, {"checkpoint": str(checkpoints[name]), "device": "cpu"})
        single = observations(1)[0]
        latency = median_seconds(lambda: policy.act(single, "put the bowl on the plate"), args.repeats)
        row = {"policy": name, "chunk": policy.spec.chunk_size, "act_ms": 1000 * latency}
        for b in batches:
            obs = observations(b)
            seconds = median_seconds(lambda: policy.act_batch(obs, ["put the bowl on the plate"] * b), args.repeats)
            row[f"batch{b}"] = b / seconds
        rows.append(row)
        print(row, file=sys.stderr)

    lines = [
        "# Tiny NORA models: act() latency and act_batch() throughput (CPU, 1 thread)", "",
        f"Command: `python scripts/bench_nora_latency.py --repeats {args.repeats} --batches {args.batches}"
        f"{' --out ' + args.out if args.out else ''}`", "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.processor() or platform.machine()}; "
        f"median of {args.repeats} calls after 2 warm-ups. Tiny checkpoints (policies/nora/tiny_models.py): these "
        "time the adapters' plumbing, not the 3B models.", "",
        "| policy | chunk | act() median ms | " + " | ".join(f"act_batch({b}) obs/s" for b in batches)
        + " | batch-" + str(batches[-1]) + " speed-up vs act() |",
        "|---|---|---|" + "---|" * len(batches) + "---|",
    ]
    for row in rows:
        speedup = row[f"batch{batches[-1]}"] * row["act_ms"] / 1000
        lines.append(f"| {row['policy']} | {row['chunk']} | {row['act_ms']:.1f} | "
                     + " | ".join(f"{row[f'batch{b}']:.1f}" for b in batches) + f" | {speedup:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
