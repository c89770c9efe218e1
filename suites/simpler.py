"""SimplerEnv suites (ManiSkill2_real2sim on SAPIEN 2.2.2): Google Robot VM/VA and Bridge.

The suites are data (suites/simpler_grids.py, from the official scripts); each EpisodeSpec
carries its env id, robot and object pose, URDF version, overlay image and variant. The env
is built in the worker with the official builder (`build_maniskill2_env`), reset with the
official options, and judged on the env's success flag; the `simpler` protocol preset takes
it at the last step (the protocol), `simpler_any_step` at any step (a recorded deviation).

Protocol points handled here (see ../shared/PROTOCOLS.md):
- Google Robot at 3 Hz (sim 513 Hz), WidowX at 5 Hz (sim 500 Hz); step limits per task;
- the drawer tasks are ray-traced; the `*_rasterized` suites render them rasterized for
  machines without a GPU (about 45 s per ray-traced step on CPU) and record that deviation;
- a built env is reused while the next episode has the same build arguments (the official
  evaluator rebuilds it per episode); every reset gets an explicit seed (seed + init index);
- images are the policy camera's full frame (Google 640x512 overhead, WidowX 640x480 third
  view); adapters resize to their input with evalkit.conventions.resize_image.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np

from evalkit.suite import EnvOptions, Suite, TaskInfo
from evalkit.types import EpisodeSpec, Observation
from suites import simpler_grids as grids

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO_ROOT.parent / "shared" / "assets" / "simplerenv-data.tar.gz"
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
                "deviations": [RASTERIZED_NOTE] if rasterized and "open_drawer" in task_names else []}
        super().__init__(name=name, robot=robot, max_steps=max(info["step_limits"].values()),
                         episodes_per_task=max(info["episodes"].values()), family=FAMILIES[setting], tasks=tasks,
                         env_factory=SimplerEnv, info=info, preset="simpler",
                         control_hz=float(first[0]["control_freq"]))

    def episode_params(self, task_id: int, init_index: int) -> dict:
        """The grid entry of an episode, with the rendering this suite uses."""
        params = dict(task_grid(self.setting, self.task_names[task_id])[init_index])
        params["raytraced"] = params["raytraced"] and not self.rasterized
        return params

    def episodes(self, task_ids=None, episodes_per_task=None, seed: int = 0) -> list[EpisodeSpec]:
        """Episode i of a task is entry i of its official grid; seed = seed + i.

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
            for i in range(count):
                params = self.episode_params(task_id, i)
                specs.append(EpisodeSpec(self.name, task_id, self.task_names[task_id], params["instruction"], i,
                                         seed + i, params["max_steps"], tuple(params.items())))
        return specs


def simpler_suite(name: str) -> SimplerSuite:
    return SimplerSuite(name)


# -- installation and assets ----------------------------------------------------------------------

def resolve_assets(option: Optional[str] = None) -> Path:
    """The asset folder (MS2_REAL2SIM_ASSET_DIR), first found: --assets, $EVALKIT_SIMPLER_ASSETS,
    $MS2_REAL2SIM_ASSET_DIR, the bundle ../shared/assets/simplerenv-data.tar.gz (unpacked once)."""
    from suites.libero_setup import first_asset_source, unpack_cached

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


class SimplerEnv:
    """One SimplerEnv environment, rebuilt when an episode needs other build arguments."""

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

    def _ensure_env(self, params: dict) -> None:
        kwargs = build_kwargs(params, self.assets)
        key = repr((params["env_id"], sorted(kwargs.items(), key=lambda kv: kv[0])))
        if key == self._build_key:
            return
        self.close()
        try:
            self.env = self.api.build(params["env_id"], **kwargs)
        except RuntimeError as exc:
            if "rendering device" in str(exc):
                raise SimplerSetupError(f"SAPIEN found no Vulkan device ({exc}). {INSTALL_HINT}") from exc
            raise
        self._build_key = key

    def reset(self, episode: EpisodeSpec, render: bool) -> None:
        params = episode.param_dict()
        self._ensure_env(params)
        self._obs, _ = self.env.reset(seed=episode.seed, options=reset_options(params))
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

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env, self._build_key = None, None


def _plain(value):
    """numpy scalars -> Python ones, so that the stats store as JSON."""
    return value.item() if isinstance(value, np.generic) else value
