"""`evalkit serve` and `--policy remote`: the wire format, batching, errors, reconnects, and
that a remote policy gives the same episodes as the same policy in-process."""

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from evalkit.run.driver import RunConfig, execute
from evalkit.serve.server import PolicyServer, ServerThread
from evalkit.results.store import ResultStore
from evalkit.core.types import NoAction, Observation, PolicySpec, Undecodable
from policies.weightfree.basic import RandomPolicy
from policies.remote import RemotePolicy
from evalkit.serve.wire import FrameTooBig, Refused, ServerError

ROOT = Path(__file__).resolve().parent.parent


def start_server(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`evalkit serve ... --port 0` in a subprocess; returns it and its url once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "evalkit", "serve", "--port", "0", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    line = proc.stdout.readline()
    if "ws://" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line}{proc.stdout.read()}")
    proc.ready_line = line
    return proc, re.search(r"ws://\S+", line).group(0)


def outcomes(run_dir):
    with ResultStore(run_dir, readonly=True) as store:
        return sorted((r.key, r.success, r.termination, r.steps, r.queries) for r in store.results())


def run_fake(out, policy, policy_args, **extra):
    """Fake suite, tasks 0-1, 2 episodes each, unless `extra` says otherwise."""
    config = RunConfig.from_dict({"suites": ["fake"], "policy": policy, "policy_args": policy_args, "tasks": [0, 1],
                                  "episodes_per_task": 2, "out": str(out), **extra})
    return execute(config, progress=False)


# -- wire format, checked with the msgpack library itself -------------------------------------

def openpi_array(obj):
    """openpi's msgpack_numpy encoding, written out here so the test does not trust evalkit.serve.wire."""
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    return obj


def test_server_speaks_openpi_msgpack():
    server = PolicyServer(lambda: RandomPolicy(chunk_size=4, cameras="agentview"), "random", {"chunk_size": 4})
    with ServerThread(server) as url, connect(url, compression=None, max_size=None) as ws:
        metadata = msgpack.unpackb(ws.recv())
        assert metadata["evalkit"]["spec"]["cameras"] == ["agentview"]
        assert metadata["evalkit"]["spec"]["chunk_size"] == 4
        image = np.zeros((224, 224, 3), np.uint8)
        request = {"observation/image": image, "observation/state": np.zeros(8), "prompt": "pick up the bowl",
                   "episode_key": "libero_spatial/0/0/0", "step": 5}
        ws.send(msgpack.packb(request, default=openpi_array))
        reply = msgpack.unpackb(ws.recv())
    actions = reply["actions"]
    assert actions[b"__ndarray__"] is True and actions[b"dtype"] == "<f8" and actions[b"shape"] == [4, 7]
    decoded = np.frombuffer(actions[b"data"], dtype="<f8").reshape(4, 7)  # C order, row = one step
    expected = RandomPolicy(chunk_size=4).act(Observation(episode_key="libero_spatial/0/0/0", step=5), "")
    assert np.array_equal(decoded, expected)
    assert set(reply["server_timing"]) == {"infer_ms", "queue_ms", "batch_size"}


def test_health_check_answers_without_a_websocket():
    with ServerThread(PolicyServer(RandomPolicy, "random")) as url:
        with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=5) as response:
            assert response.status == 200 and b'"status": "ok"' in response.read()


# -- errors, state, batching ------------------------------------------------------------------

class FailsOnStep3(RandomPolicy):
    def act(self, obs, instruction):
        if obs.step == 3:
            raise ValueError("step 3 is cursed")
        return super().act(obs, instruction)


def test_a_failing_query_gets_an_error_frame_and_the_connection_stays_usable():
    with ServerThread(PolicyServer(FailsOnStep3, "fails")) as url:
        policy = RemotePolicy(url=url)
        with pytest.raises(ServerError, match="ValueError: step 3 is cursed"):
            policy.act(Observation(episode_key="e", step=3), "")
        assert policy.act(Observation(episode_key="e", step=4), "").shape == (1, 7)
        assert policy.client.reconnects == 0


class NoActionOnStep2(RandomPolicy):
    def act(self, obs, instruction):
        if obs.step == 3:
            return Undecodable(np.full((1, 7), 0.5), "no FAST tokens")
        return NoAction("undecodable tokens") if obs.step == 2 else super().act(obs, instruction)


def test_no_action_and_undecodable_travel_as_themselves():
    with ServerThread(PolicyServer(NoActionOnStep2, "no-action")) as url:
        policy = RemotePolicy(url=url)
        chunks = policy.act_batch([Observation(step=1), Observation(step=2), Observation(step=3)], ["", "", ""])
    assert chunks[0].shape == (1, 7) and chunks[1] == NoAction("undecodable tokens")
    assert isinstance(chunks[2], Undecodable) and chunks[2].reason == "no FAST tokens"
    assert np.array_equal(chunks[2].actions, np.full((1, 7), 0.5))


class Counter:
    """Stateful: the k-th query of an episode returns k."""

    def __init__(self):
        self.spec = PolicySpec(stateful=True)
        self.calls = 0

    def reset(self):
        self.calls = 0

    def act(self, obs, instruction):
        self.calls += 1
        return np.full((1, 7), float(self.calls))


def test_stateful_policies_get_one_instance_per_connection():
    with ServerThread(PolicyServer(Counter, "counter")) as url:
        first, second = RemotePolicy(url=url), RemotePolicy(url=url)
        assert first.spec.stateful
        obs = Observation()
        assert [first.act(obs, "")[0, 0] for _ in range(3)] == [1, 2, 3]
        assert second.act(obs, "")[0, 0] == 1
        first.reset()
        assert first.act(obs, "")[0, 0] == 1 and second.act(obs, "")[0, 0] == 2


class BatchRecorder(RandomPolicy):
    def __init__(self):
        super().__init__(latency_s=0.05)
        self.sizes = []

    def act_batch(self, observations, instructions):
        self.sizes.append(len(observations))
        time.sleep(self.latency_s)  # one forward pass for the whole batch
        return [RandomPolicy.act(self, o, t) for o, t in zip(observations, instructions)]


@pytest.mark.parametrize("max_batch", [1, 4])
def test_concurrent_queries_are_batched_up_to_the_limit(max_batch):
    policy = BatchRecorder()
    server = PolicyServer(lambda: policy, "recorder", max_batch=max_batch, max_wait_ms=30)
    with ServerThread(server) as url:
        clients = [RemotePolicy(url=url) for _ in range(4)]
        replies = [None] * 4

        def query(i):
            replies[i] = clients[i].act(Observation(episode_key=f"e{i}", step=i), "")

        threads = [threading.Thread(target=query, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sum(policy.sizes) == 4 and max(policy.sizes) <= max_batch
    if max_batch > 1:
        assert max(policy.sizes) > 1  # 4 queries within 30 ms of each other share a call
        assert max(c.last_timing["batch_size"] for c in clients) == max(policy.sizes)
    for i, reply in enumerate(replies):  # each client gets its own observation's answer
        assert np.array_equal(reply, RandomPolicy().act(Observation(episode_key=f"e{i}", step=i), ""))


class FailsOnEpisodeBad(BatchRecorder):
    """A batched model whose whole batch raises when one observation is bad."""

    def act_batch(self, observations, instructions):
        if any(o.episode_key == "bad" for o in observations):
            self.sizes.append(len(observations))
            raise ValueError("malformed observation")
        return super().act_batch(observations, instructions)

    def act(self, obs, instruction):
        if obs.episode_key == "bad":
            raise ValueError("malformed observation")
        return RandomPolicy.act(self, obs, instruction)


def test_one_clients_bad_query_fails_only_its_own_reply():
    policy = FailsOnEpisodeBad()
    server = PolicyServer(lambda: policy, "fails-on-bad", max_batch=4, max_wait_ms=50)
    keys = ["e0", "bad", "e2", "e3"]
    with ServerThread(server) as url:
        clients = [RemotePolicy(url=url) for _ in keys]
        replies = [None] * len(keys)

        def query(i):
            try:
                replies[i] = clients[i].act(Observation(episode_key=keys[i], step=1), "")
            except Exception as exc:  # the bad query's client gets the server's error
                replies[i] = exc

        threads = [threading.Thread(target=query, args=(i,)) for i in range(len(keys))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert max(policy.sizes) > 1  # the bad query did share a batch with good ones
    assert isinstance(replies[1], Exception) and "malformed observation" in str(replies[1])
    for i in (0, 2, 3):
        assert np.array_equal(replies[i], RandomPolicy().act(Observation(episode_key=keys[i], step=1), ""))


def test_remote_without_a_server_says_how_to_start_one():
    with ServerThread(PolicyServer(RandomPolicy, "random")) as url:
        pass  # the port is free again now
    with pytest.raises(ConnectionError, match="no policy server at"):
        RemotePolicy(url=url, reconnect_s=0.3)


# -- exposure: frame limit, token, what a client is told --------------------------------------

SECRET_PATH = "/srv/models/secret-ckpt-7f3a/model.safetensors"


def eventually(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def announce_frame(ws, length: int) -> None:
    """Write only the header of a masked binary frame announcing `length` payload bytes."""
    ws.socket.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", length) + b"\0\0\0\0")


def test_a_frame_over_the_limit_is_refused_from_its_header_and_other_clients_go_on():
    server = PolicyServer(RandomPolicy, "random", max_frame_mb=1)
    with ServerThread(server) as url:
        before = RemotePolicy(url=url)  # connected before the bad client, used after it
        with connect(url, compression=None, max_size=None) as ws:
            assert msgpack.unpackb(ws.recv())["evalkit"]["max_frame_bytes"] == 2**20
            announce_frame(ws, 2**34)  # 16 GiB announced, none of it sent: the server must not wait for it
            with pytest.raises(ConnectionClosed) as refused:
                ws.recv(timeout=10)
        close = refused.value.rcvd
        assert close.code == 1009 and "17179869184 bytes exceeds limit of 1048576 bytes" in close.reason
        assert eventually(lambda: server.too_big == 1)  # counted as the server's handler ends
        obs = Observation(episode_key="e", step=1)
        expected = RandomPolicy().act(obs, "")
        assert np.array_equal(before.act(obs, ""), expected) and before.client.reconnects == 0
        assert np.array_equal(RemotePolicy(url=url).act(obs, ""), expected)  # and new clients are served


def test_the_client_says_when_a_request_is_over_the_servers_limit():
    server = PolicyServer(lambda: RandomPolicy(cameras="agentview"), "random", max_frame_mb=1)
    big = Observation(images={"agentview": np.zeros((1024, 1024, 3), np.uint8)})  # 3 MB
    with ServerThread(server) as url:
        policy = RemotePolicy(url=url)
        with pytest.raises(FrameTooBig, match=r"3\.0 MB, over its limit of 1\.0 MB.*--max-frame-mb"):
            policy.act(big, "")
        assert server.too_big == 0  # checked against the metadata's limit: never sent
        policy.client.metadata = {}  # a server that does not announce its limit: refused by the server
        with pytest.raises(FrameTooBig, match="exceeds limit of 1048576 bytes.*--max-frame-mb"):
            policy.act(big, "")
        assert eventually(lambda: server.too_big == 1)
        assert policy.act(Observation(step=1), "").shape == (1, 7)  # and the client goes on


def test_clients_are_told_the_spec_but_never_the_policy_arguments():
    server = PolicyServer(lambda: RandomPolicy(cameras="agentview"), "random", {"checkpoint": SECRET_PATH})
    received = []
    with ServerThread(server) as url:
        with connect(url, compression=None, max_size=None) as ws:
            received.append(ws.recv())
            ws.send(msgpack.packb({"prompt": "", "episode_key": "e", "step": 1}))
            received.append(ws.recv())
        with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=5) as response:
            received.append(response.read())
    metadata = msgpack.unpackb(received[0])["evalkit"]
    assert set(metadata) == {"protocol", "policy", "spec", "max_frame_bytes"}
    assert metadata["policy"] == "random" and metadata["spec"]["cameras"] == ["agentview"]
    for frame in received:
        assert b"secret-ckpt" not in frame and b"checkpoint" not in frame


class CountsInstances(Counter):
    made = 0

    def __init__(self):
        super().__init__()
        CountsInstances.made += 1


def test_a_server_with_a_token_refuses_connections_without_it(monkeypatch):
    monkeypatch.delenv("EVALKIT_TOKEN", raising=False)
    CountsInstances.made = 0
    server = PolicyServer(CountsInstances, "counter", token="open-sesame-42")
    with ServerThread(server) as url:
        with connect(url, compression=None, max_size=None) as ws:  # no token: told why, then closed
            first = ws.recv(timeout=10)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert isinstance(first, str) and "requires a token" in first and "EVALKIT_TOKEN" in first
        assert closed.value.rcvd.code == 1008
        with pytest.raises(Refused, match="requires a token and the connection sent none"):
            RemotePolicy(url=url, reconnect_s=0.3)
        with pytest.raises(Refused, match="does not match") as wrong:
            RemotePolicy(url=url, token="not-the-token")
        assert "not-the-token" not in str(wrong.value) and "open-sesame-42" not in str(wrong.value)
        assert server.refused == 3 and CountsInstances.made == 1  # no instance for a refused connection
        policy = RemotePolicy(url=url, token="open-sesame-42")
        assert policy.spec.stateful and policy.act(Observation(), "")[0, 0] == 1
        with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=5) as response:
            assert b"counter" not in response.read()  # the health check does not name the policy
        with connect(url, compression=None, max_size=None,  # openpi's client sends its api_key so
                     additional_headers={"Authorization": "Api-Key open-sesame-42"}) as ws:
            assert msgpack.unpackb(ws.recv())["evalkit"]["policy"] == "counter"


def test_token_from_the_environment_on_both_sides(monkeypatch):
    env = {**os.environ, "EVALKIT_TOKEN": "from-the-env"}
    proc, url = start_server("--policy", "random", "--max-frame-mb", "2", env=env)
    try:
        assert "max frame 2 MB" in proc.ready_line and "token: required" in proc.ready_line
        assert "from-the-env" not in proc.ready_line
        monkeypatch.delenv("EVALKIT_TOKEN", raising=False)
        with pytest.raises(Refused, match="requires a token"):
            RemotePolicy(url=url)
        monkeypatch.setenv("EVALKIT_TOKEN", "from-the-env")
        policy = RemotePolicy(url=url)
        assert policy.act(Observation(step=1), "").shape == (1, 7)
        assert policy.client.max_frame_bytes == 2 * 2**20
    finally:
        proc.kill()
        proc.wait()


def test_a_server_reachable_from_elsewhere_without_a_token_warns():
    env = {k: v for k, v in os.environ.items() if k != "EVALKIT_TOKEN"}
    proc, _ = start_server("--policy", "random", "--host", "0.0.0.0", env=env)
    try:
        assert "token: none" in proc.ready_line
        warning = proc.stdout.readline()
        assert "WARNING" in warning and "without a token" in warning
    finally:
        proc.kill()
        proc.wait()


# -- whole runs ---------------------------------------------------------------------------

@pytest.mark.parametrize("policy,args,mode,workers", [
    ("scripted-reach", {"chunk_size": "3"}, "open_loop", 1),
    ("scripted-reach", {"chunk_size": "4"}, "receding:2", 2),
    ("random", {"chunk_size": "4", "scale": "0.5", "cameras": "agentview"}, "ensemble:-0.8", 2),
])
def test_remote_runs_equal_in_process_runs(tmp_path, policy, args, mode, workers):
    serve_args = [f"--policy-arg={k}={v}" for k, v in args.items()]
    proc, url = start_server("--policy", policy, *serve_args)
    try:
        local = run_fake(tmp_path / "local", policy, args, mode=mode, workers=workers)
        remote = run_fake(tmp_path / "remote", "remote", {"url": url}, mode=mode, workers=workers)
    finally:
        proc.kill()
        proc.wait()
    assert outcomes(local) == outcomes(remote)
    assert len(outcomes(remote)) == 4
    if policy == "scripted-reach":
        assert any(o[1] for o in outcomes(remote))


def test_killing_the_server_ends_episodes_as_errors_and_the_run_finishes(tmp_path):
    proc, url = start_server("--policy", "random", "--policy-arg", "latency_s=0.01")
    out = tmp_path / "run"

    def kill_after_first_episode():
        while proc.poll() is None:
            try:
                if outcomes(out):
                    os.kill(proc.pid, signal.SIGKILL)
            except Exception:  # the store is not created yet
                pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_first_episode, daemon=True)
    killer.start()
    try:
        run_fake(out, "remote", {"url": url, "reconnect_s": "0.5"})
    finally:
        proc.kill()
        proc.wait()
    results = outcomes(out)
    assert len(results) == 4 and len({r[0] for r in results}) == 4  # every episode stored once
    terminations = [r[2] for r in results]
    assert "budget" in terminations and "error" in terminations  # before and after the kill
    with ResultStore(out, readonly=True) as store:
        errors = [r.error for r in store.results() if r.termination == "error"]
    assert all("no policy server at" in e for e in errors)


def test_a_restarted_server_is_reconnected_and_episodes_go_on(tmp_path):
    proc, url = start_server("--policy", "random", "--policy-arg", "latency_s=0.01")
    port = url.rsplit(":", 1)[1]
    restarted = []

    def restart():
        proc.kill()
        proc.wait()
        time.sleep(0.3)
        restarted.append(subprocess.Popen([sys.executable, "-m", "evalkit", "serve", "--port", port, "--policy",
                                           "random", "--policy-arg", "latency_s=0.01"], cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    timer = threading.Timer(1.0, restart)
    timer.start()
    try:
        remote = run_fake(tmp_path / "remote", "remote", {"url": url, "reconnect_s": "20"})
    finally:
        timer.join()
        for p in [proc, *restarted]:
            p.kill()
            p.wait()
    local = run_fake(tmp_path / "local", "random", {"latency_s": "0.01"})
    assert restarted and outcomes(remote) == outcomes(local)  # stateless: a resent query is exact
