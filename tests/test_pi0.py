"""pi0's openpi route speaks openpi's wire format: checked against a server written here with the
msgpack library directly (not evalkit.serve.wire), laid out as openpi's LIBERO example sends it."""

import importlib.util
import threading

import msgpack
import numpy as np
import pytest
from websockets.sync.server import serve

from evalkit.core.types import Observation
from policies.vla.pi0 import OpenPIPolicy, quat_to_axis_angle
from policies.remote import RemotePolicy

HORIZON = 10


class OpenPIStandIn:
    """An openpi-style server: metadata on connect, then {"actions": (H, 7)} per observation."""

    def __init__(self):
        self.received = []
        self.server = serve(self.handle, "127.0.0.1", 0, compression=None, max_size=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, ws):
        ws.send(msgpack.packb({"action_horizon": HORIZON}))
        for frame in ws:
            request = msgpack.unpackb(frame)  # bytes keys of the array maps stay bytes
            self.received.append(request)
            actions = np.arange(HORIZON * 8, dtype=np.float32).reshape(HORIZON, 8)  # pi0 pads to 8+ dims
            ws.send(msgpack.packb({"actions": {b"__ndarray__": True, b"data": actions.tobytes(),
                                               b"dtype": actions.dtype.str, b"shape": list(actions.shape)}}))

    def __enter__(self):
        self.thread.start()
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(5)


def as_array(packed):
    assert packed[b"__ndarray__"] is True
    return np.frombuffer(packed[b"data"], dtype=np.dtype(packed[b"dtype"])).reshape(packed[b"shape"])


def libero_obs():
    rng = np.random.default_rng(1)
    # 90 degrees about z: xyzw = (0, 0, sin 45, cos 45)
    state = {"eef_pos": np.array([0.1, -0.2, 1.0]), "eef_quat": np.array([0, 0, np.sqrt(0.5), np.sqrt(0.5)]),
             "gripper_qpos": np.array([0.039, -0.039])}
    images = {cam: rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for cam in ("agentview", "robot0_eye_in_hand")}
    images["agentview"][:128] = 255  # bright top half: shows whether the frame was flipped again
    return Observation(images=images, state=state)


def test_openpi_client_sends_libero_observations_in_openpi_layout():
    server, obs = OpenPIStandIn(), libero_obs()
    with server as server_url:
        policy = OpenPIPolicy(url=server_url, chunk_size=HORIZON)
        chunk = policy.act(obs, "put the bowl on the plate")
    assert policy.server_metadata == {"action_horizon": HORIZON}
    assert chunk.shape == (HORIZON, 7) and chunk[1, 0] == 8.0  # row-major (H, D), first 7 dims kept
    [request] = server.received
    assert set(request) == {"observation/image", "observation/wrist_image", "observation/state", "prompt"}
    assert request["prompt"] == "put the bowl on the plate"
    image, wrist = as_array(request["observation/image"]), as_array(request["observation/wrist_image"])
    assert image.dtype == np.uint8 and image.shape == (224, 224, 3) and wrist.shape == (224, 224, 3)
    # the suite's (already flipped) frame, only resized: no second flip
    assert image[:100].min() == 255 and image[124:].mean() < 200
    state = as_array(request["observation/state"])
    assert state.shape == (8,) and np.allclose(state, [0.1, -0.2, 1.0, 0, 0, np.pi / 2, 0.039, -0.039])


def test_quat_to_axis_angle():
    assert np.allclose(quat_to_axis_angle([0, 0, np.sqrt(0.5), np.sqrt(0.5)]), [0, 0, np.pi / 2])
    assert np.allclose(quat_to_axis_angle([0, 0, 0, 1]), 0)


def test_remote_refuses_an_openpi_server_and_points_to_pi0():
    with OpenPIStandIn() as server_url:
        with pytest.raises(ValueError, match="--policy pi0"):
            RemotePolicy(url=server_url)


@pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None, reason="lerobot is installed")
def test_pi0_lerobot_without_lerobot_says_what_to_install():
    from policies.vla.pi0 import LeRobotPI0Policy

    with pytest.raises(ImportError, match="lerobot\\[pi0\\]"):
        LeRobotPI0Policy()


# -- protocol facts checked against the official openpi code (scripts/parity/pi0_wire.py, with the
# official openpi-client and openpi's WebsocketPolicyServer; results/parity_pi0_wire.md), kept here
# as pure checks so a regression fails without the side venv.

def test_openpi_request_dtypes_and_keys_are_exactly_the_libero_examples():
    from policies.vla.pi0 import openpi_libero_request

    request = openpi_libero_request(libero_obs(), "open the drawer")
    assert list(request) == ["observation/image", "observation/wrist_image", "observation/state", "prompt"]
    assert request["observation/image"].dtype == np.uint8 and request["observation/wrist_image"].dtype == np.uint8
    assert request["observation/state"].dtype == np.float64  # the example concatenates robosuite's float64 arrays
    assert type(request["prompt"]) is str


def test_resize_with_pad_sizes_as_openpi_client():
    """openpi_client.image_tools truncates size/ratio; rounding gave 149 rows instead of 148 for 200x301."""
    from policies.vla.pi0 import resize_with_pad

    out = resize_with_pad(np.full((200, 301, 3), 255, np.uint8), 224)
    rows = np.flatnonzero(out[:, 112, 0])
    assert (rows[0], rows[-1] + 1) == (38, 38 + 148)  # int(200 / (301 / 224)) = 148 rows, top pad 38
    assert np.array_equal(resize_with_pad(np.full((256, 256, 3), 7, np.uint8), 224), np.full((224, 224, 3), 7))


class ErrorThenClose(OpenPIStandIn):
    """openpi's server on a failing infer: a text frame with the traceback, then it closes the connection."""

    def handle(self, ws):
        ws.send(msgpack.packb({}))
        for frame in ws:
            self.received.append(msgpack.unpackb(frame))
            if len(self.received) == 1:
                ws.send("Traceback (most recent call last):\nValueError: boom")
                ws.close()
                return
            ws.send(msgpack.packb({"actions": {b"__ndarray__": True, b"data": np.ones((5, 7)).tobytes(),
                                               b"dtype": "<f8", b"shape": [5, 7]}}))


def test_pi0_reads_openpi_error_frames_and_reconnects_after_the_server_closes():
    from evalkit.serve.wire import ServerError

    server, obs = ErrorThenClose(), libero_obs()
    with server as server_url:
        policy = OpenPIPolicy(url=server_url, chunk_size=5, reconnect_s=5)
        with pytest.raises(ServerError, match="ValueError: boom"):
            policy.act(obs, "x")
        policy.reset()  # sends nothing: an openpi server would read any message as an observation
        assert np.array_equal(policy.act(obs, "x"), np.ones((5, 7)))
    assert len(server.received) == 2


def test_evalkit_serve_answers_an_openpi_client_as_openpi_expects():
    """First frame: the metadata map, readable with msgpack's defaults (as openpi's unpackb reads it);
    the LIBERO element reaches the served policy unchanged; a bad request gets a text frame."""
    from websockets.sync.client import connect

    from evalkit.serve.server import PolicyServer, ServerThread
    from evalkit.core.types import PolicySpec

    class Recording:
        spec = PolicySpec(cameras=("agentview", "robot0_eye_in_hand"), chunk_size=2)
        seen = []

        def reset(self):
            pass

        def act(self, obs, instruction):
            self.seen.append((obs, instruction))
            return np.full((2, 7), 0.25)

    def openpi_pack(obj):  # openpi_client.msgpack_numpy's encoding (shape as a tuple)
        if isinstance(obj, np.ndarray):
            return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
        return obj

    from policies.vla.pi0 import openpi_libero_request

    element = openpi_libero_request(libero_obs(), "put the bowl on the plate")
    with ServerThread(PolicyServer(Recording, "recording")) as url, connect(url, compression=None, max_size=None) as ws:
        first = ws.recv()
        assert isinstance(first, bytes) and msgpack.unpackb(first)["evalkit"]["policy"] == "recording"
        ws.send(msgpack.packb(element, default=openpi_pack))
        reply = msgpack.unpackb(ws.recv())
        ws.send(msgpack.packb([1, 2, 3]))  # openpi's client packs whatever it is given
        error = ws.recv()
        ws.send(msgpack.packb(element, default=openpi_pack))
        again = ws.recv()
    actions = reply["actions"]
    # openpi's unpack_array: np.ndarray(buffer=data, dtype=dtype, shape=shape)
    assert np.array_equal(np.ndarray(buffer=actions[b"data"], dtype=np.dtype(actions[b"dtype"]),
                                     shape=actions[b"shape"]), np.full((2, 7), 0.25))
    assert isinstance(error, str) and "Traceback" in error and isinstance(again, bytes)
    obs, instruction = Recording.seen[0]
    assert instruction == "put the bowl on the plate"
    assert np.array_equal(obs.images["agentview"], element["observation/image"])
    assert np.array_equal(obs.images["robot0_eye_in_hand"], element["observation/wrist_image"])
    assert obs.state["state"].dtype == np.float64 and np.array_equal(obs.state["state"], element["observation/state"])
