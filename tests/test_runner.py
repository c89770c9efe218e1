"""Episode semantics on the fake suite: budgets, success rules, wait steps, failures, render gating."""

import numpy as np
import pytest

from evalkit.core.execution import wrap
from evalkit.core.protocol import NORA, OPENVLA
from evalkit.run.episode import run_episode
from evalkit.core.suite import EnvOptions
from evalkit.core.types import PolicySpec
from policies.weightfree.basic import ReachPolicy, ZeroPolicy
from suites.fake import FakeEnv, fake_suite

from conftest import CountingPolicy

EPISODE = fake_suite().episodes(task_ids=[0], episodes_per_task=1)[0]


def play(policy, protocol=OPENVLA, mode="open_loop", options=None, episode=EPISODE):
    env = FakeEnv("fake", options or EnvOptions(privileged=policy.spec.privileged, cameras=policy.spec.cameras))
    result, _ = run_episode(env, wrap(policy, mode), episode, protocol)
    return result, env


def test_env_step_budget_counts_steps_after_wait():
    result, env = play(ZeroPolicy(chunk_size=4))
    assert (result.termination, result.steps, result.queries) == ("budget", 60, 15)
    assert env.t == 60 + OPENVLA.wait_steps


def test_query_budget_counts_chunks_as_in_nora():
    result, _ = play(ZeroPolicy(chunk_size=5), NORA.with_overrides(budget=7))
    assert (result.termination, result.steps, result.queries) == ("budget", 35, 7)


def test_first_success_ends_episode_and_last_rule_runs_to_budget():
    first, _ = play(ReachPolicy())
    assert first.success and first.termination == "success" and first.steps < 60
    last, _ = play(ReachPolicy(), OPENVLA.with_overrides(success_rule="last"))
    assert last.success and last.steps == 60  # stays on target to the end


def test_last_rule_judges_only_the_final_step():
    class ReachThenLeave(ReachPolicy):
        def act(self, obs, instruction):
            chunk = super().act(obs, instruction)
            if obs.step >= 40:
                chunk[:, 0] = 1.0  # walk away from the target
            return chunk

    first, _ = play(ReachThenLeave())
    last, _ = play(ReachThenLeave(), OPENVLA.with_overrides(success_rule="last"))
    assert first.success and not last.success and last.termination == "budget"


@pytest.mark.parametrize("bad, message", [
    (np.full((1, 7), np.nan), "non-finite"),
    (np.zeros((2, 6)), "expected \\(N, 7\\)"),
    ("left", "not numeric"),
])
def test_invalid_action_ends_episode_with_clear_message(bad, message):
    class Bad(ZeroPolicy):
        def act(self, obs, instruction):
            return bad

    result, _ = play(Bad())
    assert result.termination == "invalid_action" and not result.success
    assert result.queries == 1 and result.steps == 0
    assert __import__("re").search(message, result.error)


def test_policy_exception_is_recorded_with_traceback():
    class Broken(ZeroPolicy):
        def act(self, obs, instruction):
            raise RuntimeError("checkpoint exploded")

    result, _ = play(Broken())
    assert result.termination == "error" and "checkpoint exploded" in result.error and "Traceback" in result.error


def test_env_exception_is_recorded():
    episode = fake_suite().episodes(task_ids=[1], episodes_per_task=1)[0]
    env = FakeEnv("fake_fragile", EnvOptions(), fail_on_task=1)
    result, _ = run_episode(env, wrap(ZeroPolicy()), episode, OPENVLA)
    assert result.termination == "error" and "fake simulator fault" in result.error


def test_renders_only_frames_that_a_query_reads():
    spec_cams = ("agentview", "robot0_eye_in_hand")
    policy = ZeroPolicy(chunk_size=4)
    policy.spec = PolicySpec(cameras=spec_cams, chunk_size=4)
    gated, env_gated = play(policy)
    full, env_full = play(policy, options=EnvOptions(cameras=spec_cams, render_all=True))
    assert (gated.steps, gated.queries, gated.termination) == (full.steps, full.queries, full.termination)
    assert env_gated.renders == 2 * gated.queries  # two cameras, once per query
    assert env_full.renders == 2 * (1 + OPENVLA.wait_steps + full.steps)


def test_policy_sees_flipped_state_and_step_index():
    seen = []

    class Spy(CountingPolicy):
        def act(self, obs, instruction):
            seen.append((obs.episode_key, obs.step, instruction))
            return super().act(obs, instruction)

    play(Spy(chunk_size=4), OPENVLA.with_overrides(budget=8))
    assert seen == [(EPISODE.key, 0, EPISODE.instruction), (EPISODE.key, 4, EPISODE.instruction)]


def test_executed_actions_go_through_the_suite_postprocessor():
    from evalkit.core.conventions import Postprocessor

    class RecordingEnv(FakeEnv):
        def step(self, action, render):
            self.sent.append(np.array(action))
            return super().step(action, render)

    env = RecordingEnv("fake", EnvOptions())
    env.sent = []
    policy = ZeroPolicy(chunk_size=2)
    chunk = np.zeros((2, 7))
    chunk[:, 6] = [0.9, 0.1]  # model convention: 0.9 open, 0.1 closed
    policy.act = lambda obs, text: chunk
    run_episode(env, wrap(policy, "open_loop"), EPISODE, OPENVLA.with_overrides(budget=4), False,
                Postprocessor("libero", "rlds"))
    executed = [a[6] for a in env.sent[OPENVLA.wait_steps:]]
    assert executed == [-1.0, 1.0, -1.0, 1.0]  # LIBERO: -1 open, +1 close
