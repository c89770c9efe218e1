"""The Policy protocol: `act(obs, instruction) -> chunk (N, action_dim)` plus `reset()`."""

from __future__ import annotations

import traceback
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from evalkit.core.types import Observation, PolicySpec


@runtime_checkable
class Policy(Protocol):
    spec: PolicySpec

    def reset(self) -> None:
        """Forget per-episode state; called before every episode."""

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        """Return an action chunk of shape (N, action_dim)."""


class QueryTimeout(TimeoutError):
    """A query got no answer within its time limit; its episode ends as `timeout`."""


class QueryError(RuntimeError):
    """The policy raised on one query (message: the traceback); only that query's episode fails."""


def answer_batch(policy: Policy, observations: Sequence[Observation], instructions: Sequence[str]) -> list:
    """One answer per query, a chunk or a QueryError, so that one bad query never fails the others.

    The batch is tried at once; if it raises, or returns another number of chunks than queries,
    each query is answered again on its own (never for a batch of one: a stateful policy must not
    see its query twice)."""
    try:
        chunks = act_batch(policy, observations, instructions)
        if len(chunks) == len(observations):
            return chunks
        problem = f"act_batch returned {len(chunks)} chunks for {len(observations)} observations"
    except Exception:
        problem = traceback.format_exc()
    if len(observations) == 1:
        return [QueryError(problem)]
    return [_act_one(policy, obs, text) for obs, text in zip(observations, instructions)]


def _act_one(policy: Policy, obs: Observation, instruction: str):
    try:
        return policy.act(obs, instruction)
    except Exception:
        return QueryError(traceback.format_exc())


def act_batch(policy: Policy, observations: Sequence[Observation], instructions: Sequence[str]) -> list[np.ndarray]:
    """Query a policy on several observations: its own `act_batch` when it has one, else a loop."""
    batched = getattr(policy, "act_batch", None)
    if batched is not None:
        return list(batched(list(observations), list(instructions)))
    return [policy.act(obs, text) for obs, text in zip(observations, instructions)]
