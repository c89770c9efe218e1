import json

import numpy as np
import pytest

from policies.normalization import load_action_stats, read_action_stats, unnormalize

STATS = {"libero_spatial": {"action": {"q01": [-1.0, 0.0, 2.0], "q99": [1.0, 4.0, 4.0], "mask": [True, True, False]}},
         "bridge_orig": {"action": {"q01": [0, 0, 0], "q99": [1, 1, 1]}}}


def test_unnormalize_hand_worked_with_and_without_mask():
    stats = read_action_stats(STATS, "libero_spatial")
    a = np.array([[0.5, -1.0, 1.0]])
    # dim0: 0.5*1.5*2-1 = 0.5; dim1: 0*4+0 = 0; dim2: masked -> 1.0, unmasked -> 0.5*2*2+2 = 4
    assert unnormalize(a, stats).tolist() == [[0.5, 0.0, 1.0]]
    assert unnormalize(a, stats, respect_mask=False).tolist() == [[0.5, 0.0, 4.0]]


def test_stats_keys_errors_name_the_choices(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'libero_spatial'"):
        read_action_stats(STATS, "libero_spatail")
    with pytest.raises(ValueError, match="several datasets"):
        read_action_stats(STATS, None)
    assert read_action_stats({"only": STATS["bridge_orig"]}, None).mask.all()  # default mask: all True
    with pytest.raises(FileNotFoundError, match="norm_stats.json"):
        load_action_stats(tmp_path / "norm_stats.json", "x")
    (tmp_path / "norm_stats.json").write_text(json.dumps(STATS))
    assert load_action_stats(tmp_path / "norm_stats.json", "bridge_orig").q99.tolist() == [1, 1, 1]
