"""Protocol fidelity points of issue 10, on the fake suite and hand-worked values:
when success is checked, NORA's gripper rule and robosuite's horizon, the two sticky-gripper
variants, reference execution modes, overlapping suites, settled-state fingerprints (runs,
compare, report, doctor), older stores, and NORA's LIBERO unnormalisation keys."""

import dataclasses
import json
import sqlite3

import numpy as np
import pytest

from evalkit.checks import doctor as doctor_mod
from evalkit.cli import main
from evalkit.core.conventions import Postprocessor, StickyGripper
from evalkit.core.execution import wrap
from evalkit.core.fingerprint import state_fingerprint
from evalkit.core.protocol import NORA, OPENVLA, Protocol, same_protocol
from evalkit.core.registry import make_suite
from evalkit.run.driver import RunConfig, execute, refuse_overlapping_suites, resolve_mode
from evalkit.run.episode import run_episode
from evalkit.results.store import ResultStore
from evalkit.core.suite import EnvOptions, Suite, TaskInfo
from evalkit.core.types import EpisodeSpec, PolicySpec
from policies.weightfree.basic import ZeroPolicy
from suites import fake
from evalkit.core.suite import SuiteEnvBase

EPISODE = EpisodeSpec("scripted", 0, "t", "do it", 0, 0, max_steps=60)


class ScriptedEnv(SuiteEnvBase):
    """Success flag as a function of the policy step: `success_at` holds the (1-based) steps
    after the wait steps at which the task reads as done. Records every executed action."""

    def __init__(self, success_at=(), wait_steps=10):
        self.success_at, self.wait_steps = set(success_at), wait_steps
        self.actions = []

    def reset(self, episode, render):
        self.t = 0

    def step(self, action, render):
        self.t += 1
        self.actions.append(np.array(action))
        return (self.t - self.wait_steps) in self.success_at

    def observation(self):
        from evalkit.core.types import Observation

        return Observation()

    def close(self):
        pass


class Chunks:
    """Returns the same chunk every query (gripper column configurable)."""

    def __init__(self, chunk_size=5, gripper=-1.0):
        self.spec = PolicySpec(chunk_size=chunk_size)
        self.gripper = gripper

    def reset(self):
        pass

    def act(self, obs, instruction):
        chunk = np.zeros((self.spec.chunk_size, 7))
        chunk[:, 6] = self.gripper
        return chunk


def play(protocol, success_at=(), chunk=5, mode="open_loop", gripper=-1.0):
    env = ScriptedEnv(success_at, protocol.wait_steps)
    result, _ = run_episode(env, wrap(Chunks(chunk, gripper), mode), EPISODE, protocol)
    return result, env


# -- when success is checked ----------------------------------------------------------------

def test_success_mid_chunk_ends_the_episode_only_under_the_every_step_rule():
    first, _ = play(OPENVLA, success_at={3})
    assert (first.success, first.steps) == (True, 3)
    chunk_end, _ = play(NORA, success_at={3})  # undone by the chunk's last step: not counted
    assert not chunk_end.success and chunk_end.steps > 3


def test_chunk_end_counts_a_success_holding_at_the_chunk_end_with_the_whole_chunk_run():
    result, _ = play(NORA, success_at=set(range(3, 1000)))
    assert (result.success, result.termination, result.steps, result.queries) == (True, "success", 5, 1)
    second, _ = play(NORA, success_at=set(range(8, 1000)))
    assert (second.success, second.steps, second.queries) == (True, 10, 2)


def test_chunk_end_with_receding_checks_after_each_executed_part():
    result, _ = play(NORA, success_at=set(range(3, 1000)), mode="receding:2")
    assert (result.success, result.steps, result.queries) == (True, 4, 2)


# -- NORA's gripper rule and robosuite's horizon ----------------------------------------------

@pytest.mark.parametrize("given, executed", [(0.0, 1.0), (-0.0, 1.0), (0.3, 1.0), (1.0, 1.0), (-1.0, -1.0)])
def test_nora_gripper_rule_closes_on_zero_and_above(given, executed):
    _, env = play(NORA.with_overrides(budget=1), gripper=given)
    assert [a[6] for a in env.actions[NORA.wait_steps:]] == [executed] * 5
    _, plain = play(OPENVLA.with_overrides(budget=5), gripper=given)
    assert plain.actions[-1][6] == given


def test_sim_horizon_ends_a_long_chunked_episode_as_robosuite_does():
    # 500 queries x 5 actions would be 2,500 steps; robosuite refuses the step after its horizon of
    # 1,000 (wait steps included): 990 policy steps, and the 199th query is made before the refusal.
    result, env = play(NORA)
    assert (result.termination, result.success, result.steps, result.queries) == ("budget", False, 990, 199)
    assert env.t == 1000
    success_on_last_chunk, _ = play(NORA, success_at={990})
    assert success_on_last_chunk.success and success_on_last_chunk.steps == 990
    chunk1, _ = play(NORA, chunk=1)  # NORA (horizon 1): the 500 queries end first
    assert (chunk1.steps, chunk1.queries) == (500, 500)


def test_protocol_validation_names_the_choices():
    with pytest.raises(ValueError, match="chunk_end"):
        OPENVLA.with_overrides(success_rule="sometimes")
    with pytest.raises(ValueError, match="nonneg_closes"):
        OPENVLA.with_overrides(gripper_rule="closed")


def test_older_stored_protocols_compare_equal_with_defaults_filled_in():
    old = {k: v for k, v in OPENVLA.to_dict().items() if k not in ("gripper_rule", "sim_horizon")}
    assert same_protocol(old, OPENVLA.to_dict())
    assert not same_protocol(old, NORA.to_dict())
    assert Protocol.from_dict(old) == OPENVLA


# -- sticky gripper variants --------------------------------------------------------------------

def test_sticky_variants_on_a_slow_ramp():
    ramp = [round(1.0 - 0.1 * i, 1) for i in range(11)] + [0.0] * 20
    every = StickyGripper(15, "every_step")
    assert all(abs(every(g)) < 0.5 for g in ramp)  # steps of 0.1 never trigger
    start = StickyGripper(15, "on_sticky_start")
    out = [start(g) for g in ramp]
    # previous stays 1.0 until 0.4 (1.0 - 0.4 = 0.6 > 0.5): then 0.6 is held for 15 steps
    assert out[:6] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert out[6:21] == pytest.approx([0.6] * 15)
    assert out[21] == pytest.approx(0.4 - 0.0)  # previous was updated to 0.4 when the hold started


def test_sticky_variant_comes_from_the_policy_spec_and_is_named():
    post = Postprocessor("google_robot", "rlds", 10, "on_sticky_start")
    assert post.name == "euler_to_axis_angle+sticky_gripper(10,on_sticky_start)"
    with pytest.raises(ValueError, match="on_sticky_start"):
        StickyGripper(15, "sometimes")


# -- reference modes and overlapping suites -----------------------------------------------------

def test_reference_mode_resolves_per_robot_and_says_what_is_missing():
    libero, google = make_suite("fake"), make_suite("simpler_google_vm")
    libero.robot = "libero"
    spec = PolicySpec(reference_modes=(("libero", "open_loop"), ("google_robot", "ensemble:-0.8")))
    assert resolve_mode("reference", "p", spec, [libero]) == "open_loop"
    assert resolve_mode("reference", "p", spec, [google]) == "ensemble:-0.8"
    assert resolve_mode("receding:2", "p", spec, [google]) == "receding:2"
    with pytest.raises(ValueError, match="differ across these suites"):
        resolve_mode("reference", "p", spec, [libero, google])
    with pytest.raises(ValueError, match="no reference execution mode for widowx"):
        resolve_mode("reference", "p", spec, [make_suite("simpler_bridge")])


def test_reference_mode_is_recorded_resolved(tmp_path, monkeypatch):
    monkeypatch.setattr(fake, "fake_suite", _libero_like_fake)
    from evalkit.core import registry

    registry.register("policy", "test-nora-like", "test_fidelity:NoraLike")
    out = execute(RunConfig(suites=["fake"], policy="test-nora-like", mode="reference", episodes_per_task=1,
                            out=str(tmp_path / "run")), progress=False)
    with ResultStore(out, readonly=True) as store:
        semantics, identity = store.meta("semantics"), store.meta("identity")
    assert (semantics["execution_mode"], semantics["mode_requested"], identity["mode"]) == \
        ("receding:2", "reference", "receding:2")


class NoraLike(ZeroPolicy):
    def __init__(self):
        super().__init__(chunk_size=5)
        self.spec = PolicySpec(chunk_size=5, reference_modes=(("libero", "receding:2"),))


def _libero_like_fake(name="fake"):
    suite = Suite(name=name, max_steps=20, episodes_per_task=2, family="Fake", robot="libero",
                  tasks=[TaskInfo(0, "reach_target_0", "reach target 0")], env_factory=fake._make_env)
    return suite


def test_overlapping_suites_are_refused():
    vm, coke = make_suite("simpler_google_vm"), make_suite("simpler_coke_can_vm")
    episodes = vm.episodes(episodes_per_task=2) + coke.episodes(episodes_per_task=2)
    with pytest.raises(ValueError, match="simpler_google_vm and simpler_coke_can_vm"):
        refuse_overlapping_suites(episodes)
    refuse_overlapping_suites(vm.episodes(episodes_per_task=2) + make_suite("simpler_bridge").episodes(
        episodes_per_task=2))


# -- fingerprints ----------------------------------------------------------------------------------

def test_state_fingerprint_ignores_noise_below_a_millimetre_and_sees_more():
    state = {"bowl": np.array([0.1, 0.2, 0.9]), "arm": np.array([0.0, -0.0])}
    assert state_fingerprint(state) == state_fingerprint({"bowl": state["bowl"] + 1e-6, "arm": np.zeros(2)})
    assert state_fingerprint(state) != state_fingerprint({**state, "bowl": state["bowl"] + [0, 0, 0.01]})


def fake_run(tmp_path, name, episodes_per_task=3, **kw):
    return str(execute(RunConfig(suites=["fake"], policy="scripted-reach", episodes_per_task=episodes_per_task,
                                 out=str(tmp_path / name), **kw), progress=False))


def test_runs_record_settled_fingerprints_and_compare_refuses_other_physics(tmp_path, monkeypatch, capsys):
    base = fake_run(tmp_path, "base")
    with ResultStore(base, readonly=True) as store:
        prints = {r.key: r.settle_fingerprint for r in store.results()}
    assert all(prints.values()) and len(set(prints.values())) == len(prints)
    assert main(["compare", base, fake_run(tmp_path, "same")]) == 0
    monkeypatch.setattr(fake, "SETTLE_SHIFT", 0.02)  # another simulator version, say
    capsys.readouterr()
    assert main(["compare", base, fake_run(tmp_path, "drifted")]) == 2
    out = capsys.readouterr().out
    assert "settled-state fingerprints differ" in out and "fake task 0" in out and "fake task 3" in out


def test_report_marks_a_run_made_on_a_drifted_simulator(tmp_path, monkeypatch, capsys):
    reference = tmp_path / "fake.json"
    reference.write_text(json.dumps(doctor_mod.reference_file([fake.fake_suite()], OPENVLA.wait_steps, ("numpy",))))
    monkeypatch.setattr(fake, "fake_suite", lambda name="fake": _with_reference(name, reference))
    clean = fake_run(tmp_path, "clean", episodes_per_task=1)
    monkeypatch.setattr(fake, "SETTLE_SHIFT", 0.02)
    drifted = fake_run(tmp_path, "drifted", episodes_per_task=1)
    capsys.readouterr()
    main(["report", clean])
    assert "DRIFTED" not in capsys.readouterr().out
    main(["report", drifted])
    out = capsys.readouterr().out
    assert "DRIFTED SIMULATOR" in out and "fake task 2" in out


ORIGINAL_FAKE_SUITE = fake.fake_suite


def _with_reference(name, reference):
    return dataclasses.replace(ORIGINAL_FAKE_SUITE(name), fingerprint_file=str(reference))


def test_doctor_says_consistent_then_names_the_drifted_tasks(tmp_path, monkeypatch):
    reference = tmp_path / "fake.json"
    reference.write_text(json.dumps(doctor_mod.reference_file([fake.fake_suite()], 10, ("numpy",))))
    monkeypatch.setattr(fake, "fake_suite", lambda name="fake": _with_reference(name, reference))
    lines = []
    assert doctor_mod.doctor(["fake"], echo=lines.append) == 0
    assert lines == ["fake: consistent (4 settled states match the reference)"]
    monkeypatch.setattr(fake, "SETTLE_SHIFT", 0.02)
    lines.clear()
    assert doctor_mod.doctor(["fake"], echo=lines.append) == 1
    assert "fake: DRIFT in 4 of 4 settled states: task 0 init 0 (max joint/pose difference 0.020)" in lines[0]


def test_doctor_reports_a_missing_simulator_as_such():
    suite = make_suite("simpler_bridge")
    suite.fingerprint_file = "unused"
    suite.reference_fingerprints = lambda: {"wait_steps": 0, "versions": {}, "episodes": {}}
    suite.env_factory = lambda name, options: (_ for _ in ()).throw(ImportError("No module named 'simpler_env'"))
    check = doctor_mod.check_suite(suite)
    assert check.status == doctor_mod.UNAVAILABLE and "simpler_env" in check.detail


# -- older stores ----------------------------------------------------------------------------------

def test_a_v1_store_is_read_and_upgraded_in_place(tmp_path):
    run = fake_run(tmp_path, "run", episodes_per_task=1)
    db = sqlite3.connect(f"{run}/results.sqlite")  # make it look like a v1 store
    db.execute("ALTER TABLE episodes DROP COLUMN settle_fingerprint")
    db.execute("ALTER TABLE episodes DROP COLUMN params")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with ResultStore(run, readonly=True) as store:
        assert [(r.settle_fingerprint, r.params) for r in store.results()] == [("", {})] * 4
    fake_run(tmp_path, "run", episodes_per_task=2)  # resumes: upgrades, adds the new episodes
    with ResultStore(run, readonly=True) as store:
        results = store.results()
        assert store.meta("schema_version") == 3
    assert len(results) == 8 and sum(bool(r.settle_fingerprint) for r in results) == 4


# -- NORA's LIBERO unnormalisation keys ------------------------------------------------------------

def test_nora_bare_libero_suite_names_use_its_built_in_statistics(tmp_path):
    from policies.nora.nora import load_stats

    stats = load_stats(tmp_path, None, "libero_spatial")  # a checkpoint folder with no stats file
    assert stats.q01[0] == pytest.approx(-0.7454732114076613) and stats.q99[6] == 1.0 and stats.mask.all()
    assert np.array_equal(load_stats(tmp_path, None, "libero_90").q99, load_stats(tmp_path, None, "libero_10").q99)


# -- image paths, applied by the harness and recorded -------------------------------------------------

class SeesImages:
    """Records the images it is given; declares per-robot reference image paths like the adapters."""

    seen: list = []

    def __init__(self, image_path="reference"):
        self.spec = PolicySpec(cameras=("agentview",), chunk_size=5, image_path=image_path, image_size=8,
                               image_paths=(("libero", "openvla"), ("*", "pil_lanczos")))

    def reset(self):
        pass

    def act(self, obs, instruction):
        SeesImages.seen.append(obs.images["agentview"])
        return np.zeros((5, 7))


def test_the_policys_image_path_is_applied_before_each_query_and_recorded(tmp_path):
    from evalkit.core import registry
    from evalkit.core.images import prepare

    registry.register("policy", "test-sees-images", "test_fidelity:SeesImages")
    SeesImages.seen = []
    out = execute(RunConfig(suites=["fake"], policy="test-sees-images", tasks=[0], episodes_per_task=1,
                            max_steps=5, out=str(tmp_path / "run")), progress=False)
    raw = fake.FakeEnv("fake", EnvOptions(cameras=("agentview",)))
    raw.reset(fake.fake_suite().episodes([0], 1)[0], render=True)
    for _ in range(OPENVLA.wait_steps):
        raw.step(np.array([0, 0, 0, 0, 0, 0, -1.0]), render=True)
    assert np.array_equal(SeesImages.seen[0], prepare("pil_lanczos", raw.observation().images["agentview"], 8))
    with ResultStore(out, readonly=True) as store:
        assert store.meta("semantics")["policy_conventions"]["image_path"] == {"fake": "pil_lanczos"}
    with pytest.raises(ValueError, match="unknown image path 'jpeg'.*openvla"):
        execute(RunConfig(suites=["fake"], policy="test-sees-images", policy_args={"image_path": "jpeg"},
                          episodes_per_task=1, out=str(tmp_path / "bad")), progress=False)


def test_reference_image_paths_resolve_per_robot():
    from evalkit.core.images import image_path_for

    spec = SeesImages().spec
    assert image_path_for(_libero_like_fake(), spec) == "openvla"
    assert image_path_for(fake.fake_suite(), spec) == "pil_lanczos"
    assert image_path_for(fake.fake_suite(), SeesImages("cv2_area").spec) == "cv2_area"


# -- undecodable outputs: executed as the reference does, counted, reported ---------------------------

class SometimesUndecodable:
    """Every third query's output 'does not decode': answered with the reference's fallback chunk."""

    def __init__(self, on_undecodable="reference"):
        from evalkit.core.types import NoAction, Undecodable

        self.spec = PolicySpec(chunk_size=5, settings=(("on_undecodable", on_undecodable),))
        self.calls, self.strict = 0, on_undecodable == "strict"
        self.NoAction, self.Undecodable = NoAction, Undecodable

    def reset(self):
        pass

    def act(self, obs, instruction):
        self.calls += 1
        chunk = np.zeros((5, 7))
        if self.calls % 3:
            return chunk
        return self.NoAction("no FAST tokens") if self.strict else self.Undecodable(chunk + 0.1, "no FAST tokens")


def test_undecodable_outputs_are_executed_counted_stored_and_reported(tmp_path, capsys):
    from evalkit.core import registry

    registry.register("policy", "test-undecodable", "test_fidelity:SometimesUndecodable")
    run = execute(RunConfig(suites=["fake"], policy="test-undecodable", tasks=[0], episodes_per_task=2,
                            max_steps=30, out=str(tmp_path / "ref")), progress=False)
    with ResultStore(run, readonly=True) as store:
        results = store.results()
        assert store.meta("policy_spec")["settings"] == [["on_undecodable", "reference"]]
    assert [(r.termination, r.queries, r.undecodable) for r in results] == [("budget", 6, 2), ("budget", 6, 2)]
    main(["report", str(run)])
    out = capsys.readouterr().out
    assert "4 undecodable policy outputs in 2 of 2 episodes" in out and "policy settings: on_undecodable reference" in out
    strict = execute(RunConfig(suites=["fake"], policy="test-undecodable", policy_args={"on_undecodable": "strict"},
                               tasks=[0], episodes_per_task=1, max_steps=30, out=str(tmp_path / "strict")),
                     progress=False)
    with ResultStore(strict, readonly=True) as store:
        assert [(r.termination, r.queries) for r in store.results()] == [("invalid_action", 3)]


def test_nora_reference_fallback_is_the_unnormalised_zeros():
    from policies.nora.nora import chunk_or_reason
    from policies.normalization import ActionStats
    from evalkit.core.types import NoAction, Undecodable

    class Broken:
        vocab_size = 10

        def decode(self, ids, horizon, dim):
            from policies.nora.fast import Decoded

            return Decoded(None, False, "not a multiple of 7")

    stats = ActionStats(np.array([-1.0, 0, 0, 0, 0, 0, 0]), np.array([3.0, 2, 2, 2, 2, 2, 1]), np.ones(7, bool))
    out = chunk_or_reason([1, 2], Broken(), stats, 5, 0, False, "NORA")
    assert isinstance(out, Undecodable) and "not a multiple of 7" in out.reason
    assert np.allclose(out.actions, np.tile([1.0, 1, 1, 1, 1, 1, 0.5], (5, 1)))  # the q01/q99 midpoint
    assert isinstance(chunk_or_reason([1, 2], Broken(), stats, 5, 0, False, "NORA", "strict"), NoAction)
