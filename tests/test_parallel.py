"""Worker discipline: a worker that dies mid-episode costs that episode only."""

import multiprocessing
import os

import numpy as np
import pytest

from evalkit.run.workers import ParallelRunner, WorkerConfig
from evalkit.core.protocol import OPENVLA
from evalkit.core.suite import EnvOptions, Suite
from policies.weightfree.basic import ZeroPolicy
from suites.fake import FakeEnv, fake_suite


class CrashingEnv(FakeEnv):
    """Kills its worker process (as a simulator segfault would) on task 2."""

    def step(self, action, render):
        if self.episode.task_id == 2 and self.t == 12 and multiprocessing.parent_process() is not None:
            os._exit(3)
        return super().step(action, render)


def crashing_env(name, options):
    return CrashingEnv(name, options)


def test_dead_worker_records_an_error_and_the_run_finishes():
    base = fake_suite()
    suite = Suite("fake_crashy", base.max_steps, base.episodes_per_task, "Fake", base.tasks, crashing_env)
    policy = ZeroPolicy(chunk_size=4)
    config = WorkerConfig(suites={suite.name: suite}, spec=policy.spec, mode="open_loop",
                          protocol=OPENVLA.with_overrides(budget=20), env_options=EnvOptions())
    results = []
    ParallelRunner(policy, config, workers=2).run(suite.episodes(episodes_per_task=2), results.append)
    assert len(results) == 8 and len({r.key for r in results}) == 8
    crashed = [r for r in results if r.task_id == 2]
    assert [r.termination for r in crashed] == ["error", "error"]
    assert all("worker process died (exit code 3)" in r.error for r in crashed)
    assert {r.termination for r in results if r.task_id != 2} == {"budget"}


def test_workers_keep_to_their_task_so_simulators_are_rebuilt_rarely():
    from evalkit.run.workers import _next_episode

    todo = fake_suite().episodes(task_ids=[0, 1], episodes_per_task=3)
    first = _next_episode(todo, None, set())
    second = _next_episode(todo, None, {("fake", 0)})
    assert (first.task_id, second.task_id) == (0, 1)
    assert [_next_episode(todo, ("fake", 1), {("fake", 0)}).task_id for _ in range(2)] == [1, 1]
    assert _next_episode(todo, ("fake", 1), {("fake", 0)}).task_id == 0  # its own task is done
    assert len(todo) == 1 and _next_episode([], ("fake", 0), set()) is None


class RaisesOnOddInits:
    """Stateless, batched: its act_batch raises if any observation is of an odd init state (after
    the first query), as a real batched model would; act() raises only for those observations."""

    def __init__(self, short_batches: bool = False):
        from evalkit.core.types import PolicySpec

        self.spec = PolicySpec(chunk_size=4)
        self.short_batches = short_batches in (True, "true", "1")

    def reset(self):
        pass

    def _bad(self, obs):
        return int(obs.episode_key.split("/")[2]) % 2 == 1 and obs.step > 0

    def act(self, obs, instruction):
        if self._bad(obs):
            raise ValueError(f"bad observation {obs.episode_key}")
        return np.zeros((4, 7))

    def act_batch(self, observations, instructions):
        if self.short_batches and len(observations) > 1:
            return [np.zeros((4, 7))] * (len(observations) - 1)  # one chunk too few
        return [self.act(o, t) for o, t in zip(observations, instructions)]


@pytest.mark.parametrize("short_batches", [False, True])
def test_a_failing_or_short_batch_fails_only_its_own_episodes(tmp_path, short_batches):
    from evalkit.core.registry import register
    from evalkit.run.driver import RunConfig, execute
    from evalkit.results.store import ResultStore

    register("policy", "test-raises-on-odd", "test_parallel:RaisesOnOddInits")
    outcomes = {}
    for workers in (1, 3):
        out = execute(RunConfig(suites=["fake"], policy="test-raises-on-odd", episodes_per_task=4, workers=workers,
                                policy_args={"short_batches": short_batches}, max_steps=12,
                                out=str(tmp_path / f"w{workers}")), progress=False)
        with ResultStore(out, readonly=True) as store:
            outcomes[workers] = {r.key: r.termination for r in store.results()}
    errors = {k for k, t in outcomes[3].items() if t == "error"}
    assert outcomes[1] == outcomes[3]
    assert errors == {k for k in outcomes[1] if int(k.split("/")[2]) % 2 == 1}  # the odd init states only
