"""`evalkit pairs`: preference pairs from a dataset episode or a fake-suite rollout, end to end."""

import importlib.util

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.posttrain.pairs import Episode, goal_frame, load_episode, save_episode, scored_steps

# writing and reading parquet needs pandas + pyarrow; refusals of bad input run without them
needs_parquet = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("pandas", "pyarrow")),
                                   reason="needs pandas and pyarrow")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the V-JEPA2-AC check needs torch")


def _episode(tmp_path, steps=12, actions=None):
    """A tiny episode file: 16x16 frames (one more than actions), 7-D states, an instruction."""
    rng = np.random.default_rng(0)
    episode = Episode(frames=rng.integers(0, 255, (steps + 1, 16, 16, 3), dtype=np.uint8),
                      actions=np.zeros((steps, 7)) if actions is None else actions,
                      instruction="put the bowl on the plate", states=rng.normal(size=(steps + 1, 7)))
    return save_episode(episode, tmp_path / "episode.npz")


def _pairs(args, out):
    import pandas as pd

    assert main(["pairs", *args, "--out", str(out), "--no-progress"]) == 0
    return pd.read_parquet(out)


@needs_parquet
def test_action_reward_pairs_from_a_dataset_episode(tmp_path):
    path = _episode(tmp_path)  # ground truth: zero actions, so R_a = -mean |candidate|
    frame = _pairs(["--dataset", str(path), "--policy", "random", "--policy-arg", "chunk_size=5",
                    "--variant", "R_a", "--k", "4"], tmp_path / "pairs.parquet")
    assert list(frame.columns) == ["observation_ref", "instruction", "variant", "winner_chunk", "loser_chunk",
                                   "winner_reward", "loser_reward"]
    # states 0..7 have 5 ground-truth actions ahead; 4 distinct candidates give 6 pairs each
    assert frame.observation_ref.tolist() == [f"{path}#{t}" for t in range(8) for _ in range(6)]
    assert set(frame.instruction) == {"put the bowl on the plate"} and set(frame.variant) == {"R_a"}
    winners = np.stack([np.stack(c) for c in frame.winner_chunk])
    assert winners.shape == (48, 5, 7)
    assert np.allclose(frame.winner_reward, -np.abs(winners).mean(axis=(1, 2)))  # hand formula of R_a
    assert (frame.winner_reward > frame.loser_reward).all()
    for _, state in frame.groupby("observation_ref"):  # best winners first within each state
        assert (np.diff(state.winner_reward.to_numpy()) <= 0).all()
        assert state.winner_reward.iloc[0] == max(state.winner_reward.max(), state.loser_reward.max())


@needs_parquet
def test_goal_variants_score_against_end_or_sub_goal_frames(tmp_path):
    from evalkit.posttrain.rewards import TinyWorldModel
    from policies.weightfree.basic import RandomPolicy

    path = _episode(tmp_path)
    episode = load_episode(path)
    assert np.array_equal(goal_frame(episode, 3, "sub", 5), episode.frames[8])
    assert np.array_equal(goal_frame(episode, 10, "sub", 5), episode.frames[12])  # clipped at the last frame
    assert np.array_equal(goal_frame(episode, 3, "end", 5), episode.frames[12])
    assert list(scored_steps(episode, 5, 3)) == [0, 3, 6]
    args = ["--dataset", str(path), "--policy", "random", "--policy-arg", "chunk_size=5", "--world-model", "tiny",
            "--world-model-arg", "dim=8", "--k", "3", "--stride", "3"]
    end = _pairs([*args, "--variant", "R_g_end"], tmp_path / "end.parquet")
    sub = _pairs([*args, "--variant", "R_g_sub"], tmp_path / "sub.parquet")
    total = _pairs([*args, "--variant", "R_tot"], tmp_path / "tot.parquet")
    # recompute state 3's best goal reward by hand from the same candidates
    world, policy = TinyWorldModel(dim=8), RandomPolicy(chunk_size=5)
    from evalkit.posttrain.pairs import observation_at
    from evalkit.posttrain.rewards import sample_candidates

    chunks = sample_candidates(policy, observation_at(episode, 3), episode.instruction, 3)
    now = world.encode(episode.frames[3])

    def goal_rewards(goal):
        return [-np.mean(np.abs(world.predict(now, c) - world.encode(goal))) for c in chunks]

    at3 = lambda f: f[f.observation_ref == f"{path}#3"]  # noqa: E731
    assert np.isclose(at3(end).winner_reward.iloc[0], max(goal_rewards(episode.frames[12])))
    assert np.isclose(at3(sub).winner_reward.iloc[0], max(goal_rewards(episode.frames[8])))
    action = [-np.mean(np.abs(c)) for c in chunks]  # ground truth is zeros
    assert np.isclose(at3(total).winner_reward.iloc[0], max(np.add(goal_rewards(episode.frames[12]),
                                                                   0.5 * np.array(action))))


@needs_parquet
def test_pairs_from_a_recorded_fake_suite_rollout(tmp_path):
    saved = tmp_path / "rollout.npz"
    frame = _pairs(["--rollout", "fake", "--task", "1", "--rollout-policy", "scripted-reach", "--policy", "random",
                    "--policy-arg", "chunk_size=5", "--world-model", "tiny", "--variant", "R_tot_sub", "--k", "3",
                    "--save-episode", str(saved)], tmp_path / "pairs.parquet")
    episode = load_episode(saved)
    steps = len(episode.actions)
    assert len(episode.frames) == steps + 1 and episode.states.shape == (steps + 1, 3)  # fake state: eef_pos
    assert episode.instruction == "reach target 1" and episode.source == str(saved)
    # the scripted solver moves 0.05 per step straight at target 1 = (-0.5, 0.5); it ends there
    assert np.allclose(np.diff(episode.states[:, :2], axis=0), 0.05 * episode.actions[:, :2])
    assert np.linalg.norm(episode.states[-1, :2] - (-0.5, 0.5)) < 0.05
    assert not np.array_equal(episode.frames[0], episode.frames[-1])
    refs = frame.observation_ref.unique().tolist()
    assert refs == [f"{saved}#{t}" for t in range(steps - 4)]  # frame t of the saved rollout
    assert len(frame) == 3 * len(refs) and (frame.winner_reward > frame.loser_reward).all()
    from evalkit.posttrain.pairs import record_rollout
    from policies.weightfree.basic import ReachPolicy

    assert record_rollout("fake", ReachPolicy(), task=1).source == "fake/1/0/0"  # unsaved: the rollout's key


@needs_torch
def test_bad_input_is_refused_with_the_reason(tmp_path, capsys):
    def error(*args):
        assert main(["pairs", "--policy", "random", "--policy-arg", "chunk_size=5", "--out", str(tmp_path / "p.parquet"),
                     "--no-progress", *args]) == 2
        return capsys.readouterr().err

    assert "episode file not found: missing.npz" in error("--dataset", "missing.npz", "--variant", "R_a")
    np.savez(tmp_path / "bad.npz", frames=np.zeros((3, 4, 4, 3)), instruction="x")
    assert "missing ['actions']" in error("--dataset", str(tmp_path / "bad.npz"))
    short = _episode(tmp_path, steps=3)
    assert "no state has 5 ground-truth actions ahead" in error("--dataset", str(short), "--variant", "R_a")
    assert "needs a world model" in error("--dataset", str(short), "--variant", "R_g_end")
    assert "unknown reward variant 'R_x'" in error("--dataset", str(short), "--variant", "R_x")
    assert "unknown world_model 'vjepa'. Did you mean 'vjepa2-ac'" in error("--dataset", str(short), "--world-model",
                                                                            "vjepa")
    assert "V-JEPA2-AC needs its predictor weights" in error("--dataset", str(short), "--world-model", "vjepa2-ac")
    with pytest.raises(ValueError, match="frames has 3 entries for 5 actions"):
        Episode(np.zeros((3, 4, 4, 3)), np.zeros((5, 7)), "x")


def test_unreadable_episode_files_and_outputs_are_messages(tmp_path, capsys):
    def error(*args, out=tmp_path / "p.parquet"):
        assert main(["pairs", "--policy", "random", "--policy-arg", "chunk_size=2", "--variant", "R_a",
                     "--out", str(out), "--no-progress", *args]) == 2
        return capsys.readouterr().err

    good = _episode(tmp_path, steps=4)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    for name in ("empty.npz", "truncated.npz", "array.npz"):
        assert f"{tmp_path / name} is not a readable episode file" in error("--dataset", str(tmp_path / name))
    np.savez(tmp_path / "flat.npz", frames=np.zeros((5, 4, 4)), actions=np.zeros((5, 7)), instruction="x")
    assert "frames must be (T, H, W, 3)" in error("--dataset", str(tmp_path / "flat.npz"))
    assert "is a directory; name the file to write" in error("--dataset", str(good), out=tmp_path)
    (tmp_path / "file").write_text("x")
    under_a_file = error("--dataset", str(good), out=tmp_path / "file" / "p.parquet")
    assert "file is a file, so the file cannot be created there" in under_a_file
    if needs_parquet.args[0]:
        return
    assert main(["pairs", "--policy", "random", "--policy-arg", "chunk_size=2", "--variant", "R_a", "--dataset",
                 str(good), "--out", str(tmp_path / "new" / "p.parquet"), "--no-progress"]) == 0  # folder made
