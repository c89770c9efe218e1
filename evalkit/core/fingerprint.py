"""Simulator fingerprints: make physics drift visible instead of silent.

A simulator upgrade (MuJoCo 3.4's box-box collision fix, say) can move where objects come
to rest at the start of an episode, and with it every success rate, while nothing else looks
different. A fingerprint is a short hash of the object poses after the wait steps (the
"settled state"), rounded so that only physically meaningful changes count. The same
fingerprint is computed three ways:

- per episode by the runner, for free (the state after the wait steps), stored with the result;
- per suite by `evalkit doctor`, on a fixed sample of (task, init state), against reference
  values committed with the pinned simulator versions (`suites/fingerprints/*.json`);
- and compared by `evalkit compare`, which refuses two runs whose settled states differ.

Suite envs opt in with a `settled_state()` method returning {name: pose array}.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping, Optional

import numpy as np

# Poses rounded to 1 mm / 1e-3 of a quaternion component: far above floating-point noise,
# far below what changes whether a grasp works (the drifted LIBERO bowl moves by centimetres).
DECIMALS = 3


def rounded_state(state: Mapping[str, np.ndarray], decimals: int = DECIMALS) -> dict[str, list[float]]:
    """{name: pose rounded} with -0.0 folded into 0.0, so equal physics gives equal text."""
    return {name: [float(v) + 0.0 for v in np.round(np.asarray(pose, dtype=np.float64).ravel(), decimals)]
            for name, pose in sorted(state.items())}


def state_fingerprint(state: Mapping[str, np.ndarray], decimals: int = DECIMALS) -> str:
    """A 12-hex-digit hash of the rounded settled state."""
    text = json.dumps(rounded_state(state, decimals), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def combine(fingerprints: Mapping[str, str]) -> str:
    """One hash for a set of per-episode fingerprints (a suite's sample)."""
    text = json.dumps(dict(sorted(fingerprints.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def max_pose_difference(a: Mapping[str, list], b: Mapping[str, list]) -> Optional[float]:
    """Largest absolute difference between two rounded states; None if they hold other objects."""
    if set(a) != set(b) or any(len(a[k]) != len(b[k]) for k in a):
        return None
    diffs = [abs(x - y) for k in a for x, y in zip(a[k], b[k])]
    return max(diffs, default=0.0)


def settle_fingerprint(env) -> str:
    """The fingerprint of an env's current state, or "" when its suite offers none."""
    settled = env.settled_state()
    return state_fingerprint(settled) if settled else ""
