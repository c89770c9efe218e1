"""Weight-free policies: useful with no checkpoint, and as fixtures for the harness itself.

All of them are stateless functions of (observation, episode key, step), so they give
the same actions whether observations arrive one at a time or batched across workers.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np

from evalkit.core.types import ACTION_DIM, Observation, PolicySpec

GRIPPER_OPEN = -1.0


class ZeroPolicy:
    """Holds still with the gripper open."""

    def __init__(self, chunk_size: int = 1):
        self.spec = PolicySpec(chunk_size=int(chunk_size))

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        chunk = np.zeros((self.spec.chunk_size, ACTION_DIM))
        chunk[:, -1] = GRIPPER_OPEN
        return chunk


class RandomPolicy:
    """Uniform actions in [-scale, scale], gripper +-1; seeded by (seed, episode, step).

    Deriving the generator from the episode and step (rather than from call order)
    keeps the actions identical with any number of workers.
    """

    def __init__(self, seed: int = 0, chunk_size: int = 1, scale: float = 1.0, cameras: str = "",
                 latency_s: float = 0.0):
        self.seed = int(seed)
        self.scale = float(scale)
        self.latency_s = float(latency_s)  # simulated inference time, for timing and kill tests
        self.spec = PolicySpec(cameras=tuple(c for c in cameras.split(",") if c), chunk_size=int(chunk_size))

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        if self.latency_s:
            time.sleep(self.latency_s)
        rng = np.random.default_rng([self.seed, zlib.crc32(obs.episode_key.encode()), obs.step])
        chunk = rng.uniform(-self.scale, self.scale, size=(self.spec.chunk_size, ACTION_DIM))
        chunk[:, -1] = np.where(chunk[:, -1] > 0, 1.0, -1.0)
        return chunk


class ReplayPolicy:
    """Plays the actions of a file (.npy or whitespace/comma-separated text, shape (T, 7)), or of
    an .npz holding one (T, 7) array per episode, named by `replay_key(episode key)`.

    Step t of an episode gets row t; past the end it holds still with the last gripper command.
    """

    def __init__(self, path: str = "", chunk_size: int = 1):
        if not path:
            raise ValueError("replay needs an action file: --policy-arg path=actions.npy (shape (T, 7)) "
                             "or actions.npz (one array per episode)")
        self.per_episode = Path(path).suffix == ".npz"
        self.actions = load_episode_actions(Path(path)) if self.per_episode else load_actions(Path(path))
        self.spec = PolicySpec(chunk_size=int(chunk_size))

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        actions = self._actions_of(obs.episode_key)
        rows = np.arange(obs.step, obs.step + self.spec.chunk_size)
        chunk = actions[np.minimum(rows, len(actions) - 1)].copy()
        chunk[rows >= len(actions), :-1] = 0.0
        return chunk

    def _actions_of(self, episode_key: str) -> np.ndarray:
        if not self.per_episode:
            return self.actions
        key = replay_key(episode_key)
        if key not in self.actions:
            raise KeyError(f"the replay file has no actions for episode {episode_key} (array {key!r}); "
                           f"it has {len(self.actions)} episodes, e.g. {sorted(self.actions)[:3]}")
        return self.actions[key]


def replay_key(episode_key: str) -> str:
    """An .npz array name for an episode key ("suite/task/init/seed" -> "suite__task__init__seed")."""
    return episode_key.replace("/", "__")


def load_episode_actions(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"replay action file not found: {path}")
    with np.load(path) as data:
        actions = {name: np.atleast_2d(np.asarray(data[name], dtype=np.float64)) for name in data.files}
    bad = [name for name, a in actions.items() if a.shape[1] != ACTION_DIM or len(a) == 0]
    if bad:
        raise ValueError(f"{path}: arrays {bad} are not of shape (T, {ACTION_DIM})")
    return actions


def load_actions(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"replay action file not found: {path}")
    actions = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
    actions = np.atleast_2d(np.asarray(actions, dtype=np.float64))
    if actions.shape[1] != ACTION_DIM or len(actions) == 0:
        raise ValueError(f"{path}: expected actions of shape (T, {ACTION_DIM}), got {actions.shape}")
    return actions


class ReachPolicy:
    """Scripted policy of the fake suite: moves straight to the target (privileged state)."""

    def __init__(self, chunk_size: int = 1):
        self.spec = PolicySpec(chunk_size=int(chunk_size), privileged=True)

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        pos, target = obs.privileged["pos"], obs.privileged["target"]
        chunk = np.zeros((self.spec.chunk_size, ACTION_DIM))
        chunk[:, -1] = GRIPPER_OPEN
        for i in range(self.spec.chunk_size):  # plan the whole chunk open-loop
            move = np.clip((target - pos) / 0.05, -1, 1)
            chunk[i, :2] = move
            pos = pos + 0.05 * move
        return chunk
