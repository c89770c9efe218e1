"""SimplerEnv episode grids, generated from the parameters of SimplerEnv's official scripts.

Sources (simpler-env/SimplerEnv, scripts/ and simpler_env/evaluation/):
- rt1_pick_coke_can_visual_matching.sh / _variant_agg.sh,
- rt1_move_near_visual_matching.sh / _variant_agg.sh,
- rt1_drawer_visual_matching.sh / _variant_agg.sh,
- rt1x_bridge.sh,
- argparse.py (`np.linspace` ranges, robot quaternion = euler2quat(r, p, y) * center),
- maniskill2_evaluator.py (loop order: robot x, robot y, robot rotation, then object
  x, object y or object episode id; reset options built from them).

Each episode is a flat dict of its parameters: the env id and build kwargs, robot and
object pose, URDF version, overlay image, and the aggregation labels (`setting` vm/va,
`variant`, `group`: coke-can orientation or drawer task). Camera-angle variants, which the
official metric leaves out, are not in the grids. Pure data and numpy: no simulator import.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np

GOOGLE_CONTROL = ("arm_pd_ee_delta_pose_align_interpolate_by_planner_"
                  "gripper_pd_joint_target_delta_pos_interpolate_by_planner")
WIDOWX_CONTROL = "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos"
GOOGLE = dict(robot="google_robot_static", control_mode=GOOGLE_CONTROL, control_freq=3, sim_freq=513)
WIDOWX = dict(robot="widowx", control_mode=WIDOWX_CONTROL, control_freq=5, sim_freq=500)

# Robot colourings of visual matching, in the order of the coke-can / move-near scripts
# (None is the default URDF). The drawer script loops over the same four in another order.
URDF_VERSIONS = (None, "recolor_tabletop_visual_matching_1", "recolor_tabletop_visual_matching_2",
                 "recolor_cabinet_visual_matching_1")
DRAWER_URDF_ORDER = ("recolor_cabinet_visual_matching_1", "recolor_tabletop_visual_matching_1",
                     "recolor_tabletop_visual_matching_2", None)
COKE_ORIENTATIONS = {"horizontal": "lr_switch", "standing": "upright", "vertical": "laid_vertically"}
COKE_ORIENTATION_ORDER = ("horizontal", "standing", "vertical")  # the script's order: lr_switch, upright, laid_vertically
DRAWERS = ("top", "middle", "bottom")

# Visual-matching overlay photos of the drawer tasks and the robot pose each was taken from:
# name: (robot x, robot y, robot yaw).
DRAWER_OVERLAYS = {
    "a0": (0.644, -0.179, -0.03), "a1": (0.765, -0.182, -0.02), "a2": (0.889, -0.203, -0.06),
    "b0": (0.652, 0.009, 0.0), "b1": (0.752, 0.009, 0.0), "b2": (0.851, 0.035, 0.0),
    "c0": (0.665, 0.224, 0.0), "c1": (0.765, 0.222, -0.025), "c2": (0.865, 0.222, -0.025),
}

# Variant aggregation: variant name -> (scene, env id suffix or None, extra build kwargs).
COKE_VA_VARIANTS = {
    "base": ("google_pick_coke_can_1_v4", "GraspSingleOpenedCokeCanInScene-v0", {}),
    "table_texture_1": ("Baked_sc1_staging_objaverse_cabinet1_h870", "GraspSingleOpenedCokeCanInScene-v0", {}),
    "table_texture_2": ("Baked_sc1_staging_objaverse_cabinet2_h870", "GraspSingleOpenedCokeCanInScene-v0", {}),
    "distractors": ("google_pick_coke_can_1_v4", "GraspSingleOpenedCokeCanDistractorInScene-v0", {}),
    "distractors_more": ("google_pick_coke_can_1_v4", "GraspSingleOpenedCokeCanDistractorInScene-v0",
                         {"distractor_config": "more"}),
    "background_1": ("google_pick_coke_can_1_v4_alt_background", "GraspSingleOpenedCokeCanInScene-v0", {}),
    "background_2": ("google_pick_coke_can_1_v4_alt_background_2", "GraspSingleOpenedCokeCanInScene-v0", {}),
    "darker_lighting": ("google_pick_coke_can_1_v4", "GraspSingleOpenedCokeCanInScene-v0",
                        {"slightly_darker_lighting": True}),
    "brighter_lighting": ("google_pick_coke_can_1_v4", "GraspSingleOpenedCokeCanInScene-v0",
                          {"slightly_brighter_lighting": True}),
}
MOVE_NEAR_VA_VARIANTS = {
    "base": ("google_pick_coke_can_1_v4", {}),
    "no_distractor": ("google_pick_coke_can_1_v4", {"no_distractor": True}),
    "background_1": ("google_pick_coke_can_1_v4_alt_background", {}),
    "background_2": ("google_pick_coke_can_1_v4_alt_background_2", {}),
    "darker_lighting": ("google_pick_coke_can_1_v4", {"slightly_darker_lighting": True}),
    "brighter_lighting": ("google_pick_coke_can_1_v4", {"slightly_brighter_lighting": True}),
    "table_texture_1": ("Baked_sc1_staging_objaverse_cabinet1_h870", {}),
    "table_texture_2": ("Baked_sc1_staging_objaverse_cabinet2_h870", {}),
}
# Drawer VA: every variant is ray-traced (shader_dir=rt); the base setup through --enable-raytracing.
DRAWER_VA_VARIANTS = {
    "base": ("frl_apartment_stage_simple", {}),
    "background_1": ("modern_bedroom_no_roof", {}),
    "background_2": ("modern_office_no_roof", {}),
    "brighter_lighting": ("frl_apartment_stage_simple", {"light_mode": "brighter"}),
    "darker_lighting": ("frl_apartment_stage_simple", {"light_mode": "darker"}),
    "cabinet_2": ("frl_apartment_stage_simple", {"station_name": "mk_station2"}),
    "cabinet_3": ("frl_apartment_stage_simple", {"station_name": "mk_station3"}),
}

# Move near: the env's object triplets and (source, target) index pairs, as in
# MoveNearGoogleInSceneEnv._setup_obj_configs; names as the env's instruction prints them.
MOVE_NEAR_TRIPLETS = (("blue plastic bottle", "pepsi can", "orange"), ("7up can", "apple", "sponge"),
                      ("coke can", "redbull can", "apple"), ("sponge", "blue plastic bottle", "7up can"),
                      ("orange", "pepsi can", "redbull can"))
MOVE_NEAR_PAIRS = tuple((i, j) for i in range(3) for j in range(3) if i != j)
MOVE_NEAR_XY_CONFIGS = 2

# Bridge (WidowX): task: (env id, scene, robot, overlay, robot x, robot y, step limit, instruction).
BRIDGE_TASKS = {
    "spoon_on_towel": ("PutSpoonOnTableClothInScene-v0", "bridge_table_1_v1", "widowx", "bridge_real_eval_1.png",
                       0.147, 0.028, 60, "put the spoon on the towel"),
    "carrot_on_plate": ("PutCarrotOnPlateInScene-v0", "bridge_table_1_v1", "widowx", "bridge_real_eval_1.png",
                        0.147, 0.028, 60, "put carrot on plate"),
    "stack_cube": ("StackGreenCubeOnYellowCubeBakedTexInScene-v0", "bridge_table_1_v1", "widowx",
                   "bridge_real_eval_1.png", 0.147, 0.028, 60, "stack the green block on the yellow block"),
    "eggplant_in_basket": ("PutEggplantInBasketScene-v0", "bridge_table_1_v2", "widowx_sink_camera_setup",
                           "bridge_sink.png", 0.127, 0.06, 120, "put eggplant into yellow basket"),
}
BRIDGE_EPISODES = 24
GOOGLE_STEPS = {"pick_coke_can": 80, "move_near": 80, "open_drawer": 113, "close_drawer": 113}


# -- pose helpers (argparse.py: linspace ranges; quaternions are w, x, y, z as in SAPIEN) ---------

def linspace(low: float, high: float, num: int) -> list[float]:
    return [float(v) for v in np.linspace(low, high, int(num))]


def quat_multiply(a, b) -> np.ndarray:
    """Hamilton product of two (w, x, y, z) quaternions: the rotation b, then a."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def euler_to_quat(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """transforms3d's euler2quat with its default static 'sxyz' axes, as (w, x, y, z)."""
    qx = np.array([np.cos(roll / 2), np.sin(roll / 2), 0, 0])
    qy = np.array([np.cos(pitch / 2), 0, np.sin(pitch / 2), 0])
    qz = np.array([np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)])
    return quat_multiply(qz, quat_multiply(qy, qx))


def robot_quat(yaw: float, center=(0, 0, 0, 1)) -> tuple[float, ...]:
    """The scripts' robot rotation: Pose(q=euler2quat(0, 0, yaw)) * Pose(q=center).

    Every official script passes `--robot-init-rot-quat-center 0 0 0 1`, which SAPIEN reads
    as (w, x, y, z): a half turn about z."""
    return tuple(round(float(v), 12) for v in quat_multiply(euler_to_quat(0.0, 0.0, yaw), center))


# -- per-task grids ---------------------------------------------------------------------------

def _google_episode(task: str, setting: str, variant: str, group: str, env_id: str, scene: str, robot_xy,
                    yaw: float, instruction: str, overlay=None, urdf=None, obj_xy=None, obj_episode=None,
                    extra: dict | None = None, raytraced: bool = False) -> dict:
    return dict(task=task, setting=setting, variant=variant, group=group, env_id=env_id, scene_name=scene,
                robot_init_xy=tuple(robot_xy), robot_init_quat=robot_quat(yaw), obj_init_xy=obj_xy,
                obj_episode_id=obj_episode, urdf_version=urdf, rgb_overlay=overlay, extra=tuple((extra or {}).items()),
                raytraced=raytraced, max_steps=GOOGLE_STEPS[task], instruction=instruction, **GOOGLE)


def _coke_positions() -> Iterator[tuple[float, float]]:
    """5 x 5 object positions: x in linspace(-0.35, -0.12, 5), then y in linspace(-0.02, 0.42, 5)."""
    return itertools.product(linspace(-0.35, -0.12, 5), linspace(-0.02, 0.42, 5))


def coke_can_vm() -> list[dict]:
    """3 orientations x 25 positions x 4 URDFs = 300 (loop order: URDF, orientation, x, y)."""
    return [_google_episode("pick_coke_can", "vm", f"urdf_{urdf}", orientation,
                            "GraspSingleOpenedCokeCanInScene-v0", "google_pick_coke_can_1_v4", (0.35, 0.20), 0.0,
                            "pick coke can", overlay="google_coke_can_real_eval_1.png", urdf=urdf, obj_xy=xy,
                            extra={COKE_ORIENTATIONS[orientation]: True})
            for urdf in URDF_VERSIONS for orientation in COKE_ORIENTATION_ORDER for xy in _coke_positions()]


def coke_can_va() -> list[dict]:
    """9 variants x 3 orientations x 25 positions = 675."""
    return [_google_episode("pick_coke_can", "va", variant, orientation, env_id, scene, (0.35, 0.20), 0.0,
                            "pick coke can", obj_xy=xy, extra={COKE_ORIENTATIONS[orientation]: True, **extra})
            for variant, (scene, env_id, extra) in COKE_VA_VARIANTS.items()
            for orientation in COKE_ORIENTATION_ORDER for xy in _coke_positions()]


def move_near_instruction(episode_id: int) -> str:
    """The env's instruction for an episode id: triplet = id // 12, (source, target) = pair id % 6."""
    triplet = MOVE_NEAR_TRIPLETS[episode_id // (len(MOVE_NEAR_PAIRS) * MOVE_NEAR_XY_CONFIGS)]
    source, target = MOVE_NEAR_PAIRS[episode_id % len(MOVE_NEAR_PAIRS)]
    return f"move {triplet[source]} near {triplet[target]}"


MOVE_NEAR_EPISODES = len(MOVE_NEAR_TRIPLETS) * len(MOVE_NEAR_PAIRS) * MOVE_NEAR_XY_CONFIGS  # 60


def move_near_vm() -> list[dict]:
    """60 episodes x 4 URDFs = 240, robot at (0.35, 0.21) turned by yaw -0.09."""
    return [_google_episode("move_near", "vm", f"urdf_{urdf}", "all", "MoveNearGoogleBakedTexInScene-v0",
                            "google_pick_coke_can_1_v4", (0.35, 0.21), -0.09, move_near_instruction(i),
                            overlay="google_move_near_real_eval_1.png", urdf=urdf, obj_episode=i)
            for urdf in URDF_VERSIONS for i in range(MOVE_NEAR_EPISODES)]


def move_near_va() -> list[dict]:
    """8 variants x 60 episodes = 480."""
    return [_google_episode("move_near", "va", variant, "all", "MoveNearGoogleInScene-v0", scene, (0.35, 0.21),
                            -0.09, move_near_instruction(i), obj_episode=i, extra=extra)
            for variant, (scene, extra) in MOVE_NEAR_VA_VARIANTS.items() for i in range(MOVE_NEAR_EPISODES)]


def _drawer_env(action: str, drawer: str) -> str:
    return f"{action.capitalize()}{drawer.capitalize()}DrawerCustomInScene-v0"


def drawer_vm(action: str) -> list[dict]:
    """3 drawers x 4 URDFs x 9 overlay poses = 108 per action (open, close); 216 for both.

    Loop order as the script: URDF, drawer env, overlay. Build kwargs: ray tracing,
    station mk_station_recolor, simple lighting, bad materials disabled."""
    extra = {"station_name": "mk_station_recolor", "light_mode": "simple", "disable_bad_material": True}
    return [_google_episode(f"{action}_drawer", "vm", f"urdf_{urdf}", drawer, _drawer_env(action, drawer),
                            "dummy_drawer", (x, y), yaw, f"{action} {drawer} drawer",
                            overlay=f"open_drawer_{name}.png", urdf=urdf, obj_xy=(0.0, 0.0), extra=extra,
                            raytraced=True)
            for urdf in DRAWER_URDF_ORDER for drawer in DRAWERS for name, (x, y, yaw) in DRAWER_OVERLAYS.items()]


def drawer_va(action: str) -> list[dict]:
    """3 drawers x 7 variants x 3 x 3 robot positions = 189 per action; 378 for both."""
    return [_google_episode(f"{action}_drawer", "va", variant, drawer, _drawer_env(action, drawer), scene, (x, y),
                            0.0, f"{action} {drawer} drawer", obj_xy=(0.0, 0.0), extra=extra, raytraced=True)
            for variant, (scene, extra) in DRAWER_VA_VARIANTS.items() for drawer in DRAWERS
            for x in linspace(0.65, 0.85, 3) for y in linspace(-0.2, 0.2, 3)]


def bridge(task: str) -> list[dict]:
    """24 episodes (the env's own object configurations 0..23), visual matching."""
    env_id, scene, robot, overlay, x, y, steps, instruction = BRIDGE_TASKS[task]
    return [dict(task=task, setting="vm", variant="base", group="all", env_id=env_id, scene_name=scene,
                 robot_init_xy=(x, y), robot_init_quat=robot_quat(0.0), obj_init_xy=None, obj_episode_id=i,
                 urdf_version=None, rgb_overlay=overlay, extra=(), raytraced=False, max_steps=steps,
                 instruction=instruction, **{**WIDOWX, "robot": robot})
            for i in range(BRIDGE_EPISODES)]


# task name -> grid function, per setting
GOOGLE_VM = {"pick_coke_can": coke_can_vm, "move_near": move_near_vm,
             "open_drawer": lambda: drawer_vm("open"), "close_drawer": lambda: drawer_vm("close")}
GOOGLE_VA = {"pick_coke_can": coke_can_va, "move_near": move_near_va,
             "open_drawer": lambda: drawer_va("open"), "close_drawer": lambda: drawer_va("close")}
BRIDGE = {task: (lambda t=task: bridge(t)) for task in BRIDGE_TASKS}
