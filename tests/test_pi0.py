"""pi0's openpi route speaks openpi's wire format: checked against a server written here with the
msgpack library directly (not evalkit.wire), laid out as openpi's LIBERO example sends it."""

import importlib.util
import threading

import msgpack
import numpy as np
import pytest
from websockets.sync.server import serve

from evalkit.types import Observation
from policies.pi0 import OpenPIPolicy, quat_to_axis_angle
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
    from policies.pi0 import LeRobotPI0Policy

    with pytest.raises(ImportError, match="lerobot\\[pi0\\]"):
        LeRobotPI0Policy()
