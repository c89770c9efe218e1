"""Scripted oracle for LIBERO pick-and-place ("put the bowl on the plate") tasks.

It reads privileged simulator state (see suites/libero/privileged.py) and acts
only through the normal 7-D OSC_POSE delta action. A small phase machine drives
closed-loop proportional control on the privileged positions:

    approach -> descend -> grasp -> lift -> transport -> lower -> release

The akita black bowl (outer diameter ~9.6 cm) is wider than the Panda gripper's
opening (~8 cm), so the oracle grasps the rim: it places the grip site on the
rim wall, offset from the bowl's centre along the fingers' closing axis, with
one finger inside the bowl and one outside.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from evalkit.core.conventions import matrix_to_axis_angle
from evalkit.core.types import Observation, PolicySpec

POS_SCALE = 0.05  # metres per unit of action[0:3] (OSC_POSE output_max)
ROT_SCALE = 0.5  # radians per unit of action[3:6]
OPEN, CLOSE = -1.0, 1.0

# Grip site orientations, held pointing straight down (columns: the site's x =
# the fingers' closing axis, y, z = out of the fingers). The robot starts with
# the fingers closing along world y. For bowls far from the robot base the hand
# turns 90 degrees (closing along world x) to grasp the rim on the side facing
# the base: that keeps far bowls and plates within reach and fits the fingers
# into the cabinet drawer, whose walls are closest along y. Near the base the
# turn would drive the elbow and wrist into their joint limits, so it keeps the
# start orientation there. Turning costs ~25 steps (~3.6 deg per step), mostly
# overlapped with the approach.
START_ROT = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
TURNED_ROT = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])

# robosuite's Panda gripper integrates the sign of action[6] into a command level
# in [-1, 1] (open..closed), 0.25 per env step (0.01 per sim substep, 25
# substeps). The policy mirrors that level to hold the fingers part-closed.
GRIP_LEVEL_STEP = 0.25


def _pick_and_place_names(goal: list) -> tuple[str, str]:
    """(object, target) of the first ("on", object, target) goal predicate."""
    for pred in goal:
        if pred[0] == "on" and len(pred) == 3:
            return pred[1], pred[2]
    raise ValueError(f"no ('on', obj, target) predicate in goal {goal!r}")


@dataclass(frozen=True)
class OracleTuning:
    """Heights are those of the bowl's base (its body origin) above the named surface,
    except grasp_height, the grip site's height above the bowl's base.
    pregrasp_level: gripper command level held while reaching the rim (-1 wide open,
    0.25 leaves a ~3 cm gap), so the outer finger clears nearby walls.
    turn_beyond: horizontal bowl distance from the robot base (m) beyond which the hand
    turns to TURNED_ROT."""

    rim_radius: float = 0.047
    grasp_height: float = 0.035
    hover_height: float = 0.10
    lift_height: float = 0.08
    carry_height: float = 0.10
    place_height: float = 0.01
    pregrasp_level: float = 0.25
    turn_beyond: float = 0.5
    pos_gain: float = 2.0
    rot_gain: float = 2.0
    close_steps: int = 8
    lower_steps: int = 20


class OraclePolicy:
    def __init__(self, chunk_size: int = 1, **tuning):
        """Keyword arguments override OracleTuning's fields (e.g. --policy-arg rim_radius=0.05).

        chunk_size > 1 repeats each decided action that many times, as a chunking policy
        would commit to it: an ablation knob for execution modes, not a better oracle."""
        self.spec = PolicySpec(cameras=(), chunk_size=int(chunk_size), privileged=True, stateful=True)
        known = {f.name: f.type for f in fields(OracleTuning)}
        unknown = sorted(set(tuning) - set(known))
        if unknown:
            raise TypeError(f"unknown oracle setting(s) {unknown}; known: {sorted(known)}")
        cast = {"float": float, "int": int}
        self.tuning = OracleTuning(**{k: cast[known[k]](v) for k, v in tuning.items()})
        self.reset()

    def reset(self) -> None:
        self.phase = "approach"
        self.phase_steps = 0
        self.grip_level = -1.0  # the harness's wait steps leave the gripper fully open
        self.lift_z = 0.0  # bowl height to reach before moving sideways
        # Chosen at the episode's first query, then fixed: hand orientation and
        # the unit vector from the bowl's centre to the grasped rim.
        self.target_rot: np.ndarray | None = None
        self.grasp_dir = np.zeros(3)

    # -- control helpers ---------------------------------------------------

    def _action(self, p: dict, eef_target: np.ndarray, gripper: float) -> np.ndarray:
        """Proportional move of the grip site toward eef_target, orientation held."""
        action = np.zeros(7)
        action[0:3] = self.tuning.pos_gain * (eef_target - p["eef_pos"]) / POS_SCALE
        action[3:6] = self.tuning.rot_gain * matrix_to_axis_angle(self._rot_error(p)) / ROT_SCALE
        action[6] = gripper
        action = np.clip(action, -1.0, 1.0)
        # A chunk commits the gripper command for all its steps (exact in open-loop mode).
        level_change = GRIP_LEVEL_STEP * self.spec.chunk_size * np.sign(action[6])
        self.grip_level = float(np.clip(self.grip_level + level_change, -1.0, 1.0))
        return action[None, :]

    def _rot_error(self, p: dict) -> np.ndarray:
        return self.target_rot @ np.asarray(p["eef_mat"]).T

    def _pregrasp_gripper(self) -> float:
        """Step the gripper toward the part-closed pregrasp level, then hold it (0)."""
        return float(np.sign(self.tuning.pregrasp_level - self.grip_level))

    def _plan_grasp(self, p: dict, obj: np.ndarray, target: np.ndarray) -> None:
        """Pick the hand orientation from the bowl's reach, then the rim side (along
        the closing axis) that faces the robot base once the bowl sits on the
        target: the arm is stretched least when placing on a far plate."""
        base = np.asarray(p["robot_base_pos"])
        far = np.linalg.norm((obj - base)[:2]) > self.tuning.turn_beyond
        self.target_rot = TURNED_ROT if far else START_ROT
        axis = self.target_rot[:, 0]
        self.grasp_dir = min((axis, -axis), key=lambda d: np.linalg.norm((target + self.tuning.rim_radius * d - base)[:2]))

    def _dropped(self, eef: np.ndarray, obj: np.ndarray) -> bool:
        """True when the bowl has fallen away from the fingers while carried."""
        carrying = self.phase in ("lift", "transport", "lower")
        return carrying and eef[2] - obj[2] > self.tuning.grasp_height + 0.03

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0

    # -- the phase machine -------------------------------------------------

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        return np.repeat(self._decide(obs), self.spec.chunk_size, axis=0)

    def _decide(self, obs: Observation) -> np.ndarray:
        p = obs.privileged
        obj_name, target_name = _pick_and_place_names(p["goal"])
        obj = np.asarray(p["objects"][obj_name]["pos"])
        target = np.asarray(p["objects"][target_name]["pos"])
        eef = np.asarray(p["eef_pos"])
        self.phase_steps += 1
        if self.target_rot is None:
            self._plan_grasp(p, obj, target)
        grasp = obj + self.tuning.rim_radius * self.grasp_dir + np.array([0.0, 0.0, self.tuning.grasp_height])

        if self.phase == "approach":
            # Hover above the grasp point (so the fingers clear the rim) and turn.
            hover = grasp + np.array([0.0, 0.0, self.tuning.hover_height])
            turned = np.linalg.norm(matrix_to_axis_angle(self._rot_error(p))) < 0.1
            if turned and np.linalg.norm((hover - eef)[:2]) < 0.01:
                self._set_phase("descend")
            else:
                return self._action(p, hover, self._pregrasp_gripper())

        if self.phase == "descend":
            if np.linalg.norm(grasp - eef) < 0.006:
                self._set_phase("grasp")
            else:
                return self._action(p, grasp, self._pregrasp_gripper())

        if self.phase == "grasp":
            if self.phase_steps > self.tuning.close_steps:
                self.lift_z = obj[2] + self.tuning.lift_height
                self._set_phase("lift")
            else:
                return self._action(p, grasp, CLOSE)

        # From here on the bowl is in hand: steer the bowl, not the grip site.
        if self._dropped(eef, obj):
            self._set_phase("approach")  # slipped out: open to the pregrasp gap, retry
            return self._decide(obs)

        if self.phase == "lift":
            if obj[2] >= self.lift_z - 0.01:
                self._set_phase("transport")
            else:
                return self._action(p, eef + np.array([0.0, 0.0, self.lift_z - obj[2]]), CLOSE)

        if self.phase == "transport":
            # Stay at least at lift height until above the plate: the bowl may
            # start in a drawer or on a cabinet, whose edges it must clear.
            carry = target + np.array([0.0, 0.0, self.tuning.carry_height])
            carry[2] = max(carry[2], self.lift_z)
            if np.linalg.norm((carry - obj)[:2]) < 0.01:
                self._set_phase("lower")
            else:
                return self._action(p, eef + (carry - obj), CLOSE)

        if self.phase == "lower":
            # Let go once the bowl is nearly down, or when it rests tilted on the rim.
            place = target + np.array([0.0, 0.0, self.tuning.place_height])
            if obj[2] - place[2] < 0.005 or self.phase_steps > self.tuning.lower_steps:
                self._set_phase("release")
            else:
                return self._action(p, eef + (place - obj), CLOSE)

        # release: open and back off upward.
        return self._action(p, eef + np.array([0.0, 0.0, 0.02]), OPEN)
