"""LIBERO physics on the pinned MuJoCo: libero_spatial task 5's bowl must settle on the ramekin.

From MuJoCo 3.4.0 (a box-box collision fix) the stored init states of this task, which hold the
bowl about 11 cm above the ramekin, no longer settle: the bowl ends tilted on the ramekin's rim
and a policy's success rate on the task collapses (lerobot issue 4390, RLinf issue 1460, LIBERO
issue 141). Measured with evalkit's env after the 10 wait steps, bowl centre relative to the
ramekin centre, over all 50 init states (every one gives the same numbers):
  MuJoCo 3.3.2 (pinned): 1.45 cm off centre (xy), 3.51 cm above: seated;
  MuJoCo 3.8.1:          3.7 cm off centre,        4.35 cm above: on the rim.
The thresholds sit between the two: seated means within 2.5 cm (xy) and below 3.9 cm (z).
"""

import numpy as np
import pytest

from evalkit.core.protocol import OPENVLA
from evalkit.run.episode import WAIT_ACTION
from evalkit.core.suite import EnvOptions

pytestmark = pytest.mark.libero

SEATED_XY_M, SEATED_Z_M = 0.025, 0.039


def test_task5_bowl_settles_on_the_ramekin_for_all_50_init_states():
    from evalkit.core.registry import make_suite

    suite = make_suite("libero_spatial")
    assert "on the ramekin" in suite.tasks[5].instruction
    env = suite.make_env(EnvOptions())
    offsets = []
    try:
        for episode in suite.episodes([5]):
            env.reset(episode, render=False)
            for _ in range(OPENVLA.wait_steps):
                env.step(WAIT_ACTION, render=False)
            offsets.append(env.body_position("akita_black_bowl_1_main")
                           - env.body_position("glazed_rim_porcelain_ramekin_1_main"))
    finally:
        env.close()
    offsets = np.array(offsets)
    xy, z = np.hypot(offsets[:, 0], offsets[:, 1]), offsets[:, 2]
    assert len(offsets) == 50
    assert xy.max() < SEATED_XY_M, f"bowl {xy.max() * 100:.2f} cm off the ramekin's centre: not seated"
    assert z.max() < SEATED_Z_M, f"bowl {z.max() * 100:.2f} cm above the ramekin: resting on its rim"
