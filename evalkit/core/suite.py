"""The Suite contract: a suite yields episode specs and builds the env that runs them.

Suites are data where they can be: the step limit and the episode grid belong to
the suite definition, and the runner reads them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from evalkit.core.types import EpisodeResult, EpisodeSpec, Observation


@dataclass(frozen=True)
class EnvOptions:
    """How a worker's env is built for a given policy and run."""

    cameras: tuple[str, ...] = ()  # the cameras the policy reads
    privileged: bool = False  # include simulator ground truth in observations
    video: bool = False  # keep the agent-view frame of every step
    # Render every camera on every step, as a bare reference loop does. Off by default:
    # frames nobody reads are not rendered. Outcomes are identical either way.
    render_all: bool = False
    image_size: int = 256
    assets: Optional[str] = None  # suite asset location (directory or bundle)


class SuiteEnv(Protocol):
    """One simulator, reused across episodes. Lives in a worker process."""

    def reset(self, episode: EpisodeSpec, render: bool) -> None:
        """Reset to the episode's initial state (reseeded: reproducible)."""

    def step(self, action: np.ndarray, render: bool) -> bool:
        """Apply one 7-D action; return the success flag after it.

        `render`: the observation after this step will be read, so render the cameras.
        """

    def observation(self) -> Observation:
        """The observation of the last reset/step (images only if it was rendered)."""

    def frame(self) -> np.ndarray:
        """Upright agent-view frame of the last step, for video (needs EnvOptions.video)."""

    def settled_state(self) -> dict[str, np.ndarray]:
        """{body: pose} after the wait steps, fingerprinted to catch simulator drift; {} if none."""

    def episode_stats(self) -> dict:
        """Suite-specific statistics of the finished episode (SimplerEnv Bridge: partial success); {} if none."""

    def close(self) -> None: ...


class SuiteEnvBase:
    """The optional capabilities' defaults: an env that offers no fingerprint or statistics
    inherits these instead of leaving the runner to probe for methods."""

    def settled_state(self) -> dict[str, np.ndarray]:
        return {}

    def episode_stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class ReportHook(Protocol):
    """A suite family's contribution to `evalkit report`, from the stored results alone."""

    options: tuple  # report options it understands (e.g. "sim2real")

    def notes(self, run_dir, suites_meta: dict, results: Sequence[EpisodeResult]) -> list[str]:
        """Plain-words notes on one run directory (recorded deviations, coverage)."""

    def sections(self, runs: Sequence[tuple], options: dict) -> list[tuple]:
        """Extra tables over all runs ((label, results) each): [(title, (headers, rows))]."""


@dataclass
class TaskInfo:
    task_id: int
    name: str
    instruction: str


@dataclass
class Suite:
    """A named set of tasks with a step limit and an episode grid (init states)."""

    name: str
    max_steps: int
    episodes_per_task: int  # the published protocol's count (init states 0..n-1)
    family: str  # summary-table column: Spatial / Object / Goal / Long / ...
    tasks: Sequence[TaskInfo]
    env_factory: Any  # callable(suite_name, EnvOptions) -> SuiteEnv, imported lazily in the worker
    info: dict = field(default_factory=dict)  # recorded with the results (assets, deviations)
    robot: str = "generic"  # picks the action postprocessor (evalkit.core.conventions.Postprocessor)
    preset: str = "openvla"  # the protocol preset of its published numbers, used when the run names none
    control_hz: Optional[float] = None  # env steps per simulated second, where the benchmark fixes it
    # Committed reference fingerprints of the settled states (evalkit.core.fingerprint), made with the
    # pinned simulator versions; None when the suite has none.
    fingerprint_file: Optional[str] = None
    # "module:attr" of a ReportHook: the suite's own tables and notes in `evalkit report` (SimplerEnv's
    # official aggregation); loaded by name, so the report layer never imports a suite.
    report_hook: Optional[str] = None

    def episodes(
        self, task_ids: Optional[Sequence[int]] = None, episodes_per_task: Optional[int] = None, seed: int = 0
    ) -> list[EpisodeSpec]:
        """The episode grid: init state i for episode i of each task, seed = seed + i."""
        count = self.episodes_per_task if episodes_per_task is None else episodes_per_task
        if count > self.episodes_per_task:
            raise ValueError(
                f"{self.name} has {self.episodes_per_task} init states per task; asked for {count} episodes per task"
            )
        chosen = range(len(self.tasks)) if task_ids is None else task_ids
        specs = []
        for task_id in chosen:
            if not 0 <= task_id < len(self.tasks):
                raise ValueError(f"{self.name} has tasks 0..{len(self.tasks) - 1}; got task {task_id}")
            task = self.tasks[task_id]
            for i in range(count):
                specs.append(
                    EpisodeSpec(self.name, task_id, task.name, task.instruction, i, seed + i, self.max_steps)
                )
        return specs

    def doctor_sample(self) -> list[EpisodeSpec]:
        """The fixed (task, init state) sample `evalkit doctor` fingerprints: init state 0 of every
        task (at most 10 tasks, evenly spread), so a check takes seconds to a minute."""
        stride = max(1, len(self.tasks) // 10)
        return self.episodes(list(range(0, len(self.tasks), stride))[:10], episodes_per_task=1, seed=0)

    def reference_fingerprints(self) -> dict:
        """{"wait_steps", "versions", "episodes": {key: {"fingerprint", "state"}}} or {} if none."""
        if not self.fingerprint_file:
            return {}
        import json
        from pathlib import Path

        reference = json.loads(Path(self.fingerprint_file).read_text())
        entry = reference.get("suites", {}).get(self.name)
        return {"wait_steps": reference.get("wait_steps", 0), "versions": reference.get("versions", {}),
                **entry} if entry else {}

    def make_env(self, options: EnvOptions) -> SuiteEnv:
        return self.env_factory(self.name, options)
