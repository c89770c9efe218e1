"""A fake suite that ships with the library: a point mass reaching a target on a plane.

It costs microseconds per step, so runner, CLI, store and resume tests run fast.
It keeps LIBERO's interface (7-D actions, named cameras, reseeded resets) and counts
its renders, so the "render only what is read" logic can be tested on it too.
`fake_fragile` raises inside the env on task 1, to test that errors end one episode only.
"""

from __future__ import annotations

import numpy as np

from evalkit.core.suite import EnvOptions, Suite, SuiteEnvBase, TaskInfo
from evalkit.core.types import EpisodeSpec, Observation

TARGETS = [(0.5, 0.5), (-0.5, 0.5), (0.5, -0.5), (-0.5, -0.5)]
CAMERAS = ("agentview", "robot0_eye_in_hand")
STEP_SCALE = 0.05  # like LIBERO's OSC controller: action 1.0 moves 5 cm
SUCCESS_RADIUS = 0.05
SETTLE_SHIFT = 0.0  # tests change it to stand for a simulator whose physics drifted


class FakeEnv(SuiteEnvBase):
    def __init__(self, suite_name: str, options: EnvOptions, fail_on_task: int = -1):
        self.options = options
        self.fail_on_task = fail_on_task
        self.renders = 0  # camera images rendered since construction
        self._images: dict[str, np.ndarray] = {}

    def reset(self, episode: EpisodeSpec, render: bool) -> None:
        rng = np.random.default_rng(episode.seed * 1000 + episode.init_index)
        self.episode = episode
        self.target = np.array(TARGETS[episode.task_id % len(TARGETS)])
        self.pos = rng.uniform(-1, 1, size=2) + SETTLE_SHIFT
        self.t = 0
        self._after_step(render)

    def step(self, action: np.ndarray, render: bool) -> bool:
        if self.episode.task_id == self.fail_on_task and self.t == 13:  # a few steps after the 10 wait steps
            raise RuntimeError("fake simulator fault (fake_fragile, task 1)")
        self.pos = self.pos + STEP_SCALE * np.clip(np.asarray(action[:2], dtype=float), -1, 1)
        self.t += 1
        self._after_step(render)
        return bool(np.linalg.norm(self.pos - self.target) < SUCCESS_RADIUS)

    def _after_step(self, render: bool) -> None:
        cameras = CAMERAS if self.options.render_all else self.options.cameras
        if render or self.options.render_all:
            self._images = {name: self._render(name) for name in cameras}
        if self.options.video and "agentview" not in cameras:
            self._images["agentview"] = self._render("agentview")

    def _render(self, camera: str) -> np.ndarray:
        self.renders += 1
        size = 16
        img = np.zeros((size, size, 3), dtype=np.uint8)
        x, y = ((np.clip(self.pos, -1, 1) + 1) / 2 * (size - 1)).astype(int)
        img[y, x] = (255, 255, 255) if camera == "agentview" else (0, 255, 0)
        return img

    def observation(self) -> Observation:
        privileged = {"pos": self.pos.copy(), "target": self.target.copy()} if self.options.privileged else {}
        return Observation(
            images={k: v for k, v in self._images.items() if k in self.options.cameras},
            state={"eef_pos": np.array([*self.pos, 0.0])},
            privileged=privileged,
        )

    def frame(self) -> np.ndarray:
        return self._images["agentview"]

    def settled_state(self) -> dict[str, np.ndarray]:
        return {"point": self.pos.copy(), "target": self.target.copy()}

    def close(self) -> None:
        pass


def _make_env(suite_name: str, options: EnvOptions) -> FakeEnv:
    return FakeEnv(suite_name, options, fail_on_task=1 if suite_name == "fake_fragile" else -1)


def fake_suite(name: str = "fake") -> Suite:
    tasks = [TaskInfo(i, f"reach_target_{i}", f"reach target {i}") for i in range(len(TARGETS))]
    return Suite(name=name, max_steps=60, episodes_per_task=10, family="Fake", tasks=tasks, env_factory=_make_env)
