"""SimplerEnv episode grids against the official scripts' parameters (no simulator needed)."""

import math
from collections import Counter

import numpy as np
import pytest

from evalkit.core.registry import make_suite
from suites.simpler import grids
from suites.simpler.suite import simpler_suite


@pytest.mark.parametrize("name, counts", [
    ("simpler_google_vm", {"pick_coke_can": 300, "move_near": 240, "open_drawer": 108, "close_drawer": 108}),
    ("simpler_google_va", {"pick_coke_can": 675, "move_near": 480, "open_drawer": 189, "close_drawer": 189}),
    ("simpler_bridge", {"spoon_on_towel": 24, "carrot_on_plate": 24, "stack_cube": 24, "eggplant_in_basket": 24}),
])
def test_official_episode_counts(name, counts):
    episodes = make_suite(name).episodes()
    assert Counter(e.task_name for e in episodes) == counts
    assert len({e.key for e in episodes}) == len(episodes)  # keys unique within the suite


def test_coke_can_vm_poses_follow_the_script_loops():
    grid = grids.coke_can_vm()
    xs, ys = [-0.35, -0.2925, -0.235, -0.1775, -0.12], [-0.02, 0.09, 0.2, 0.31, 0.42]
    assert [g["obj_init_xy"] for g in grid[:6]] == [(xs[0], y) for y in ys] + [(xs[1], ys[0])]
    assert grid[24]["obj_init_xy"] == pytest.approx((xs[4], ys[4]))
    # URDF outermost, then orientation: lr_switch, upright, laid_vertically
    assert [(g["urdf_version"], dict(g["extra"])) for g in grid[0:75:25]] == [
        (None, {"lr_switch": True}), (None, {"upright": True}), (None, {"laid_vertically": True})]
    assert grid[75]["urdf_version"] == "recolor_tabletop_visual_matching_1"
    assert {g["rgb_overlay"] for g in grid} == {"google_coke_can_real_eval_1.png"}
    assert {(g["robot_init_xy"], g["robot_init_quat"]) for g in grid} == {((0.35, 0.20), (0.0, 0.0, 0.0, 1.0))}
    assert {(g["max_steps"], g["control_freq"], g["sim_freq"]) for g in grid} == {(80, 3, 513)}


def test_robot_rotation_is_yaw_times_the_half_turn_center():
    # euler2quat(0, 0, -0.09) = (cos .045, 0, 0, -sin .045); times (0, 0, 0, 1) (w, x, y, z):
    # w = -(-sin .045) * 1, z = cos .045
    quat = grids.move_near_vm()[0]["robot_init_quat"]
    assert quat == pytest.approx((math.sin(0.045), 0.0, 0.0, math.cos(0.045)))
    assert np.linalg.norm(quat) == pytest.approx(1.0)


def test_move_near_instructions_and_variants():
    assert grids.move_near_instruction(0) == "move blue plastic bottle near pepsi can"
    assert grids.move_near_instruction(13) == "move 7up can near sponge"  # triplet 13 // 12 = 1, pair 13 % 6 = 1
    assert grids.move_near_instruction(59) == "move redbull can near pepsi can"  # triplet 4, pair 5 = (2, 1)
    va = grids.move_near_va()
    assert Counter(g["variant"] for g in va) == {v: 60 for v in grids.MOVE_NEAR_VA_VARIANTS}
    assert [g["obj_episode_id"] for g in va[:3]] == [0, 1, 2] and va[60]["extra"] == (("no_distractor", True),)
    assert {g["env_id"] for g in grids.move_near_vm()} == {"MoveNearGoogleBakedTexInScene-v0"}


def test_drawer_vm_overlays_carry_their_robot_pose():
    grid = grids.drawer_vm("open")
    c1 = [g for g in grid if g["rgb_overlay"] == "open_drawer_c1.png"]
    assert len(c1) == 12  # 3 drawers x 4 URDFs
    assert {g["robot_init_xy"] for g in c1} == {(0.765, 0.222)}
    assert c1[0]["robot_init_quat"] == pytest.approx((math.sin(0.0125), 0, 0, math.cos(0.0125)))
    assert grid[0]["urdf_version"] == "recolor_cabinet_visual_matching_1"  # the drawer script's URDF order
    assert grid[0]["env_id"] == "OpenTopDrawerCustomInScene-v0" and grid[0]["instruction"] == "open top drawer"
    assert dict(grid[0]["extra"]) == {"station_name": "mk_station_recolor", "light_mode": "simple",
                                      "disable_bad_material": True}
    assert all(g["raytraced"] and g["max_steps"] == 113 and g["obj_init_xy"] == (0.0, 0.0) for g in grid)


def test_drawer_va_robot_grid_and_variants():
    grid = grids.drawer_va("close")
    assert sorted({g["robot_init_xy"] for g in grid}) == [(x, y) for x in (0.65, 0.75, 0.85) for y in (-0.2, 0.0, 0.2)]
    assert Counter(g["variant"] for g in grid) == {v: 27 for v in grids.DRAWER_VA_VARIANTS}
    assert {g["scene_name"] for g in grid} == {"frl_apartment_stage_simple", "modern_bedroom_no_roof",
                                                "modern_office_no_roof"}


def test_coke_can_va_variants():
    grid = grids.coke_can_va()
    assert Counter(g["variant"] for g in grid) == {v: 75 for v in grids.COKE_VA_VARIANTS}
    more = [g for g in grid if g["variant"] == "distractors_more"][0]
    assert more["env_id"] == "GraspSingleOpenedCokeCanDistractorInScene-v0"
    assert dict(more["extra"])["distractor_config"] == "more" and more["rgb_overlay"] is None


def test_bridge_grid():
    egg = grids.bridge("eggplant_in_basket")
    assert (egg[0]["robot"], egg[0]["max_steps"], egg[0]["robot_init_xy"], egg[0]["rgb_overlay"]) == (
        "widowx_sink_camera_setup", 120, (0.127, 0.06), "bridge_sink.png")
    spoon = grids.bridge("spoon_on_towel")
    assert [g["obj_episode_id"] for g in spoon] == list(range(24))
    assert (spoon[0]["control_freq"], spoon[0]["sim_freq"], spoon[0]["max_steps"]) == (5, 500, 60)


def test_suite_metadata_and_first_n_episodes():
    suite = make_suite("simpler_google_vm")
    assert (suite.robot, suite.preset, suite.control_hz, suite.max_steps) == ("google_robot", "simpler", 3.0, 113)
    first = suite.episodes(task_ids=[1], episodes_per_task=2, seed=10)
    seed = 40194941 + 10  # the official episode seed, offset by --seed
    assert [(e.init_index, e.seed, e.max_steps) for e in first] == [(0, seed, 80), (1, seed, 80)]
    assert first[1].instruction == "move blue plastic bottle near orange"
    with pytest.raises(ValueError, match="has 108 episodes"):
        suite.episodes(task_ids=[2], episodes_per_task=109)


def test_rasterized_suites_drop_ray_tracing_and_say_so():
    traced, raster = make_suite("simpler_drawer_vm"), make_suite("simpler_drawer_vm_rasterized")
    assert traced.episodes(episodes_per_task=1)[0].param_dict()["raytraced"] is True
    assert raster.episodes(episodes_per_task=1)[0].param_dict()["raytraced"] is False
    assert not traced.info["deviations"] and "rasterized" in raster.info["deviations"][0]
    with pytest.raises(ValueError, match="unknown SimplerEnv suite"):
        simpler_suite("simpler_bridge_rasterized")  # nothing ray-traced there to rasterize
