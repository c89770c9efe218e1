"""Answers queries in batches: up to `max_batch` with one `act_batch` call, waiting at most
`max_wait_ms` after the first for more to arrive, on one thread (a policy is never called
concurrently). One query's fault fails that query only (evalkit.core.policy.answer_batch).

Shared by `evalkit serve` (queries from websocket connections) and the Ray backend's policy
actors (queries from simulator actors), so both batch by the same rules.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from evalkit.core.policy import QueryError, answer_batch
from evalkit.core.types import Observation


@dataclass
class _Query:
    policy: object
    obs: Observation
    instruction: str
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects queries from all connections and answers them in batches on one thread."""

    def __init__(self, max_batch: int = 1, max_wait_ms: float = 0.0, encode: Callable = lambda chunk: chunk):
        """`encode` turns each answer into what the caller sends back (the server: a wire frame)."""
        if max_batch < 1:
            raise ValueError(f"--max-batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalkit-policy")
        self.batches = 0
        self.queries = 0
        self.clients: Callable[[], int] = lambda: 2  # open connections; the server sets it
        self.encode = encode

    async def submit(self, policy, pairs: list[tuple[Observation, str]]) -> list[tuple[np.ndarray, dict]]:
        """Queue (observation, instruction) pairs together, so that they can share a batch."""
        loop = asyncio.get_running_loop()
        queries = [_Query(policy, obs, instruction, loop.create_future()) for obs, instruction in pairs]
        for query in queries:
            self.queue.put_nowait(query)
        return [await query.future for query in queries]

    async def run(self) -> None:
        while True:
            batch = await self._collect()
            await self._answer(batch)

    async def _collect(self) -> list[_Query]:
        batch = [await self.queue.get()]
        # With one client connected nobody else can join the batch: do not make it wait.
        # (The harness sends all its workers' queries in one infer_batch message.)
        wait_s = self.max_wait_s if self.clients() > 1 else 0.0
        deadline = time.perf_counter() + wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _answer(self, batch: list[_Query]) -> None:
        groups: dict[int, list[_Query]] = {}
        for query in batch:  # one act_batch per policy instance (stateful ones have one per connection)
            groups.setdefault(id(query.policy), []).append(query)
        loop = asyncio.get_running_loop()
        for group in groups.values():
            started = time.perf_counter()
            try:
                chunks = await loop.run_in_executor(self.executor, _act_group, group, self.encode)
            except Exception as exc:
                for query in group:
                    if not query.future.done():
                        query.future.set_exception(exc)
                continue
            infer_ms = (time.perf_counter() - started) * 1000
            self.batches += 1
            self.queries += len(group)
            for query, chunk in zip(group, chunks):
                timing = {"infer_ms": infer_ms, "queue_ms": (started - query.queued_at) * 1000,
                          "batch_size": len(group)}
                if query.future.done():
                    continue
                if isinstance(chunk, QueryError):  # this query alone failed; the batch's others go on
                    query.future.set_exception(chunk)
                else:
                    query.future.set_result((chunk, timing))


def _act_group(group: list[_Query], encode: Callable) -> list:
    answers = answer_batch(group[0].policy, [q.obs for q in group], [q.instruction for q in group])
    return [a if isinstance(a, QueryError) else encode(a) for a in answers]
