"""Scripted oracle for LIBERO pick-and-place ("put the bowl on the plate") tasks.

It reads privileged simulator state (see suites/libero_privileged.py) and acts
only through the normal 7-D OSC_POSE delta action. A small phase machine drives
closed-loop proportional control on the privileged positions:

    approach -> descend -> grasp -> lift -> transport -> lower -> release

The akita black bowl (outer diameter ~9.6 cm) is wider than the Panda gripper's
opening (~8 cm), so the oracle grasps the rim: it places the grip site on the
rim wall, offset from the bowl's centre along the fingers' closing axis, with
one finger inside the bowl and one outside.
"""

from __future__ import annotations

import numpy as np

from evalkit.types import Observation, PolicySpec

POS_SCALE = 0.05  # metres per unit of action[0:3] (OSC_POSE output_max)
ROT_SCALE = 0.5  # radians per unit of action[3:6]
OPEN, CLOSE = -1.0, 1.0

# Grip site held pointing straight down with the fingers closing along world y:
# columns are the site's x (closing axis), y and z (out of the fingers) axes.
TARGET_ROT = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def _rotvec(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (angles well below pi suffice here)."""
    cos = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    return axis * angle / (2.0 * np.sin(angle))


def _pick_and_place_names(goal: list) -> tuple[str, str]:
    """(object, target) of the first ("on", object, target) goal predicate."""
    for pred in goal:
        if pred[0] == "on" and len(pred) == 3:
            return pred[1], pred[2]
    raise ValueError(f"no ('on', obj, target) predicate in goal {goal!r}")


class OraclePolicy:
    spec = PolicySpec(cameras=(), chunk_size=1, privileged=True, stateful=True)

    def __init__(
        self,
        rim_radius: float = 0.047,
        grasp_height: float = 0.035,
        hover_height: float = 0.10,
        lift_height: float = 0.08,
        carry_height: float = 0.10,
        place_height: float = 0.01,
        pos_gain: float = 2.0,
        rot_gain: float = 1.0,
        close_steps: int = 10,
        open_steps: int = 5,
    ):
        """Heights are those of the bowl's base (its body origin) above the named
        surface, except grasp_height, the grip site's height above the bowl's base."""
        self.rim_radius = rim_radius
        self.grasp_height = grasp_height
        self.hover_height = hover_height
        self.lift_height = lift_height
        self.carry_height = carry_height
        self.place_height = place_height
        self.pos_gain = pos_gain
        self.rot_gain = rot_gain
        self.close_steps = close_steps
        self.open_steps = open_steps
        self.reset()

    def reset(self) -> None:
        self.phase = "approach"
        self.phase_steps = 0
        self.lift_z = 0.0  # bowl height to reach before moving sideways

    # -- control helpers ---------------------------------------------------

    def _action(self, p: dict, eef_target: np.ndarray, gripper: float) -> np.ndarray:
        """Proportional move of the grip site toward eef_target, orientation held."""
        action = np.zeros(7)
        action[0:3] = self.pos_gain * (eef_target - p["eef_pos"]) / POS_SCALE
        rot_err = TARGET_ROT @ np.asarray(p["eef_mat"]).T
        action[3:6] = self.rot_gain * _rotvec(rot_err) / ROT_SCALE
        action[6] = gripper
        return np.clip(action, -1.0, 1.0)[None, :]

    def _grasp_point(self, p: dict, obj_pos: np.ndarray) -> np.ndarray:
        """Grip site position on the rim: along the closing axis from the bowl centre."""
        axis = np.asarray(p["eef_mat"])[:, 0].copy()
        axis[2] = 0.0
        axis /= np.linalg.norm(axis)
        return obj_pos + self.rim_radius * axis + np.array([0.0, 0.0, self.grasp_height])

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0

    # -- the phase machine -------------------------------------------------

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        p = obs.privileged
        obj_name, target_name = _pick_and_place_names(p["goal"])
        obj = np.asarray(p["objects"][obj_name]["pos"])
        target = np.asarray(p["objects"][target_name]["pos"])
        eef = np.asarray(p["eef_pos"])
        self.phase_steps += 1
        grasp = self._grasp_point(p, obj)

        if self.phase == "approach":
            # Hover above the grasp point, so the fingers clear the rim on the way.
            hover = grasp + np.array([0.0, 0.0, self.hover_height])
            if np.linalg.norm((hover - eef)[:2]) < 0.01:
                self._set_phase("descend")
            else:
                return self._action(p, hover, OPEN)

        if self.phase == "descend":
            if np.linalg.norm(grasp - eef) < 0.006:
                self._set_phase("grasp")
            else:
                return self._action(p, grasp, OPEN)

        if self.phase == "grasp":
            if self.phase_steps > self.close_steps:
                self.lift_z = obj[2] + self.lift_height
                self._set_phase("lift")
            else:
                return self._action(p, grasp, CLOSE)

        # From here on the bowl is in hand: steer the bowl, not the grip site.
        if self.phase == "lift":
            if obj[2] >= self.lift_z - 0.01:
                self._set_phase("transport")
            else:
                return self._action(p, eef + np.array([0.0, 0.0, self.lift_z - obj[2]]), CLOSE)

        if self.phase == "transport":
            carry = target + np.array([0.0, 0.0, self.carry_height])
            if np.linalg.norm((carry - obj)[:2]) < 0.01:
                self._set_phase("lower")
            else:
                return self._action(p, eef + (carry - obj), CLOSE)

        if self.phase == "lower":
            place = target + np.array([0.0, 0.0, self.place_height])
            if obj[2] - place[2] < 0.005:
                self._set_phase("release")
            else:
                return self._action(p, eef + (place - obj), CLOSE)

        # release: open and back off upward.
        return self._action(p, eef + np.array([0.0, 0.0, 0.02]), OPEN)
