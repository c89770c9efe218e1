"""evalkit's SimplerEnv episodes against SimplerEnv's own evaluator loop.

`official_episode` below is a minimal, independent loop written from
simpler_env/evaluation/maniskill2_evaluator.py (run_maniskill2_eval_single_episode): a new env per
episode, built with the evaluator's gym.make arguments (the script's additional kwargs first, as it
passes them); `env.reset(options=...)` with the robot pose and the object position or episode id,
and no seed; the loop `while not (predicted_terminated or truncated)` over the env's step limit,
stepping `np.concatenate([world_vector, rot_axangle, gripper])`; success = `done` of the LAST step.
The episodes' parameters are written here from the official scripts' command lines
(scripts/rt1_pick_coke_can_visual_matching.sh, rt1_move_near_visual_matching.sh, rt1x_bridge.sh),
not taken from evalkit's grids.

evalkit runs the same episodes with `evalkit.run.driver.execute` and the `replay` policy, the loop replays
the same actions; per episode, success, steps, queries and the final simulation state
(`env.unwrapped.get_state()`: every pose, velocity and joint) must be equal. evalkit runs a suite's
episodes one after another in one worker, so the state check also says an episode does not
depend on the one before it. Default run: the fake simpler_env. `-m simpler`: real SimplerEnv
(.venv-simpler; on CPU source the simpler-cpu env.sh), about 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from evalkit.run.driver import RunConfig, execute
from evalkit.results.store import ResultStore
from suites.simpler import fake as fake_simpler
from suites.simpler.fake import FakeSimplerEnv
from suites.simpler.suite import SimplerEnv, import_simpler, resolve_assets

GOOGLE_CONTROL = ("arm_pd_ee_delta_pose_align_interpolate_by_planner_"
                  "gripper_pd_joint_target_delta_pos_interpolate_by_planner")
WIDOWX_CONTROL = "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos"
COKE_XS, COKE_YS = np.linspace(-0.35, -0.12, 5), np.linspace(-0.02, 0.42, 5)  # --obj-init-x/-y ranges


@dataclass(frozen=True)
class OfficialEpisode:
    """One episode as an official script's command line gives it, and where evalkit keeps it."""

    evalkit: tuple  # (suite, task id, init index)
    env_name: str
    scene_name: str
    robot: str
    control_freq: int
    sim_freq: int
    max_episode_steps: int
    overlay: str  # --rgb-overlay-path, under ManiSkill2_real2sim/data/real_inpainting
    robot_init_xy: tuple
    robot_init_rpy: tuple  # --robot-init-rot-rpy-range; the quaternion centre is always 0 0 0 1
    additional_env_build_kwargs: tuple = ()  # --additional-env-build-kwargs, as DictAction parses them
    obj_init_xy: Optional[tuple] = None
    obj_episode_id: Optional[int] = None


def coke_can(init_index: int, y_index: int) -> OfficialEpisode:  # first script loop: urdf None, lr_switch
    return OfficialEpisode(("simpler_google_vm", 0, init_index), "GraspSingleOpenedCokeCanInScene-v0",
                           "google_pick_coke_can_1_v4", "google_robot_static", 3, 513, 80,
                           "google_coke_can_real_eval_1.png", (0.35, 0.20), (0, 0, 0),
                           (("lr_switch", True), ("urdf_version", "None")), obj_init_xy=(COKE_XS[0], COKE_YS[y_index]))


def move_near(episode_id: int) -> OfficialEpisode:  # urdf None
    return OfficialEpisode(("simpler_google_vm", 1, episode_id), "MoveNearGoogleBakedTexInScene-v0",
                           "google_pick_coke_can_1_v4", "google_robot_static", 3, 513, 80,
                           "google_move_near_real_eval_1.png", (0.35, 0.21), (0, 0, -0.09),
                           (("urdf_version", "None"),), obj_episode_id=episode_id)


def carrot(episode_id: int) -> OfficialEpisode:
    return OfficialEpisode(("simpler_bridge", 1, episode_id), "PutCarrotOnPlateInScene-v0", "bridge_table_1_v1",
                           "widowx", 5, 500, 60, "bridge_real_eval_1.png", (0.147, 0.028), (0, 0, 0),
                           obj_episode_id=episode_id)


def official_quat(rpy) -> np.ndarray:
    """argparse.py: (Pose(q=euler2quat(r, p, y)) * Pose(q=center)).q, center (0, 0, 0, 1)."""
    if not any(rpy):  # the identity rotation keeps the centre (and needs no sapien: the fake runs)
        return np.array([0.0, 0.0, 0.0, 1.0])
    from sapien.core import Pose
    from transforms3d.euler import euler2quat

    return (Pose(q=euler2quat(*rpy)) * Pose(q=[0, 0, 0, 1])).q


class ReplayModel:
    """The evaluator's model interface, replaying rows of an action file as RT-1's processed actions."""

    def __init__(self, actions: np.ndarray):
        self.actions, self.t = actions, 0

    def reset(self, task_description: str) -> None:
        self.t = 0

    def step(self, image, task_description):
        row = self.actions[self.t]
        self.t += 1
        action = {"world_vector": row[:3], "rot_axangle": row[3:6], "gripper": row[6:7],
                  "terminate_episode": np.array([0.0])}
        return row, action


def official_build_kwargs(ep: OfficialEpisode, assets: Path) -> tuple[dict, dict]:
    kwargs = dict(obs_mode="rgbd", robot=ep.robot, sim_freq=ep.sim_freq,
                  control_mode=GOOGLE_CONTROL if "google" in ep.robot else WIDOWX_CONTROL,
                  control_freq=ep.control_freq, max_episode_steps=ep.max_episode_steps, scene_name=ep.scene_name,
                  camera_cfgs={"add_segmentation": True},
                  rgb_overlay_path=str(assets / "real_inpainting" / ep.overlay))
    return dict(ep.additional_env_build_kwargs), kwargs  # no ray tracing in these episodes


def official_reset_options(ep: OfficialEpisode) -> dict:
    options = {"robot_init_options": {"init_xy": np.array(ep.robot_init_xy),
                                      "init_rot_quat": official_quat(ep.robot_init_rpy)}}
    if ep.obj_init_xy is not None:
        options["obj_init_options"] = {"init_xy": np.array(ep.obj_init_xy)}
    else:
        options["obj_init_options"] = {"episode_id": ep.obj_episode_id}
    return options


def official_episode(api, ep: OfficialEpisode, actions: np.ndarray, assets: Path) -> dict:
    """One episode as run_maniskill2_eval_single_episode runs it (minus its video and logging)."""
    additional, kwargs = official_build_kwargs(ep, assets)
    env = api.build(ep.env_name, **additional, **kwargs)
    obs, _ = env.reset(options=official_reset_options(ep))
    is_final_subtask = env.is_final_subtask()
    task_description = env.get_language_instruction()
    image = api.image(env, obs)
    model = ReplayModel(actions)
    model.reset(task_description)
    predicted_terminated, done, truncated, timestep, queries = False, False, False, 0, 0
    while not (predicted_terminated or truncated):
        raw_action, action = model.step(image, task_description)
        queries += 1
        predicted_terminated = bool(action["terminate_episode"][0] > 0)
        if predicted_terminated and not is_final_subtask:
            predicted_terminated = False
            env.advance_to_next_subtask()
        obs, reward, done, truncated, info = env.step(
            np.concatenate([action["world_vector"], action["rot_axangle"], action["gripper"]]))
        task_description = env.get_language_instruction()
        is_final_subtask = env.is_final_subtask()
        image = api.image(env, obs)
        timestep += 1
    state = np.array(env.unwrapped.get_state(), copy=True)
    env.close()
    return {"success": bool(done), "steps": timestep, "queries": queries, "state": state}


def capture_final_states(monkeypatch) -> dict:
    """{episode key: env.unwrapped.get_state()} at the end of each evalkit episode (read before the next reset)."""
    states: dict = {}
    reset, episode_stats = SimplerEnv.reset, SimplerEnv.episode_stats

    def reset_noting_the_episode(self, episode, render):
        self.conformance_key = episode.key
        return reset(self, episode, render)

    def stats_and_final_state(self):
        states[self.conformance_key] = np.array(self.env.unwrapped.get_state(), copy=True)
        return episode_stats(self)

    monkeypatch.setattr(SimplerEnv, "reset", reset_noting_the_episode)
    monkeypatch.setattr(SimplerEnv, "episode_stats", stats_and_final_state)
    return states


def evalkit_episodes(out: Path, suite: str, tasks: list, per_task: int, actions_file: Path, states: dict) -> dict:
    """{(suite, task, init): (success, steps, queries, final state)} of one evalkit run (one worker)."""
    config = RunConfig(suites=[suite], policy="replay", policy_args={"path": str(actions_file)}, tasks=tasks,
                       episodes_per_task=per_task, out=str(out))
    with ResultStore(execute(config, progress=False), readonly=True) as store:
        results = store.results()
    assert all(r.termination in ("success", "budget") for r in results), [r.error for r in results]
    return {(r.suite, r.task_id, r.init_index): (r.success, r.steps, r.queries, states[r.key]) for r in results}


def assert_conforms(official: dict, ours: tuple, ep: OfficialEpisode) -> None:
    assert (ours[0], ours[1], ours[2]) == (official["success"], official["steps"], official["queries"]), ep.evalkit
    np.testing.assert_array_equal(ours[3], official["state"], err_msg=f"final state of {ep.evalkit}")


def write_actions(path: Path, actions: np.ndarray) -> Path:
    np.save(path, actions)
    return path


# -- default run: the fake simpler_env ---------------------------------------------------------------

@pytest.fixture
def fake(tmp_path, monkeypatch):
    data = tmp_path / "simplerenv-data" / "data"
    (data / "real_inpainting").mkdir(parents=True)
    (data / "custom").mkdir()
    (tmp_path / "package_assets" / "descriptions").mkdir(parents=True)
    monkeypatch.setenv("MS2_REAL2SIM_ASSET_DIR", "unset-by-test")
    monkeypatch.setenv("EVALKIT_SIMPLER_ASSETS", str(data))
    fake_simpler.install(tmp_path / "package_assets")
    yield data
    fake_simpler.uninstall()


def fake_actions() -> np.ndarray:
    """x pushes summing to 1.9 by step 60 (inside the fake's success window [1, 2)) and 2.53 by step 80
    (past it: a failure at the last step that counting any step would call a success); grippers toggle."""
    actions = np.zeros((80, 7))
    actions[:, 0] = 1.9 / 60
    actions[:, 6] = np.where(np.arange(80) % 10 < 5, 1.0, -1.0)
    return actions


def made_kwargs() -> list[dict]:
    """The kwargs of every env the fake built, urdf_version read as the env reads it ("None" = None)."""
    kwargs = [dict(entry[2]) for entry in FakeSimplerEnv.log if entry[0] == "make"]
    for k in kwargs:
        if k.get("urdf_version") == "None":
            k["urdf_version"] = None
    return kwargs


def test_evalkit_matches_the_official_loop_on_the_fake(fake, tmp_path, monkeypatch):
    actions_file = write_actions(tmp_path / "actions.npy", fake_actions())
    states = capture_final_states(monkeypatch)
    episodes = [coke_can(0, 0), coke_can(1, 1), carrot(0), carrot(1)]
    ours = evalkit_episodes(tmp_path / "google", "simpler_google_vm", [0], 2, actions_file, states)
    ours |= evalkit_episodes(tmp_path / "bridge", "simpler_bridge", [1], 2, actions_file, states)
    evalkit_builds = made_kwargs()
    FakeSimplerEnv.log.clear()
    api = import_simpler(resolve_assets(None))
    official = {ep.evalkit: official_episode(api, ep, np.load(actions_file), fake) for ep in episodes}
    for ep in episodes:
        assert_conforms(official[ep.evalkit], ours[ep.evalkit], ep)
    assert [official[ep.evalkit]["success"] for ep in episodes] == [False, False, True, True]
    # evalkit built each distinct env once (the same kwargs as the official loop's first build of it)
    assert evalkit_builds == [made_kwargs()[0], made_kwargs()[2]]


def test_the_fake_conformance_check_catches_a_reused_env(fake, tmp_path, monkeypatch):
    # Were evalkit to reset a used env without a fresh scene, the second episode would not conform.
    monkeypatch.setattr(SimplerEnv, "_ensure_env", _keep_env(SimplerEnv._ensure_env))
    actions_file = write_actions(tmp_path / "actions.npy", fake_actions())
    states = capture_final_states(monkeypatch)
    ours = evalkit_episodes(tmp_path / "google", "simpler_google_vm", [0], 2, actions_file, states)
    api = import_simpler(resolve_assets(None))
    official = official_episode(api, coke_can(1, 1), np.load(actions_file), fake)
    with pytest.raises(AssertionError, match="final state"):
        assert_conforms(official, ours[coke_can(1, 1).evalkit], coke_can(1, 1))


def _keep_env(ensure_env):
    """_ensure_env that says "just built" every time, so reset never asks for a fresh scene."""
    def ensure(self, params):
        ensure_env(self, params)
        return True
    return ensure


# -- real SimplerEnv (opt in: -m simpler) ---------------------------------------------------------------

def real_actions(steps: int = 80) -> np.ndarray:
    """Seeded small end-effector moves, the gripper opening and closing every 3 steps and closing at
    the end of an 80-step episode: a reused scene then carries state into the next episode (measured:
    the final state of coke can 1 after coke can 0 differs by 1e-5; ending on an open gripper it did not)."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.05, 0.05, size=(steps, 7))
    actions[:, 6] = np.where((np.arange(steps) + 2) % 6 < 3, 1.0, -1.0)
    return actions


@pytest.mark.simpler
def test_evalkit_matches_the_official_loop_on_real_episodes(tmp_path, monkeypatch):
    actions_file = write_actions(tmp_path / "actions.npy", real_actions())
    states = capture_final_states(monkeypatch)
    # coke can 1 runs after coke can 0 in the same env (same build arguments); move near: a turned robot
    ours = evalkit_episodes(tmp_path / "google", "simpler_google_vm", [0], 2, actions_file, states)
    ours |= evalkit_episodes(tmp_path / "near", "simpler_google_vm", [1], 1, actions_file, states)
    ours |= evalkit_episodes(tmp_path / "bridge", "simpler_bridge", [1], 1, actions_file, states)
    assets = resolve_assets(None)
    api = import_simpler(assets)
    for ep in (coke_can(0, 0), coke_can(1, 1), move_near(0), carrot(0)):
        assert_conforms(official_episode(api, ep, np.load(actions_file), assets), ours[ep.evalkit], ep)
