"""The policy-server wire format: openpi's websocket + msgpack protocol, and a client for it.

openpi's format (packages/openpi-client): every message is one binary websocket frame
holding a msgpack map; numpy arrays travel as maps {b"__ndarray__": True, b"data": raw
bytes (C order), b"dtype": dtype.str, b"shape": shape} and numpy scalars as
{b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}. The server sends a
metadata map right after the handshake; the client then sends observation maps and
gets back maps holding "actions" (H, D). A text frame from the server is an error
report (a traceback), not a reply. `GET /healthz` answers 200 without upgrading.

evalkit adds, within that format (an openpi client never sees these unless it asks):
- metadata["evalkit"] = {"protocol", "policy", "spec", "max_frame_bytes"}: the served
  policy's name and spec, so a remote client renders exactly the cameras the policy reads,
  and the largest frame the server reads. Nothing else: not the policy's arguments
  (checkpoint paths), which stay on the server;
- observation maps with "images" / "state" / "privileged" maps, "prompt",
  "episode_key" and "step" (see `observation_to_message`);
- control maps {"__ctrl__": "reset"} -> {"__ack__": "reset"}, and
  {"__ctrl__": "infer_batch", "items": [observation maps]} -> {"actions_batch": [...]};
- "server_timing" in every reply: infer_ms, queue_ms, batch_size.

Limits and access (`evalkit serve --max-frame-mb`, `--token`):
- a frame whose header announces more than max_frame_bytes is refused before its payload is
  read: the server closes that connection with code 1009 (message too big) and a reason
  naming both sizes; the client checks its requests against metadata's max_frame_bytes
  first and raises FrameTooBig instead of sending;
- a server with a token reads it from the websocket handshake's `Authorization` header
  (`Api-Key TOKEN`, as openpi's client sends its api_key, or `Bearer TOKEN`). Without it,
  or with another one, the first frame is a text frame saying so (never echoing a token)
  instead of the metadata, and the server closes the connection (code 1008); the client
  raises Refused.

msgpack (and websockets, for the client) are the `serve` extra; evalkit's core does not
import this module.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import msgpack
import numpy as np

from evalkit.core.types import Observation, PolicySpec

PROTOCOL_VERSION = 1
TOKEN_ENV = "EVALKIT_TOKEN"  # the shared token, for `evalkit serve` and `--policy remote` alike
# The largest frame `evalkit serve` reads by default. A LIBERO query (two 256x256 RGB cameras and
# the state) is about 0.4 MB, a SimplerEnv one (one 640x512 camera) about 1 MB, and an
# infer_batch message holds one per worker: 64 MB leaves room for -w 32 on SimplerEnv.
DEFAULT_MAX_FRAME_MB = 64.0
CLOSE_TOO_BIG = 1009  # websocket close codes (RFC 6455): message too big,
CLOSE_REFUSED = 1008  # policy violation (no or wrong token)
# openpi clients send LIBERO observations under these keys; a served evalkit policy
# sees them under evalkit's camera and state names.
OPENPI_KEY_ALIASES = {
    "observation/image": ("images", "agentview"),
    "observation/wrist_image": ("images", "robot0_eye_in_hand"),
    "observation/state": ("state", "state"),
}


# -- msgpack with numpy arrays (openpi's encoding) ---------------------------------------------

def _encode_numpy(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise TypeError(f"cannot send numpy dtype {obj.dtype} over the wire (object, void or complex)")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the wire")


def _decode_numpy(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        # copy: a view into the message buffer would be read-only
        return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"dtype"])).reshape(obj[b"shape"]).copy()
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def pack(message: Any) -> bytes:
    return msgpack.packb(message, default=_encode_numpy, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_decode_numpy, raw=False, strict_map_key=False)


# -- evalkit objects <-> messages ------------------------------------------------------------

def observation_to_message(obs: Observation, instruction: str) -> dict:
    return {"prompt": instruction, "images": dict(obs.images), "state": dict(obs.state),
            "privileged": dict(obs.privileged), "episode_key": obs.episode_key, "step": int(obs.step)}


def observation_from_message(message: dict) -> tuple[Observation, str]:
    """An evalkit observation map, or an openpi-style flat one ("observation/image", ...)."""
    obs = Observation(images=dict(message.get("images", {})), state=dict(message.get("state", {})),
                      privileged=dict(message.get("privileged", {})),
                      episode_key=str(message.get("episode_key", "")), step=int(message.get("step", 0)))
    for key, value in message.items():
        if key in OPENPI_KEY_ALIASES:
            group, name = OPENPI_KEY_ALIASES[key]
            getattr(obs, group)[name] = value
        elif key.startswith("observation/"):
            name = key.split("/", 1)[1]
            (obs.images if "image" in name else obs.state)[name] = value
    return obs, str(message.get("prompt", ""))


def spec_to_dict(spec: PolicySpec) -> dict:
    return dataclasses.asdict(spec)


def token_from_headers(headers) -> str | None:
    """The token a client sent in its handshake: `Authorization: Api-Key TOKEN` (openpi's client,
    `api_key=`) or `Authorization: Bearer TOKEN`; None without one."""
    try:
        value = (headers.get("Authorization") or "").strip()
    except LookupError:  # websockets' Headers: the header sent more than once
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() in ("api-key", "bearer") and token.strip():
        return token.strip()
    return None


def auth_headers(token: str | None) -> dict | None:
    return {"Authorization": f"Api-Key {token}"} if token else None


def spec_from_dict(values: dict) -> PolicySpec:
    known = {f.name for f in dataclasses.fields(PolicySpec)}
    values = {k: v for k, v in values.items() if k in known}  # a newer server may send more fields
    for key in ("cameras", "state_keys"):
        values[key] = tuple(values.get(key, ()))
    for key in ("reference_modes", "image_paths", "settings"):  # (name, value) pairs arrive as lists
        values[key] = tuple(tuple(pair) for pair in values.get(key, ()))
    return PolicySpec(**values)


# -- client --------------------------------------------------------------------------------------

class ServerError(RuntimeError):
    """The server answered with an error frame (its traceback is the message)."""


class Refused(ServerError):
    """The server refused the connection (no token, or another one than its own)."""


class FrameTooBig(ValueError):
    """A request larger than the server's frame limit (`evalkit serve --max-frame-mb`)."""


class WireClient:
    """A websocket connection to a policy server, reconnecting with exponential backoff.

    `request` sends one map and returns the reply. When the connection drops (server
    restarted, network blip) it reconnects, waiting 0.25 s, 0.5 s, 1 s, ... up to
    `reconnect_s` in total, and resends the request; past that it raises ConnectionError.
    Resending is safe because a reply depends only on the request (and, for stateful
    policies, the caller decides: see `on_reconnect`). `token` goes in the handshake's
    Authorization header; a server that refuses it raises Refused, at once (no retries).
    """

    def __init__(self, url: str, timeout_s: float = 300.0, reconnect_s: float = 30.0, on_reconnect=None,
                 token: str | None = None):
        self.url = url if url.startswith(("ws://", "wss://")) else f"ws://{url}"
        self.timeout_s = float(timeout_s)
        self.reconnect_s = float(reconnect_s)
        self.on_reconnect = on_reconnect  # called after a reconnect, before the request is resent
        self.token = token or None
        self.connection = None
        self.metadata: dict = {}
        self.reconnects = 0
        self.connect()

    @property
    def max_frame_bytes(self) -> int | None:
        """The server's frame limit, where its metadata says it (evalkit serve does)."""
        served = self.metadata.get("evalkit") if isinstance(self.metadata, dict) else None
        limit = served.get("max_frame_bytes") if isinstance(served, dict) else None
        return int(limit) if limit else None

    def connect(self) -> None:
        """Open the connection (with backoff) and read the server's metadata frame."""
        from websockets.sync.client import connect

        deadline, delay, last_error = time.monotonic() + self.reconnect_s, 0.25, None
        while True:
            try:
                # A long-lived connection, not a `with` block: entering the context by hand works on
                # websockets < 17 (connect returns the connection) and >= 17 (it returns a context).
                self.connection = connect(self.url, compression=None, max_size=None, open_timeout=10,
                                          additional_headers=auth_headers(self.token)).__enter__()
                first = self.connection.recv(timeout=self.timeout_s)
                if isinstance(first, str):  # instead of the metadata: the server refused this connection
                    self.close()
                    raise Refused(f"{self.url}: {first}")
                self.metadata = unpack(first)
                return
            except (OSError, *_closed_errors()) as exc:
                last_error = exc
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"no policy server at {self.url} ({last_error}); start one with "
                                      f"`evalkit serve --policy NAME --port PORT`, or check the url") from last_error
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def request(self, message: dict) -> dict:
        payload = pack(message)
        try:
            if self.connection is None:  # an earlier request gave up on it
                self.connect()
            self._check_size(payload)
            self.connection.send(payload)
            return self._receive()
        except TimeoutError as exc:  # the server is up but slow: resending would only queue more work
            self.close()
            raise TimeoutError(f"no reply from the policy server at {self.url} within {self.timeout_s:g} s "
                               f"(raise --policy-arg timeout_s=...)") from exc
        except (OSError, *_closed_errors()) as exc:
            self._raise_if_too_big(exc, payload)
            self.close()
            self.connect()
            self.reconnects += 1
            if self.on_reconnect is not None:
                self.on_reconnect()
            self._check_size(payload)
            try:
                self.connection.send(payload)
                return self._receive()
            except (OSError, *_closed_errors()) as again:
                self._raise_if_too_big(again, payload)
                raise

    def _check_size(self, payload: bytes) -> None:
        limit = self.max_frame_bytes
        if limit is not None and len(payload) > limit:
            raise FrameTooBig(_too_big_message(self.url, len(payload), limit))

    def _raise_if_too_big(self, exc: Exception, payload: bytes) -> None:
        """The server closed the connection because the frame was over its limit: resending the
        same frame would only fail again, so say so instead."""
        close = getattr(exc, "rcvd", None)
        code = close.code if close is not None else getattr(self.connection, "close_code", None)
        if code == CLOSE_TOO_BIG:
            reason = close.reason if close is not None else getattr(self.connection, "close_reason", "")
            self.close()
            raise FrameTooBig(_too_big_message(self.url, len(payload), None, reason)) from exc

    def _receive(self) -> dict:
        reply = self.connection.recv(timeout=self.timeout_s)
        if isinstance(reply, str):  # openpi's convention: a text frame carries a server-side traceback
            raise ServerError(f"the policy server at {self.url} reported an error:\n{reply}")
        return unpack(reply)

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                pass
            self.connection = None


def _too_big_message(url: str, size: int, limit: int | None, reason: str = "") -> str:
    over = f"its limit of {limit / 2**20:.1f} MB" if limit is not None else f"its limit ({reason or 'code 1009'})"
    return (f"this request to the policy server at {url} is {size / 2**20:.1f} MB, over {over}; start the server "
            f"with a larger --max-frame-mb, or send smaller frames (fewer workers -w: an infer_batch message "
            f"holds one observation per worker)")


def _closed_errors() -> tuple:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    return (ConnectionClosed, InvalidHandshake)
