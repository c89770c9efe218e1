import pytest

from evalkit.run.driver import RunConfig, execute
from evalkit.results.store import ResultStore

imageio = pytest.importorskip("imageio.v2")


def test_video_per_episode_named_by_task_init_and_outcome(tmp_path):
    config = RunConfig.from_dict(dict(suites=["fake"], policy="scripted-reach", tasks=[0, 1], episodes_per_task=2,
                                      out=str(tmp_path / "run"), video=True, workers=2))
    execute(config, progress=False)
    store = ResultStore(tmp_path / "run", readonly=True)
    results = store.results()
    names = sorted(p.name for p in (tmp_path / "run" / "videos").glob("*.mp4"))
    assert len(names) == 4 and sorted(r.video.split("/")[-1] for r in results) == names
    assert "fake__task01_reach_target_1__init01__seed1__success.mp4" in names
    frames = imageio.mimread(results[0].video)
    assert len(frames) == results[0].steps + 1  # the frame after the wait steps, then one per step
    assert frames[0].shape == (16, 16, 3)
