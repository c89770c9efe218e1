"""The episode loop, with its semantics explicit and recorded (see evalkit.core.protocol).

One function runs one episode on one env with one chunk-executing policy; the
parallel runner calls the same function in each worker, with a policy proxy.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from evalkit.core.conventions import Postprocessor
from evalkit.core.execution import ChunkedPolicy, InvalidAction
from evalkit.core.fingerprint import settle_fingerprint
from evalkit.core.policy import QueryTimeout
from evalkit.core.protocol import Protocol
from evalkit.core.suite import SuiteEnv
from evalkit.core.types import EpisodeResult, EpisodeSpec, Observation
from evalkit.run.video import capture_frame

WAIT_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)  # hold still, gripper open


@dataclass
class _Tally:
    steps: int = 0
    queries: int = 0
    policy_s: float = 0.0
    success: bool = False
    undecodable: int = 0
    settle_fingerprint: str = ""
    frames: list = field(default_factory=list)


def run_episode(
    env: SuiteEnv,
    policy: ChunkedPolicy,
    episode: EpisodeSpec,
    protocol: Protocol,
    video: bool = False,
    postprocess: Optional[Postprocessor] = None,
    prepare_images: Optional[Callable[[Observation], None]] = None,
) -> tuple[EpisodeResult, list]:
    """Run one episode; never raises. Returns the result and the video frames (if any).

    `postprocess` maps each executed action into the suite's robot convention (identity if None);
    `prepare_images` turns the rendered frames into the model's input images before each query
    (the policy's image path; frames as rendered if None).
    """
    start = time.perf_counter()
    tally = _Tally()
    error = ""
    try:
        policy.reset()
        if postprocess is not None:
            postprocess.reset()
        termination = _play(env, policy, episode, protocol, tally, video, postprocess or (lambda a: a),
                            prepare_images or (lambda obs: None))
    except InvalidAction as exc:
        termination, error = "invalid_action", str(exc)
    except QueryTimeout as exc:
        termination, error = "timeout", str(exc)
    except Exception:  # a fault in the policy or env ends this episode only
        termination, error = "error", traceback.format_exc()
    result = EpisodeResult(
        suite=episode.suite,
        task_id=episode.task_id,
        task_name=episode.task_name,
        init_index=episode.init_index,
        seed=episode.seed,
        success=tally.success and termination == "success",
        termination=termination,
        steps=tally.steps,
        queries=tally.queries,
        wall_s=time.perf_counter() - start,
        policy_s=tally.policy_s,
        error=error,
        settle_fingerprint=tally.settle_fingerprint,
        undecodable=tally.undecodable,
        params=episode.param_dict(),
    )
    return result, tally.frames


def _play(env, policy: ChunkedPolicy, episode: EpisodeSpec, protocol: Protocol, tally: _Tally, video: bool,
          postprocess, prepare_images) -> str:
    budget = protocol.budget_for(episode.max_steps)
    count_queries = protocol.budget_unit == "queries"
    check = protocol.success_rule
    _settle(env, episode, protocol.wait_steps, tally, video)
    if video:  # the settled scene, then one frame per step (evalkit/run/video.py)
        tally.frames.append(capture_frame(env, policy.spec.cameras, 0, False))
    while True:
        if policy.needs_query:
            if count_queries and tally.queries >= budget:
                return "success" if tally.success else "budget"
            _query(env, policy, episode, tally, prepare_images)
        if _at_sim_horizon(protocol, tally):
            return "budget"  # the simulator refuses this step; the reference loop counts a failure
        action = _gripper_rule(protocol, postprocess(policy.pop_action()))
        # Render the next frame only if a next query will read it.
        budget_left = tally.queries < budget if count_queries else tally.steps + 1 < budget
        tally.success = env.step(action, render=(policy.needs_query and budget_left) or video)
        tally.steps += 1
        if video:
            tally.frames.append(capture_frame(env, policy.spec.cameras, tally.steps, tally.success, action[-1]))
        if tally.success and (check == "first" or (check == "chunk_end" and policy.needs_query)):
            return "success"
        if not count_queries and tally.steps >= budget:
            return "success" if tally.success else "budget"  # the budget's last step is judged by any rule


def _at_sim_horizon(protocol: Protocol, tally: _Tally) -> bool:
    return protocol.sim_horizon is not None and protocol.wait_steps + tally.steps >= protocol.sim_horizon


def _gripper_rule(protocol: Protocol, action: np.ndarray) -> np.ndarray:
    if protocol.gripper_rule == "nonneg_closes" and action[-1] >= 0:
        action = np.array(action, dtype=np.float64, copy=True)
        action[-1] = 1.0
    return action


def _settle(env, episode: EpisodeSpec, wait_steps: int, tally: _Tally, video: bool) -> None:
    """Reset, then the wait steps; only the last frame (read by the first query) is rendered."""
    env.reset(episode, render=wait_steps == 0 or video)
    for i in range(wait_steps):
        env.step(WAIT_ACTION, render=i == wait_steps - 1 or video)
    tally.settle_fingerprint = settle_fingerprint(env)  # free: the state after the wait steps


def _query(env, policy: ChunkedPolicy, episode: EpisodeSpec, tally: _Tally, prepare_images) -> None:
    obs = env.observation()
    obs.episode_key, obs.step = episode.key, tally.steps
    prepare_images(obs)
    try:
        record = policy.query(obs, episode.instruction)
    except InvalidAction as exc:
        tally.queries += 1
        raise InvalidAction(f"query {tally.queries} at step {tally.steps}: {exc}") from None
    tally.queries += 1
    tally.policy_s += record.seconds
    tally.undecodable += record.undecodable


def describe_run(protocol: Protocol, mode: str, postprocess: Optional[dict] = None) -> dict:
    """The semantics a run's numbers depend on, recorded with its results.

    postprocess: suite name -> the action postprocessor applied there (e.g. "libero_gripper").
    """
    return {
        "protocol": protocol.to_dict(),
        "execution_mode": mode,
        "action_postprocess": postprocess or {},
        "wait_action": WAIT_ACTION.tolist(),
        "budget_note": "wait steps are outside the budget; steps count env steps after them",
    }
