"""Steps per second of the evalkit harness against a bare loop over the same LIBERO env.

The bare loop is what OpenVLA's reference LIBERO script does: an OffScreenRenderEnv
rendering both 256x256 cameras on every step, seed + reset + set_init_state, 10 wait
steps, then the policy's actions. Every configuration replays the same actions, and the
episode's final robot state is checked to be identical to the bare loop's.

    python scripts/bench_libero_steps.py --steps 100 --repeats 3 --out results/bench_libero_steps.md

Times are per episode, reset included (a run pays it every episode); medians of the repeats.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalkit.core.execution import wrap  # noqa: E402
from evalkit.core.protocol import OPENVLA  # noqa: E402
from evalkit.core.registry import make_suite  # noqa: E402
from evalkit.run.episode import run_episode  # noqa: E402
from evalkit.core.suite import EnvOptions  # noqa: E402
from evalkit.core.types import PolicySpec  # noqa: E402
from policies.weightfree.basic import ReplayPolicy  # noqa: E402
from suites.libero.setup import import_libero, resolve_assets  # noqa: E402

BOTH = ("agentview", "robot0_eye_in_hand")


def bare_loop(libero, benchmark, task_id: int, actions: np.ndarray, wait: int, env=None):
    """The reference loop: every step renders both cameras."""
    if env is None:
        task = benchmark.get_task(task_id)
        bddl = os.path.join(libero.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        from libero.libero.envs import OffScreenRenderEnv

        env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
    init = benchmark.get_task_init_states(task_id)[0]
    start = time.perf_counter()
    env.seed(0)
    env.reset()
    env.set_init_state(init)
    for _ in range(wait):
        env.step([0, 0, 0, 0, 0, 0, -1])
    for action in actions:
        obs, _, done, _ = env.step(action.tolist())
        _ = obs["agentview_image"][::-1, ::-1], obs["robot0_eye_in_hand_image"][::-1, ::-1]
    return time.perf_counter() - start, np.array(obs["robot0_eef_pos"]), env


def harness(env, episode, policy, steps: int):
    start = time.perf_counter()
    result, _ = run_episode(env, wrap(policy), episode, OPENVLA.with_overrides(budget=steps))
    elapsed = time.perf_counter() - start
    assert result.termination in ("budget", "success"), result.error
    return elapsed, env.observation().state["eef_pos"].copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--out", default="results/bench_libero_steps.md")
    args = parser.parse_args()

    libero = import_libero(resolve_assets(None))
    benchmark = libero.make_benchmark("libero_spatial")
    suite = make_suite("libero_spatial")
    episode = suite.episodes(task_ids=[args.task], episodes_per_task=1)[0]
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, size=(args.steps, 7))
    actions[:, 6] = -1
    action_file = Path(tempfile.mkdtemp()) / "actions.npy"
    np.save(action_file, actions)

    configs = {
        "harness, chunk 1, both cameras (renders every step, like the bare loop)": (1, BOTH, False),
        "harness, chunk 5 open-loop, both cameras (renders at queries only)": (5, BOTH, False),
        "harness, chunk 5 open-loop, --render-all (every camera, every step)": (5, BOTH, True),
        "harness, no cameras (scripted policies, e.g. the oracle)": (1, (), False),
    }
    envs = {}
    times: dict[str, list[float]] = {"bare loop (reference: both cameras every step)": []}
    finals: dict[str, np.ndarray] = {}
    bare_env = None
    for repeat in range(args.repeats):
        elapsed, final, bare_env = bare_loop(libero, benchmark, args.task, actions, OPENVLA.wait_steps, bare_env)
        times["bare loop (reference: both cameras every step)"].append(elapsed)
        reference_final = final
        for name, (chunk, cameras, render_all) in configs.items():
            policy = ReplayPolicy(path=str(action_file), chunk_size=chunk)
            policy.spec = PolicySpec(cameras=cameras, chunk_size=chunk)  # read the cameras a VLA would
            if name not in envs:
                envs[name] = suite.make_env(EnvOptions(cameras=cameras, render_all=render_all))
            elapsed, finals[name] = harness(envs[name], episode, policy, args.steps)
            times.setdefault(name, []).append(elapsed)
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    for env in [*envs.values()]:
        env.close()
    bare_env.close()
    # Seed 0 in both (the episode's seed is its init index, 0 here): same start, same actions, same end.
    identical = all(np.array_equal(reference_final, f) for f in finals.values())
    write_report(args, times, identical)


def write_report(args, times: dict[str, list[float]], identical: bool) -> None:
    total_steps = args.steps + OPENVLA.wait_steps
    bare = statistics.median(next(iter(times.values())))
    lines = [
        "# LIBERO: harness vs bare loop, env steps per second",
        "",
        f"Command: `python scripts/bench_libero_steps.py --steps {args.steps} --repeats {args.repeats} --task {args.task}`",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, MUJOCO_GL="
        f"{os.environ.get('MUJOCO_GL')}; libero_spatial task {args.task}, init 0; "
        f"{args.steps} policy steps + {OPENVLA.wait_steps} wait steps per episode, reset included; "
        f"median of {args.repeats} repeats, all measured in this one run.",
        f"Final robot state identical to the bare loop's in every configuration: {identical}.",
        "",
        "| configuration | median episode s | env steps/s | speed vs bare loop |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.2f} | {total_steps / median:.1f} | {bare / median:.2f}x |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
