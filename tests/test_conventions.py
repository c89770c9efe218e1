"""Benchmark conventions on hand-worked values."""

import numpy as np
import pytest

from evalkit.core.conventions import (StickyGripper, euler_to_axis_angle, flip_image, libero_gripper,
                                 widowx_gripper)


def test_libero_gripper_rescales_binarises_and_inverts():
    # 1 = open (model) -> -1 = open (LIBERO); exactly 0.5 -> sign(0) = 0
    assert libero_gripper(np.array([1.0, 0.0, 0.5, 0.8, 0.2])).tolist() == [-1, 1, 0, -1, 1]


def test_widowx_gripper_thresholds_at_half():
    assert widowx_gripper(np.array([0.6, 0.5, 0.1])).tolist() == [1, -1, -1]


def test_sticky_gripper_repeats_a_large_relative_change():
    sticky = StickyGripper(repeats=3)
    opens = [1, 1, 0, 0, 0, 0, 1]
    assert [sticky(g) for g in opens] == [0, 0, 1, 1, 1, 0, -1]
    sticky.reset()
    assert sticky(0.0) == 0  # no previous value after reset


@pytest.mark.parametrize("euler, expected", [
    ((0, 0, np.pi / 2), [0, 0, np.pi / 2]),
    ((np.pi / 2, 0, 0), [np.pi / 2, 0, 0]),
    ((0, -0.3, 0), [0, -0.3, 0]),
    # Rz(90) Rx(90) = [[0,0,1],[1,0,0],[0,1,0]]: trace 0 -> angle 2pi/3, axis (1,1,1)/sqrt(3)
    ((np.pi / 2, 0, np.pi / 2), [2 * np.pi / 3 / np.sqrt(3)] * 3),
    ((0, 0, 0), [0, 0, 0]),
])
def test_euler_to_axis_angle(euler, expected):
    assert euler_to_axis_angle(*euler) == pytest.approx(expected, abs=1e-9)


def test_half_turn_keeps_its_axis():
    assert np.abs(euler_to_axis_angle(np.pi, 0, 0)) == pytest.approx([np.pi, 0, 0], abs=1e-6)


def test_flip():
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert flip_image(image)[0, 0].tolist() == [9, 10, 11] and flip_image(image)[1, 1].tolist() == [0, 1, 2]


# -- the per-suite postprocessor ------------------------------------------------------------

from evalkit.core.conventions import Postprocessor  # noqa: E402


def test_native_actions_pass_through_unchanged():
    action = np.array([0.1, -0.2, 0.3, 0.01, 0.02, 0.03, 0.7])
    post = Postprocessor("libero", "native")
    assert post.name == "identity"
    assert post(action) is action


def test_rlds_actions_on_libero_map_only_the_gripper():
    post = Postprocessor("libero", "rlds")
    out = post(np.array([0.1, -0.2, 0.3, 0.01, 0.02, 0.03, 0.9]))  # 0.9 = open
    assert np.allclose(out[:6], [0.1, -0.2, 0.3, 0.01, 0.02, 0.03])
    assert out[6] == -1.0  # LIBERO: -1 opens
    assert post(np.array([0, 0, 0, 0, 0, 0, 0.2]))[6] == 1.0


def test_rlds_actions_on_widowx_convert_euler_and_binarize():
    post = Postprocessor("widowx", "rlds")
    out = post(np.array([0, 0, 0, 0.0, 0.0, 0.3, 0.8]))  # pure yaw of 0.3 rad
    assert np.allclose(out[3:6], [0, 0, 0.3])
    assert out[6] == 1.0
    assert post(np.array([0, 0, 0, 0.0, 0.0, 0.0, 0.3]))[6] == -1.0


def test_rlds_actions_on_google_robot_use_a_sticky_gripper_reset_per_episode():
    post = Postprocessor("google_robot", "rlds", sticky_repeats=3)
    grips = [post(np.array([0, 0, 0, 0, 0, 0, g]))[6] for g in (1.0, 0.0, 0.0, 0.0, 0.0)]
    # open -> close: relative +1 held for 3 steps, then released
    assert grips == [0.0, 1.0, 1.0, 1.0, 0.0]
    post.reset()
    assert post(np.array([0, 0, 0, 0, 0, 0, 0.0]))[6] == 0.0  # no previous value after reset


def test_unknown_robot_or_convention_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown robot 'ur5'"):
        Postprocessor("ur5", "rlds")
    with pytest.raises(ValueError, match="unknown action convention 'raw'"):
        Postprocessor("libero", "raw")
