"""NORA-1.5 reward variants on hand-computed values; ranking and parquet export on tiny models."""

import numpy as np
import pytest

from evalkit.posttrain.rewards import (TinyWorldModel, action_reward, export_pairs, goal_reward, pair_rows, preference_pairs,
                             sample_candidates, score_candidates)
from evalkit.core.types import Observation
from policies.weightfree.basic import RandomPolicy


class LineWorld:
    """encode: the image's mean as a 1-D embedding; predict: plus the chunk's summed first dim."""

    def encode(self, image):
        return np.array([float(np.mean(image))])

    def predict(self, embedding, chunk, state=None):
        return embedding + np.asarray(chunk)[:, 0].sum() + (0.0 if state is None else float(np.sum(state)))


def test_action_and_goal_rewards_hand_computed():
    assert action_reward(np.array([[0, 0], [1, 1]]), np.array([[1, 0], [1, 3]])) == -0.75  # -(1+0+0+2)/4
    assert goal_reward(np.array([1.0, 2.0]), np.array([2.0, 0.0])) == -1.5
    with pytest.raises(ValueError, match="different shapes"):
        action_reward(np.zeros((2, 7)), np.zeros((1, 7)))


def test_total_reward_mixes_goal_and_half_action():
    chunks = np.array([[[1.0, 0.0]], [[3.0, 0.0]]])  # K=2 candidates, N=1, D=2
    reference = np.array([[2.0, 0.0]])
    image, goal = np.full((4, 4, 3), 1.0), np.full((4, 4, 3), 4.0)  # embeddings 1 and 4
    scored = score_candidates(chunks, "total", reference=reference, world_model=LineWorld(), image=image,
                              goal_image=goal, action_weight=0.5)
    # R_a: -(1+0)/2 = -0.5 for both; R_g: -|1+1-4| = -2 and -|1+3-4| = 0
    assert scored.components["action"].tolist() == [-0.5, -0.5]
    assert scored.components["goal"].tolist() == [-2.0, 0.0]
    assert scored.rewards.tolist() == [-2.25, -0.25]
    assert score_candidates(chunks, "action", reference=reference).rewards.tolist() == [-0.5, -0.5]
    # the robot state reaches the predictor: +1 moves both predictions by 1, R_g -|1+1+1-4| = -1 and -|1+3+1-4| = -1
    with_state = score_candidates(chunks, "goal", world_model=LineWorld(), image=image, goal_image=goal, state=[1.0])
    assert with_state.rewards.tolist() == [-1.0, -1.0]
    with pytest.raises(ValueError, match="needs world_model"):
        score_candidates(chunks, "goal")
    with pytest.raises(ValueError, match="unknown reward variant"):
        score_candidates(chunks, "R_x")


def test_pairs_rank_best_first_and_skip_ties():
    from evalkit.posttrain.rewards import ScoredCandidates

    scored = ScoredCandidates(np.zeros((4, 1, 7)), np.array([0.1, 0.5, 0.1, -1.0]))
    assert preference_pairs(scored) == [(1, 0), (1, 2), (1, 3), (0, 3), (2, 3)]
    assert preference_pairs(scored, min_margin=0.5) == [(1, 3), (0, 3), (2, 3)]
    assert preference_pairs(scored, max_pairs=2) == [(1, 0), (1, 2)]


def test_rank_candidates_of_a_tiny_policy_and_export_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    policy = RandomPolicy(seed=1, chunk_size=5, scale=0.5)
    world = TinyWorldModel(dim=16, seed=0)
    rng = np.random.default_rng(0)
    image, goal = rng.integers(0, 255, (64, 64, 3)), rng.integers(0, 255, (64, 64, 3))
    obs = Observation(images={"agentview": image}, episode_key="libero_spatial/0/0/0", step=12)
    chunks = sample_candidates(policy, obs, "pick up the bowl", k=6)
    assert chunks.shape == (6, 5, 7) and len({c.tobytes() for c in chunks}) == 6
    reference = chunks[2] + 0.01  # the dataset chunk, close to candidate 2
    scored = score_candidates(chunks, "total", reference=reference, world_model=world, image=image, goal_image=goal)
    assert np.argmax(scored.components["action"]) == 2
    pairs = preference_pairs(scored)
    assert len(pairs) == 15 and all(scored.rewards[w] > scored.rewards[l] for w, l in pairs)
    path = tmp_path / "pairs.parquet"
    export_pairs(pair_rows(scored, pairs, "libero_spatial/0/0/0@12", "pick up the bowl", "total"), path)
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["observation_ref", "instruction", "variant", "winner_chunk", "loser_chunk",
                                   "winner_reward", "loser_reward"]
    assert len(frame) == 15 and (frame.winner_reward > frame.loser_reward).all()
    assert np.allclose(np.stack(frame.winner_chunk[0]), chunks[pairs[0][0]])
