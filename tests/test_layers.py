"""Issue 13: the layers (imports only run down), one chunk step, one mode spelling, the SuiteEnv
contract's optional capabilities, per-episode parameters stored, and suites' report hooks."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from evalkit.core.execution import normalize_mode, wrap
from evalkit.core.fingerprint import settle_fingerprint
from evalkit.core.protocol import OPENVLA
from evalkit.core.suite import SuiteEnvBase
from evalkit.results.report import report_runs
from evalkit.results.store import ResultStore
from evalkit.run.driver import RunConfig, execute
from evalkit.run.episode import run_episode
from suites.fake import FakeEnv, fake_suite
from evalkit.core.suite import EnvOptions

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_in_evalkit_imports_suites_or_policies():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] in ("suites", "policies"))
                 for p in (ROOT / "evalkit").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_imports_no_other_layer_and_no_torch():
    offenders = {}
    for path in (ROOT / "evalkit" / "core").rglob("*.py"):
        bad = [m for m in imported_modules(path)
               if m.split(".")[0] in ("torch", "transformers", "suites", "policies")
               or (m.startswith("evalkit.") and not m.startswith("evalkit.core"))]
        if bad:
            offenders[path.name] = bad
    assert offenders == {}


def test_the_runner_reaches_the_policy_only_through_the_wrappers_query(monkeypatch):
    from conftest import CountingPolicy

    policy = wrap(CountingPolicy(chunk_size=4), "receding:2")
    calls = []
    query = policy.query
    monkeypatch.setattr(policy, "query", lambda obs, text: calls.append(obs.step) or query(obs, text))
    monkeypatch.setattr(policy.policy, "act", _forbidden_unless_via(policy, calls))
    episode = fake_suite().episodes([0], 1)[0]
    result, _ = run_episode(FakeEnv("fake", EnvOptions()), policy, episode, OPENVLA)
    assert result.termination == "budget" and result.queries == len(calls) == 30
    assert calls[:3] == [0, 2, 4]  # receding:2 re-plans every two steps


def _forbidden_unless_via(policy, calls):
    original = policy.policy.act

    def act(obs, text):
        assert calls and calls[-1] == obs.step, "the runner called the policy around the wrapper's query"
        return original(obs, text)
    return act


def test_the_wrappers_query_validates_times_and_queues():
    from evalkit.core.execution import InvalidAction
    from conftest import CountingPolicy

    policy = wrap(CountingPolicy(chunk_size=4))
    record = policy.query(_obs(), "go")
    assert record.seconds >= 0 and not record.undecodable and not policy.needs_query
    assert [policy.pop_action()[0] for _ in range(4)] == [0, 1, 2, 3] and policy.needs_query
    policy.policy.act = lambda obs, text: np.full((4, 7), np.nan)
    with pytest.raises(InvalidAction, match="finite|NaN|nan"):
        policy.query(_obs(), "go")


def _obs():
    from evalkit.core.types import Observation

    return Observation(images={}, episode_key="fake/0/0/0", step=0)


@pytest.mark.parametrize("spelled, normal", [("open_loop", "open_loop"), ("receding:3", "receding:3"),
                                             ("ensemble", "ensemble:-0.8"), ("ensemble:-0.80", "ensemble:-0.8"),
                                             ("ensemble:0.5", "ensemble:0.5"), ("reference", "reference")])
def test_a_mode_has_one_spelling(spelled, normal):
    assert normalize_mode(spelled) == normal
    config = RunConfig.from_dict({"suites": ["fake"], "policy": "random", "mode": spelled})
    assert config.mode == normal and config.identity()["mode"] == normal
    assert normal.replace(":", "-") in str(config.out_dir())


def test_two_spellings_of_one_mode_resume_one_run(tmp_path):
    base = {"suites": ["fake"], "policy": "random", "policy_args": {"chunk_size": 3}, "out": str(tmp_path / "run")}
    execute(RunConfig.from_dict({**base, "mode": "ensemble", "episodes_per_task": 1}), progress=False)
    execute(RunConfig.from_dict({**base, "mode": "ensemble:-0.80", "episodes_per_task": 2}), progress=False)
    with ResultStore(tmp_path / "run", readonly=True) as store:
        assert len(store.results()) == 8 and store.meta("identity")["mode"] == "ensemble:-0.8"
        assert store.meta("semantics")["execution_mode"] == "ensemble:-0.8"


def test_an_older_store_with_a_raw_mode_resumes(tmp_path):
    base = {"suites": ["fake"], "policy": "random", "policy_args": {"chunk_size": 3}, "out": str(tmp_path / "run"),
            "mode": "ensemble"}
    execute(RunConfig.from_dict({**base, "episodes_per_task": 1}), progress=False)
    with ResultStore(tmp_path / "run") as store:  # as evalkit wrote it before modes were normalised
        store.set_meta("identity", {**store.meta("identity"), "mode": "ensemble"})
    execute(RunConfig.from_dict({**base, "episodes_per_task": 2}), progress=False)


class Bare(SuiteEnvBase):
    """An env offering neither fingerprints nor statistics."""


def test_optional_env_capabilities_have_defaults_in_the_contract():
    env = Bare()
    assert env.settled_state() == {} and env.episode_stats() == {} and settle_fingerprint(env) == ""
    assert settle_fingerprint(_settled(FakeEnv("fake", EnvOptions()))) != ""


def _settled(env):
    env.reset(fake_suite().episodes([0], 1)[0], render=False)
    return env


def test_each_result_stores_its_episodes_parameters(tmp_path):
    from suites.simpler import fake as fake_simpler  # noqa: F401  (the params come from the grid, not the sim)
    from evalkit.core import registry

    suite = registry.make_suite("simpler_coke_can_vm")
    episode = suite.episodes([0], 1)[0]
    from evalkit.run.workers import episode_error

    result = episode_error(episode, "not run")
    assert result.params == episode.param_dict()
    with ResultStore(tmp_path) as store:
        store.add(result)
        stored = store.results()[0].params
    assert stored["env_id"] == episode.param_dict()["env_id"]
    assert stored == episode.param_dict()  # tuples come back as tuples
    from suites.simpler.report import _all_params

    [(_, params)] = _all_params([dataclasses.replace(result, params=stored)])
    assert params == {**episode.param_dict(), "setting": suite.setting}  # lists back to tuples


def test_a_suite_contributes_its_own_report_section_through_its_hook(tmp_path, monkeypatch):
    import suites.fake as fake_module

    monkeypatch.setattr(fake_module, "fake_suite",
                        lambda name="fake": dataclasses.replace(_plain_fake(name), report_hook="test_layers:HOOK"))
    out = execute(RunConfig.from_dict({"suites": ["fake"], "policy": "random", "policy_args": {"chunk_size": 3},
                                       "episodes_per_task": 1, "out": str(tmp_path / "run")}), progress=False)
    text = report_runs([out])
    assert "## Fake extra table" in text and "| fake | 4 |" in text and f"{out}: hooked note" in text
    with pytest.raises(ValueError, match="--sim2real needs runs of a suite that reports it"):
        report_runs([out], sim2real=["rt-1-x"])


_plain_fake = fake_suite


class _Hook:
    options = ()

    def notes(self, run_dir, suites_meta, results):
        return [f"{run_dir}: hooked note"]

    def sections(self, runs, options):
        return [("Fake extra table", (["suite", "episodes"], [["fake", str(sum(len(r) for _, r in runs))]]))]


HOOK = _Hook()
