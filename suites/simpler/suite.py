"""SimplerEnv suites (ManiSkill2_real2sim on SAPIEN 2.2.2): Google Robot VM/VA and Bridge.

The suites are data (suites/simpler/grids.py, from the official scripts); each EpisodeSpec
carries its env id, robot and object pose, URDF version, overlay image and variant. The env
is built in the worker with the official builder (`build_maniskill2_env`), reset with the
official options, and judged on the env's success flag; the `simpler` protocol preset takes
it at the last step (the protocol), `simpler_any_step` at any step (a recorded deviation).

Protocol points handled here (see ../shared/PROTOCOLS.md):
- Google Robot at 3 Hz (sim 513 Hz), WidowX at 5 Hz (sim 500 Hz); step limits per task;
- the drawer tasks are ray-traced; the `*_rasterized` suites render them rasterized for
  machines without a GPU (about 45 s per ray-traced step on CPU) and record that deviation;
- every episode starts from a fresh scene, as the official evaluator's new env per episode: a
  reset without reconfiguring keeps state from the previous episode (ManiSkill2 then only zeroes
  velocities; measured: final object poses up to 2.6 cm apart, outcomes flipped), so an env is
  rebuilt when the build arguments change and otherwise reset with `reconfigure=True`, which
  rebuilds the scene and is bit-identical to a new env at about half the setup cost
  (results/bench_simpler_rebuild.md); every reset gets the official episode seed explicitly
  (OFFICIAL_EPISODE_SEED, what each of the official loop's fresh envs draws);
- images are the policy camera's full frame (Google 640x512 overhead, WidowX 640x480 third
  view); the harness applies the policy's named image path (evalkit.core.images) before each query.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np

from evalkit.core.suite import EnvOptions, Suite, SuiteEnvBase, TaskInfo
from evalkit.core.types import EpisodeSpec, Observation
from suites.simpler import grids

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = REPO_ROOT.parent / "shared" / "assets" / "simplerenv-data.tar.gz"
FINGERPRINT_FILE = Path(__file__).resolve().parents[1] / "fingerprints" / "simpler.json"
INSTALL_HINT = (
    "simpler_env and mani_skill2_real2sim are not on PyPI, and SAPIEN 2.2.2 needs numpy<2 and "
    "gymnasium<1.0: run `bash scripts/setup_simpler.sh` (a separate .venv-simpler with both packages "
    "installed from github.com/simpler-env/ManiSkill2_real2sim and github.com/simpler-env/SimplerEnv), "
    "then use .venv-simpler/bin/evalkit. On a machine without a GPU, also set up a software Vulkan "
    "driver (../shared/tools/simpler-cpu/README.md) and source its env.sh. See README, 'SimplerEnv'."
)
PRIMARY_CAMERA = {"google_robot": "overhead_camera", "widowx": "3rd_view_camera"}
CAMERA_ALIASES = ("image", "agentview")  # the policy camera, whatever the robot (agentview: LIBERO's name)
RASTERIZED_NOTE = ("drawer tasks rasterized instead of ray-traced (the protocol): images differ "
                   "(no ray-traced shadows), numbers are not comparable with published ones")
STANDINS_NOTE = ("assets: the bundled simplerenv-data has stand-ins (flat proxy stages, a few rebuilt object "
                 "visuals; see its MANIFEST.md): VA numbers and move-near/eggplant images are not comparable "
                 "with published numbers")


class SimplerSetupError(RuntimeError):
    pass


# -- suite definitions --------------------------------------------------------------------------

# name: (robot, setting, task names). Task names are the keys of the grid tables.
GOOGLE_TASKS = ("pick_coke_can", "move_near", "open_drawer", "close_drawer")
SIMPLER_SUITES = {
    "simpler_google_vm": ("google_robot", "vm", GOOGLE_TASKS),
    "simpler_google_va": ("google_robot", "va", GOOGLE_TASKS),
    "simpler_coke_can_vm": ("google_robot", "vm", ("pick_coke_can",)),
    "simpler_coke_can_va": ("google_robot", "va", ("pick_coke_can",)),
    "simpler_move_near_vm": ("google_robot", "vm", ("move_near",)),
    "simpler_move_near_va": ("google_robot", "va", ("move_near",)),
    "simpler_drawer_vm": ("google_robot", "vm", ("open_drawer", "close_drawer")),
    "simpler_drawer_va": ("google_robot", "va", ("open_drawer", "close_drawer")),
    "simpler_bridge": ("widowx", "bridge", tuple(grids.BRIDGE_TASKS)),
    **{f"simpler_{task}": ("widowx", "bridge", (task,)) for task in grids.BRIDGE_TASKS},
}
# How each episode gets a fresh scene (recorded with runs): a new env when the build arguments
# change, else env.reset(..., reconfigure=True); both bit-identical to the official new env per episode.
ENV_PER_EPISODE = "reconfigure"
# The official evaluator builds a new env per episode and resets it with no seed: ManiSkill2_real2sim
# seeds a new env's main RNG with 2022, so every official episode draws the same episode seed,
# RandomState(2022).randint(2**32). Most grid entries fix every pose, but some variants (coke-can VA
# distractors) place objects from this RNG: evalkit resets every episode with it, as the official loop.
OFFICIAL_EPISODE_SEED = 40194941
RASTERIZED_SUFFIX = "_rasterized"
RASTERIZABLE = ("simpler_google_vm", "simpler_google_va", "simpler_drawer_vm", "simpler_drawer_va")
FAMILIES = {"vm": "SimplerEnv VM", "va": "SimplerEnv VA", "bridge": "SimplerEnv Bridge"}


@lru_cache(maxsize=None)
def task_grid(setting: str, task: str) -> tuple[dict, ...]:
    table = {"vm": grids.GOOGLE_VM, "va": grids.GOOGLE_VA, "bridge": grids.BRIDGE}[setting]
    return tuple(table[task]())


def parse_suite_name(name: str) -> tuple[str, bool]:
    """(base suite name, rasterized?) of a registered SimplerEnv suite name."""
    base = name[: -len(RASTERIZED_SUFFIX)] if name.endswith(RASTERIZED_SUFFIX) else name
    if base not in SIMPLER_SUITES or (base != name and base not in RASTERIZABLE):
        raise ValueError(f"unknown SimplerEnv suite {name!r}; known: {', '.join(sorted(SIMPLER_SUITES))} "
                         f"and {', '.join(s + RASTERIZED_SUFFIX for s in RASTERIZABLE)}")
    return base, base != name


class SimplerSuite(Suite):
    """A Suite whose tasks each have their own official grid (and step limit)."""

    def __init__(self, name: str):
        base, rasterized = parse_suite_name(name)
        robot, setting, task_names = SIMPLER_SUITES[base]
        self.setting, self.task_names, self.rasterized = setting, task_names, rasterized
        first = [task_grid(setting, t)[0] for t in task_names]
        tasks = [TaskInfo(i, t, first[i]["instruction"]) for i, t in enumerate(task_names)]
        info = {"simulator": "SimplerEnv (ManiSkill2_real2sim, SAPIEN 2.2.2)", "setting": setting,
                "episodes": {t: len(task_grid(setting, t)) for t in task_names},
                "step_limits": {t: first[i]["max_steps"] for i, t in enumerate(task_names)},
                "rendering": "drawers rasterized" if rasterized else "drawers ray-traced (protocol)",
                "images": "policy camera at full resolution; adapters resize to their input",
                "env_per_episode": ENV_PER_EPISODE,
                "deviations": [RASTERIZED_NOTE] if rasterized and "open_drawer" in task_names else []}
        super().__init__(name=name, robot=robot, max_steps=max(info["step_limits"].values()),
                         episodes_per_task=max(info["episodes"].values()), family=FAMILIES[setting], tasks=tasks,
                         env_factory=SimplerEnv, info=info, preset="simpler",
                         control_hz=float(first[0]["control_freq"]), fingerprint_file=str(FINGERPRINT_FILE),
                         report_hook="suites.simpler.report:HOOK")

    def doctor_sample(self) -> list[EpisodeSpec]:
        return doctor_sample(self.name)

    def reference_fingerprints(self) -> dict:
        """The committed reference; a ray-traced suite uses its rasterized twin's (physics does not
        depend on the shader: FINGERPRINT_SUITES), under its own episode keys."""
        reference = super().reference_fingerprints()
        if reference or self.name not in RASTERIZABLE:
            return reference
        twin = self.name + RASTERIZED_SUFFIX
        reference = Suite.reference_fingerprints(simpler_suite(twin))
        if reference:
            reference["episodes"] = {self.name + key[len(twin):]: value for key, value in reference["episodes"].items()}
        return reference

    def episode_params(self, task_id: int, init_index: int) -> dict:
        """The grid entry of an episode, with the rendering this suite uses."""
        params = dict(task_grid(self.setting, self.task_names[task_id])[init_index])
        params["raytraced"] = params["raytraced"] and not self.rasterized
        return params

    def episodes(self, task_ids=None, episodes_per_task=None, seed: int = 0) -> list[EpisodeSpec]:
        """Episode i of a task is entry i of its official grid; every episode is reset with the
        official episode seed (OFFICIAL_EPISODE_SEED), plus `seed` when a run asks for another.

        `episodes_per_task` N takes the first N entries of each task's grid (official loop order)."""
        specs = []
        for task_id in range(len(self.tasks)) if task_ids is None else task_ids:
            if not 0 <= task_id < len(self.tasks):
                raise ValueError(f"{self.name} has tasks 0..{len(self.tasks) - 1}; got task {task_id}")
            size = len(task_grid(self.setting, self.task_names[task_id]))
            count = size if episodes_per_task is None else episodes_per_task
            if count > size:
                raise ValueError(f"{self.name} task {task_id} ({self.task_names[task_id]}) has {size} episodes; "
                                 f"asked for {count}")
            specs.extend(self.episode(task_id, i, OFFICIAL_EPISODE_SEED + seed) for i in range(count))
        return specs

    def episode(self, task_id: int, init_index: int, seed: int) -> EpisodeSpec:
        """Entry `init_index` of a task's grid as an episode reset with `seed`."""
        params = self.episode_params(task_id, init_index)
        return EpisodeSpec(self.name, task_id, self.task_names[task_id], params["instruction"], init_index, seed,
                           params["max_steps"], tuple(params.items()))


def simpler_suite(name: str) -> SimplerSuite:
    return SimplerSuite(name)


# -- settled-state fingerprints (evalkit.core.fingerprint; reference values in suites/fingerprints/) -------

FINGERPRINT_PACKAGES = ("sapien", "mani_skill2_real2sim", "simpler_env", "numpy")
# The suites of the committed reference file. The protocol's drawers are ray-traced and a reset renders
# the first observation (about 80 s on a CPU), so the drawers are fingerprinted rasterized: physics does
# not depend on the shader (checked: both drawer sample episodes settle to the same fingerprints ray-traced).
FINGERPRINT_SUITES = ("simpler_google_vm_rasterized", "simpler_bridge")


def doctor_sample(suite_name: str) -> list[EpisodeSpec]:
    """A small fixed sample for `evalkit doctor`: the first and the last entry of each task's grid
    (other objects, orientation and robot colouring), seeded as in a run with --seed 0."""
    suite = simpler_suite(suite_name)
    sample = []
    for task_id, task in enumerate(suite.task_names):
        last = len(task_grid(suite.setting, task)) - 1
        sample.extend(suite.episode(task_id, i, OFFICIAL_EPISODE_SEED) for i in (0, last))
    return sample


def reference_fingerprints(suite_names=FINGERPRINT_SUITES, options: Optional[EnvOptions] = None) -> dict:
    """Settled-state fingerprints of each suite's doctor sample, every episode in an env of its own,
    with the package versions they depend on (the content of suites/fingerprints/simpler.json)."""
    from evalkit.checks.doctor import installed_versions

    options = options or EnvOptions()
    # wait_steps 0: the simpler protocol starts acting right after reset, so that state is the settled one
    return {"wait_steps": 0, "versions": installed_versions(FINGERPRINT_PACKAGES),
            "suites": {name: _suite_fingerprints(name, options) for name in suite_names}}


def _suite_fingerprints(suite_name: str, options: EnvOptions) -> dict:
    from evalkit.core.fingerprint import combine, rounded_state, state_fingerprint

    episodes = {}
    for episode in doctor_sample(suite_name):
        state = settled_state_of(episode, options)
        episodes[episode.key] = {"fingerprint": state_fingerprint(state), "state": rounded_state(state)}
    return {"episodes": episodes, "fingerprint": combine({k: e["fingerprint"] for k, e in episodes.items()})}


def settled_state_of(episode: EpisodeSpec, options: EnvOptions) -> dict[str, np.ndarray]:
    """The settled state of one episode (after reset; the protocol has no wait steps), in a new env."""
    env = SimplerEnv(episode.suite, options)
    try:
        env.reset(episode, render=False)
        return env.settled_state()
    finally:
        env.close()


# -- installation and assets ----------------------------------------------------------------------

def resolve_assets(option: Optional[str] = None) -> Path:
    """The asset folder (MS2_REAL2SIM_ASSET_DIR), first found: --assets, $EVALKIT_SIMPLER_ASSETS,
    $MS2_REAL2SIM_ASSET_DIR, the bundle ../shared/assets/simplerenv-data.tar.gz (unpacked once)."""
    from suites.libero.setup import first_asset_source, unpack_cached

    candidates = [(option, "--assets"), (os.environ.get("EVALKIT_SIMPLER_ASSETS"), "$EVALKIT_SIMPLER_ASSETS"),
                  (os.environ.get("MS2_REAL2SIM_ASSET_DIR"), "$MS2_REAL2SIM_ASSET_DIR"),
                  (str(DEFAULT_BUNDLE), "the bundled default")]
    found = first_asset_source(candidates, "SimplerEnv", SimplerSetupError)
    if found is None:
        raise SimplerSetupError("no SimplerEnv assets found: pass --assets DIR_OR_BUNDLE or set EVALKIT_SIMPLER_ASSETS "
                                "to ManiSkill2_real2sim's data/ folder or to simplerenv-data.tar.gz")
    path, origin = found
    return _check_asset_dir(unpack_cached(path, "simplerenv-data") / "data" if path.is_file() else path, origin)


def _check_asset_dir(path: Path, origin: str) -> Path:
    if (path / "data" / "real_inpainting").is_dir():  # the bundle's or repository's top folder
        path = path / "data"
    if not (path / "real_inpainting").is_dir() or not (path / "custom").is_dir():
        raise SimplerSetupError(f"{path} (from {origin}) does not look like ManiSkill2_real2sim's data/ folder: "
                                "no real_inpainting/ and custom/ inside")
    return path


def import_simpler(assets: Path) -> SimpleNamespace:
    """Import simpler_env with its asset folder set; a clear error when it is not installed."""
    os.environ["MS2_REAL2SIM_ASSET_DIR"] = str(assets)  # read at import time by mani_skill2_real2sim
    try:
        import mani_skill2_real2sim
        import simpler_env  # noqa: F401  (registers the environments)
        from simpler_env.utils.env.env_builder import build_maniskill2_env
        from simpler_env.utils.env.observation_utils import get_image_from_maniskill2_obs_dict
    except ImportError as exc:
        raise SimplerSetupError(f"SimplerEnv is not importable ({exc}). {INSTALL_HINT}") from exc
    mani_skill2_real2sim.ASSET_DIR = Path(assets)  # also when it was imported before with another folder
    descriptions = Path(mani_skill2_real2sim.PACKAGE_ASSET_DIR) / "descriptions"
    if not descriptions.is_dir():
        raise SimplerSetupError(
            f"{descriptions} is missing (robot URDFs): copy the bundle's package_assets/ there: "
            f"cp -rn simplerenv-data/package_assets/. {descriptions.parent}/ (see its MANIFEST.md)")
    return SimpleNamespace(build=build_maniskill2_env, image=get_image_from_maniskill2_obs_dict)


# -- the env ----------------------------------------------------------------------------------------

def build_kwargs(params: dict, assets: Path) -> dict:
    """The official evaluator's gym.make kwargs for an episode (ray tracing first, as it orders them)."""
    kwargs = {"shader_dir": "rt"} if params["raytraced"] else {}
    kwargs.update(dict(params["extra"]))
    if params["setting"] == "vm" and params["robot"] == "google_robot_static":  # the VM scripts pass it, even None
        kwargs["urdf_version"] = params["urdf_version"]
    kwargs.update(obs_mode="rgbd", robot=params["robot"], sim_freq=params["sim_freq"],
                  control_mode=params["control_mode"], control_freq=params["control_freq"],
                  max_episode_steps=params["max_steps"], scene_name=params["scene_name"],
                  camera_cfgs={"add_segmentation": True},
                  rgb_overlay_path=str(assets / "real_inpainting" / params["rgb_overlay"]) if params["rgb_overlay"]
                  else None)
    return kwargs


def reset_options(params: dict) -> dict:
    """The official evaluator's env.reset options: robot pose, then object position or episode id."""
    options = {"robot_init_options": {"init_xy": np.array(params["robot_init_xy"]),
                                      "init_rot_quat": np.array(params["robot_init_quat"])}}
    if params["obj_init_xy"] is not None:
        options["obj_init_options"] = {"init_xy": np.array(params["obj_init_xy"])}
    else:
        options["obj_init_options"] = {"episode_id": params["obj_episode_id"]}
    return options


class SimplerEnv(SuiteEnvBase):
    """One SimplerEnv environment; every episode starts from a fresh scene (module docstring)."""

    def __init__(self, suite_name: str, options: EnvOptions):
        self.suite = simpler_suite(suite_name)
        self.options = options
        self.assets = resolve_assets(options.assets)
        self.api = import_simpler(self.assets)
        self.standins = (self.assets / "STANDINS.txt").exists()  # the bundle's list of stand-in files
        self.primary = PRIMARY_CAMERA[self.suite.robot]
        self.env = None
        self._build_key: Optional[str] = None
        self._obs: dict = {}
        self._info: dict = {}

    def _ensure_env(self, params: dict) -> bool:
        """Build the env unless the current one has the same build arguments; True if built now."""
        kwargs = build_kwargs(params, self.assets)
        key = repr((params["env_id"], sorted(kwargs.items(), key=lambda kv: kv[0])))
        if key == self._build_key:
            return False
        previous = self.env  # closed but referenced until the new env exists: SAPIEN then shares its
        self.close()         # renderer and loaded meshes instead of starting over (1 s, not 8-15 s, on CPU)
        try:
            self.env = self.api.build(params["env_id"], **kwargs)
        except RuntimeError as exc:
            if "rendering device" in str(exc):
                raise SimplerSetupError(f"SAPIEN found no Vulkan device ({exc}). {INSTALL_HINT}") from exc
            raise
        self._build_key = key
        return True

    def reset(self, episode: EpisodeSpec, render: bool) -> None:
        params = episode.param_dict()
        options = reset_options(params)
        if not self._ensure_env(params):  # a used env: rebuild its scene, as a new env would have
            options["reconfigure"] = True
        self._obs, _ = self.env.reset(seed=episode.seed, options=options)
        self._info = {}
        actual = self.env.unwrapped.get_language_instruction()
        if actual != episode.instruction:  # the grid and the env disagree on what this episode is
            raise RuntimeError(f"{episode.key}: the env's instruction is {actual!r}, the grid's {episode.instruction!r}")

    def step(self, action: np.ndarray, render: bool) -> bool:
        # ManiSkill2 renders every step's observation; `render` cannot skip it.
        self._obs, _, _, _, self._info = self.env.step(np.asarray(action, dtype=np.float64))
        return bool(self._info["success"])

    def observation(self) -> Observation:
        images = {cam: self._image(cam) for cam in self.options.cameras}
        state = {}
        if "extra" in self._obs and "tcp_pose" in self._obs["extra"]:
            state["tcp_pose"] = np.asarray(self._obs["extra"]["tcp_pose"])
        if "agent" in self._obs:
            state["qpos"] = np.asarray(self._obs["agent"]["qpos"])
        return Observation(images=images, state=state)

    def _image(self, camera: str) -> np.ndarray:
        if camera in CAMERA_ALIASES or camera == self.primary:
            return np.asarray(self.api.image(self.env.unwrapped, self._obs))
        if camera not in self._obs.get("image", {}):
            raise ValueError(f"SimplerEnv {self.suite.robot} has no camera {camera!r}; use {self.primary!r} "
                             f"(or {' / '.join(CAMERA_ALIASES)}), or one of {sorted(self._obs.get('image', {}))}")
        return np.asarray(self._obs["image"][camera]["rgb"])

    def episode_stats(self) -> dict:
        """The env's episode statistics after the last step; Bridge's partial success is
        `is_src_obj_grasped` (the source object was grasped at some step)."""
        stats = {k: _plain(v) for k, v in dict(self._info.get("episode_stats", {})).items()}
        if "is_src_obj_grasped" in stats:
            stats["partial_success"] = bool(stats["is_src_obj_grasped"])
        if self.standins:  # recorded per episode: the report names runs on stand-in assets
            stats["stand_in_assets"] = True
        return stats

    def frame(self) -> np.ndarray:
        return np.asarray(self.api.image(self.env.unwrapped, self._obs))

    def settled_state(self) -> dict[str, np.ndarray]:
        """Poses now (after reset: the settled state; evalkit.core.fingerprint), see scene_poses."""
        return scene_poses(self.env.unwrapped)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env, self._build_key = None, None


def scene_poses(scene_env) -> dict[str, np.ndarray]:
    """{name: (x, y, z, qw, qx, qy, qz)} of what physics moves: the dynamic actors (the task's
    objects), the links of articulations other than the robot (drawers), the robot base and TCP.

    `scene_env` is the unwrapped ManiSkill2 env (SAPIEN 2 scene API)."""
    robot = scene_env.agent.robot
    poses: dict[str, np.ndarray] = {}
    for actor in scene_env._scene.get_all_actors():
        if actor.type == "dynamic":
            _add_pose(poses, actor.name, actor.pose)
    for articulation in scene_env._scene.get_all_articulations():
        if articulation is not robot:
            for link in articulation.get_links():
                _add_pose(poses, f"{articulation.name}/{link.name}", link.pose)
    _add_pose(poses, "robot_base", robot.pose)
    _add_pose(poses, "robot_tcp", scene_env.tcp.pose)
    return poses


def _add_pose(poses: dict, name: str, pose) -> None:
    unique, n = name, 1
    while unique in poses:  # two actors of one name (identical objects) stay apart
        n += 1
        unique = f"{name}#{n}"
    poses[unique] = np.concatenate([np.asarray(pose.p, dtype=np.float64), np.asarray(pose.q, dtype=np.float64)])


def _plain(value):
    """numpy scalars -> Python ones, so that the stats store as JSON."""
    return value.item() if isinstance(value, np.generic) else value
