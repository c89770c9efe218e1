"""Unit tests of the oracle's phase logic on hand-made privileged dicts (no simulator)."""

import numpy as np

from evalkit.core.types import Observation
from policies.weightfree.oracle import START_ROT, TURNED_ROT, OraclePolicy

BASE = np.array([-0.66, 0.0, 0.912])
PLATE = np.array([0.05, 0.2, 0.903])
NEAR_BOWL = np.array([-0.25, -0.1, 0.898])  # within turn_beyond of the base
FAR_BOWL = np.array([0.1, -0.1, 0.898])


def privileged(eef, bowl, rot=START_ROT, gripper=0.039):
    pose = lambda pos: {"pos": np.asarray(pos, dtype=float), "quat": np.array([0.0, 0.0, 0.0, 1.0])}
    return {
        "eef_pos": np.asarray(eef, dtype=float),
        "eef_quat": np.array([1.0, 0.0, 0.0, 0.0]),
        "eef_mat": np.asarray(rot, dtype=float),
        "robot_base_pos": BASE,
        "gripper_qpos": np.array([gripper, -gripper]),
        "objects": {"akita_black_bowl_1": pose(bowl), "plate_1": pose(PLATE)},
        "fixtures": {},
        "goal": [("on", "akita_black_bowl_1", "plate_1")],
    }


def act(policy, priv, step=0):
    action = policy.act(Observation(privileged=priv, episode_key="t/0/0/0", step=step), "pick up the bowl")
    assert action.shape == (1, 7)
    assert np.all(np.abs(action) <= 1.0)
    return action[0]


def grasp_point(policy, bowl):
    return bowl + policy.tuning.rim_radius * policy.grasp_dir + np.array([0.0, 0.0, policy.tuning.grasp_height])


def test_far_from_bowl_moves_toward_it_with_gripper_open():
    policy = OraclePolicy()
    policy.reset()
    eef = np.array([-0.2, 0.2, 1.17])
    for step in range(20):
        action = act(policy, privileged(eef, NEAR_BOWL), step)
        assert policy.phase == "approach"
        assert np.dot(action[:2], (NEAR_BOWL - eef)[:2]) > 0
    # The fingers only narrow to the pregrasp gap, never close on the way.
    assert policy.grip_level == policy.tuning.pregrasp_level
    assert action[6] == 0.0


def test_near_bowl_keeps_start_orientation_far_bowl_turns():
    near, far = OraclePolicy(), OraclePolicy()
    act(near, privileged([-0.2, 0.0, 1.17], NEAR_BOWL))
    act(far, privileged([-0.2, 0.0, 1.17], FAR_BOWL))
    assert np.allclose(near.target_rot, START_ROT)
    assert np.allclose(far.target_rot, TURNED_ROT)
    # Far bowl: grasp the rim on the side facing the robot base.
    assert np.allclose(far.grasp_dir, [-1.0, 0.0, 0.0])


def test_holds_pregrasp_gap_then_closes_at_grasp_pose():
    policy = OraclePolicy()
    bowl = NEAR_BOWL
    act(policy, privileged([-0.2, 0.0, 1.17], bowl))
    grasp = grasp_point(policy, bowl)
    gripper_actions = [act(policy, privileged(grasp + [0, 0, 0.1], bowl))[6] for _ in range(8)]
    # Part-closes from fully open to the pregrasp level, then holds it (0).
    assert gripper_actions[0] == 1.0 and gripper_actions[-1] == 0.0
    assert policy.phase == "descend"
    action = act(policy, privileged(grasp, bowl))
    assert policy.phase == "grasp"
    assert action[6] == 1.0


def test_lifts_after_closing_then_carries_bowl_to_plate():
    policy = OraclePolicy()
    bowl = NEAR_BOWL
    act(policy, privileged([-0.2, 0.0, 1.17], bowl))
    grasp = grasp_point(policy, bowl)
    policy.phase = "grasp"
    for _ in range(policy.tuning.close_steps + 1):
        action = act(policy, privileged(grasp, bowl, gripper=0.002))
    assert policy.phase == "lift"
    assert action[2] > 0 and action[6] == 1.0
    # Bowl lifted high enough: move it toward the plate, still closed.
    lifted = bowl + [0, 0, policy.tuning.lift_height]
    action = act(policy, privileged(grasp + [0, 0, policy.tuning.lift_height], lifted, gripper=0.002))
    assert policy.phase == "transport"
    assert np.dot(action[:2], (PLATE - lifted)[:2]) > 0 and action[6] == 1.0


def test_dropped_bowl_restarts_approach():
    policy = OraclePolicy()
    act(policy, privileged([-0.2, 0.0, 1.17], NEAR_BOWL))
    policy.phase = "transport"
    act(policy, privileged([-0.2, 0.0, 1.17], NEAR_BOWL, gripper=0.0005))
    assert policy.phase == "approach"


def test_reset_clears_episode_state():
    policy = OraclePolicy()
    act(policy, privileged([-0.2, 0.0, 1.17], FAR_BOWL))
    policy.phase = "lower"
    policy.reset()
    assert policy.phase == "approach" and policy.target_rot is None and policy.grip_level == -1.0


def test_chunked_oracle_repeats_its_decision():
    policy = OraclePolicy(chunk_size="4")  # CLI arguments arrive as strings
    chunk = policy.act(Observation(privileged=privileged([-0.5, 0.0, 1.1], NEAR_BOWL)), "pick up the bowl")
    assert chunk.shape == (4, 7) and np.array_equal(chunk, np.repeat(chunk[:1], 4, axis=0))
