"""Episode videos (issue 15): which episodes keep one (--video all|failures|successes|N), the banner
each frame carries, the policy's cameras side by side, and `video` staying out of the run identity."""

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.core.settings import SettingError, normalize_video
from evalkit.results.store import ResultStore
from evalkit.run.driver import RunConfig, execute
from evalkit.run.video import GOOD, MIN_WIDTH, VideoPlan, plan_videos
from suites.fake import fake_suite

imageio = pytest.importorskip("imageio.v2")
pytest.importorskip("PIL")

MIXED = dict(suites=["fake"], policy="scripted-reach", episodes_per_task=4, max_steps=20)  # 9 of 16 succeed


def run(tmp_path, name="run", **settings):
    out = tmp_path / name
    execute(RunConfig.from_dict({**MIXED, "out": str(out), **settings}), progress=False)
    with ResultStore(out, readonly=True) as store:
        return store.results()


def test_video_per_episode_named_by_task_init_and_outcome(tmp_path):
    results = run(tmp_path, tasks=[0, 1], episodes_per_task=2, max_steps=None, video=True, workers=2)
    names = sorted(p.name for p in (tmp_path / "run" / "videos").glob("*.mp4"))
    assert len(names) == 4 and sorted(r.video.split("/")[-1] for r in results) == names
    assert "fake__task01_reach_target_1__init01__seed1__success.mp4" in names
    frames = imageio.mimread(results[0].video)
    assert len(frames) == results[0].steps + 1  # the frame after the wait steps, then one per step
    assert frames[0].shape[1] == MIN_WIDTH and frames[0].shape[0] > MIN_WIDTH  # 16x16 scaled up, banner below


@pytest.mark.parametrize("setting, wanted", [
    ("failures", lambda r: not r.success),
    ("successes", lambda r: r.success),
    ("all", lambda r: True),
    (1, lambda r: r.init_index == 0),
    (2, lambda r: r.init_index < 2),
])
def test_only_the_episodes_worth_watching_keep_a_video(tmp_path, setting, wanted):
    results = run(tmp_path, video=setting)
    assert 0 < sum(r.success for r in results) < len(results)
    kept = {r.key for r in results if r.video}
    assert kept == {r.key for r in results if wanted(r)}
    assert len(list((tmp_path / "run" / "videos").glob("*.mp4"))) == len(kept)


def test_first_n_per_task_is_the_same_with_any_worker_count_or_resume(tmp_path):
    one = {r.key for r in run(tmp_path, "w1", video=1) if r.video}
    two = {r.key for r in run(tmp_path, "w2", video=1, workers=2) if r.video}
    assert one == two == {f"fake/{t}/0/0" for t in range(4)}
    # a run finished in two parts: the second part keeps the videos the plan gives it, no more
    run(tmp_path, "parts", video=1, episodes_per_task=4, tasks=[0, 1])
    results = run(tmp_path, "parts", video=1, episodes_per_task=4, tasks=[0, 1, 2, 3])
    assert {r.key for r in results if r.video} == one


def test_plan_is_by_init_index_not_by_order():
    episodes = fake_suite().episodes([0, 1], 3, 0)
    plan = plan_videos(2, list(reversed(episodes)))
    assert plan.keys == {f"fake/{t}/{i}/{i}" for t in (0, 1) for i in (0, 1)}
    assert plan.records(episodes[0]) and not plan.records(episodes[2])
    assert plan_videos(False, episodes) is None and plan_videos("failures", episodes) == VideoPlan("failures")


def test_banner_shows_the_success_flag_and_the_cameras_sit_side_by_side(tmp_path):
    results = run(tmp_path, policy="random", policy_args={"cameras": "agentview,robot0_eye_in_hand", "scale": 0.0},
                  tasks=[0], episodes_per_task=1, video=True)
    frames = imageio.mimread(results[0].video)
    height, width = frames[0].shape[:2]
    assert width == 8 * (16 + 2 + 16)  # both 16x16 cameras and a 2-pixel gap, scaled 8x
    scene = frames[0][:8 * 16]
    left, right = scene[:, :8 * 16], scene[:, 8 * 18:]
    assert (left.max(axis=2) > 200).any() and not (left[..., 1] > 200).all()  # the agent view: a white point
    assert (right[..., 1] > 200).any() and (right[..., 0] < 60)[right[..., 1] > 200].all()  # the wrist view: green
    banner = frames[0][8 * 16:]
    assert banner.shape[0] > 20 and (banner.max(axis=2) > 150).any()  # text on the dark banner

    done = run(tmp_path, "done", tasks=[2], episodes_per_task=1, max_steps=None, video=True)[0]
    assert done.success
    first, last = imageio.mimread(done.video)[0], imageio.mimread(done.video)[-1]
    green = lambda frame: (np.abs(frame[MIN_WIDTH:].astype(int) - GOOD).max(axis=2) < 40).sum()
    assert green(last) > 20 and green(first) == 0  # "success yes" in green once the episode succeeded


def test_video_setting_values():
    assert [normalize_video(v) for v in (True, False, "all", "Failures", "successes", "3", 2)] == \
        ["all", False, "all", "failures", "successes", 3, 2]
    for bad in ("no", 0, -1, "some", 1.5, None):
        with pytest.raises(SettingError, match="'video' must be true or false"):
            normalize_video(bad)


def test_video_flag_bare_or_with_a_value_and_yaml_true(tmp_path, monkeypatch):
    import evalkit.cli as cli

    monkeypatch.setattr(cli, "SUPERVISE", False)
    base = ["run", "--suite", "fake", "--policy", "scripted-reach", "--tasks", "0", "--episodes-per-task", "2",
            "--max-steps", "20", "--no-progress"]
    args = cli._parser().parse_args([*base, "--video"])
    assert cli.run_config_from_args(args).video == "all"
    assert cli.run_config_from_args(cli._parser().parse_args([*base, "--video", "1"])).video == 1
    assert cli.run_config_from_args(cli._parser().parse_args([*base, "--video", "failures"])).video == "failures"
    assert cli.run_config_from_args(cli._parser().parse_args(base)).video is False
    (tmp_path / "run.yaml").write_text("video: true\n")
    yaml_args = cli._parser().parse_args([*base, "--config", str(tmp_path / "run.yaml")])
    assert cli.run_config_from_args(yaml_args).video == "all"
    # not part of the identity: the same run directory takes a run with other video settings
    assert main([*base, "--out", str(tmp_path / "same")]) == 0
    assert main([*base, "--out", str(tmp_path / "same"), "--video", "failures", "--episodes-per-task", "3"]) == 0
