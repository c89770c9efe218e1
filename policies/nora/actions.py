"""From NORA's generated token ids to actions: pick the action tokens, FAST-decode, unnormalise.

NORA's vocabulary appends the FAST+ tokens as `<robot_action_0>` ... after Qwen2.5-VL's own
(id 151665 onward in the released checkpoints); generated ids in that range, minus the
first one, are FAST token ids. The adapter (model, prompt, generation) builds on this.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from policies.nora.fast import Decoded, FastCodec
from policies.normalization import ActionStats, unnormalize

NORA_FIRST_ACTION_ID = 151665  # <robot_action_0> in declare-lab checkpoints


def action_token_ids(generated: Sequence[int], first_action_id: int, vocab_size: int) -> list[int]:
    """FAST ids of the generated ids that are action tokens, in order."""
    ids = np.asarray(generated, dtype=np.int64).reshape(-1)
    keep = (ids >= first_action_id) & (ids < first_action_id + vocab_size)
    return (ids[keep] - first_action_id).tolist()


def decode_actions(generated: Sequence[int], codec: FastCodec, stats: ActionStats, time_horizon: int,
                   first_action_id: int = NORA_FIRST_ACTION_ID, action_dim: int = 7,
                   respect_mask: bool = False) -> Decoded:
    """Generated ids -> unnormalised (time_horizon, action_dim) actions, or the reason it failed.

    respect_mask=False is NORA's own behaviour (every dimension unnormalised);
    NORA-1.5 and OpenVLA leave masked dimensions (the gripper) as they are.
    """
    fast_ids = action_token_ids(generated, first_action_id, codec.vocab_size)
    decoded = codec.decode(fast_ids, time_horizon, action_dim)
    if not decoded.ok:
        return decoded
    return Decoded(unnormalize(decoded.actions, stats, respect_mask), True)
