"""Privileged simulator state for scripted LIBERO policies (no rendering, cheap).

`privileged_state(env)` reads ground truth straight from the MuJoCo sim of a
LIBERO `OffScreenRenderEnv` and returns only plain numpy / python data, so the
dict can be pickled across processes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _wxyz_to_xyzw(quat: np.ndarray) -> np.ndarray:
    """MuJoCo stores body quaternions as wxyz; robosuite's convention is xyzw."""
    return np.array([quat[1], quat[2], quat[3], quat[0]], dtype=np.float64)


def _body_pose(sim: Any, body_id: int) -> dict[str, np.ndarray]:
    return {
        "pos": np.array(sim.data.body_xpos[body_id], dtype=np.float64),
        "quat": _wxyz_to_xyzw(sim.data.body_xquat[body_id]),
    }


def privileged_state(env: Any) -> dict[str, Any]:
    """Ground-truth state of a LIBERO env (the inner robosuite env is `env.env`).

    Returns a dict with:
      "eef_pos":      (3,) float, end-effector (grip site) position in the world frame, metres.
      "eef_quat":     (4,) float, hand orientation, xyzw (robosuite convention); the
                      same quantity as LIBERO's "robot0_eef_quat" observation.
      "eef_mat":      (3, 3) float, grip site orientation as a rotation matrix; its
                      columns are the site's axes in the world frame (column 0 is
                      the fingers' closing axis, column 2 points out of the fingers).
      "robot_base_pos": (3,) float, world position of the robot's base body.
      "gripper_qpos": (2,) float, the two finger joint positions (about +-0.04 open,
                      about 0 fully closed).
      "objects":      {name: {"pos": (3,), "quat": (4,) xyzw}} for every movable object
                      (env.env.objects_dict), read from the sim body poses. The
                      body origin is not the centre of mass: for the bowls and
                      the plate it sits at their base.
      "fixtures":     the same for fixtures (cabinets, stoves, ...).
      "goal":         list of goal predicates as tuples of lower-case strings, e.g.
                      [("on", "akita_black_bowl_1", "plate_1")].
    """
    inner = env.env
    sim = inner.sim
    robot = inner.robots[0]
    site = robot.eef_site_id
    mat = np.array(sim.data.site_xmat[site], dtype=np.float64).reshape(3, 3)
    bodies = inner.obj_body_id
    return {
        "eef_pos": np.array(sim.data.site_xpos[site], dtype=np.float64),
        # Same quantity as LIBERO's "robot0_eef_quat" observation (the hand body).
        "eef_quat": _wxyz_to_xyzw(sim.data.body_xquat[sim.model.body_name2id(robot.robot_model.eef_name)]),
        "eef_mat": mat,
        "robot_base_pos": np.array(sim.data.body_xpos[sim.model.body_name2id(robot.robot_model.root_body)], dtype=np.float64),
        "gripper_qpos": np.array(sim.data.qpos[robot._ref_gripper_joint_pos_indexes], dtype=np.float64),
        "objects": {name: _body_pose(sim, bodies[name]) for name in inner.objects_dict},
        "fixtures": {name: _body_pose(sim, bodies[name]) for name in inner.fixtures_dict if name in bodies},
        "goal": [tuple(str(term).lower() for term in pred) for pred in inner.parsed_problem["goal_state"]],
    }
