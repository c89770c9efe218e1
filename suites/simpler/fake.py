"""A fake `simpler_env` / `mani_skill2_real2sim` that ships with the library, for tests.

It mirrors the part of the real API that suites/simpler/suite.py calls:
`simpler_env.utils.env.env_builder.build_maniskill2_env(env_name, **gym_make_kwargs)` (which
adds the overlay camera as the real one does), `get_image_from_maniskill2_obs_dict(env, obs)`,
`env.reset(seed=..., options={"robot_init_options": ..., "obj_init_options": ...})`,
`env.step(a) -> (obs, reward, terminated, truncated, info)` with `info["success"]` and
`info["episode_stats"]`, `env.unwrapped.get_language_instruction()`, and the module
attributes `ASSET_DIR` / `PACKAGE_ASSET_DIR`; and what SimplerEnv's own evaluator loop calls
(`env.get_language_instruction()`, `env.is_final_subtask()` through the wrapper, TimeLimit's
`truncated` at `max_episode_steps`), for tests/test_conformance_simpler.py.

Its physics is a toy: the executed x actions accumulate, and the task counts as solved
while the sum lies in [1, 2) (so "success at the last step" and "at any step" differ);
a closing WidowX gripper (action[6] < 0) counts as grasping the source object.
Like ManiSkill2's, a reset without `reconfigure` leaves something of the previous episode
behind (1% of its push shifts the object and the success window), so a harness that reuses
an env shows up in the outcomes; a new env or `options["reconfigure"] = True` starts clean.
The scene is exposed through the few SAPIEN calls suites.simpler.suite.scene_poses makes (actors with
name/type/pose, articulations, the robot and its TCP), and `env.unwrapped.get_state()`.
Every build, reset and step is logged in `FakeSimplerEnv.log` for tests to inspect.

Use `install(package_asset_dir)` to put the fake modules into sys.modules, `uninstall()` after.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np

MODULES = ("mani_skill2_real2sim", "simpler_env", "simpler_env.utils", "simpler_env.utils.env",
           "simpler_env.utils.env.env_builder", "simpler_env.utils.env.observation_utils")
REQUIRED_KWARGS = ("obs_mode", "robot", "sim_freq", "control_mode", "control_freq", "max_episode_steps", "scene_name")
IMAGE_SHAPES = {"overhead_camera": (512, 640, 3), "3rd_view_camera": (480, 640, 3)}
BRIDGE_INSTRUCTIONS = {"PutSpoonOnTableClothInScene-v0": "put the spoon on the towel",
                       "PutCarrotOnPlateInScene-v0": "put carrot on plate",
                       "StackGreenCubeOnYellowCubeBakedTexInScene-v0": "stack the green block on the yellow block",
                       "PutEggplantInBasketScene-v0": "put eggplant into yellow basket"}
# MoveNearGoogleInSceneEnv's triplets (names as its instruction prints them) and (source, target) pairs.
TRIPLETS = (("blue plastic bottle", "pepsi can", "orange"), ("7up can", "apple", "sponge"),
            ("coke can", "redbull can", "apple"), ("sponge", "blue plastic bottle", "7up can"),
            ("orange", "pepsi can", "redbull can"))
PAIRS = ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))


class _Pose:
    def __init__(self, p, q=(1.0, 0.0, 0.0, 0.0)):
        self.p, self.q = np.asarray(p, dtype=np.float32), np.asarray(q, dtype=np.float32)


class _Actor:
    def __init__(self, name: str, type_: str, pose: _Pose):
        self.name, self.type, self.pose = name, type_, pose


class _Robot:
    """The robot articulation: a base pose and joint positions (its links are not modelled)."""

    def __init__(self, name: str):
        self.name, self.pose, self.qpos = name, _Pose((0.0, 0.0, 0.0)), np.zeros(8)

    def get_links(self):
        return []

    def get_qpos(self):
        return self.qpos.copy()


class _Scene:
    def __init__(self, actors, articulations):
        self.actors, self.articulations = actors, articulations

    def get_all_actors(self):
        return list(self.actors)

    def get_all_articulations(self):
        return list(self.articulations)


class _Unwrapped:
    """The ManiSkill2 env inside gym.make's wrappers: task state, a toy scene and its physics."""

    def __init__(self, env_name: str, robot: str):
        self.env_name, self.robot_uid = env_name, robot
        self.episode_id = None
        self.x_sum, self.t, self.grasped, self.leftover = 0.0, 0, False, 0.0
        self.agent = types.SimpleNamespace(robot=_Robot(robot))
        self.tcp = _Actor("tcp", "link", _Pose((0.0, 0.0, 0.0)))
        self.obj = _Actor("fake_object", "dynamic", _Pose((0.0, 0.0, 0.0)))
        self._scene = _Scene([_Actor("arena", "static", _Pose((0.0, 0.0, 0.0))), self.obj], [self.agent.robot])

    def reset(self, options: dict) -> None:
        # As ManiSkill2's reset without reconfigure (it only zeroes velocities), the scene keeps
        # something of the previous episode: here 1% of its push shifts the object and the goal.
        self.leftover = 0.0 if options.get("reconfigure") else self.leftover + 0.01 * self.x_sum
        robot, obj = options["robot_init_options"], options["obj_init_options"]
        self.episode_id = obj.get("episode_id")
        obj_xy = obj["init_xy"] if "init_xy" in obj else (-0.2 + 0.01 * self.episode_id, 0.1)
        self.obj.pose = _Pose((obj_xy[0] + self.leftover, obj_xy[1], 0.9))
        self.agent.robot.pose = _Pose((*robot["init_xy"], 0.079), robot["init_rot_quat"])
        self.x_sum, self.t, self.grasped = 0.0, 0, False
        self._move_tcp()

    def step(self, action: np.ndarray) -> bool:
        self.x_sum += float(action[0])
        self.t += 1
        self.grasped = self.grasped or ("widowx" in self.robot_uid and action[6] < 0)
        self.agent.robot.qpos[0] = self.x_sum
        self._move_tcp()
        return 1.0 <= self.x_sum + self.leftover < 2.0

    def _move_tcp(self) -> None:
        self.tcp.pose = _Pose(self.agent.robot.pose.p + np.array([self.x_sum, 0.0, 0.9]))

    def get_state(self) -> np.ndarray:
        poses = [np.concatenate([a.pose.p, a.pose.q]) for a in (self.obj, self.agent.robot, self.tcp)]
        return np.concatenate([*poses, self.agent.robot.qpos, [self.x_sum, self.t]])

    def get_language_instruction(self) -> str:
        name = self.env_name
        if name.startswith("GraspSingleOpenedCokeCan"):
            return "pick coke can"
        if name.startswith("MoveNear"):
            source, target = PAIRS[self.episode_id % 6]
            triplet = TRIPLETS[self.episode_id // 12]
            return f"move {triplet[source]} near {triplet[target]}"
        drawer = re.match(r"(Open|Close)(Top|Middle|Bottom)Drawer", name)
        if drawer:
            return f"{drawer.group(1).lower()} {drawer.group(2).lower()} drawer"
        return BRIDGE_INSTRUCTIONS[name]

    def is_final_subtask(self) -> bool:
        return True


class FakeSimplerEnv:
    """Stands in for gym.make(...)'s TimeLimit-wrapped ManiSkill2 env."""

    log: list = []  # ("make", env_name, kwargs) / ("reset", seed, options) / ("step", action)

    def __init__(self, env_name: str, **kwargs):
        missing = [k for k in REQUIRED_KWARGS if k not in kwargs]
        if missing:
            raise TypeError(f"fake simpler_env: {env_name} built without {missing}")
        self.kwargs = kwargs
        self.unwrapped = _Unwrapped(env_name, kwargs["robot"])
        self.camera = "overhead_camera" if "google_robot" in kwargs["robot"] else "3rd_view_camera"
        self.log.append(("make", env_name, kwargs))

    def reset(self, seed=None, options=None):
        robot, obj = options["robot_init_options"], options["obj_init_options"]
        assert set(robot) == {"init_xy", "init_rot_quat"}, robot
        assert set(obj) in ({"init_xy"}, {"episode_id"}), obj
        assert set(options) <= {"robot_init_options", "obj_init_options", "reconfigure"}, options
        self.log.append(("reset", seed, options))
        self.unwrapped.reset(options)
        return self._obs(), {}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        assert action.shape == (7,), action.shape
        self.log.append(("step", action.copy()))
        success = self.unwrapped.step(action)
        env = self.unwrapped
        truncated = env.t >= self.kwargs["max_episode_steps"]  # gym's TimeLimit
        info = {"elapsed_steps": env.t, "success": success,
                "episode_stats": {"is_src_obj_grasped": np.bool_(env.grasped)} if "widowx" in self.kwargs["robot"]
                else {"moved": np.float64(env.x_sum)}}
        return self._obs(), 0.0, success, truncated, info

    def _obs(self) -> dict:
        env = self.unwrapped
        image = np.full(IMAGE_SHAPES[self.camera], min(255, env.t), dtype=np.uint8)
        return {"image": {self.camera: {"rgb": image}}, "agent": {"qpos": env.agent.robot.get_qpos()},
                "extra": {"tcp_pose": np.concatenate([env.tcp.pose.p, env.tcp.pose.q]).astype(np.float64)}}

    # gym's wrappers pass these through to the env, as SimplerEnv's evaluator calls them
    @property
    def robot_uid(self) -> str:
        return self.unwrapped.robot_uid

    def get_language_instruction(self) -> str:
        return self.unwrapped.get_language_instruction()

    def is_final_subtask(self) -> bool:
        return self.unwrapped.is_final_subtask()

    def close(self) -> None:
        pass


def build_maniskill2_env(env_name, **kwargs):
    """As the real builder: the overlay goes on the robot's policy camera unless told otherwise."""
    if kwargs.get("rgb_overlay_path") is not None and kwargs.get("rgb_overlay_cameras") is None:
        kwargs["rgb_overlay_cameras"] = ["overhead_camera"] if "google_robot_static" in kwargs["robot"] \
            else ["3rd_view_camera"]
    return FakeSimplerEnv(env_name, **kwargs)


def get_image_from_maniskill2_obs_dict(env, obs, camera_name=None):
    if camera_name is None:
        camera_name = "overhead_camera" if "google_robot" in env.robot_uid else "3rd_view_camera"
    return obs["image"][camera_name]["rgb"]


def install(package_asset_dir: Path) -> None:
    """Put the fake modules into sys.modules; `package_asset_dir` plays the package's assets/."""
    FakeSimplerEnv.log = []
    ms2 = types.ModuleType("mani_skill2_real2sim")
    ms2.PACKAGE_ASSET_DIR, ms2.ASSET_DIR = Path(package_asset_dir), None
    simpler = types.ModuleType("simpler_env")
    simpler.make = lambda task_name, **kwargs: build_maniskill2_env(task_name, **kwargs)
    builder = types.ModuleType("simpler_env.utils.env.env_builder")
    builder.build_maniskill2_env = build_maniskill2_env
    observation = types.ModuleType("simpler_env.utils.env.observation_utils")
    observation.get_image_from_maniskill2_obs_dict = get_image_from_maniskill2_obs_dict
    modules = dict(zip(MODULES, (ms2, simpler, types.ModuleType("simpler_env.utils"),
                                 types.ModuleType("simpler_env.utils.env"), builder, observation)))
    sys.modules.update(modules)


def uninstall() -> None:
    for name in MODULES:
        sys.modules.pop(name, None)
