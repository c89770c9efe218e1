"""NORA-1.5's preference rewards, candidate ranking and (winner, loser) pair export.

- R_a (action reward): minus the L1 distance between a candidate chunk and the ground-truth chunk;
- R_g (goal reward): minus the L1 distance between a world model's prediction of the future
  embedding (from the current observation and the candidate chunk) and the embedding of the
  goal image: the episode's end (end-goal) or the frame N steps ahead (sub-goal);
- R_tot = R_g + w * R_a, w = 0.5 by default.

L1 distances here are means over elements (so chunk length and embedding size do not change the
scale); rankings at one state are the same as with sums. The world model is any object with
`encode(image) -> embedding` and `predict(embedding, chunk, state=None) -> embedding` (`state`: the
robot state at the observation, which V-JEPA2-AC's predictor reads; `None` when the data has none).
`TinyWorldModel` is the test stand-in; `evalkit.posttrain.world_models` holds the V-JEPA2-AC adapter and
`evalkit.posttrain.pairs` the driver that scores the states of an episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Protocol, Sequence

import numpy as np

VARIANTS = ("action", "goal", "total")


def l1(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"L1 distance of arrays with different shapes {a.shape} and {b.shape}")
    return float(np.mean(np.abs(a - b)))


def action_reward(chunk: np.ndarray, reference: np.ndarray) -> float:
    """R_a: minus the L1 distance to the ground-truth chunk."""
    return -l1(chunk, reference)


def goal_reward(predicted: np.ndarray, goal: np.ndarray) -> float:
    """R_g: minus the L1 distance between predicted future and goal embeddings."""
    return -l1(predicted, goal)


class WorldModel(Protocol):
    def encode(self, image: np.ndarray) -> np.ndarray: ...

    def predict(self, embedding: np.ndarray, chunk: np.ndarray, state: Optional[np.ndarray] = None) -> np.ndarray:
        """The embedding after executing `chunk` (N, D) from `embedding`, the robot being in `state`."""


class TinyWorldModel:
    """A seeded linear world model for tests: a random projection of a downsampled image,
    moved by a linear function of the chunk's summed actions."""

    def __init__(self, dim: int = 16, action_dim: int = 7, seed: int = 0, pixels: int = 8):
        dim, action_dim, seed, pixels = int(dim), int(action_dim), int(seed), int(pixels)  # CLI gives strings
        rng = np.random.default_rng(seed)
        self.pixels = pixels
        self.encoder = rng.normal(size=(dim, pixels * pixels * 3)) / np.sqrt(pixels * pixels * 3)
        self.dynamics = rng.normal(size=(dim, action_dim))

    def encode(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float64)
        step_y, step_x = max(1, image.shape[0] // self.pixels), max(1, image.shape[1] // self.pixels)
        small = image[::step_y, ::step_x][: self.pixels, : self.pixels] / 255.0
        return np.tanh(self.encoder @ small.reshape(-1))

    def predict(self, embedding: np.ndarray, chunk: np.ndarray, state: Optional[np.ndarray] = None) -> np.ndarray:
        # the state is ignored: a linear stand-in has nothing to condition on it
        return embedding + self.dynamics @ np.asarray(chunk, dtype=np.float64).sum(axis=0)


@dataclass
class ScoredCandidates:
    chunks: np.ndarray  # (K, N, D)
    rewards: np.ndarray  # (K,) the variant's reward
    components: dict = field(default_factory=dict)  # "action", "goal": (K,) each, when computed


def score_candidates(chunks: np.ndarray, variant: str = "total", *, reference: Optional[np.ndarray] = None,
                     world_model: Optional[WorldModel] = None, image: Optional[np.ndarray] = None,
                     goal_image: Optional[np.ndarray] = None, action_weight: float = 0.5,
                     state: Optional[np.ndarray] = None) -> ScoredCandidates:
    """Score K candidate chunks at one state with R_a, R_g or R_tot (`state`: the robot state, for R_g)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown reward variant {variant!r}; use one of {VARIANTS}")
    chunks = np.asarray(chunks, dtype=np.float64)
    components = {}
    if variant in ("action", "total"):
        if reference is None:
            raise ValueError(f"reward {variant!r} needs the ground-truth chunk (reference=...)")
        components["action"] = np.array([action_reward(c, reference) for c in chunks])
    if variant in ("goal", "total"):
        if world_model is None or image is None or goal_image is None:
            raise ValueError(f"reward {variant!r} needs world_model, image and goal_image")
        now, goal = world_model.encode(image), world_model.encode(goal_image)
        components["goal"] = np.array([goal_reward(world_model.predict(now, c, state=state), goal) for c in chunks])
    if variant == "action":
        rewards = components["action"]
    elif variant == "goal":
        rewards = components["goal"]
    else:
        rewards = components["goal"] + action_weight * components["action"]
    return ScoredCandidates(chunks, rewards, components)


def preference_pairs(scored: ScoredCandidates, min_margin: float = 0.0,
                     max_pairs: Optional[int] = None) -> list[tuple[int, int]]:
    """(winner, loser) index pairs, best winners first: every pair whose rewards differ by
    more than min_margin (ties carry no preference)."""
    order = np.argsort(-scored.rewards, kind="stable")
    pairs = [(int(w), int(l)) for i, w in enumerate(order) for l in order[i + 1:]
             if scored.rewards[w] - scored.rewards[l] > min_margin]
    return pairs[:max_pairs] if max_pairs is not None else pairs


def pair_rows(scored: ScoredCandidates, pairs: Sequence[tuple[int, int]], observation_ref: str,
              instruction: str, variant: str) -> list[dict]:
    """Rows of the preference dataset for one state."""
    return [{"observation_ref": observation_ref, "instruction": instruction, "variant": variant,
             "winner_chunk": scored.chunks[w].tolist(), "loser_chunk": scored.chunks[l].tolist(),
             "winner_reward": float(scored.rewards[w]), "loser_reward": float(scored.rewards[l])}
            for w, l in pairs]


def export_pairs(rows: list[dict], path) -> None:
    """Write preference pairs as parquet (pandas + pyarrow)."""
    import pandas as pd

    if not rows:
        raise ValueError("no preference pairs to export (all candidates tied?)")
    pd.DataFrame(rows).to_parquet(path, index=False)


def sample_candidates(policy, obs, instruction: str, k: int) -> np.ndarray:
    """K chunks from K calls of a stochastic policy at one observation; (K, N, D).

    Each call sees the observation under its own episode key ("<key>/candidate<i>"), so the
    seeded weight-free policies, which derive their noise from the key, give K different chunks."""
    return np.stack([np.asarray(policy.act(replace(obs, episode_key=f"{obs.episode_key}/candidate{i}"), instruction),
                                dtype=np.float64) for i in range(k)])
