"""The Policy protocol: `act(obs, instruction) -> chunk (N, action_dim)` plus `reset()`."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from evalkit.types import Observation, PolicySpec


@runtime_checkable
class Policy(Protocol):
    spec: PolicySpec

    def reset(self) -> None:
        """Forget per-episode state; called before every episode."""

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        """Return an action chunk of shape (N, action_dim)."""


def act_batch(policy: Policy, observations: Sequence[Observation], instructions: Sequence[str]) -> list[np.ndarray]:
    """Query a policy on several observations: its own `act_batch` when it has one, else a loop."""
    batched = getattr(policy, "act_batch", None)
    if batched is not None:
        return list(batched(list(observations), list(instructions)))
    return [policy.act(obs, text) for obs, text in zip(observations, instructions)]
