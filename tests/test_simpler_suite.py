"""SimplerEnv suites against the fake simpler_env (suites/simpler/fake.py): build kwargs, reset
options, success rules, postprocessing, stored partial success, install errors. No simulator."""

import sys
import tarfile

import numpy as np
import pytest

from evalkit import cli
from evalkit.cli import main
from evalkit.run.workers import EpisodeWorker, WorkerConfig
from evalkit.core.protocol import SIMPLER, SIMPLER_ANY_STEP
from evalkit.core.registry import make_suite
from evalkit.results.store import ResultStore
from evalkit.core.suite import EnvOptions
from evalkit.core.types import PolicySpec
from suites.simpler import fake as fake_simpler
from suites.simpler.fake import FakeSimplerEnv
from suites.simpler import suite as simpler
from suites.simpler.suite import SimplerSetupError, resolve_assets


@pytest.fixture
def assets(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "SUPERVISE", False)  # the fake simulator lives in this process only
    data = tmp_path / "simplerenv-data" / "data"
    (data / "real_inpainting").mkdir(parents=True)
    (data / "custom").mkdir()
    (data / "STANDINS.txt").write_text("")
    (tmp_path / "package_assets" / "descriptions").mkdir(parents=True)
    monkeypatch.setenv("MS2_REAL2SIM_ASSET_DIR", "unset-by-test")  # import_simpler sets it; restored after
    monkeypatch.setenv("EVALKIT_SIMPLER_ASSETS", str(data))
    fake_simpler.install(tmp_path / "package_assets")
    yield data
    fake_simpler.uninstall()


class PushX:
    """Pushes +dx every step (native actions); the fake counts as solved while the x sum is in [1, 2)."""

    def __init__(self, dx, convention="native", chunk_size=1, cameras=()):
        self.dx = dx
        self.spec = PolicySpec(cameras=cameras, chunk_size=chunk_size, action_convention=convention)
        self.images = []

    def reset(self):
        pass

    def act(self, obs, instruction):
        self.images.extend(obs.images.values())
        chunk = np.zeros((self.spec.chunk_size, 7))
        chunk[:, 0] = self.dx
        return chunk


def run(suite_name, policy, protocol=SIMPLER, task=0, indices=(0,)):
    suite = make_suite(suite_name)
    worker = EpisodeWorker(policy, WorkerConfig(suites={suite_name: suite}, spec=policy.spec, mode="open_loop",
                                                protocol=protocol, env_options=EnvOptions(cameras=policy.spec.cameras)))
    episodes = suite.episodes(task_ids=[task], episodes_per_task=max(indices) + 1)
    try:
        return [worker.run(episodes[i]) for i in indices]
    finally:
        worker.close()


def logged(kind):
    return [entry[1:] for entry in FakeSimplerEnv.log if entry[0] == kind]


def test_coke_can_vm_builds_and_resets_as_the_official_evaluator(assets):
    result, = run("simpler_google_vm", PushX(0.0))
    (env_name, kwargs), = logged("make")
    assert env_name == "GraspSingleOpenedCokeCanInScene-v0"
    assert kwargs["rgb_overlay_path"] == str(assets / "real_inpainting" / "google_coke_can_real_eval_1.png")
    assert kwargs["rgb_overlay_cameras"] == ["overhead_camera"]
    assert (kwargs["lr_switch"], kwargs["urdf_version"], kwargs["control_freq"], kwargs["sim_freq"],
            kwargs["max_episode_steps"], kwargs["obs_mode"]) == (True, None, 3, 513, 80, "rgbd")
    assert "shader_dir" not in kwargs and kwargs["camera_cfgs"] == {"add_segmentation": True}
    (seed, options), = logged("reset")
    assert seed == simpler.OFFICIAL_EPISODE_SEED == np.random.RandomState(2022).randint(2**32)
    np.testing.assert_allclose(options["robot_init_options"]["init_xy"], [0.35, 0.20])
    np.testing.assert_allclose(options["robot_init_options"]["init_rot_quat"], [0, 0, 0, 1])
    np.testing.assert_allclose(options["obj_init_options"]["init_xy"], [-0.35, -0.02])
    assert (result.steps, result.termination, len(logged("step"))) == (80, "budget", 80)  # no wait steps


def test_last_step_rule(assets):
    leaves_window, = run("simpler_coke_can_vm", PushX(0.25))  # x sum in [1, 2) only at steps 4..7
    ends_inside, = run("simpler_coke_can_vm", PushX(1.5 / 80))  # x sum 1.5 at step 80
    assert (leaves_window.success, leaves_window.steps) == (False, 80)
    assert (ends_inside.success, ends_inside.termination, ends_inside.steps) == (True, "success", 80)


def test_any_step_rule_ends_at_the_first_success(assets):
    leaves_window, = run("simpler_coke_can_vm", PushX(0.25), protocol=SIMPLER_ANY_STEP)
    slow, = run("simpler_coke_can_vm", PushX(1.5 / 80), protocol=SIMPLER_ANY_STEP)
    assert (leaves_window.success, leaves_window.steps) == (True, 4)
    assert (slow.success, slow.steps) == (True, 54)  # 54 * 1.5 / 80 = 1.0125 >= 1 > 53 * 1.5 / 80


def test_drawers_are_ray_traced_unless_rasterized(assets):
    run("simpler_drawer_vm", PushX(0.0))
    run("simpler_drawer_vm_rasterized", PushX(0.0))
    (traced_env, traced), (raster_env, raster) = logged("make")
    assert traced_env == raster_env == "OpenTopDrawerCustomInScene-v0"
    assert list(traced)[0] == "shader_dir" and traced["shader_dir"] == "rt"  # first, as the evaluator orders it
    assert "shader_dir" not in raster
    for kwargs in (traced, raster):
        assert (kwargs["station_name"], kwargs["light_mode"], kwargs["urdf_version"], kwargs["max_episode_steps"]) == (
            "mk_station_recolor", "simple", "recolor_cabinet_visual_matching_1", 113)
    _, options = logged("reset")[0]
    np.testing.assert_allclose(options["robot_init_options"]["init_xy"], [0.644, -0.179])


def test_every_episode_gets_a_fresh_scene(assets):
    run("simpler_coke_can_vm", PushX(0.0), indices=(0, 1, 25))  # 25: next orientation (upright)
    assert len(logged("make")) == 2 and len(logged("reset")) == 3
    assert logged("make")[1][1]["upright"] is True
    assert [seed for seed, _ in logged("reset")] == [simpler.OFFICIAL_EPISODE_SEED] * 3  # as every official episode
    # a new env resets as the official evaluator does; a used one rebuilds its scene first
    assert [options.get("reconfigure") for _, options in logged("reset")] == [None, True, None]
    assert make_suite("simpler_coke_can_vm").info["env_per_episode"] == "reconfigure"


def final_outcomes(suite_name, policy, indices, task=0):
    """(success, steps, termination, settled state after the last step) of each episode, run in one worker."""
    suite = make_suite(suite_name)
    worker = EpisodeWorker(policy, WorkerConfig(suites={suite_name: suite}, spec=policy.spec, mode="open_loop",
                                                protocol=SIMPLER, env_options=EnvOptions()))
    out = []
    try:
        for i in indices:
            result = worker.run(suite.episode(task, i, i))
            out.append((result.success, result.steps, result.termination, worker.envs[suite_name].settled_state()))
    finally:
        worker.close()
    return out


def assert_same_outcome(a, b):
    assert a[:3] == b[:3]
    assert a[3].keys() == b[3].keys()
    for name in a[3]:
        np.testing.assert_array_equal(a[3][name], b[3][name], err_msg=name)


def test_an_episode_does_not_depend_on_the_one_before(assets):
    # x sum 0.995 at the last step: a failure from a fresh scene; one that kept 1% of the previous
    # episode's push (the fake's reuse leak, like ManiSkill2's) would count as a success
    push = PushX(0.995 / 80)
    *_, after = final_outcomes("simpler_coke_can_vm", push, (0, 1))
    first, = final_outcomes("simpler_coke_can_vm", push, (1,))
    assert first[:3] == (False, 80, "budget")
    assert_same_outcome(after, first)


def test_the_fake_leaks_state_when_an_env_is_reused_as_maniskill2_does(assets):
    # The check above can fail: reset without reconfigure keeps state, a new env or reconfigure does not.
    suite = make_suite("simpler_coke_can_vm")
    params = suite.episode_params(0, 1)
    options = simpler.reset_options(params)

    def final_state(env, reset_extra):
        env.reset(seed=1, options={**options, **reset_extra})
        for _ in range(80):
            env.step(np.array([0.995 / 80, 0, 0, 0, 0, 0, 0]))
        return env.unwrapped.get_state()

    build = lambda: fake_simpler.build_maniskill2_env(params["env_id"], **simpler.build_kwargs(params, assets))  # noqa: E731
    fresh = final_state(build(), {})
    used = build()
    final_state(used, {})
    assert not np.array_equal(final_state(used, {}), fresh)
    np.testing.assert_array_equal(final_state(used, {"reconfigure": True}), fresh)


def test_settled_state_holds_the_objects_robot_base_and_tcp(assets):
    suite = make_suite("simpler_google_vm")
    env = suite.make_env(EnvOptions())
    episode = suite.episode(1, 0, 0)  # move near, robot at (0.35, 0.21) turned by yaw -0.09
    env.reset(episode, render=False)
    state = env.settled_state()
    assert sorted(state) == ["fake_object", "robot_base", "robot_tcp"]  # the static arena is left out
    assert all(pose.shape == (7,) for pose in state.values())
    np.testing.assert_allclose(state["robot_base"][:2], [0.35, 0.21], atol=1e-6)
    np.testing.assert_allclose(state["robot_base"][3:], episode.param_dict()["robot_init_quat"], atol=1e-6)


def test_rlds_chunks_are_postprocessed_for_the_google_robot(assets):
    class Rlds(PushX):
        def act(self, obs, instruction):
            super().act(obs, instruction)
            chunk = np.zeros((5, 7))
            chunk[:, 5] = 0.1  # yaw
            chunk[:, 6] = 1.0 if len(self.images) == 1 else 0.0  # open, then close from the second query
            return chunk

    policy = Rlds(0.0, convention="rlds", chunk_size=5, cameras=("image",))
    result, = run("simpler_google_vm", policy)
    actions = np.array([a for (a,) in logged("step")])
    assert result.termination == "budget" and result.queries == 16
    assert policy.images[0].shape == (512, 640, 3)
    np.testing.assert_allclose(actions[:, 3:6], np.tile([0, 0, 0.1], (80, 1)), atol=1e-12)  # euler -> axis-angle
    # relative sticky gripper: 0 while open, then previous - current = 1 held for 15 steps
    np.testing.assert_array_equal(actions[:, 6], [0.0] * 5 + [1.0] * 15 + [0.0] * 60)


def test_widowx_gripper_binarised_and_partial_success_stored(assets, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--suite", "simpler_spoon_on_towel", "--policy", "random", "--policy-arg", "scale=0.05",
                 "--episodes-per-task", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    report = capsys.readouterr().out
    widowx_grippers = {float(a[6]) for (a,) in logged("step")}
    assert widowx_grippers <= {-1.0, 1.0}  # random's +-1 already binary; native actions pass through
    with ResultStore(out, readonly=True) as store:
        results = store.results()
        assert store.meta("identity")["protocol"]["name"] == "simpler"  # the suite's preset, none was given
    assert [r.stats["partial_success"] for r in results] == [True, True, True]  # random closes the gripper
    assert all(r.steps == 60 for r in results)
    assert "SimplerEnv Bridge / WidowX" in report and "| run | grasp (partial) | 100.0 | - | - | - | - |" in report
    assert "stand-in assets" in report and "3 of 24 episodes" in report
    assert "protocol simpler (wait 0" in report and "success checked at the episode's last step" in report


def test_missing_simpler_env_says_how_to_install(assets, monkeypatch):
    monkeypatch.setitem(sys.modules, "simpler_env", None)  # makes `import simpler_env` fail
    suite = make_suite("simpler_bridge")
    with pytest.raises(SimplerSetupError, match="not on PyPI.*setup_simpler.sh"):
        suite.make_env(EnvOptions())


def test_missing_robot_descriptions_are_named(assets, tmp_path):
    (tmp_path / "package_assets" / "descriptions").rmdir()
    with pytest.raises(SimplerSetupError, match="package_assets"):
        make_suite("simpler_bridge").make_env(EnvOptions())


def test_assets_from_a_bundle_or_a_folder(tmp_path, monkeypatch):
    import suites.libero.setup as setup

    monkeypatch.setattr(setup, "CACHE_DIR", tmp_path / "cache")
    folder = tmp_path / "src" / "simplerenv-data" / "data"
    for sub in ("real_inpainting", "custom"):
        (folder / sub).mkdir(parents=True)
    bundle = tmp_path / "simplerenv-data.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(tmp_path / "src" / "simplerenv-data", arcname="simplerenv-data")
    unpacked = resolve_assets(str(bundle))
    assert unpacked.name == "data" and (unpacked / "real_inpainting").is_dir() and "cache" in str(unpacked)
    assert resolve_assets(str(folder.parent)) == folder  # the bundle's top folder works too
    with pytest.raises(SimplerSetupError, match="not found"):
        resolve_assets(str(tmp_path / "nowhere"))


def test_report_sim2real_over_two_runs(assets, tmp_path, capsys):
    dirs = []
    for name, args in (("zero", []), ("push", ["--policy-arg", "scale=0.02"])):
        dirs.append(str(tmp_path / name))
        policy = "zero" if name == "zero" else "random"
        assert main(["run", "--suite", "simpler_coke_can_vm", "--policy", policy, *args, "--episodes-per-task", "2",
                     "--out", dirs[-1], "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", *dirs, "--sim2real", "rt-1-x,octo-base"]) == 0
    report = capsys.readouterr().out
    assert "## Sim-to-real" in report and "| Visual Matching | pick_coke_can |" in report
    assert "real (rt-1-x, octo-base)" in report and "0.760 0.293" in report
    assert main(["report", dirs[0], "--sim2real", "rt-1-x,octo-base"]) == 2  # one alias per run


def test_run_uses_the_suites_preset_unless_told():
    from evalkit.run.driver import RunConfig

    assert RunConfig(suites=["simpler_bridge"]).protocol().success_rule == "last"
    assert RunConfig(suites=["fake"]).preset == "openvla"
    assert RunConfig(suites=["simpler_bridge"], preset="simpler_any_step").protocol().success_rule == "first"
    with pytest.raises(ValueError, match="different protocols"):
        RunConfig.from_dict({"suites": "fake,simpler_bridge"})


# -- settled-state fingerprints -------------------------------------------------------------------------

def test_doctor_sample_is_the_first_and_last_entry_of_each_task():
    sample = simpler.doctor_sample("simpler_google_vm_rasterized")
    assert [(e.task_id, e.init_index, e.seed) for e in sample] == [
        (t, i, simpler.OFFICIAL_EPISODE_SEED) for t, i in ((0, 0), (0, 299), (1, 0), (1, 239), (2, 0), (2, 107),
                                                           (3, 0), (3, 107))]
    assert sample[1].param_dict()["urdf_version"] == "recolor_cabinet_visual_matching_1"  # another robot colouring
    assert make_suite("simpler_bridge").doctor_sample() == simpler.doctor_sample("simpler_bridge")


def test_reference_fingerprints_fingerprint_each_sample_episode_in_its_own_env(assets):
    from evalkit.core.fingerprint import combine, rounded_state, state_fingerprint

    reference = simpler.reference_fingerprints(["simpler_coke_can_vm", "simpler_carrot_on_plate"])
    assert set(reference["versions"]) == {"sapien", "mani_skill2_real2sim", "simpler_env", "numpy"}
    assert reference["wait_steps"] == 0 and len(logged("make")) == 4  # a new env per episode
    coke = reference["suites"]["simpler_coke_can_vm"]
    last = make_suite("simpler_coke_can_vm").episode(0, 299, simpler.OFFICIAL_EPISODE_SEED)
    alone = simpler.settled_state_of(last, EnvOptions())
    assert coke["episodes"][last.key] == {"fingerprint": state_fingerprint(alone), "state": rounded_state(alone)}
    assert coke["fingerprint"] == combine({k: e["fingerprint"] for k, e in coke["episodes"].items()})
    assert coke["episodes"][last.key]["state"]["robot_base"][:2] == [0.35, 0.2]
    assert simpler.reference_fingerprints(["simpler_coke_can_vm"])["suites"]["simpler_coke_can_vm"] == coke


def test_reference_fingerprints_change_when_the_settled_state_does(assets, monkeypatch):
    before = simpler.reference_fingerprints(["simpler_carrot_on_plate"])["suites"]["simpler_carrot_on_plate"]
    reset = fake_simpler._Unwrapped.reset

    def lower_table(self, options):  # a physics change: objects come to rest 2 mm lower
        reset(self, options)
        self.obj.pose.p[2] -= 0.002

    monkeypatch.setattr(fake_simpler._Unwrapped, "reset", lower_table)
    after = simpler.reference_fingerprints(["simpler_carrot_on_plate"])["suites"]["simpler_carrot_on_plate"]
    assert after["fingerprint"] != before["fingerprint"]
    assert all(after["episodes"][k]["fingerprint"] != e["fingerprint"] for k, e in before["episodes"].items())


def test_fingerprint_cli_writes_the_reference_file(assets, tmp_path):
    import json

    from suites.simpler import fingerprints as simpler_fingerprints

    out = tmp_path / "fp" / "simpler.json"
    assert simpler_fingerprints.main([str(out), "--suites", "simpler_stack_cube"]) == 0
    written = json.loads(out.read_text())
    assert written == simpler.reference_fingerprints(["simpler_stack_cube"])
    assert '"robot_base": [0.147, 0.028, 0.079, 0.0, 0.0, 0.0, 1.0]' in out.read_text()  # a pose per line


def test_committed_reference_matches_the_doctor_sample():
    import json

    from evalkit.core.fingerprint import combine, state_fingerprint

    reference = json.loads(simpler.FINGERPRINT_FILE.read_text())
    assert sorted(reference["suites"]) == sorted(simpler.FINGERPRINT_SUITES)
    assert reference["versions"]["sapien"] == "2.2.2" and reference["wait_steps"] == 0
    for name, suite in reference["suites"].items():
        assert list(suite["episodes"]) == sorted(e.key for e in simpler.doctor_sample(name))
        for entry in suite["episodes"].values():
            assert entry["fingerprint"] == state_fingerprint(entry["state"])
            assert {"robot_base", "robot_tcp"} <= set(entry["state"]) and len(entry["state"]) >= 3
        assert suite["fingerprint"] == combine({k: e["fingerprint"] for k, e in suite["episodes"].items()})
    assert make_suite("simpler_bridge").reference_fingerprints()["episodes"] == reference["suites"]["simpler_bridge"]["episodes"]


def test_a_ray_traced_suite_is_checked_against_its_rasterized_twins_reference():
    own = make_suite("simpler_google_vm").reference_fingerprints()
    twin = make_suite("simpler_google_vm_rasterized").reference_fingerprints()
    assert own["episodes"] and list(own["episodes"]) == [k.replace("_rasterized", "") for k in twin["episodes"]]
    assert [e.key for e in make_suite("simpler_google_vm").doctor_sample()] == list(own["episodes"])
    assert make_suite("simpler_coke_can_vm").reference_fingerprints() == {}
