"""SimplerEnv suites against the fake simpler_env (suites/fake_simpler.py): build kwargs, reset
options, success rules, postprocessing, stored partial success, install errors. No simulator."""

import sys
import tarfile

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.parallel import EpisodeWorker, WorkerConfig
from evalkit.protocol import SIMPLER, SIMPLER_ANY_STEP
from evalkit.registry import make_suite
from evalkit.store import ResultStore
from evalkit.suite import EnvOptions
from evalkit.types import PolicySpec
from suites import fake_simpler
from suites.fake_simpler import FakeSimplerEnv
from suites.simpler import SimplerSetupError, resolve_assets


@pytest.fixture
def assets(tmp_path, monkeypatch):
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
    assert seed == 0
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


def test_env_is_rebuilt_only_when_build_arguments_change(assets):
    run("simpler_coke_can_vm", PushX(0.0), indices=(0, 1, 25))  # 25: next orientation (upright)
    assert len(logged("make")) == 2 and len(logged("reset")) == 3
    assert logged("make")[1][1]["upright"] is True
    assert [seed for seed, _ in logged("reset")] == [0, 1, 25]


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
    assert "protocol simpler (wait 0" in report and "success at last step" in report


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
    import suites.libero_setup as setup

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
    from evalkit.run import RunConfig

    assert RunConfig(suites=["simpler_bridge"]).protocol().success_rule == "last"
    assert RunConfig(suites=["fake"]).preset == "openvla"
    assert RunConfig(suites=["simpler_bridge"], preset="simpler_any_step").protocol().success_rule == "first"
    with pytest.raises(ValueError, match="different protocols"):
        RunConfig.from_dict({"suites": "fake,simpler_bridge"})
