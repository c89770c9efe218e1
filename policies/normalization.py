"""Action (un)normalisation with q01/q99 statistics, as OpenVLA-style checkpoints store them.

`norm_stats.json` (or `dataset_statistics.json`) maps a dataset key (e.g. "bridge_orig",
"libero_spatial_no_noops") to {"action": {"q01": [...], "q99": [...], "mask": [...]}, ...}.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class ActionStats:
    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray  # True: normalised in training; False (usually the gripper): left as is


def read_action_stats(stats: dict, key: Optional[str], source: str = "norm stats") -> ActionStats:
    """Pick one dataset's action statistics; a missing or unknown key names the choices."""
    if key is None:
        if len(stats) != 1:
            raise ValueError(f"{source} holds several datasets; choose one with unnorm_key=... from {sorted(stats)}")
        key = next(iter(stats))
    if key not in stats:
        close = difflib.get_close_matches(key, stats, n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unnorm_key {key!r} not in {source}.{hint} Available: {sorted(stats)}")
    action = stats[key]["action"]
    q01, q99 = np.asarray(action["q01"], dtype=np.float64), np.asarray(action["q99"], dtype=np.float64)
    mask = np.asarray(action.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
    return ActionStats(q01, q99, mask)


def load_action_stats(path: str | Path, key: Optional[str]) -> ActionStats:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"normalisation statistics not found: {path} (norm_stats.json in the checkpoint "
                                f"folder, or pass --policy-arg norm_stats=PATH)")
    return read_action_stats(json.loads(path.read_text()), key, str(path))


def unnormalize(actions: np.ndarray, stats: ActionStats, respect_mask: bool = True) -> np.ndarray:
    """[-1, 1] -> dataset units: 0.5 * (a + 1) * (q99 - q01) + q01.

    respect_mask=True (OpenVLA, NORA-1.5) leaves masked dimensions as they are;
    False (NORA's own inference) applies the formula to every dimension.
    """
    actions = np.asarray(actions, dtype=np.float64)
    scaled = 0.5 * (actions + 1.0) * (stats.q99 - stats.q01) + stats.q01
    return np.where(stats.mask, scaled, actions) if respect_mask else scaled
