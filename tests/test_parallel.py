"""Worker discipline: a worker that dies mid-episode costs that episode only."""

import multiprocessing
import os

from evalkit.parallel import ParallelRunner, WorkerConfig
from evalkit.protocol import OPENVLA
from evalkit.suite import EnvOptions, Suite
from policies.basic import ZeroPolicy
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
    from evalkit.parallel import _next_episode

    todo = fake_suite().episodes(task_ids=[0, 1], episodes_per_task=3)
    first = _next_episode(todo, None, set())
    second = _next_episode(todo, None, {("fake", 0)})
    assert (first.task_id, second.task_id) == (0, 1)
    assert [_next_episode(todo, ("fake", 1), {("fake", 0)}).task_id for _ in range(2)] == [1, 1]
    assert _next_episode(todo, ("fake", 1), {("fake", 0)}).task_id == 0  # its own task is done
    assert len(todo) == 1 and _next_episode([], ("fake", 0), set()) is None
