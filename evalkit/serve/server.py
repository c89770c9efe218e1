"""`evalkit serve`: any evalkit policy behind openpi's websocket + msgpack wire format.

One asyncio loop accepts connections; queries from all of them go through one queue to
a batcher, which answers up to `max_batch` queries with one `act_batch` call, waiting at
most `max_wait_ms` after the first for more to arrive. The policy runs on a single
thread, so it is never called concurrently. Replies carry `server_timing`; a failing
query gets a text frame with the traceback (openpi's error convention) and the
connection stays open, so one bad query costs one episode, not the run.

Stateful policies (spec.stateful) get one instance per connection: the harness opens
one connection per worker, which runs one episode at a time. Stateless ones share one
instance, and `reset` from a client is acknowledged without touching it (by the Policy
contract a stateless policy has nothing to reset).

Exposure: a frame over `max_frame_mb` is refused from its header, before its payload is
read (that connection closes with code 1009; the others go on); with a `token`, a
connection whose handshake does not carry it gets a text frame saying so and is closed
before any metadata is sent or any policy instance made. The metadata holds the policy's
name, spec and the frame limit, never its arguments (checkpoint paths).
"""

from __future__ import annotations

import asyncio
import hmac
import http
import ipaddress
import json
import os
import sys
import traceback
from typing import Callable

import numpy as np

from evalkit.serve import wire
from evalkit.serve.batcher import Batcher
from evalkit.core.types import NoAction, Undecodable


def _encode_chunk(chunk):
    """An action array; {"no_action": reason} for a NoAction (the policy produced no chunk);
    {"undecodable": reason, "actions": array} for an Undecodable (executed, and counted)."""
    if isinstance(chunk, NoAction):
        return {"no_action": chunk.reason}
    if isinstance(chunk, Undecodable):
        return {"undecodable": chunk.reason, "actions": np.asarray(chunk.actions)}
    return np.asarray(chunk)


class PolicyServer:
    """Serves the policy built by `make_policy` (called once, or once per connection if stateful).

    `args` (the policy's arguments) stay on the server: clients get the name and the spec only.
    `token`: if set, a connection must carry it in its handshake (see evalkit.serve.wire).
    `max_frame_mb`: the largest frame read; a larger one closes its connection unread."""

    def __init__(self, make_policy: Callable[[], object], name: str = "", args: dict | None = None,
                 max_batch: int = 1, max_wait_ms: float = 0.0, token: str | None = None,
                 max_frame_mb: float = wire.DEFAULT_MAX_FRAME_MB):
        if not 0 < max_frame_mb < 2**40:
            raise ValueError(f"--max-frame-mb must be a number of MB > 0, got {max_frame_mb}")
        self.make_policy = make_policy
        self.shared = make_policy()
        self.spec = self.shared.spec
        self.batcher = Batcher(max_batch, max_wait_ms, encode=_encode_chunk)
        self.batcher.clients = lambda: self.connections
        self.name = name
        self.policy_args = dict(args or {})  # never sent: they may name checkpoints and paths
        self.token = token or None
        self.max_frame_bytes = int(max_frame_mb * 2**20)
        self.metadata = {"evalkit": {"protocol": wire.PROTOCOL_VERSION, "policy": name,
                                     "spec": wire.spec_to_dict(self.spec), "max_frame_bytes": self.max_frame_bytes}}
        self.connections = 0
        self.refused = 0  # connections turned away for their token
        self.too_big = 0  # connections closed for a frame over the limit

    async def serve(self, host: str, port: int, ready: Callable[[int], None] | None = None) -> None:
        from websockets.asyncio.server import serve

        batcher = asyncio.create_task(self.batcher.run())
        # max_size: frames are refused from their header, before the payload is read; max_queue:
        # a client (one request at a time) cannot park more than a couple of frames in memory.
        async with serve(self._handle, host, port, compression=None, max_size=self.max_frame_bytes, max_queue=2,
                         process_request=self._health) as server:
            bound = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready(bound)
            try:
                await server.serve_forever()
            finally:
                batcher.cancel()

    def _health(self, connection, request):
        """`GET /healthz`: 200 with a small JSON status, without a websocket upgrade (and, on a
        server with a token, without naming the policy)."""
        if request.path != "/healthz":
            return None
        status = {"status": "ok", "connections": self.connections, "queries": self.batcher.queries,
                  "batches": self.batcher.batches, "max_batch": self.batcher.max_batch}
        if self.token is None:
            status["policy"] = self.name
        return connection.respond(http.HTTPStatus.OK, json.dumps(status) + "\n")

    def _auth_problem(self, connection) -> str | None:
        """Why this connection may not use the server, or None. Never includes a token."""
        if self.token is None:
            return None
        sent = wire.token_from_headers(connection.request.headers)
        if sent is None:
            return ("this server requires a token and the connection sent none: pass --policy-arg token=... "
                    f"or set {wire.TOKEN_ENV} (openpi clients: api_key=...)")
        if not hmac.compare_digest(sent.encode(), self.token.encode()):
            return "the token sent does not match the server's"
        return None

    async def _handle(self, connection) -> None:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedError

        problem = self._auth_problem(connection)
        if problem is not None:  # before any metadata, and before a stateful policy makes an instance
            self.refused += 1
            _log(f"refused a connection from {_peer(connection)}: {problem}")
            try:
                await connection.send(f"evalkit serve refused the connection: {problem}")
                await connection.close(wire.CLOSE_REFUSED, "no or wrong token")
            except ConnectionClosed:
                pass
            return
        policy = self.make_policy() if self.spec.stateful else self.shared
        self.connections += 1
        try:
            await connection.send(wire.pack(self.metadata))
            async for frame in connection:
                await connection.send(await self._reply(policy, frame))
        except ConnectionClosedError as exc:
            if exc.sent is not None and exc.sent.code == wire.CLOSE_TOO_BIG:
                self.too_big += 1
                _log(f"closed the connection from {_peer(connection)}: {exc.sent.reason} "
                     f"(--max-frame-mb {self.max_frame_bytes / 2**20:g})")
        except ConnectionClosed:
            pass
        finally:
            self.connections -= 1

    async def _reply(self, policy, frame) -> bytes | str:
        """The reply frame to one request: msgpack bytes, or a text frame holding the error."""
        try:
            if isinstance(frame, str):
                raise ValueError("expected a binary msgpack frame, got text")
            message = wire.unpack(frame)
            if not isinstance(message, dict):
                raise ValueError(f"expected a msgpack map, got {type(message).__name__}")
            control = message.get("__ctrl__")
            if control == "reset":
                if self.spec.stateful:
                    policy.reset()
                return wire.pack({"__ack__": "reset"})
            if control == "infer_batch":
                answers = await self._infer(policy, message["items"])
                return wire.pack({"actions_batch": [a for a, _ in answers], "server_timing": answers[0][1]})
            if control is not None:
                return wire.pack({"__ack__": "ignored"})
            [(actions, timing)] = await self._infer(policy, [message])
            return wire.pack({"actions": actions, "server_timing": timing})
        except Exception:
            return "evalkit serve: the request failed on the server:\n" + traceback.format_exc()

    async def _infer(self, policy, messages: list[dict]) -> list[tuple[np.ndarray, dict]]:
        return await self.batcher.submit(policy, [wire.observation_from_message(m) for m in messages])


def serve_policy(name: str, args: dict, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 1,
                 max_wait_ms: float = 0.0, token: str | None = None,
                 max_frame_mb: float = wire.DEFAULT_MAX_FRAME_MB) -> None:
    """Build the registered policy and serve it until interrupted (what `evalkit serve` runs).
    `token`: None reads EVALKIT_TOKEN; empty means none."""
    from evalkit.core import registry

    if token is None:
        token = os.environ.get(wire.TOKEN_ENV)
    token = token or None
    server = PolicyServer(lambda: registry.make_policy(name, args), name, args, max_batch, max_wait_ms,
                          token=token, max_frame_mb=max_frame_mb)

    def ready(bound_port: int) -> None:
        # Tests and scripts wait for this line (with --port 0 it is the only way to learn the port).
        print(f"evalkit serve: {name} on ws://{host}:{bound_port} (max batch {max_batch}, "
              f"max wait {max_wait_ms:g} ms, stateful: {server.spec.stateful}, max frame {max_frame_mb:g} MB, "
              f"token: {'required' if token else 'none'})", flush=True)
        if token is None and not _is_loopback(host):
            _log(f"WARNING: listening on {host}, beyond this machine, without a token: anyone who reaches "
                 f"port {bound_port} can query the policy. Set {wire.TOKEN_ENV} (or --token) on the server "
                 f"and the clients.")

    try:
        asyncio.run(server.serve(host, port, ready))
    except KeyboardInterrupt:
        print("evalkit serve: stopped", file=sys.stderr)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "" (all interfaces) or a host name: assume it is reachable from elsewhere
        return False


def _peer(connection) -> str:
    address = getattr(connection, "remote_address", None)
    return f"{address[0]}:{address[1]}" if address else "a client"


def _log(message: str) -> None:
    print(f"evalkit serve: {message}", file=sys.stderr, flush=True)


class ServerThread:
    """A PolicyServer on a background thread (tests, benchmarks, notebooks): `with ServerThread(...) as url:`."""

    def __init__(self, server: PolicyServer, host: str = "127.0.0.1", port: int = 0):
        import threading

        self.server, self.host, self.port = server, host, port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evalkit-serve", daemon=True)
        self._task = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self.server.serve(self.host, self.port, self._bound))
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass

    def _bound(self, port: int) -> None:
        self.port = port
        self._ready.set()

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the policy server thread did not start listening within 10 s")
        return f"ws://{self.host}:{self.port}"

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
