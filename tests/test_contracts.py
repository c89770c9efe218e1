"""`evalkit check`: the contract checker passes the shipped weight-free policies and fake suites, and
fails deliberately broken ones with a message that says what is wrong."""

import dataclasses

import numpy as np
import pytest

from evalkit.checks.contracts import FAIL, PASS, SKIP, check_policy, check_suite, failed
from evalkit.cli import main
from evalkit.core import registry
from evalkit.core.settings import SettingError
from evalkit.core.suite import Suite, TaskInfo
from evalkit.core.types import PolicySpec
from suites.fake import CAMERAS, FakeEnv

HERE = __name__  # broken policies and suites below are checked by "module:attr" name


def statuses(findings) -> dict:
    return {f.check: f.status for f in findings}


def the(findings, check):
    return next(f for f in findings if f.check == check)


# -- what ships passes -------------------------------------------------------------------------------


def weight_free_policies() -> list[str]:
    return [name for name in registry.names("policy")
            if registry.target("policy", name).startswith("policies.weightfree.")]


@pytest.fixture
def replay_file(tmp_path):
    path = tmp_path / "actions.npy"
    np.save(path, np.random.default_rng(0).uniform(-1, 1, (20, 7)))
    return str(path)


@pytest.mark.parametrize("name", weight_free_policies())
@pytest.mark.parametrize("chunk_size", ["1", "3"])
def test_every_weight_free_policy_passes(name, chunk_size, replay_file):
    args = {"chunk_size": chunk_size, **({"path": replay_file} if name == "replay" else {})}
    findings = check_policy(name, args)
    assert not failed(findings), findings
    if name == "oracle":  # LIBERO's privileged state is not in the fake suite's observations
        act = the(findings, "act")
        assert act.status == SKIP and "needs privileged simulator state" in act.message
    else:
        assert {"act", "dtype", "shape", "finite", "determinism"} <= {f.check for f in findings if f.status == PASS}


def test_weight_free_policies_include_the_shipped_ones():
    assert {"zero", "random", "replay", "scripted-reach", "oracle"} <= set(weight_free_policies())


def test_observations_from_a_named_suite():
    findings = check_policy("random", {"cameras": "agentview,robot0_eye_in_hand", "seed": "3"}, suite="fake")
    assert not failed(findings) and "suite 'fake'" in the(findings, "act").message
    assert not failed(check_policy("scripted-reach", suite="fake_fragile"))
    # a suite the user named is not skipped: the oracle fails on the fake suite's state
    assert the(check_policy("oracle", suite="fake"), "act").status == FAIL


@pytest.mark.parametrize("name", ["fake", "fake_fragile"])
def test_fake_suites_pass(name):
    findings = check_suite(name, cameras=CAMERAS)
    assert not failed(findings), findings
    assert statuses(findings) == {"episode grid": PASS, "step": PASS, "cameras": PASS, "reset determinism": PASS,
                                  "close": PASS}


# -- broken policies ---------------------------------------------------------------------------------


class Base:
    def __init__(self, chunk_size: int = 1, seed: int = 0):
        self.spec = PolicySpec(chunk_size=chunk_size)
        self.seed = seed

    def reset(self):
        pass

    def act(self, obs, instruction):
        return np.full((self.spec.chunk_size, 7), 0.1 * obs.step)


class WrongShape(Base):
    def act(self, obs, instruction):
        return np.zeros((1, 6))


class ChunkSizeDisagrees(Base):
    """Declares chunks of 4 and returns 2 rows."""

    def __init__(self):
        super().__init__(chunk_size=4)

    def act(self, obs, instruction):
        return np.zeros((2, 7))


class ReturnsNaN(Base):
    def act(self, obs, instruction):
        chunk = super().act(obs, instruction)
        chunk[0, 3] = np.nan
        return chunk


class ReturnsInts(Base):
    def act(self, obs, instruction):
        return np.zeros((1, 7), dtype=np.int64)


class DrawsInCallOrder(Base):
    """Seeded once: a second episode, or a resumed run, gets other actions."""

    def __init__(self, seed: int = 0):
        super().__init__(seed=seed)
        self.rng = np.random.default_rng(seed)

    def act(self, obs, instruction):
        return self.rng.uniform(-1, 1, (1, 7))


class ReseedsOnReset(DrawsInCallOrder):
    """Reproducible episode by episode, but an observation's answer depends on the queries before it."""

    def reset(self):
        self.rng = np.random.default_rng(self.seed)


class BatchDiffers(Base):
    def act_batch(self, observations, instructions):
        return [self.act(o, t) + 0.25 for o, t in zip(observations, instructions)]


class BatchDropsOne(Base):
    def act_batch(self, observations, instructions):
        return [self.act(o, t) for o, t in zip(observations, instructions)][:-1]


class Raises(Base):
    def act(self, obs, instruction):
        raise RuntimeError("model exploded")


class NoSpec(Base):
    def __init__(self):
        self.spec = {"chunk_size": 1}


class ConstructorFails(Base):
    def __init__(self):
        raise OSError("checkpoint not found: /nowhere")


class StatefulCounter(Base):
    """A correct stateful policy with act_batch: its chunk counts the queries of the episode."""

    def __init__(self):
        super().__init__()
        self.spec = dataclasses.replace(self.spec, stateful=True)
        self.calls = 0

    def reset(self):
        self.calls = 0

    def act(self, obs, instruction):
        self.calls += 1
        return np.full((1, 7), float(self.calls))

    def act_batch(self, observations, instructions):
        return [self.act(o, t) for o, t in zip(observations, instructions)]


class StatefulBatchSkipsState(StatefulCounter):
    def act_batch(self, observations, instructions):
        return [np.full((1, 7), 1.0) for _ in observations]


@pytest.mark.parametrize("policy, check, message", [
    ("WrongShape", "shape", "returned shape (1, 6); the spec says (chunk_size, action_dim) = (1, 7)"),
    ("ChunkSizeDisagrees", "shape", "returned shape (2, 7); the spec says (chunk_size, action_dim) = (4, 7)"),
    ("ReturnsNaN", "finite", "non-finite value at row 0, dim 3"),
    ("ReturnsInts", "dtype", "dtype int64; chunks must be floats"),
    ("DrawsInCallOrder", "determinism", "the same observations after reset() gave different chunks"),
    ("ReseedsOnReset", "order", "depends on the queries asked before it"),
    ("BatchDiffers", "act_batch", "act_batch differs from a loop of act (query 0: max difference 0.25)"),
    ("BatchDropsOne", "act_batch", "act_batch returned 2 chunks for 3 observations"),
    ("StatefulBatchSkipsState", "act_batch", "act_batch differs from a loop of act (query 1"),
    ("Raises", "act", "act raised RuntimeError: model exploded"),
    ("NoSpec", "spec", "policy.spec must be an evalkit.core.types.PolicySpec, got dict"),
    ("ConstructorFails", "build", "could not be built: OSError: checkpoint not found"),
])
def test_broken_policies_fail(policy, check, message):
    findings = check_policy(f"{HERE}:{policy}")
    assert failed(findings)
    assert the(findings, check).status == FAIL and message in the(findings, check).message, findings
    also = ["order"] if policy == "DrawsInCallOrder" else []  # call-order draws also fail the order check
    assert [f.check for f in findings if f.status == FAIL] == [check, *also]  # one problem, one failure


def test_a_correct_stateful_policy_passes():
    findings = check_policy(f"{HERE}:StatefulCounter")
    assert not failed(findings) and the(findings, "act_batch").status == PASS
    assert "order" not in statuses(findings)  # a stateful policy serves one episode: order is its state


def test_reseeding_policies_pass_determinism():
    assert the(check_policy(f"{HERE}:ReseedsOnReset"), "determinism").status == PASS


def test_bad_input_raises():
    with pytest.raises(registry.UnknownNameError):
        check_policy("no-such-policy")
    with pytest.raises(SettingError, match="chunk_sise"):
        check_policy("zero", {"chunk_sise": "2"})
    with pytest.raises(registry.UnknownNameError):
        check_policy("zero", suite="no-such-suite")
    with pytest.raises(registry.UnknownNameError):
        check_suite("no-such-suite")


# -- broken suites -----------------------------------------------------------------------------------


class UnseededEnv(FakeEnv):
    def reset(self, episode, render):
        super().reset(episode, render)
        self.pos = self.pos + np.random.default_rng().uniform(-0.1, 0.1, 2)  # not from the episode's seed


class DropsACamera(FakeEnv):
    def observation(self):
        obs = super().observation()
        obs.images.pop("robot0_eye_in_hand", None)
        return obs


class FloatFlag(FakeEnv):
    def step(self, action, render):
        super().step(action, render)
        return 0.0


def _suite(name, env_class, tasks=1) -> Suite:
    return Suite(name=name, max_steps=20, episodes_per_task=3, family="Fake",
                 tasks=[TaskInfo(i, f"reach_{i}", f"reach target {i}") for i in range(tasks)],
                 env_factory=lambda suite_name, options: env_class(suite_name, options), info={"cameras": CAMERAS})


def unseeded_suite(name):
    return _suite(name, UnseededEnv)


def camera_dropping_suite(name):
    return _suite(name, DropsACamera)


def float_flag_suite(name):
    return _suite(name, FloatFlag)


def empty_suite(name):
    return _suite(name, FakeEnv, tasks=0)


@pytest.mark.parametrize("suite, check, message", [
    ("unseeded_suite", "reset determinism", "reset twice with the same actions: state 'eef_pos' differs after reset"),
    ("camera_dropping_suite", "cameras", "missing ['robot0_eye_in_hand']"),
    ("float_flag_suite", "step", "step returned float 0.0; it must return a bool"),
    ("empty_suite", "episode grid", "episodes() is empty"),
])
def test_broken_suites_fail(suite, check, message):
    findings = check_suite(f"{HERE}:{suite}")  # cameras from suite.info["cameras"]
    assert the(findings, check).status == FAIL and message in the(findings, check).message, findings
    assert [f.check for f in findings if f.status == FAIL] == [check]


# -- the command -------------------------------------------------------------------------------------


def test_check_command_exit_codes(capsys, replay_file):
    assert main(["check", "policy", "zero"]) == 0
    assert main(["check", "policy", "replay", "--policy-arg", f"path={replay_file}",
                 "--policy-arg", "chunk_size=2"]) == 0
    assert main(["check", "policy", "oracle"]) == 0  # skipped checks are not failures
    assert main(["check", "suite", "fake", "--cameras", "agentview,robot0_eye_in_hand"]) == 0
    out = capsys.readouterr().out
    assert "evalkit check policy zero" in out and "0 failed" in out and "skipped  act" in out

    assert main(["check", "policy", f"{HERE}:ReturnsNaN"]) == 1
    assert main(["check", "suite", f"{HERE}:camera_dropping_suite"]) == 1
    out = capsys.readouterr().out
    assert "FAIL     finite" in out and "1 failed" in out

    assert main(["check", "policy", "randm"]) == 2
    assert "Did you mean 'random'" in capsys.readouterr().err
    assert main(["check", "policy", "zero", "--policy-arg", "chunk_sise=2"]) == 2
    assert main(["check", "policy", "zero", "--policy-arg", "chunk_size"]) == 2  # not KEY=VALUE
    assert main(["check", "suite", "no-such-suite"]) == 2
