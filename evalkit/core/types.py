"""The small contracts at the centre of evalkit: observations, specs and results.

Nothing here imports torch or a simulator, so policies, suites and tools can all
depend on it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np

ACTION_DIM = 7  # delta xyz, delta axis-angle, gripper (-1 open, +1 close)

# How an episode ended: success; budget (steps or queries used up, or the simulator's own
# horizon reached); error (an exception in the policy or env, traceback kept); invalid_action
# (a NaN or wrongly shaped chunk).
Termination = Literal["success", "budget", "error", "timeout", "invalid_action"]


@dataclass
class Observation:
    """What a policy sees at one query.

    images: camera name -> HxWx3 uint8, already in the orientation models expect
        (LIBERO's 180-degree flip applied by the suite).
    state: proprioceptive vectors by name (e.g. "eef_pos", "gripper_qpos").
    privileged: simulator ground truth (object poses, goal predicates) that only
        scripted policies ask for; empty unless the policy's spec requests it.
    episode_key / step: which episode and env step this observation belongs to,
        so policies with per-episode state stay correct when observations of
        several episodes arrive in one batch.
    """

    images: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    privileged: dict[str, Any] = field(default_factory=dict)
    episode_key: str = ""
    step: int = 0

    def image(self, camera: str) -> np.ndarray:
        """One camera's frame; a missing camera names the ones present (adapters take camera=...)."""
        if camera not in self.images:
            raise KeyError(f"observation has no {camera!r} image (has {sorted(self.images)}); pass camera=...")
        return self.images[camera]


@dataclass(frozen=True)
class PolicySpec:
    """What a policy reads and returns; the harness renders and ships nothing more."""

    cameras: tuple[str, ...] = ()
    state_keys: tuple[str, ...] = ()
    chunk_size: int = 1
    action_dim: int = ACTION_DIM
    privileged: bool = False
    # True when act() depends on earlier calls of the same episode (scripted or
    # replayed policies). Such policies get one instance per concurrent episode.
    stateful: bool = False
    # "native": actions in the suite's own space; "rlds": model actions (gripper in [0, 1],
    # 1 = open; Bridge/Google rotations as roll/pitch/yaw), mapped per suite by
    # evalkit.core.conventions.Postprocessor as they are executed.
    action_convention: str = "native"
    # Google robot's sticky gripper: steps a gripper change is held, as in the policy's own
    # SimplerEnv script (15 for OpenVLA and NORA-1.5, 10 for SpatialVLA).
    sticky_gripper_repeats: int = 15
    # Google robot's sticky gripper, which of the two reference variants: "every_step" (OpenVLA,
    # RT-1, Octo adapters: the previous gripper value is updated on every step) or
    # "on_sticky_start" (NORA-1.5's and the SpatialVLA/CogACT/pi0 SimplerEnv adapters: updated
    # only when a sticky action starts). See evalkit.core.conventions.StickyGripper.
    sticky_gripper_variant: str = "every_step"
    # How camera frames become the model's input image: a named path of evalkit.core.images (e.g.
    # "openvla": JPEG round trip + TF lanczos3), applied by the harness before each query and
    # recorded per suite. "reference": the path of the reference loop for the suite's robot, from
    # `image_paths` ((robot, path) pairs; robot "*" for any other). "none": frames as rendered.
    image_path: str = "none"
    image_paths: tuple = ()
    image_size: int = 224  # the side of the model's input image, where a path resizes
    # Other settings the policy's numbers depend on, as (name, value) pairs (e.g. NORA's
    # on_undecodable and generation length): recorded with the run, printed under its table.
    settings: tuple = ()
    # The execution mode the policy's published numbers used, per robot (Suite.robot), as
    # (robot, mode) pairs; `--mode reference` picks it (e.g. NORA on LIBERO: open_loop).
    reference_modes: tuple = ()


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode of a suite: everything needed to reproduce it."""

    suite: str
    task_id: int
    task_name: str
    instruction: str
    init_index: int
    seed: int
    max_steps: int  # the suite's own step budget (env steps after the wait steps)
    # Suite-specific parameters of this episode as (name, value) pairs, hashable so the spec
    # stays frozen (SimplerEnv: env id, robot and object pose, URDF, overlay, variant).
    params: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.task_id}/{self.init_index}/{self.seed}"

    def param_dict(self) -> dict:
        return dict(self.params)


@dataclass
class EpisodeResult:
    """One finished episode, as written to the results store."""

    suite: str
    task_id: int
    task_name: str
    init_index: int
    seed: int
    success: bool
    termination: Termination
    steps: int  # env steps after the wait steps
    queries: int  # policy queries
    wall_s: float
    policy_s: float
    error: str = ""
    video: str = ""
    # Suite-specific episode statistics (SimplerEnv Bridge: partial success, the source object grasped).
    stats: dict = field(default_factory=dict)
    # Hash of the object poses after the wait steps (evalkit.core.fingerprint); "" where the suite
    # offers none. Two runs whose fingerprints differ ran on different physics.
    settle_fingerprint: str = ""
    # Queries whose output did not decode and were answered as the reference code does (Undecodable).
    undecodable: int = 0
    # The episode's suite-specific parameters (EpisodeSpec.params: SimplerEnv's grid entry), stored so that a
    # report never has to re-derive them from today's suite definition.
    params: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.task_id}/{self.init_index}/{self.seed}"


@dataclass(frozen=True)
class NoAction:
    """What a policy returns instead of a chunk when it could not produce one (e.g. a model
    output that does not decode). The episode ends as `invalid_action` with this reason,
    and the other episodes of a batch are unaffected."""

    reason: str


@dataclass(frozen=True)
class Undecodable:
    """What a policy returns when its output did not decode but, as its reference code does,
    it still executes something (NORA: the FAST decoder's zeros, unnormalised to the q01/q99
    midpoint). The runner executes `actions` and counts the query in
    EpisodeResult.undecodable; the episode goes on."""

    actions: Any
    reason: str


def validate_chunk(chunk: Any, spec: PolicySpec) -> tuple[Optional[np.ndarray], str]:
    """Return (chunk as float array (N, action_dim), "") or (None, reason) when invalid."""
    if isinstance(chunk, NoAction):
        return None, chunk.reason
    if isinstance(chunk, Undecodable):
        chunk = chunk.actions
    try:
        arr = np.asarray(chunk, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return None, f"action chunk is not numeric: {exc}"
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != spec.action_dim:
        return None, (
            f"action chunk has shape {tuple(np.shape(chunk))}; expected (N, {spec.action_dim}) with N >= 1"
        )
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        return None, f"action chunk holds a non-finite value at row {bad[0]}, dim {bad[1]}: {arr[tuple(bad)]}"
    return arr, ""
