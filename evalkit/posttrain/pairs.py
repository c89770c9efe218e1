"""`evalkit pairs`: NORA-1.5 preference pairs from the states of an episode, end to end.

At every scored state t of an episode, K candidate chunks are sampled from a policy, scored with
one reward variant (`evalkit.posttrain.rewards`), ranked, and every (winner, loser) pair becomes a row of a
parquet file with the observation reference, instruction, both chunks and both rewards.

Variants (NORA-1.5's ablations):
    R_a        minus L1 to the ground-truth chunk actions[t : t+N]
    R_g_end    world-model goal reward, goal = the episode's last frame
    R_g_sub    world-model goal reward, goal = frame t + subgoal_offset (default N, the chunk length)
    R_tot      R_g_end + action_weight * R_a (NORA-1.5 labels with the last frame as goal)
    R_tot_sub  R_g_sub + action_weight * R_a
Every variant scores the same states (those with a full ground-truth chunk ahead, every
`stride` steps), so the ablations compare like with like.

Episodes come from a file (`load_episode`) or from a rollout of a suite (`record_rollout`).
Episode file (.npz, written by `save_episode`):
    frames        (T or T+1, H, W, 3) uint8  agent-view image before each action (plus the last one)
    actions       (T, A) float               the action executed at each step
    instruction   () str
    states        optional, (T or T+1, S)    robot state at each frame (V-JEPA2-AC reads a 7-D pose)
    wrist_frames  optional, like frames      shown to policies as camera "robot0_eye_in_hand"
A row's observation_ref is "<episode source>#<t>": frame t of that file (or rollout).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from evalkit.core import registry
from evalkit.posttrain.rewards import export_pairs, pair_rows, preference_pairs, sample_candidates, score_candidates
from evalkit.core.settings import check_out_file
from evalkit.core.types import Observation

# variant -> (reward of evalkit.posttrain.rewards, goal image: "end", "sub" or None)
VARIANTS = {"R_a": ("action", None), "R_g_end": ("goal", "end"), "R_g_sub": ("goal", "sub"),
            "R_tot": ("total", "end"), "R_tot_sub": ("total", "sub")}
MAIN_CAMERA, WRIST_CAMERA = "agentview", "robot0_eye_in_hand"


@dataclass
class Episode:
    frames: np.ndarray
    actions: np.ndarray
    instruction: str
    states: Optional[np.ndarray] = None
    wrist_frames: Optional[np.ndarray] = None
    source: str = ""  # file path or rollout key; prefix of each row's observation_ref

    def __post_init__(self):
        steps = len(self.actions)
        for name in ("frames", "states", "wrist_frames"):
            value = getattr(self, name)
            if value is not None and len(value) not in (steps, steps + 1):
                raise ValueError(f"episode {self.source or '(unnamed)'}: {name} has {len(value)} entries for {steps} actions; "
                                 f"expected one per action (or one more, the final frame)")
        if steps == 0:
            raise ValueError(f"episode {self.source or '(unnamed)'} has no actions")


@dataclass
class PairSettings:
    variant: str = "R_tot"
    k: int = 8
    stride: int = 1
    subgoal_offset: Optional[int] = None  # None: the chunk length
    action_weight: float = 0.5
    min_margin: float = 0.0
    max_pairs_per_state: Optional[int] = None

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown reward variant {self.variant!r}; use one of {', '.join(VARIANTS)}")
        if self.k < 2 or self.stride < 1:
            raise ValueError(f"need k >= 2 candidates (got {self.k}) and stride >= 1 (got {self.stride})")


def load_episode(path: str | Path) -> Episode:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"episode file not found: {path}")
    try:
        arrays = _read_npz(path)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        # empty, truncated or not an .npz at all: say which file and what it should be
        raise ValueError(f"{path} is not a readable episode file ({type(exc).__name__}: {exc}); expected an "
                         f".npz written by numpy.savez with frames, actions and instruction (see evalkit/posttrain/pairs.py)"
                         ) from None
    missing = [key for key in ("frames", "actions", "instruction") if key not in arrays]
    if missing:
        raise ValueError(f"{path}: missing {missing}; an episode file holds frames (T, H, W, 3), actions (T, A), "
                         f"instruction, and optionally states and wrist_frames (see evalkit/posttrain/pairs.py)")
    frames, actions = arrays["frames"], arrays["actions"]
    if frames.ndim != 4 or actions.ndim != 2 or not np.issubdtype(actions.dtype, np.number):
        raise ValueError(f"{path}: frames must be (T, H, W, 3) and actions (T, A) numbers; got frames "
                         f"{frames.shape} and actions {actions.shape} ({actions.dtype})")
    optional = {key: arrays[key] for key in ("states", "wrist_frames") if key in arrays}
    return Episode(frames, np.asarray(actions, dtype=np.float64), str(arrays["instruction"]), source=str(path),
                   **optional)


def _read_npz(path: Path) -> dict:
    """Every array of the file, read now (a truncated member fails here, not mid-scoring)."""
    data = np.load(path, allow_pickle=False)
    if not hasattr(data, "files"):  # np.load gave a bare array (an .npy under another name)
        raise ValueError("it holds one array, not named arrays")
    with data:
        return {key: data[key] for key in data.files}


def save_episode(episode: Episode, path: str | Path) -> Path:
    check_out_file(Path(path), "save-episode")
    arrays = {"frames": episode.frames, "actions": episode.actions, "instruction": np.array(episode.instruction)}
    arrays.update({k: v for k, v in (("states", episode.states), ("wrist_frames", episode.wrist_frames))
                   if v is not None})
    np.savez_compressed(path, **arrays)
    return Path(path)


def scored_steps(episode: Episode, chunk_len: int, stride: int) -> range:
    """States with a full ground-truth chunk ahead (the same for every variant)."""
    return range(0, len(episode.actions) - chunk_len + 1, stride)


def observation_at(episode: Episode, t: int) -> Observation:
    images = {MAIN_CAMERA: episode.frames[t]}
    if episode.wrist_frames is not None:
        images[WRIST_CAMERA] = episode.wrist_frames[t]
    state = {} if episode.states is None else {"state": np.asarray(episode.states[t], dtype=np.float64)}
    return Observation(images=images, state=state, episode_key=episode.source, step=t)


def goal_frame(episode: Episode, t: int, goal: Optional[str], offset: int) -> Optional[np.ndarray]:
    if goal is None:
        return None
    if goal == "end":
        return episode.frames[-1]
    return episode.frames[min(t + offset, len(episode.frames) - 1)]


def state_pairs(policy, episode: Episode, t: int, settings: PairSettings, world_model=None) -> list[dict]:
    """Sample, score and rank K candidates at state t; the preference rows of that state."""
    reward, goal = VARIANTS[settings.variant]
    obs = observation_at(episode, t)
    chunks = sample_candidates(policy, obs, episode.instruction, settings.k)
    horizon = chunks.shape[1]
    scored = score_candidates(
        chunks, reward, reference=episode.actions[t: t + horizon], world_model=world_model,
        image=episode.frames[t], goal_image=goal_frame(episode, t, goal, settings.subgoal_offset or horizon),
        action_weight=settings.action_weight, state=obs.state.get("state"))
    pairs = preference_pairs(scored, settings.min_margin, settings.max_pairs_per_state)
    return pair_rows(scored, pairs, f"{episode.source}#{t}", episode.instruction, settings.variant)


def episodes_pairs(policy, episodes: list[Episode], settings: PairSettings, world_model=None,
                   progress: bool = True) -> list[dict]:
    """Preference rows of every scored state of every episode, with a progress bar over states."""
    from tqdm import tqdm

    if VARIANTS[settings.variant][1] is not None and world_model is None:
        raise ValueError(f"variant {settings.variant} needs a world model (--world-model tiny or vjepa2-ac)")
    horizon = policy.spec.chunk_size
    todo = [(e, t) for e in episodes for t in scored_steps(e, horizon, settings.stride)]
    if not todo:
        raise ValueError(f"no state has {horizon} ground-truth actions ahead (episodes of "
                         f"{[len(e.actions) for e in episodes]} steps): use longer episodes or a smaller chunk_size")
    rows = []
    for episode, t in tqdm(todo, desc="states", unit="state", disable=not progress, dynamic_ncols=True):
        rows.extend(state_pairs(policy, episode, t, settings, world_model))
    return rows


def write_pairs(policy, episodes: list[Episode], settings: PairSettings, out: str | Path, world_model=None,
                progress: bool = True) -> int:
    check_out_file(Path(out), "out")  # before the scoring, which may take hours
    rows = episodes_pairs(policy, episodes, settings, world_model, progress)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    export_pairs(rows, out)
    return len(rows)


def make_world_model(name: str, args: Optional[dict] = None):
    from evalkit.core.arguments import coerce_policy_args

    factory = registry.load("world_model", name)
    try:  # arguments typed as the factory declares them, as policy arguments are
        return factory(**coerce_policy_args(factory, args, f"world model {name!r}"))
    except TypeError as exc:
        raise TypeError(f"world model {name!r} rejected its arguments {args or {}}: {exc}") from exc


class _RecordingEnv:
    """Wraps a suite env: renders every step and keeps each frame and state, skipping the
    protocol's wait steps (they are settling, not demonstration)."""

    def __init__(self, env, wait_steps: int):
        self.env, self.wait_steps = env, wait_steps
        self.frames, self.wrist, self.states = [], [], []

    def reset(self, episode, render: bool) -> None:
        self.env.reset(episode, render=True)
        self.to_skip = self.wait_steps
        if self.to_skip == 0:
            self._keep()

    def step(self, action, render: bool) -> bool:
        success = self.env.step(action, render=True)
        if self.to_skip:
            self.to_skip -= 1
            if self.to_skip == 0:
                self._keep()  # the first frame the policy sees
            return success
        self._keep()
        return success

    def _keep(self) -> None:
        obs = self.env.observation()
        self.frames.append(obs.images[MAIN_CAMERA])
        if WRIST_CAMERA in obs.images:
            self.wrist.append(obs.images[WRIST_CAMERA])
        self.states.append(np.concatenate([np.ravel(v) for v in obs.state.values()]) if obs.state else np.zeros(0))

    def observation(self):
        return self.env.observation()

    def frame(self):
        return self.env.frame()

    def settled_state(self) -> dict:
        return self.env.settled_state()

    def episode_stats(self) -> dict:
        return self.env.episode_stats()

    def close(self) -> None:
        self.env.close()


class _ActionTap:
    """The runner's action postprocessor, keeping each policy action before it is mapped to the
    suite's robot: R_a compares candidates with these, in the policy's own action space."""

    def __init__(self, postprocess):
        self.postprocess, self.actions = postprocess, []

    def reset(self) -> None:
        self.postprocess.reset()

    def __call__(self, action):
        self.actions.append(np.asarray(action, dtype=np.float64))
        return self.postprocess(action)


def record_rollout(suite_name: str, policy, task: int = 0, init: int = 0, seed: int = 0, mode: str = "open_loop",
                   preset: str = "openvla") -> Episode:
    """Run one episode of a suite with the normal episode loop, and keep it as an Episode.

    Actions are the policy's (before the suite's action postprocessing); the rollout's key
    (suite/task/init/seed) is the episode's source."""
    from evalkit.core.execution import wrap
    from evalkit.core.conventions import postprocessor_for
    from evalkit.run.episode import run_episode
    from evalkit.core.suite import EnvOptions

    suite = registry.make_suite(suite_name)
    protocol = registry.load("preset", preset)
    spec = suite.episodes([task], init + 1, seed)[init]
    cameras = tuple(dict.fromkeys((MAIN_CAMERA, *policy.spec.cameras)))
    env = _RecordingEnv(suite.make_env(EnvOptions(cameras=cameras, privileged=policy.spec.privileged,
                                                  render_all=True)), protocol.wait_steps)
    tap = _ActionTap(postprocessor_for(suite, policy.spec))
    try:
        result, _ = run_episode(env, wrap(policy, mode), spec, protocol, postprocess=tap)
    finally:
        env.close()
    if result.termination in ("error", "invalid_action"):
        raise RuntimeError(f"rollout {spec.key} ended as {result.termination}: {result.error.strip()[-300:]}")
    states = np.stack(env.states) if env.states and env.states[0].size else None
    return Episode(np.stack(env.frames), np.stack(tap.actions), spec.instruction, states=states,
                   wrist_frames=np.stack(env.wrist) if env.wrist else None, source=spec.key)
