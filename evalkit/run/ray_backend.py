"""`--backend ray`: the same run, with simulators and policies as Ray actors across a cluster.

The driver (this process) owns the run directory and the store, as with local workers; Ray is
the scheduler. It hands episodes out one at a time to `workers` simulator actors (one env
each, `ray_sim_cpus` and `ray_sim_resources` each, placed anywhere in the cluster) and stores
each result the moment it comes back, so a killed driver loses only the episodes in flight (its
actors die with it) and re-running the command finishes what is missing.

Policies: a model policy lives in `ray_policy_replicas` policy actors (`ray_policy_gpus` each),
which answer the simulator actors' queries in batches through `act_batch`, by the rules of
`evalkit serve` (evalkit.serve.batcher: a maximum batch, a maximum wait). A stateful policy (the
scripted ones) gets one instance inside each simulator actor instead, as with local workers.

Faults: a simulator actor that dies (or whose node does) costs its episode in flight, which is
run again on another actor up to `episode_retries` times and then recorded as `error` with the
reason; an episode that overruns `episode_timeout_s` is recorded as `timeout` and its actor
replaced. A policy actor that dies is restarted by Ray and the queries waiting on it are sent
again (a stateless policy has nothing to lose); a query without an answer within
`query_timeout_s` ends its episode as `timeout`. If no simulator actor can be placed any more
(the cluster lost its nodes), the run stops with a message instead of waiting: re-run it later.

Outcomes equal `-w 1`'s: every episode is reset from its own spec, whatever actor runs it.
Nothing here is imported unless the backend is chosen; Ray is an extra (`pip install 'evalkit[ray]'`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

from evalkit.core import registry
from evalkit.core.policy import QueryTimeout
from evalkit.core.settings import time_limit
from evalkit.run.workers import EpisodeWorker, WorkerConfig, episode_error, take_next_episode

PLACEMENT_TIMEOUT_S = 120.0  # a new simulator actor not running by then: the cluster has no room for it


def import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("--backend ray needs Ray: pip install 'evalkit[ray]' (or: pip install ray)") from None
    return ray


@dataclass
class RaySettings:
    """The Ray part of a RunConfig (evalkit.run.driver)."""

    address: Optional[str]
    simulators: int
    sim_cpus: float
    sim_resources: dict
    policy_gpus: float
    policy_replicas: int
    max_batch: int
    max_wait_ms: float
    episode_retries: int
    query_timeout_s: Optional[float]
    episode_timeout_s: Optional[float]

    @classmethod
    def of(cls, config) -> "RaySettings":
        return cls(config.ray_address, config.workers, config.ray_sim_cpus, dict(config.ray_sim_resources),
                   config.ray_policy_gpus, config.ray_policy_replicas, config.ray_max_batch, config.ray_max_wait_ms,
                   config.episode_retries, time_limit(config.query_timeout_s), time_limit(config.episode_timeout_s))


class PolicyActor:
    """A model policy answering simulator actors in batches (an async Ray actor)."""

    def __init__(self, name: str, args: dict, max_batch: int, max_wait_ms: float, clients: int):
        from evalkit.serve.batcher import Batcher

        self.policy = registry.make_policy(name, args)
        self.batcher = Batcher(max_batch, max_wait_ms)
        self.batcher.clients = lambda: clients
        self.task = None

    def spec(self):
        return self.policy.spec

    async def act(self, obs, instruction: str):
        if self.task is None:  # the batcher runs on the actor's own event loop
            self.task = asyncio.get_running_loop().create_task(self.batcher.run())
        [(chunk, _)] = await self.batcher.submit(self.policy, [(obs, instruction)])
        return chunk

    def pid(self) -> int:
        return os.getpid()


class ActorPolicyProxy:
    """Stands in for the policy inside a simulator actor; a policy actor answers."""

    def __init__(self, handle, spec, timeout_s: Optional[float]):
        self.handle, self.spec, self.timeout_s = handle, spec, timeout_s

    def reset(self) -> None:
        pass  # a policy behind an actor is stateless (stateful ones live in the simulator actor)

    def act(self, obs, instruction: str):
        ray = import_ray()
        try:
            return ray.get(self.handle.act.remote(obs, instruction), timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise QueryTimeout(f"no answer from the policy actor within query_timeout_s={self.timeout_s:g}") from None


class SimulatorActor:
    """One env, running the episodes the driver hands it (a Ray actor)."""

    def __init__(self, config: WorkerConfig, policy_name: str, policy_args: dict, policy_handle,
                 query_timeout_s: Optional[float]):
        if policy_handle is None:  # stateful: this simulator's own instance
            policy = registry.make_policy(policy_name, policy_args)
        else:
            policy = ActorPolicyProxy(policy_handle, config.spec, query_timeout_s)
        self.worker = EpisodeWorker(policy, config)

    def run(self, episode):
        return self.worker.run(episode)

    def ready(self) -> int:
        return os.getpid()


@dataclass
class _Slot:
    index: int
    actor: object
    episode: object = None
    ref: object = None
    started: float = 0.0
    last_task: Optional[tuple] = None


class SpecOnly:
    """What the driver holds of a policy that lives in actors: its spec (the model is never loaded here)."""

    def __init__(self, spec):
        self.spec = spec

    def reset(self) -> None:
        pass

    def act(self, obs, instruction: str):
        raise RuntimeError("with --backend ray the policy answers in its policy actors, not in the driver")


class RayRunner:
    """Runs episodes on simulator actors; results are handed to `on_result` as they come back."""

    def __init__(self, policy_name: str, policy_args: dict, settings: RaySettings, in_flight=None):
        self.ray = import_ray()
        self.policy_name, self.policy_args = policy_name, policy_args
        self.settings, self.in_flight = settings, in_flight
        self.attempts: dict[str, int] = {}
        self.policies: list = []
        self.config: Optional[WorkerConfig] = None

    def policy(self) -> SpecOnly:
        """Start the policy actors and return the policy's spec. A stateful policy gets no actor: each
        simulator actor builds its own instance (weight-free, cheap)."""
        self._connect()
        self.policies = self._start_policies(self.settings.simulators)
        spec = self.ray.get(self.policies[0].spec.remote())
        if spec.stateful:
            for actor in self.policies:
                self.ray.kill(actor)
            self.policies = []
        return SpecOnly(spec)

    def run(self, episodes: list, on_result: Callable, config: WorkerConfig) -> None:
        self.config = config
        todo = list(episodes)
        slots = [self._start_simulator(i) for i in range(min(self.settings.simulators, len(todo)))]
        try:
            for slot in slots:
                self._assign(slot, todo, slots)
            while any(slot.episode for slot in slots):
                self._collect(slots, todo, on_result)
                self._end_overdue(slots, todo, on_result)
        finally:
            for actor in [s.actor for s in slots] + self.policies:
                self.ray.kill(actor)

    # -- setting up ------------------------------------------------------------------------------

    def _connect(self) -> None:
        if self.ray.is_initialized():
            return
        # The actors import evalkit, policies and suites from the same checkout as this driver.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}
        if self.settings.address:
            self.ray.init(address=self.settings.address, runtime_env=env, log_to_driver=False)
        else:
            self.ray.init(runtime_env=env, log_to_driver=False, include_dashboard=False)

    def _start_policies(self, clients: int) -> list:
        # A policy actor reserves GPUs only: on a CPU-only cluster it shares the CPUs with the simulators.
        remote = self.ray.remote(PolicyActor).options(
            num_cpus=0, num_gpus=self.settings.policy_gpus,
            max_restarts=-1, max_task_retries=-1, max_concurrency=max(16, 2 * clients))
        per_replica = max(1, clients // self.settings.policy_replicas)
        return [remote.remote(self.policy_name, self.policy_args, self.settings.max_batch, self.settings.max_wait_ms,
                              per_replica) for _ in range(self.settings.policy_replicas)]

    def _start_simulator(self, index: int) -> _Slot:
        remote = self.ray.remote(SimulatorActor).options(
            num_cpus=self.settings.sim_cpus, resources=self.settings.sim_resources or None, max_restarts=0)
        handle = self.policies[index % len(self.policies)] if self.policies else None
        actor = remote.remote(self.config, self.policy_name, self.policy_args, handle, self.settings.query_timeout_s)
        return _Slot(index, actor)

    # -- the loop ----------------------------------------------------------------------------------

    def _assign(self, slot: _Slot, todo: list, slots: list) -> None:
        if take_next_episode(slot, todo, slots, self.in_flight) is None:
            return
        slot.ref, slot.started = slot.actor.run.remote(slot.episode), time.time()

    def _collect(self, slots: list, todo: list, on_result: Callable) -> None:
        busy = {slot.ref: slot for slot in slots if slot.episode is not None}
        ready, _ = self.ray.wait(list(busy), num_returns=1, timeout=1.0)
        for ref in ready:
            slot = busy[ref]
            try:
                result = self.ray.get(ref)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                    self.ray.exceptions.NodeDiedError) as exc:
                self._lost(slot, slots, todo, on_result, _first_line(exc))
                continue
            slot.episode = None
            on_result(result)
            self._assign(slot, todo, slots)

    def _lost(self, slot: _Slot, slots: list, todo: list, on_result: Callable, reason: str) -> None:
        """The simulator actor died: its episode is run again elsewhere, or recorded after the retries."""
        episode, slot.episode = slot.episode, None
        tries = self.attempts[episode.key] = self.attempts.get(episode.key, 0) + 1
        if tries > self.settings.episode_retries:
            on_result(episode_error(episode, f"its simulator actor died {tries} times (last: {reason})"))
        else:
            print(f"evalkit: simulator actor lost ({reason}); running {episode.key} again", file=sys.stderr)
            todo.insert(0, episode)
        self._replace(slot, slots, todo)

    def _end_overdue(self, slots: list, todo: list, on_result: Callable) -> None:
        limit = self.settings.episode_timeout_s
        for slot in list(slots):
            if limit and slot.episode is not None and time.time() - slot.started > limit:
                episode, slot.episode = slot.episode, None
                self.ray.kill(slot.actor)
                on_result(episode_error(episode, f"the episode overran its {limit:g} s limit (episode_timeout_s); "
                                                 "its simulator actor was killed", "timeout"))
                self._replace(slot, slots, todo)

    def _room_for_a_simulator(self) -> bool:
        needed = {"CPU": self.settings.sim_cpus, **self.settings.sim_resources}
        deadline = time.time() + ROOM_WAIT_S
        while not _has_room(self.ray.available_resources(), needed):
            if time.time() > deadline:
                return False
            time.sleep(0.25)
        return True

    def _replace(self, slot: _Slot, slots: list, todo: list) -> None:
        """A fresh actor in the slot; if no episode is left for it, or the cluster cannot place
        one, the slot closes."""
        self.ray.kill(slot.actor)
        if not todo:
            slots.remove(slot)
            return
        if len(slots) > 1 and not self._room_for_a_simulator():
            slots.remove(slot)  # a node is gone: go on with the simulators left
            print(f"evalkit: no room for another simulator actor in the cluster; going on with {len(slots)}",
                  file=sys.stderr)
            return
        fresh = self._start_simulator(slot.index)
        ready, _ = self.ray.wait([fresh.actor.ready.remote()], timeout=PLACEMENT_TIMEOUT_S)
        if not ready:
            self.ray.kill(fresh.actor)
            slots.remove(slot)
            if not slots and todo:
                raise RuntimeError(f"no simulator actor could be placed in the Ray cluster within "
                                   f"{PLACEMENT_TIMEOUT_S:g} s ({len(todo)} episodes left); the stored episodes are "
                                   "kept: re-run the same command once the cluster has room")
            return
        slots[slots.index(slot)] = fresh
        self._assign(fresh, todo, slots)


ROOM_WAIT_S = 5.0  # a killed actor's resources take a moment to come back


def _has_room(available: dict, needed: dict) -> bool:
    return all(available.get(name, 0.0) >= amount for name, amount in needed.items())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
