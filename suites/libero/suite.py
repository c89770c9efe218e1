"""LIBERO suites (hf-libero on robosuite 1.4 / MuJoCo), with the reference protocol.

The suite definitions are data (step limits from OpenVLA/openpi's evaluation, 50 init
states per task); the env is built in the worker, importing LIBERO only there.

Protocol points handled here (see ../shared/PROTOCOLS.md):
- episode i of a task starts from the task's init state i;
- `env.seed(seed)` right before every hard reset, and LIBERO's growing list of property
  samplers restored first (see `_build`), so fixtures land the same way and an episode
  is reproducible whatever ran before it in the process;
- both 256x256 cameras flipped on both axes (`img[::-1, ::-1]`), as every model expects;
- success is LIBERO's `check_success()` after each step;
- only the cameras the policy reads are rendered, and only on steps whose observation
  is read (or every step when video is on).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from evalkit.core.conventions import flip_image
from evalkit.core.suite import EnvOptions, Suite, SuiteEnvBase, TaskInfo
from evalkit.core.types import EpisodeSpec, Observation

# name: (max steps, summary column) - max steps of OpenVLA's and openpi's LIBERO scripts.
LIBERO_SUITES = {
    "libero_spatial": (220, "Spatial"),
    "libero_object": (280, "Object"),
    "libero_goal": (300, "Goal"),
    "libero_10": (520, "Long"),
    "libero_90": (400, "LIBERO-90"),
}
INIT_STATES_PER_TASK = 50
# Settled-state fingerprints made with the pinned versions (pyproject: mujoco 3.3.2, robosuite
# 1.4.0), which the file records; `evalkit doctor` compares an install with them.
# Regenerate: python scripts/make_fingerprints.py libero
FINGERPRINTS = Path(__file__).parents[1] / "fingerprints" / "libero.json"
CAMERA_KEYS = {"agentview": "agentview_image", "robot0_eye_in_hand": "robot0_eye_in_hand_image"}
VIDEO_CAMERA = "agentview"


def libero_suite(name: str) -> Suite:
    from suites.libero.setup import import_libero

    benchmark = import_libero().make_benchmark(name)
    tasks = [TaskInfo(i, benchmark.get_task(i).name, benchmark.get_task(i).language)
             for i in range(benchmark.get_num_tasks())]
    max_steps, family = LIBERO_SUITES[name]
    return Suite(name=name, robot="libero", max_steps=max_steps, episodes_per_task=INIT_STATES_PER_TASK, family=family,
                 tasks=tasks, env_factory=LiberoEnv, info={"simulator": "LIBERO (robosuite 1.4, MuJoCo)"},
                 fingerprint_file=str(FINGERPRINTS))


class _RenderGate:
    """Wraps robosuite camera sensors so that they render only while `open`.

    Sampling bookkeeping is untouched (the observables stay enabled), so a gated run
    renders exactly the frames an ungated run would, at the same instants, and skips
    the rest. While closed a sensor returns its last frame, which nobody reads.
    """

    def __init__(self, always_open: bool):
        self.always_open = always_open
        self.open = always_open
        self.renders = 0  # camera images actually rendered
        self._last: dict[str, np.ndarray] = {}

    def install(self, raw_env) -> None:
        """Patch the env so every (re)built camera sensor goes through the gate."""
        original = raw_env._setup_observables

        def setup_gated_observables():
            observables = original()
            for name, observable in observables.items():
                if name.endswith("_image"):
                    observable._sensor = self._gated(name, observable._sensor)
            return observables

        raw_env._setup_observables = setup_gated_observables

    def _gated(self, name, sensor):
        def gated_sensor(obs_cache):
            if self.open:
                self._last[name] = sensor(obs_cache)
                self.renders += 1
            return self._last.get(name, np.zeros((1, 1, 3), np.uint8))

        gated_sensor.__modality__ = sensor.__modality__
        return gated_sensor

    def set(self, render: bool) -> None:
        self.open = render or self.always_open


class LiberoEnv(SuiteEnvBase):
    """One LIBERO simulator, rebuilt when the task changes."""

    def __init__(self, suite_name: str, options: EnvOptions):
        from suites.libero.setup import import_libero, resolve_assets

        self.libero = import_libero(resolve_assets(options.assets))
        self.suite_name = suite_name
        self.options = options
        self.benchmark = self.libero.make_benchmark(suite_name)
        cameras = list(dict.fromkeys([*options.cameras, *([VIDEO_CAMERA] if options.video else [])]))
        unknown = [c for c in cameras if c not in CAMERA_KEYS]
        if unknown:
            raise ValueError(f"LIBERO has no camera {unknown}; available: {sorted(CAMERA_KEYS)}")
        self.render_cameras = cameras
        self.gate = _RenderGate(always_open=options.render_all)
        self.env = None
        self.task_id: Optional[int] = None
        self._init_states = None
        self._obs: dict = {}
        self._rendered = False

    def _build(self, task_id: int) -> None:
        if self.env is not None:
            self.env.close()
        task = self.benchmark.get_task(task_id)
        bddl = os.path.join(self.libero.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        cameras = list(CAMERA_KEYS) if self.options.render_all else self.render_cameras
        self.env = self.libero.ControlEnv(
            bddl_file_name=bddl,
            camera_names=cameras or [VIDEO_CAMERA],
            camera_heights=self.options.image_size,
            camera_widths=self.options.image_size,
            has_renderer=False,
            has_offscreen_renderer=bool(cameras),
            use_camera_obs=bool(cameras),
            ignore_done=True,  # episode ends are the runner's call (budgets beyond robosuite's horizon)
        )
        self.gate.install(self.env.env)
        # LIBERO appends the task's property samplers (drawer, stove knob) to this list on
        # every hard reset without clearing it, so each reset draws more random numbers
        # than the last and fixtures land elsewhere even after reseeding. Restoring the
        # list as construction left it makes every reset behave like the first reset of a
        # fresh process, as in the reference scripts' first episode.
        self._property_samplers = list(self.env.env.object_property_initializers)
        self.task_id = task_id
        self._init_states = self.benchmark.get_task_init_states(task_id)

    def reset(self, episode: EpisodeSpec, render: bool) -> None:
        if self.task_id != episode.task_id:
            self._build(episode.task_id)
        self.gate.set(False)
        self.env.env.object_property_initializers = list(self._property_samplers)
        self.env.seed(episode.seed)  # fixtures are placed from numpy's global RNG at every hard reset
        self.env.reset()
        self.gate.set(render)
        self._obs = self.env.set_init_state(self._init_states[episode.init_index])
        self._rendered = render or self.options.render_all

    def step(self, action: np.ndarray, render: bool) -> bool:
        self.gate.set(render)
        self._obs, _, done, _ = self.env.step(np.asarray(action, dtype=np.float64))
        self._rendered = render or self.options.render_all
        return bool(done)  # LIBERO's done is check_success()

    def observation(self) -> Observation:
        raw = self._obs
        images = {}
        if self._rendered:
            images = {cam: flip_image(raw[CAMERA_KEYS[cam]]) for cam in self.options.cameras}
        state = {
            "eef_pos": np.asarray(raw["robot0_eef_pos"]),
            "eef_quat": np.asarray(raw["robot0_eef_quat"]),
            "gripper_qpos": np.asarray(raw["robot0_gripper_qpos"]),
            "joint_pos": np.asarray(raw["robot0_joint_pos"]),
        }
        privileged = {}
        if self.options.privileged:
            from suites.libero.privileged import privileged_state

            privileged = privileged_state(self.env)
        return Observation(images=images, state=state, privileged=privileged)

    def frame(self) -> np.ndarray:
        return flip_image(self._obs[CAMERA_KEYS[VIDEO_CAMERA]])

    def settled_state(self) -> dict[str, np.ndarray]:
        """Every named joint's position (objects' free joints: position + quaternion; drawers,
        knobs and the arm: their angles), for the simulator fingerprint (evalkit.core.fingerprint)."""
        sim = self.env.env.sim
        return {name: np.atleast_1d(sim.data.get_joint_qpos(name)) for name in sim.model.joint_names if name}

    def body_position(self, name: str) -> np.ndarray:
        """World position of a named body (tests and probes)."""
        sim = self.env.env.sim
        return np.array(sim.data.body_xpos[sim.model.body_name2id(name)])

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
