"""Real SimplerEnv episodes (SAPIEN 2.2.2; bundled assets). Opt in: `.venv-simpler/bin/python -m pytest -m simpler`.

Skipped where simpler_env is not importable; needs a Vulkan driver (on CPU: ../shared/tools/simpler-cpu,
source its env.sh first). About a minute on a 2-core CPU: short budgets, one episode per task.
"""

import numpy as np
import pytest

from evalkit.parallel import EpisodeWorker, WorkerConfig
from evalkit.protocol import SIMPLER
from evalkit.registry import make_suite
from evalkit.suite import EnvOptions
from policies.basic import RandomPolicy

pytestmark = pytest.mark.simpler


class Recording(RandomPolicy):
    def __init__(self):
        super().__init__(seed=0, scale=0.1, cameras="image")
        self.shapes = []

    def act(self, obs, instruction):
        self.shapes.append(obs.images["image"].shape)
        return super().act(obs, instruction)


@pytest.mark.parametrize("suite_name, shape", [("simpler_coke_can_vm", (512, 640, 3)),
                                               ("simpler_move_near_vm", (512, 640, 3)),
                                               ("simpler_carrot_on_plate", (480, 640, 3))])
def test_real_episode_runs_with_official_build_and_instruction(suite_name, shape):
    suite = make_suite(suite_name)
    policy = Recording()
    worker = EpisodeWorker(policy, WorkerConfig(suites={suite_name: suite}, spec=policy.spec, mode="open_loop",
                                                protocol=SIMPLER.with_overrides(budget=8),
                                                env_options=EnvOptions(cameras=("image",))))
    try:
        result = worker.run(suite.episodes(episodes_per_task=1)[0])  # the env checks its instruction = the grid's
    finally:
        worker.close()
    assert result.termination in ("budget", "success"), result.error
    assert result.steps == 8 and policy.shapes == [shape] * 8
    assert result.stats.get("stand_in_assets") in (True, None)
    if suite.robot == "widowx":
        assert isinstance(result.stats["partial_success"], bool)
    assert np.isfinite(result.wall_s)
