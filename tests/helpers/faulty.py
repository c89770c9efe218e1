"""Policies and suites that fail in the ways issue 12 lists: they raise, hang, segfault, exit,
or return bad batches, on chosen episodes only. Used through the `module:attr` door
(`--policy faulty:Segfaults`, with this folder on PYTHONPATH) so a real `evalkit run` process loads them.

The episodes they pick on are named by task id and init state ("1/0" is task 1, init state 0).
"""

from __future__ import annotations

import ctypes
import functools
import os
import time

import numpy as np

from policies.weightfree.basic import RandomPolicy, ReachPolicy
from suites.fake import FakeEnv, fake_suite


def _targeted(episode_key: str, targets: str) -> bool:
    """episode_key is suite/task/init/seed; targets is a comma list of task/init."""
    _, task, init, _ = episode_key.split("/")
    return f"{task}/{init}" in targets.split(",")


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


class _Faulty(ReachPolicy):
    """The scripted reacher (succeeds on the fake suite), which faults on the targeted episodes
    at their second query (unless FAULTY_OFF is set: the outage is over)."""

    def __init__(self, on: str = "1/0", chunk_size: int = 2):
        super().__init__(chunk_size=chunk_size)
        self.on = on
        self.queries: dict = {}

    def act(self, obs, instruction):
        count = self.queries[obs.episode_key] = self.queries.get(obs.episode_key, 0) + 1
        if count == 2 and _targeted(obs.episode_key, self.on) and not os.environ.get("FAULTY_OFF"):
            self.fault()
        return super().act(obs, instruction)

    def act_batch(self, observations, instructions):
        return [self.act(o, i) for o, i in zip(observations, instructions)]

    def fault(self) -> None:
        raise NotImplementedError


class Raises(_Faulty):
    def fault(self):
        raise RuntimeError("faulty policy: raised on purpose")


class Hangs(_Faulty):
    def fault(self):
        hang()


class Segfaults(_Faulty):
    def fault(self):
        segfault()


class Exits(_Faulty):
    def fault(self):
        os._exit(3)


class RaisesEveryFifth(ReachPolicy):
    """Raises on every fifth episode of the grid (by init state and task), at its first query."""

    def act(self, obs, instruction):
        _, task, init, _ = obs.episode_key.split("/")
        if (int(task) * 10 + int(init)) % 5 == 0:
            raise RuntimeError(f"faulty policy: episode {obs.episode_key} is a fifth one")
        return super().act(obs, instruction)

    def act_batch(self, observations, instructions):
        return [self.act(o, i) for o, i in zip(observations, instructions)]


class ShortBatches(ReachPolicy):
    """act_batch returns one chunk too few (act alone is fine)."""

    def act_batch(self, observations, instructions):
        return [self.act(o, i) for o, i in zip(observations, instructions)][:-1]


class _FaultyEnv(FakeEnv):
    def __init__(self, suite_name, options, fault, on):
        super().__init__(suite_name, options)
        self.fault, self.on = fault, on

    def step(self, action, render):
        if self.t == 15 and _targeted(self.episode.key, self.on):
            self.fault()
        return super().step(action, render)


def hang() -> None:
    time.sleep(10_000)


def _faulty_suite(fault, on: str = "1/0"):
    suite = fake_suite("fake")
    suite.env_factory = functools.partial(_FaultyEnv, fault=fault, on=on)  # picklable, for worker processes
    return suite


def segfaulting_suite(name: str = "fake"):
    """The fake suite, whose simulator segfaults in task 1, init state 0."""
    return _faulty_suite(segfault)


def hanging_suite(name: str = "fake"):
    """The fake suite, whose simulator hangs in task 1, init state 0."""
    return _faulty_suite(hang)


class KillsWorkers(_Faulty):
    """SIGKILLs every worker process (as the OOM killer would) while answering the targeted episode."""

    def fault(self):
        import multiprocessing
        import signal

        for child in multiprocessing.active_children():
            if child.name.startswith("evalkit-worker"):
                os.kill(child.pid, signal.SIGKILL)
                child.join(timeout=5)


class Slow(ReachPolicy):
    """The scripted reacher taking FAULTY_SLOW_S (default 0.05) per query: runs long enough to interrupt."""

    def act(self, obs, instruction):
        time.sleep(float(os.environ.get("FAULTY_SLOW_S", "0.05")))
        return super().act(obs, instruction)


def _first_time(tag: str) -> bool:
    """True the first time a tag is seen in $FAULTY_MARKER_DIR (marker files survive the process)."""
    folder = os.environ.get("FAULTY_MARKER_DIR")
    if not folder:
        return False
    marker = os.path.join(folder, tag.replace("/", "_"))
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True


class DiesOnce(_Faulty):
    """SIGKILLs its own process at the targeted episode's second query, once per run (a policy
    actor lost to its node, say): the restarted policy answers the same as before."""

    def fault(self):
        import signal

        if _first_time("policy-died"):
            os.kill(os.getpid(), signal.SIGKILL)


class _DiesOnceEnv(FakeEnv):
    """SIGKILLs its own process in the targeted episode, once per run (or always with FAULTY_ALWAYS)."""

    def step(self, action, render):
        import signal

        if self.t == 15 and _targeted(self.episode.key, "1/0") and (
                os.environ.get("FAULTY_ALWAYS") or _first_time("simulator-died")):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().step(action, render)


def dying_suite(name: str = "fake"):
    """The fake suite, whose simulator process is killed in task 1, init state 0 (once, or always)."""
    suite = fake_suite("fake")
    suite.env_factory = _DiesOnceEnv
    return suite


class RandomDiesOnce(RandomPolicy):
    """The random policy (stateless), which SIGKILLs its own process at its first query of task 1,
    init state 0, once per run: under Ray, the policy actor dies and is restarted."""

    def act(self, obs, instruction):
        import signal

        if _targeted(obs.episode_key, "1/0") and _first_time("policy-died"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().act(obs, instruction)


class Stateful(ReachPolicy):
    """Moves only on every third query of an episode: its actions depend on its own history."""

    def __init__(self, chunk_size: int = 1):
        import dataclasses

        super().__init__(chunk_size=chunk_size)
        self.spec = dataclasses.replace(self.spec, stateful=True)
        self.calls = 0

    def reset(self):
        self.calls = 0

    def act(self, obs, instruction):
        self.calls += 1
        return super().act(obs, instruction) * (self.calls % 3 == 0)
