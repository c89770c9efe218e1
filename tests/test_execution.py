import numpy as np
import pytest

from evalkit.core.execution import Ensemble, OpenLoop, Receding, parse_mode, wrap
from evalkit.core.types import Observation

from conftest import CountingPolicy


def run_steps(wrapper, n):
    wrapper.reset()
    actions, queries = [], []
    for t in range(n):
        queries.append(wrapper.needs_query)
        actions.append(wrapper.act(Observation(step=t), "task")[0])
    return actions, queries


def test_open_loop_executes_whole_chunk_then_queries():
    actions, queries = run_steps(OpenLoop(CountingPolicy(4)), 10)
    assert actions == [0, 1, 2, 3, 100, 101, 102, 103, 200, 201]
    assert queries == [True, False, False, False, True, False, False, False, True, False]


def test_receding_executes_first_k_then_replans():
    actions, queries = run_steps(Receding(CountingPolicy(4), k=3), 7)
    assert actions == [0, 1, 2, 100, 101, 102, 200]
    assert [t for t, q in enumerate(queries) if q] == [0, 3, 6]


def test_receding_with_k_beyond_chunk_uses_whole_chunk():
    actions, _ = run_steps(Receding(CountingPolicy(2), k=5), 4)
    assert actions == [0, 1, 100, 101]


def test_ensemble_weights_overlapping_predictions():
    temp = -0.8
    actions, queries = run_steps(Ensemble(CountingPolicy(3), temp), 4)
    assert all(queries)
    # step 0: only chunk 0 row 0 -> 0
    assert actions[0] == pytest.approx(0.0)
    # step 1: chunk0[1]=1 (oldest, weight 1), chunk1[0]=100 (weight e^0.8)
    w = np.exp(0.8)
    assert actions[1] == pytest.approx((1 + 100 * w) / (1 + w))
    # step 2: chunk0[2]=2, chunk1[1]=101, chunk2[0]=200, weights 1, e^0.8, e^1.6
    ws = np.exp(-temp * np.arange(3))
    assert actions[2] == pytest.approx(np.dot(ws, [2, 101, 200]) / ws.sum())
    # step 3: chunk0 no longer covers step 3 -> chunk1[2]=102, chunk2[1]=201, chunk3[0]=300
    assert actions[3] == pytest.approx(np.dot(ws, [102, 201, 300]) / ws.sum())


def test_ensemble_positive_temperature_favours_older_predictions():
    actions, _ = run_steps(Ensemble(CountingPolicy(2), 5.0), 2)
    assert actions[1] < 10  # dominated by the older chunk's row 1


def test_parse_mode_errors_name_the_fix():
    assert parse_mode("receding:4") == ("receding", 4)
    assert parse_mode("ensemble") == ("ensemble", -0.8)
    assert wrap(CountingPolicy(), "ensemble:-0.5").describe() == "ensemble:-0.5"
    for bad in ["receding", "receding:x", "close_loop", "open_loop:3"]:
        with pytest.raises(ValueError, match="receding:K"):
            parse_mode(bad)
