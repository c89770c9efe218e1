"""Conformance with the reference LIBERO loops, each re-implemented here small and independent.

The loops below follow the reference scripts line by line, not evalkit's code:
- OpenVLA's `experiments/robot/libero/run_libero_eval.py` (the `openvla` preset): `t` runs over
  wait steps and policy steps (`while t < max_steps + num_steps_wait`), the dummy action
  `[0]*6 + [-1]` during the wait, one action per query, `done` checked after every step and the
  episode over at the first `done`, an exception ending the episode as a failure.
- NORA's `experiments/libero/run_libero_eval_nora.py` (the `nora` preset): the same wait, then
  `t` counts queries up to 500; every action of the chunk is executed, then the chunk's LAST
  `done` decides; `np.where(a >= 0, 1, a)` on the gripper; robosuite's horizon (1,000 env steps,
  wait included) raises inside `env.step`, which the script catches: a failure.
Both drive the simulator directly: the fake suite's env in the default run, LIBERO's own
`ControlEnv` under the `libero` marker. Documented shims: LIBERO is built without cameras (replayed
actions read no images; physics is unchanged), and the model-side gripper mapping
(`normalize_gripper_action` + `invert_gripper_action`) is not applied, because replayed actions
are already in LIBERO's action space. evalkit runs the same actions with the `replay` policy.
"""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.core.protocol import NORA, OPENVLA
from evalkit.run.driver import RunConfig, execute
from evalkit.results.store import ResultStore
from evalkit.core.suite import EnvOptions
from policies.weightfree.basic import replay_key
from suites.fake import FakeEnv, fake_suite

DUMMY = [0, 0, 0, 0, 0, 0, -1]


def replay_rows(actions: np.ndarray, start: int, count: int) -> np.ndarray:
    """Rows start..start+count-1; past the end, hold still with the last gripper command."""
    rows = [actions[i] if i < len(actions) else np.r_[np.zeros(6), actions[-1][6]] for i in range(start, start + count)]
    return np.array(rows, dtype=np.float64)


def openvla_reference_loop(env_step, actions, max_steps, num_steps_wait=10):
    t, queries, done = 0, 0, False
    while t < max_steps + num_steps_wait:
        try:
            if t < num_steps_wait:
                _, _, done, _ = env_step(DUMMY)
                t += 1
                continue
            action = replay_rows(actions, t - num_steps_wait, 1)[0]
            queries += 1
            _, _, done, _ = env_step(action.tolist())
            if done:
                return {"success": True, "steps": t - num_steps_wait + 1, "queries": queries}
            t += 1
        except Exception:
            break
    return {"success": False, "steps": t - num_steps_wait, "queries": queries}


def nora_reference_loop(env_step, actions, chunk_size=5, max_steps=500, num_steps_wait=10):
    t, queries, steps, done = 0, 0, 0, False
    while t < max_steps + num_steps_wait:
        try:
            if t < num_steps_wait:
                _, _, done, _ = env_step(DUMMY)
                t += 1
                continue
            action = replay_rows(actions, steps, chunk_size)
            queries += 1
            action[..., -1] = np.where(action[..., -1] >= 0.0, 1.0, action[..., -1])
            for i in range(len(action)):
                _, _, done, _ = env_step(action[i].tolist())
                steps += 1
            if done:
                return {"success": True, "steps": steps, "queries": queries}
            t += 1
        except Exception:
            break
    return {"success": False, "steps": steps, "queries": queries}


def evalkit_outcomes(tmp_path, suite, actions_by_key, preset, chunk_size, **run):
    path = tmp_path / f"actions-{preset}.npz"
    np.savez(path, **{replay_key(k): a for k, a in actions_by_key.items()})
    config = RunConfig(suites=[suite], policy="replay", policy_args={"path": str(path), "chunk_size": chunk_size},
                       preset=preset, out=str(tmp_path / f"run-{preset}"), **run)
    with ResultStore(execute(config, progress=False), readonly=True) as store:
        return {r.key: {"success": r.success, "steps": r.steps, "queries": r.queries} for r in store.results()}


# -- the fake suite (default run) -----------------------------------------------------------------

class RobosuiteLikeFake:
    """The fake env behind robosuite's step API: (obs, reward, done, info), and its horizon rule
    (`if self.done: raise ValueError("executing action in terminated episode")`)."""

    def __init__(self, episode, horizon=1000):
        self.env, self.horizon, self.timestep = FakeEnv("fake", EnvOptions()), horizon, 0
        self.env.reset(episode, render=False)

    def step(self, action):
        if self.timestep >= self.horizon:
            raise ValueError("executing action in terminated episode")
        self.timestep += 1
        return None, 0.0, self.env.step(np.asarray(action), render=False), {}


def fake_actions(episode) -> np.ndarray:
    """Three kinds of episode by init state: reach the target and stay (0), touch it and leave
    for good (1: a success that a chunk can undo, which the two loops count differently), never
    reach it (2: fails; under NORA's loop it runs into robosuite's horizon). Some close as 0.0."""
    env = FakeEnv("fake", EnvOptions())
    env.reset(episode, render=False)
    pos, target, kind, touched, actions = env.pos.copy(), env.target, episode.init_index % 3, False, []
    for _ in range(80):
        move = np.clip((target - pos) / 0.05, -1, 1)
        touched = touched or np.linalg.norm(target - pos) < 0.05
        if kind == 2 or (kind == 1 and touched):
            move = -np.sign(target)  # away from the target, toward the far corner
        actions.append([*move, 0, 0, 0, 0, 0.0 if episode.init_index % 2 else -1.0])
        pos = pos + 0.05 * move
    return np.array(actions)


FAKE_EPISODES = fake_suite().episodes(episodes_per_task=6)


def test_openvla_loop_and_evalkit_agree_on_the_fake_suite(tmp_path):
    actions = {ep.key: fake_actions(ep) for ep in FAKE_EPISODES}
    ours = evalkit_outcomes(tmp_path, "fake", actions, "openvla", 1, episodes_per_task=6)
    for ep in FAKE_EPISODES:
        ref = openvla_reference_loop(RobosuiteLikeFake(ep).step, actions[ep.key], ep.max_steps)
        assert ours[ep.key] == ref, ep.key
    assert 0 < sum(o["success"] for o in ours.values()) < len(ours)


def test_nora_loop_and_evalkit_agree_on_the_fake_suite(tmp_path):
    actions = {ep.key: fake_actions(ep) for ep in FAKE_EPISODES}
    ours = evalkit_outcomes(tmp_path, "fake", actions, "nora", 5, episodes_per_task=6)
    differs_from_first_success = 0
    for ep in FAKE_EPISODES:
        ref = nora_reference_loop(RobosuiteLikeFake(ep).step, actions[ep.key])
        assert ours[ep.key] == ref, ep.key
        first = openvla_reference_loop(RobosuiteLikeFake(ep).step, actions[ep.key], 5000)
        differs_from_first_success += first["success"] != ref["success"] or first["steps"] != ref["steps"]
    assert differs_from_first_success > 0  # the episodes do exercise the chunk-end rule
    horizon_hit = [o for o in ours.values() if not o["success"]]
    assert horizon_hit and all(o["steps"] == 990 and o["queries"] == 199 for o in horizon_hit)


# -- real LIBERO (libero marker) ------------------------------------------------------------------

LIBERO_TASKS = (0, 3, 5)


@pytest.fixture(scope="module")
def oracle_actions():
    return record_oracle_actions(LIBERO_TASKS)


def record_oracle_actions(tasks) -> dict:
    """The oracle's executed actions on init state 0 of some libero_spatial tasks (evalkit's loop)."""
    from evalkit.core.execution import wrap
    from evalkit.core.registry import make_policy, make_suite
    from evalkit.run.episode import run_episode

    suite = make_suite("libero_spatial")
    policy = make_policy("oracle", {})
    env = suite.make_env(EnvOptions(privileged=True))
    out = {}
    try:
        for episode in suite.episodes(list(tasks), episodes_per_task=1):
            executed = []
            result, _ = run_episode(env, wrap(policy), episode, OPENVLA, postprocess=_recorder(executed))
            assert result.success, episode.key
            out[episode.key] = np.array(executed)
    finally:
        env.close()
    return out


def _recorder(executed):
    class Record:
        def reset(self):
            executed.clear()

        def __call__(self, action):
            executed.append(np.array(action))
            return action

    return Record()


def libero_reference_env(episode):
    """LIBERO's ControlEnv as OpenVLA's get_libero_env builds it (seed 0, default horizon 1000,
    ignore_done False), without cameras; reset, then the task's init state."""
    import os

    from suites.libero.setup import import_libero, resolve_assets

    import_libero(resolve_assets(None))  # LIBERO's config and assets, before LIBERO's own imports
    from libero.libero import get_libero_path
    from libero.libero.benchmark import get_benchmark
    from libero.libero.envs.env_wrapper import ControlEnv  # OffScreenRenderEnv's base, without cameras
    benchmark = get_benchmark(episode.suite)()
    task = benchmark.get_task(episode.task_id)
    env = ControlEnv(bddl_file_name=os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file),
                     camera_heights=256, camera_widths=256, has_offscreen_renderer=False, use_camera_obs=False)
    env.seed(0)
    env.reset()
    env.set_init_state(benchmark.get_task_init_states(episode.task_id)[episode.init_index])
    return env


def _close_as_zero(actions):
    """The oracle's actions with "close" sent as exactly 0, which only NORA's gripper rule closes."""
    out = actions.copy()
    out[out[:, 6] > 0, 6] = 0.0
    return out


@pytest.mark.libero
def test_reference_loops_and_evalkit_agree_on_real_libero_episodes(tmp_path, oracle_actions):
    rows = compare_on_libero(tmp_path, oracle_actions)
    for row in rows:
        assert row["evalkit openvla"] == row["reference openvla"], row["episode"]
        assert row["evalkit nora"] == row["reference nora"], row["episode"]
    # NORA's loop judges only chunk ends, so its successes land on multiples of 5 and never earlier
    nora_successes = [r for r in rows if r["reference nora"]["success"]]
    assert nora_successes and all(r["reference nora"]["steps"] % 5 == 0 and r["reference nora"]["steps"]
                                  >= r["reference openvla"]["steps"] for r in nora_successes)


def compare_on_libero(tmp_path, oracle_actions) -> list[dict]:
    """Per episode: evalkit's and the reference loop's outcomes under both presets (replayed actions;
    under NORA's loop "close" is sent as exactly 0.0, which only its gripper rule turns into +1)."""
    from evalkit.core.types import EpisodeSpec

    nora_actions = {k: _close_as_zero(a) for k, a in oracle_actions.items()}
    tasks = sorted({int(k.split("/")[1]) for k in oracle_actions})
    run = dict(tasks=tasks, episodes_per_task=1)
    ours_openvla = evalkit_outcomes(tmp_path, "libero_spatial", oracle_actions, "openvla", 1, **run)
    ours_nora = evalkit_outcomes(tmp_path, "libero_spatial", nora_actions, "nora", 5, **run)
    rows = []
    for key, actions in oracle_actions.items():
        suite, task, init, seed = key.split("/")
        episode = EpisodeSpec(suite, int(task), "", "", int(init), int(seed), 220)
        env = libero_reference_env(episode)
        ref_openvla = openvla_reference_loop(env.step, actions, 220)
        env.close()
        env = libero_reference_env(episode)
        ref_nora = nora_reference_loop(env.step, nora_actions[key])
        env.close()
        rows.append({"episode": key, "evalkit openvla": ours_openvla[key], "reference openvla": ref_openvla,
                     "evalkit nora": ours_nora[key], "reference nora": ref_nora})
    return rows


@pytest.mark.libero
def test_robosuite_horizon_ends_a_real_nora_episode_like_the_reference(tmp_path):
    from evalkit.core.registry import make_suite

    episode = make_suite("libero_spatial").episodes([1], episodes_per_task=1)[0]
    still = np.tile(np.array(DUMMY, dtype=np.float64), (1, 1))
    ours = evalkit_outcomes(tmp_path, "libero_spatial", {episode.key: still}, "nora", 5, tasks=[1],
                            episodes_per_task=1)
    env = libero_reference_env(episode)
    ref = nora_reference_loop(env.step, still)
    env.close()
    assert ours[episode.key] == ref == {"success": False, "steps": 990, "queries": 199}
