"""`--policy remote --policy-arg url=ws://host:port`: a policy served by `evalkit serve`.

At connect it reads the served policy's spec from the server's metadata, so the harness
renders the cameras, ships the state and applies the action convention the server-side
policy declares; chunking, execution modes, suites and workers work as with any policy.

Reconnects: a dropped connection is re-opened with backoff for up to `reconnect_s`
seconds and the query resent. For a stateless served policy that is exact (replies
depend only on the query). A stateful one loses its per-episode state with the
connection, so the episode in progress ends as `error` instead of going on with a fresh
instance; later episodes (after the next reset) use the new connection normally.
If the server stays away longer than `reconnect_s`, each query raises, its episode ends
as `error`, and the run finishes with every episode stored.

A server started with a token (`evalkit serve --token` or EVALKIT_TOKEN) needs the same one:
`--policy-arg token=...` or, better (policy arguments are recorded with the run), the
EVALKIT_TOKEN environment variable. A refused token fails at connect, before any episode,
with the server's reason. A query larger than the server's `--max-frame-mb` is not sent:
it raises FrameTooBig saying both sizes.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from evalkit.core.types import NoAction, Observation, Undecodable


class StateLost(RuntimeError):
    """A stateful served policy's connection was re-opened mid-episode."""


class RemotePolicy:
    def __init__(self, url: str = "", timeout_s: float = 300.0, reconnect_s: float = 30.0, token: str = ""):
        if not url:
            raise ValueError("remote needs the server's address: --policy-arg url=ws://HOST:PORT "
                             "(start the server with `evalkit serve --policy NAME --port PORT`)")
        from evalkit.serve import wire

        self._wire = wire
        token = token or os.environ.get(wire.TOKEN_ENV) or None
        self.client = wire.WireClient(url, float(timeout_s), float(reconnect_s), on_reconnect=self._reconnected,
                                      token=token)
        served = self.client.metadata.get("evalkit")
        if not served:
            self.client.close()
            raise ValueError(f"{url} is not an `evalkit serve` server (its metadata has no 'evalkit' entry); "
                             f"for an openpi server use --policy pi0 --policy-arg url={url}")
        self.served_policy = served.get("policy", "")
        self.spec = wire.spec_from_dict(served["spec"])
        self._episode_intact = True
        self.last_timing: dict = {}

    def _reconnected(self) -> None:
        if self.spec.stateful:
            self._episode_intact = False

    def reset(self) -> None:
        self._episode_intact = True
        self.client.request({"__ctrl__": "reset"})

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        reply = self.client.request(self._wire.observation_to_message(obs, instruction))
        self._check_state()
        self.last_timing = reply.get("server_timing", {})
        return _decode_chunk(reply["actions"])

    def act_batch(self, observations: Sequence[Observation], instructions: Sequence[str]) -> list[np.ndarray]:
        """One round trip for the whole batch; the server answers it with one act_batch call."""
        items = [self._wire.observation_to_message(o, t) for o, t in zip(observations, instructions)]
        reply = self.client.request({"__ctrl__": "infer_batch", "items": items})
        self._check_state()
        self.last_timing = reply.get("server_timing", {})
        return [_decode_chunk(chunk) for chunk in reply["actions_batch"]]

    def _check_state(self) -> None:
        if not self._episode_intact:
            raise StateLost(f"the connection to {self.client.url} was re-opened mid-episode and the served policy "
                            f"{self.served_policy!r} is stateful: its episode state is gone, so this episode stops here")

    def close(self) -> None:
        self.client.close()


def _decode_chunk(chunk):
    """The server sends a NoAction as {"no_action": reason} (the runner records invalid_action) and
    an Undecodable as {"undecodable": reason, "actions": array} (executed and counted)."""
    if isinstance(chunk, dict) and "no_action" in chunk:
        return NoAction(chunk["no_action"])
    if isinstance(chunk, dict) and "undecodable" in chunk:
        return Undecodable(chunk["actions"], chunk["undecodable"])
    return chunk
