"""W worker processes, each owning a simulator; the policy stays in this process.

Each worker runs `runner.run_episode` with a `PolicyProxy` in place of the policy:
a query sends the observation here, where queries from all workers are answered
with one `act_batch` call. Stateful policies (scripted ones) get one instance per
worker instead, so batching never mixes their episodes' state.

Worker discipline (after Gymnasium's async vector env): one command loop per worker,
errors sent back with the traceback, a timeout on every wait, spawn start method.
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Callable, Optional

from evalkit.core.conventions import postprocessor_for
from evalkit.core.execution import wrap
from evalkit.core.images import ImagePreparer, image_path_for
from evalkit.core.policy import QueryError, QueryTimeout, answer_batch
from evalkit.core.protocol import Protocol
from evalkit.run.episode import run_episode
from evalkit.run.video import VideoPlan, save_episode_video
from evalkit.core.suite import EnvOptions
from evalkit.core.types import EpisodeResult, EpisodeSpec, PolicySpec

REPLY_TIMEOUT_S = 1800.0  # a worker waiting longer than this for its chunk gives up on the episode (a backstop:
# the supervisor ends a query that overruns query_timeout_s first)


class PolicyProxy:
    """Stands in for the policy inside a worker; the real one answers from the parent."""

    def __init__(self, conn: Connection, spec: PolicySpec):
        self.conn = conn
        self.spec = spec

    def reset(self) -> None:
        self.conn.send(("reset",))

    def act(self, obs, instruction: str):
        self.conn.send(("query", obs, instruction))
        if not self.conn.poll(REPLY_TIMEOUT_S):
            raise QueryTimeout(f"no reply from the policy process within {REPLY_TIMEOUT_S:.0f} s")
        kind, payload = self.conn.recv()
        if kind == "policy_error":
            raise RuntimeError(f"the policy raised in the parent process:\n{payload}")
        return payload


@dataclass
class WorkerConfig:
    suites: dict  # name -> Suite (picklable definitions; envs are built in the worker)
    spec: PolicySpec
    mode: str
    protocol: Protocol
    env_options: EnvOptions
    video_dir: Optional[str] = None
    video_plan: Optional[VideoPlan] = None  # which episodes record and keep a video (None with video_dir: all)


def episode_error(episode: EpisodeSpec, message: str, termination: str = "error") -> EpisodeResult:
    """A result for an episode that could not run or finish (env build failed, worker died or hung)."""
    return EpisodeResult(episode.suite, episode.task_id, episode.task_name, episode.init_index, episode.seed,
                         False, termination, 0, 0, 0.0, 0.0, error=message, params=episode.param_dict())


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies, however it dies, so that a
    killed run never leaves simulators running (or writing) behind it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere, a worker notices its parent is gone at its next receive


class EpisodeWorker:
    """What runs episodes given an env per suite; shared by the in-process and worker paths."""

    def __init__(self, policy, config: WorkerConfig):
        self.config = config
        self.policy = wrap(policy, config.mode)
        self.envs: dict = {}

    def run(self, episode: EpisodeSpec) -> EpisodeResult:
        try:
            env = self._env(episode.suite)
        except Exception:
            return episode_error(episode, "could not build the env:\n" + traceback.format_exc())
        plan = self.config.video_plan
        video = self.config.video_dir is not None and (plan is None or plan.records(episode))
        suite = self.config.suites[episode.suite]
        post = postprocessor_for(suite, self.config.spec)
        images = ImagePreparer(image_path_for(suite, self.config.spec), self.config.spec.image_size)
        result, frames = run_episode(env, self.policy, episode, self.config.protocol, video, post, images)
        if result.termination in ("success", "budget"):
            result.stats = env.episode_stats()  # suite-specific (SimplerEnv Bridge: partial success)
        if frames and (plan is None or plan.keeps(result)):  # --video failures: known only now
            result.video = save_episode_video(self.config.video_dir, result, frames)
        return result

    def _env(self, suite_name: str):
        if suite_name not in self.envs:
            self.envs[suite_name] = self.config.suites[suite_name].make_env(self.config.env_options)
        return self.envs[suite_name]

    def close(self) -> None:
        for env in self.envs.values():
            try:
                env.close()
            except Exception:
                pass
        self.envs.clear()


def _worker_main(conn: Connection, config: WorkerConfig) -> None:
    die_with_parent()
    faulthandler.enable()  # a segfault in the simulator prints where it happened
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    worker = EpisodeWorker(PolicyProxy(conn, config.spec), config)
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                break
            conn.send(("result", worker.run(message[1])))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass  # the parent is gone: nothing left to do
    finally:
        worker.close()


@dataclass
class _Slot:
    index: int
    process: mp.Process
    conn: Connection
    policy: object
    episode: Optional[EpisodeSpec] = None
    last_task: Optional[tuple] = None  # (suite, task id) of the env the worker holds
    deadline: Optional[float] = None  # when the episode in hand overruns the episode limit


def _next_episode(todo: list[EpisodeSpec], own_task, other_tasks: set) -> Optional[EpisodeSpec]:
    """Prefer the worker's current task (switching tasks rebuilds the simulator), then a
    task no other worker holds, then the first left. Outcomes do not depend on the order."""
    for wanted in (lambda ep: (ep.suite, ep.task_id) == own_task,
                   lambda ep: (ep.suite, ep.task_id) not in other_tasks,
                   lambda ep: True):
        for index, episode in enumerate(todo):
            if wanted(episode):
                return todo.pop(index)
    return None


def take_next_episode(slot, todo: list[EpisodeSpec], slots: list, in_flight=None) -> Optional[EpisodeSpec]:
    """Hand a worker (or a Ray simulator actor: any slot with `episode` and `last_task`) its next
    episode, marked in flight; None when none is left."""
    slot.episode = _next_episode(todo, slot.last_task, {s.last_task for s in slots if s is not slot})
    if slot.episode is not None:
        slot.last_task = (slot.episode.suite, slot.episode.task_id)
        if in_flight is not None:
            in_flight.started(slot.episode)
    return slot.episode


class ParallelRunner:
    """Runs episodes on W spawned workers; results are handed to `on_result` as they finish."""

    def __init__(self, policy, config: WorkerConfig, workers: int,
                 make_policy: Optional[Callable[[], object]] = None, batch_window_s: float = 0.002,
                 in_flight=None):
        """`policy` answers every worker, unless its spec is stateful: then each worker
        gets its own instance from `make_policy`. `in_flight` (evalkit.run.driver.InFlightLog) is told
        which episodes run and which wait on the policy, and sets the episode time limit."""
        if config.spec.stateful and make_policy is None:
            raise ValueError("a stateful policy needs make_policy to build one instance per worker")
        self.config = config
        self.workers = workers
        self.batch_window_s = batch_window_s
        self.policy = policy
        self.make_policy = make_policy
        self.in_flight = in_flight
        self.episode_timeout_s = getattr(in_flight, "episode_timeout_s", None)
        self.ctx = mp.get_context("spawn")
        self.failed_starts = 0

    def run(self, episodes: list[EpisodeSpec], on_result: Callable[[EpisodeResult], None]) -> None:
        todo = list(episodes)
        slots = [self._spawn(i) for i in range(min(self.workers, len(todo)))]
        try:
            for slot in list(slots):
                self._assign(slot, todo, slots, on_result)
            while any(slot.episode for slot in slots):
                self._serve_once(slots, todo, on_result)
                self._end_overdue(slots, todo, on_result)
        except BaseException:  # Ctrl-C or a fault here: stop every worker now, not after its episode
            for slot in slots:
                slot.process.kill()
            raise
        finally:
            for slot in slots:
                self._stop(slot)

    def _spawn(self, index: int) -> _Slot:
        parent_conn, child_conn = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main, args=(child_conn, self.config), daemon=True,
                                   name=f"evalkit-worker-{index}")
        process.start()
        child_conn.close()
        policy = self.make_policy() if self.config.spec.stateful else self.policy
        return _Slot(index, process, parent_conn, policy)

    def _assign(self, slot: _Slot, todo: list[EpisodeSpec], slots: list[_Slot], on_result) -> None:
        if take_next_episode(slot, todo, slots, self.in_flight) is None:
            return
        slot.deadline = None if self.episode_timeout_s is None else time.time() + self.episode_timeout_s
        try:
            slot.conn.send(("episode", slot.episode))
        except OSError:  # the worker died before its episode began (killed from outside): it goes back
            todo.insert(0, slot.episode)
            slot.episode = None
            self.failed_starts += 1
            if self.failed_starts > 3:  # fresh workers keep dying before any episode: something is broken
                raise RuntimeError(f"worker processes keep dying before their first episode "
                                   f"({describe_exit(slot.process.exitcode)}); see the messages above") from None
            self._replace(slots, slot, todo, on_result)

    def _serve_once(self, slots: list[_Slot], todo: list, on_result) -> None:
        busy = {slot.conn: slot for slot in slots if slot.episode}
        ready = wait(list(busy), timeout=1.0)
        if ready and self.batch_window_s:
            time.sleep(self.batch_window_s)  # let queries of other workers join this batch
            ready = wait(list(busy), timeout=0)
        queries = []
        for conn in ready:
            slot = busy[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._replace_dead(slots, slot, todo, on_result)
                continue
            if message[0] == "query":
                queries.append((slot, message[1], message[2]))
            elif message[0] == "reset":
                slot.policy.reset()
            elif message[0] == "result":
                slot.episode = None
                on_result(message[1])
                self.failed_starts = 0
                self._assign(slot, todo, slots, on_result)
        if queries:
            self._answer(queries, slots, todo, on_result)

    def _answer(self, queries: list, slots: list[_Slot], todo: list, on_result) -> None:
        groups: dict[int, list] = {}
        for query in queries:  # one batch per policy instance
            groups.setdefault(id(query[0].policy), []).append(query)
        for group in groups.values():
            keys = [slot.episode.key for slot, _, _ in group]
            if self.in_flight is not None:
                self.in_flight.querying(keys)
            answers = answer_batch(group[0][0].policy, [q[1] for q in group], [q[2] for q in group])
            if self.in_flight is not None:
                self.in_flight.answered(keys)
            replies = [("policy_error", str(a)) if isinstance(a, QueryError) else ("chunk", a) for a in answers]
            for (slot, _, _), reply in zip(group, replies):
                try:
                    slot.conn.send(reply)
                except OSError:  # a failed send means what a failed receive means: the worker is dead
                    self._replace_dead(slots, slot, todo, on_result)

    def _end_overdue(self, slots: list[_Slot], todo: list, on_result) -> None:
        """A worker whose episode overran the episode limit (a hung simulator) is killed; the
        episode ends as `timeout` and a fresh worker takes over."""
        now = time.time()
        for slot in list(slots):
            if slot.episode is not None and slot.deadline is not None and now > slot.deadline:
                slot.process.kill()
                self._replace_dead(slots, slot, todo, on_result, termination="timeout",
                                   reason=f"the episode overran its {self.episode_timeout_s:g} s limit "
                                          "(episode_timeout_s); its worker was killed")

    def _replace_dead(self, slots: list[_Slot], slot: _Slot, todo: list, on_result,
                      termination: str = "error", reason: str = "") -> None:
        """A worker died (or was killed) mid-episode: record that episode, start a fresh worker."""
        slot.process.join(timeout=5)
        if slot.episode is not None:
            reason = reason or f"worker process died ({describe_exit(slot.process.exitcode)})"
            on_result(episode_error(slot.episode, reason, termination))
            slot.episode = None
        self._replace(slots, slot, todo, on_result)

    def _replace(self, slots: list[_Slot], slot: _Slot, todo: list, on_result) -> None:
        self._stop(slot)
        fresh = self._spawn(slot.index)
        slots[slots.index(slot)] = fresh
        self._assign(fresh, todo, slots, on_result)

    def _stop(self, slot: _Slot) -> None:
        try:
            slot.conn.send(("stop",))
        except OSError:
            pass
        slot.process.join(timeout=5)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(timeout=5)


def describe_exit(code: Optional[int]) -> str:
    """'killed by SIGSEGV' / 'exit code 3' for a process's exit code."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
