"""Chunk-execution modes as wrappers around any policy.

A wrapper turns a policy returning chunks (N, D) into one action per env step:

- `open_loop`: execute all N actions of a chunk, then query again;
- `receding:k`: execute the first k actions, then re-plan;
- `ensemble:temp`: query every step and average, for the current step, every stored
  chunk's prediction with weights exp(-temp * i), i = 0 for the oldest prediction
  (temp < 0 favours newer predictions, as SpatialVLA and NORA-1.5 use with -0.8).

The wrapper also tells the runner whether the next step needs a fresh observation
(`needs_query`), which is what lets the runner skip rendering unread frames.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np

from evalkit.core.policy import Policy
from evalkit.core.types import Observation, Undecodable, validate_chunk


class InvalidAction(Exception):
    """The policy answered with something that is not a valid chunk for its spec."""


@dataclass
class QueryRecord:
    """What one query cost and returned, for the episode's tallies."""

    seconds: float
    undecodable: bool


class ChunkedPolicy:
    """Base wrapper: queues actions from chunks; subclasses decide how."""

    mode = "open_loop"

    def __init__(self, policy: Policy):
        self.policy = policy
        self.spec = policy.spec
        self._queue: deque = deque()

    def reset(self) -> None:
        self._queue.clear()
        self.policy.reset()

    @property
    def needs_query(self) -> bool:
        return not self._queue

    def add_chunk(self, chunk: np.ndarray) -> None:
        self._queue = deque(np.asarray(chunk, dtype=np.float64))

    def pop_action(self) -> np.ndarray:
        return self._queue.popleft()

    def query(self, obs: Observation, instruction: str) -> QueryRecord:
        """The one chunk step: ask the policy, time it, validate its chunk against the spec and
        queue it as the mode says. Raises InvalidAction for an answer that is not a valid chunk."""
        start = time.perf_counter()
        raw = self.policy.act(obs, instruction)
        record = QueryRecord(time.perf_counter() - start, isinstance(raw, Undecodable))
        chunk, problem = validate_chunk(raw, self.spec)
        if chunk is None:
            raise InvalidAction(problem)
        self.add_chunk(chunk)
        return record

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        """One env action; queries the wrapped policy when the mode asks for it."""
        if self.needs_query:
            self.query(obs, instruction)
        return self.pop_action()

    def describe(self) -> str:
        return self.mode


class OpenLoop(ChunkedPolicy):
    mode = "open_loop"


class Receding(ChunkedPolicy):
    mode = "receding"

    def __init__(self, policy: Policy, k: int):
        if k < 1:
            raise ValueError(f"receding:k needs k >= 1, got {k}")
        super().__init__(policy)
        self.k = k

    def add_chunk(self, chunk: np.ndarray) -> None:
        super().add_chunk(np.asarray(chunk)[: self.k])

    def describe(self) -> str:
        return f"receding:{self.k}"


class Ensemble(ChunkedPolicy):
    mode = "ensemble"

    def __init__(self, policy: Policy, temp: float):
        super().__init__(policy)
        self.temp = temp
        self._history: deque = deque()  # (query step, chunk), oldest first
        self._t = 0

    def reset(self) -> None:
        super().reset()
        self._history.clear()
        self._t = 0

    @property
    def needs_query(self) -> bool:
        return True

    def add_chunk(self, chunk: np.ndarray) -> None:
        self._history.append((self._t, np.asarray(chunk, dtype=np.float64)))

    def pop_action(self) -> np.ndarray:
        t = self._t
        # Drop chunks that no longer cover step t.
        while self._history and t - self._history[0][0] >= len(self._history[0][1]):
            self._history.popleft()
        predictions = np.stack([chunk[t - start] for start, chunk in self._history])
        weights = np.exp(-self.temp * np.arange(len(predictions)))
        self._t += 1
        return (weights[:, None] * predictions).sum(axis=0) / weights.sum()

    def describe(self) -> str:
        return f"ensemble:{self.temp:g}"


# `--mode reference`: the mode the policy's published numbers used (PolicySpec.reference_modes),
# resolved per run by the suites' robot (evalkit.run.driver.resolve_mode) and recorded resolved.
REFERENCE_MODE = "reference"


# |TEMP| beyond this makes exp(-TEMP * i) overflow within a long chunk (NaN actions in the simulator),
# and already at 10 each older prediction weighs e^-10 of the next: the ensemble is one prediction.
MAX_ENSEMBLE_TEMP = 10.0


def parse_mode(mode: str) -> tuple[str, Optional[float]]:
    """'open_loop' | 'receding:K' | 'ensemble:TEMP' -> (name, parameter)."""
    name, _, arg = mode.partition(":")
    if name == "open_loop" and not arg:
        return name, None
    if name == "receding" and arg:
        return name, _receding_k(mode, arg)
    if name == "ensemble":
        return name, _ensemble_temp(mode, arg) if arg else -0.8
    raise ValueError(
        f"unknown execution mode {mode!r}; use 'open_loop', 'receding:K' (K an integer) "
        f"or 'ensemble:TEMP' (e.g. ensemble:-0.8)"
    )


def normalize_mode(mode: str) -> str:
    """The one spelling of a mode, used in run identities, records and folder names:
    `ensemble` and `ensemble:-0.80` are both `ensemble:-0.8`; `reference` stays as it is."""
    if mode == REFERENCE_MODE:
        return mode
    name, arg = parse_mode(mode)
    return name if arg is None else f"{name}:{arg:g}" if name == "ensemble" else f"{name}:{arg}"


def _receding_k(mode: str, arg: str) -> int:
    try:
        k = int(arg)
    except ValueError:
        k = 0
    if k < 1:  # k = 0 would execute nothing of each chunk
        raise ValueError(f"execution mode {mode!r}: receding:K needs K, the actions executed per chunk, "
                         f"to be an integer >= 1 (e.g. receding:2)")
    return k


def _ensemble_temp(mode: str, arg: str) -> float:
    try:
        temp = float(arg)
    except ValueError:
        temp = math.nan
    if not math.isfinite(temp) or abs(temp) > MAX_ENSEMBLE_TEMP:
        raise ValueError(f"execution mode {mode!r}: ensemble:TEMP needs a finite temperature within "
                         f"[-{MAX_ENSEMBLE_TEMP:g}, {MAX_ENSEMBLE_TEMP:g}] (e.g. ensemble:-0.8, as SpatialVLA and "
                         f"NORA-1.5); beyond that the weights exp(-TEMP * i) overflow to NaN actions")
    return temp


def wrap(policy: Policy, mode: str = "open_loop") -> ChunkedPolicy:
    name, arg = parse_mode(mode)
    if name == "receding":
        return Receding(policy, int(arg))
    if name == "ensemble":
        return Ensemble(policy, float(arg))
    return OpenLoop(policy)
