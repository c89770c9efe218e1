"""Benchmark-side action and image conventions, shared by every policy adapter.

Models output the gripper in [0, 1] (1 = open) and rotations as they were trained;
each benchmark wants its own convention. These small functions and classes do the
mapping, one place for all policies, so that a convention is chosen per suite and
recorded, not re-implemented (slightly differently) in each adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from evalkit.core.types import PolicySpec


def libero_gripper(open_prob: np.ndarray) -> np.ndarray:
    """Model gripper in [0, 1] (1 = open) -> LIBERO's -1 (open) / +1 (close).

    As OpenVLA's LIBERO script: rescale to [-1, 1] (2g - 1), binarise with the sign,
    then invert. Exactly 0.5 maps to 0 (no change), as there.
    """
    return -np.sign(2.0 * np.asarray(open_prob, dtype=np.float64) - 1.0)


def widowx_gripper(open_prob: np.ndarray) -> np.ndarray:
    """Model gripper in [0, 1] -> WidowX (Bridge) command: +1 open if g > 0.5, else -1."""
    return 2.0 * (np.asarray(open_prob, dtype=np.float64) > 0.5) - 1.0


STICKY_VARIANTS = ("every_step", "on_sticky_start")


class StickyGripper:
    """Google robot gripper: relative command (previous - current), made "sticky".

    A relative change larger than 0.5 is repeated for `repeats` steps (15 in OpenVLA's and
    NORA-1.5's SimplerEnv policies, 10 in SpatialVLA's) before new changes are followed.
    Two reference variants differ in when "previous" is updated:
      every_step: on every step (SimplerEnv's OpenVLA, RT-1 and Octo adapters), so only a jump
        of more than 0.5 between two consecutive steps triggers;
      on_sticky_start: on the first step and whenever a sticky action starts (NORA-1.5's fork and
        the SpatialVLA/CogACT/pi0 adapters of SimplerEnv-OpenVLA: "fix a bug in the SIMPLER
        code"), so a slow ramp triggers once it has drifted 0.5 from the last held value.
    Per-episode state: call reset() before each episode.
    """

    def __init__(self, repeats: int = 15, variant: str = "every_step"):
        if variant not in STICKY_VARIANTS:
            raise ValueError(f"unknown sticky gripper variant {variant!r}; known: {', '.join(STICKY_VARIANTS)}")
        self.repeats, self.variant = repeats, variant
        self.reset()

    def reset(self) -> None:
        self.previous = None
        self.sticky_value = 0.0
        self.repeat_count = 0
        self.sticking = False

    def __call__(self, open_prob: float) -> float:
        current = float(open_prob)
        relative = 0.0 if self.previous is None else self.previous - current
        if self.previous is None or self.variant == "every_step":
            self.previous = current
        if abs(relative) > 0.5 and not self.sticking:
            self.sticking, self.sticky_value = True, relative
            self.previous = current
        if self.sticking:
            self.repeat_count += 1
            relative = self.sticky_value
        if self.repeat_count == self.repeats:
            self.sticking, self.sticky_value, self.repeat_count = False, 0.0, 0
        return relative


def euler_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Static-axes xyz Euler angles (roll about x, then pitch about y, then yaw about z)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis * angle (angle in [0, pi])."""
    cos = np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle < 1e-6:  # near pi the antisymmetric part vanishes; (R + I) / 2 = a a^T there
        half = (matrix + np.eye(3)) / 2.0
        column = half[:, np.argmax(np.diag(half))]
        return column / np.linalg.norm(column) * angle
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    return axis / (2.0 * np.sin(angle)) * angle


def euler_to_axis_angle(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Delta roll/pitch/yaw (what models output) -> axis-angle (what SimplerEnv takes)."""
    return matrix_to_axis_angle(euler_to_matrix(roll, pitch, yaw))


def flip_image(image: np.ndarray) -> np.ndarray:
    """Rotate 180 degrees (both axes), as every LIBERO model expects of LIBERO's renders."""
    return np.ascontiguousarray(np.asarray(image)[::-1, ::-1])


# -- per-suite postprocessing of model actions ----------------------------------------------

ROBOTS = ("generic", "libero", "widowx", "google_robot")
CONVENTIONS = ("native", "rlds")


class Postprocessor:
    """Maps each executed action from a policy's convention into its suite's robot's.

    Policies declare `PolicySpec.action_convention`:
      native: actions are already in the suite's own space (scripted, replay, random);
      rlds:   model actions as in the Open-X/LIBERO RLDS training data: xyz delta, rotation
              delta (the data's own for LIBERO; roll/pitch/yaw for Bridge/Google), gripper
              in [0, 1] with 1 = open.
    Suites declare their robot. One instance per episode (the sticky gripper has state).
    """

    def __init__(self, robot: str, convention: str, sticky_repeats: int = 15, sticky_variant: str = "every_step"):
        if robot not in ROBOTS:
            raise ValueError(f"unknown robot {robot!r}; known: {', '.join(ROBOTS)}")
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown action convention {convention!r}; known: {', '.join(CONVENTIONS)}")
        self.robot, self.convention = robot, convention
        self.sticky = StickyGripper(sticky_repeats, sticky_variant) if robot == "google_robot" else None
        self.identity = convention == "native" or robot == "generic"
        self.name = "identity" if self.identity else {
            "libero": "libero_gripper", "widowx": "euler_to_axis_angle+widowx_gripper",
            "google_robot": f"euler_to_axis_angle+sticky_gripper({sticky_repeats},{sticky_variant})"}[robot]

    def reset(self) -> None:
        if self.sticky is not None:
            self.sticky.reset()

    def __call__(self, action: np.ndarray) -> np.ndarray:
        if self.identity:
            return action
        out = np.array(action, dtype=np.float64, copy=True)
        if self.robot == "libero":  # LIBERO data already holds the controller's rotation delta
            out[6] = libero_gripper(out[6])
            return out
        out[3:6] = euler_to_axis_angle(*out[3:6])
        out[6] = widowx_gripper(out[6]) if self.robot == "widowx" else self.sticky(out[6])
        return out


def postprocessor_for(suite, spec: PolicySpec) -> Postprocessor:
    """The action postprocessor for a policy's convention on a suite's robot."""
    return Postprocessor(suite.robot, spec.action_convention, spec.sticky_gripper_repeats, spec.sticky_gripper_variant)
