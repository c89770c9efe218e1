"""Cost and exactness of the ways to start a SimplerEnv episode in an env that already ran one.

    . ../shared/tools/simpler-cpu/env.sh   # on a machine without a GPU (or your DIR/env.sh)
    .venv-simpler/bin/python scripts/bench_simpler_rebuild.py --out results/bench_simpler_rebuild.md

Runs the first N episodes of one task per suite in order, three ways, with the same replayed
actions (K steps each):

- `reuse`: `env.reset(seed, options)` on the env of the episode before (evalkit before this change);
- `rebuild`: a new env per episode, as SimplerEnv's evaluator does (the reference);
- `reconfigure`: `env.reset(seed, options | {"reconfigure": True})` on the env of the episode before
  (evalkit now).

`reuse` and `reconfigure` build a new env only when the build arguments change, as evalkit does
(the drawer VM grid changes them every episode, so the drawers are measured on VA, where nine
robot positions share them). Every build happens while the previous env object is still
referenced, as in evalkit: SAPIEN then shares its renderer and loaded assets; with no env left
alive a build starts over (measured here: 8-15 s instead of about 1 s).

Per episode it times the setup (build, if any, plus reset) and the whole episode, and checks
that the policy camera's first image and the full simulation state after the last step
(`env.unwrapped.get_state()`: every actor's and articulation's pose, velocities and joints)
are bit-identical to the rebuild's. Each suite's first build (shader compilation, asset loading)
is done once before timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suites.simpler.suite import build_kwargs, import_simpler, reset_options, resolve_assets, simpler_suite  # noqa: E402

MODES = ("reuse", "rebuild", "reconfigure")


def replayed_actions(steps: int) -> np.ndarray:
    """Small seeded moves with the gripper toggling: enough to leave state behind in the scene."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.05, 0.05, size=(steps, 7))
    actions[:, 6] = np.where(np.arange(steps) % 6 < 3, 1.0, -1.0)
    return actions


class Runner:
    """Runs episodes of one suite's task 0 in one of the MODES."""

    def __init__(self, suite_name: str, mode: str, assets: Path, api):
        self.suite, self.mode, self.assets, self.api = simpler_suite(suite_name), mode, assets, api
        self.env, self.built_for = None, None

    def _build_if_needed(self, params: dict) -> bool:
        kwargs = build_kwargs(params, self.assets)
        key = repr((params["env_id"], sorted(kwargs.items())))
        if self.mode != "rebuild" and key == self.built_for:
            return False
        previous = self.env  # as evalkit: referenced during the build, so SAPIEN's renderer is shared
        self.close()
        self.env, self.built_for = self.api.build(params["env_id"], **kwargs), key
        del previous
        return True

    def episode(self, index: int, actions: np.ndarray) -> dict:
        params = self.suite.episode_params(0, index)
        start = time.perf_counter()
        built = self._build_if_needed(params)
        options = reset_options(params) | ({"reconfigure": True} if self.mode == "reconfigure" and not built else {})
        obs, _ = self.env.reset(seed=index, options=options)
        setup = time.perf_counter() - start
        image = np.asarray(self.api.image(self.env.unwrapped, obs)).copy()
        for action in actions:
            self.env.step(action)
        return {"setup": setup, "total": time.perf_counter() - start, "image": image,
                "state": self.env.unwrapped.get_state().copy()}

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def bench_suite(suite_name: str, episodes: int, actions: np.ndarray, assets: Path, api) -> list[list[str]]:
    """Rows per mode, and a last row: the suite's first build, made with no env alive (not in the medians)."""
    warm = Runner(suite_name, "rebuild", assets, api)
    cold = warm.episode(0, actions[:1])["setup"]  # loads the scene's assets (and compiles shaders, first suite)
    runs = {}
    for mode in MODES:  # `warm` stays alive meanwhile, as a worker's env does between episodes
        runner = Runner(suite_name, mode, assets, api)
        runs[mode] = [runner.episode(i, actions) for i in range(episodes)]
        runner.close()
    warm.close()
    return [_row(suite_name, mode, runs[mode], runs["rebuild"]) for mode in MODES] + [
        [suite_name, "first build, no env alive", f"{cold:.2f}", "", "", "", ""]]


def _row(suite_name: str, mode: str, episodes: list[dict], reference: list[dict]) -> list[str]:
    same_state = sum(np.array_equal(e["state"], r["state"]) for e, r in zip(episodes, reference))
    same_image = sum(np.array_equal(e["image"], r["image"]) for e, r in zip(episodes, reference))
    worst = max(float(np.abs(e["state"] - r["state"]).max()) for e, r in zip(episodes, reference))
    median = lambda key: statistics.median(e[key] for e in episodes)  # noqa: E731
    return [suite_name, mode, f"{median('setup'):.2f}", f"{median('total'):.2f}",
            f"{same_state}/{len(episodes)}", f"{same_image}/{len(episodes)}", f"{worst:.2g}"]


def render(rows: list[list[str]], args, command: str) -> str:
    headers = ["suite (task 0)", "mode", "setup s (median)", f"episode s, {args.steps} steps (median)",
               "final state = rebuild", "first image = rebuild", "max state diff"]
    lines = [f"# SimplerEnv: a new env per episode vs reuse vs reset with reconfigure", "",
             f"Command: `{command}`", "",
             f"Episodes 0..{args.episodes - 1} of each suite's task 0, in order, {args.steps} replayed steps each "
             "(same actions in every mode). Setup = env build (if any) + reset. Medians over the episodes. "
             "Builds happen while another env object is alive, as in evalkit (SAPIEN then shares its renderer "
             "and loaded assets); the `first build` rows are builds with none alive (the first suite's also "
             "compiles shaders).", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", default="simpler_coke_can_vm,simpler_move_near_vm,simpler_drawer_va_rasterized,"
                                            "simpler_carrot_on_plate")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    assets = resolve_assets(None)
    api = import_simpler(assets)
    actions = replayed_actions(args.steps)
    rows = [row for name in args.suites.split(",") for row in bench_suite(name, args.episodes, actions, assets, api)]
    command = "python scripts/bench_simpler_rebuild.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(rows, args, command.strip())
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
