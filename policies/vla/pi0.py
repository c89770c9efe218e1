"""pi0 by two routes: an openpi policy server (`pi0`), or LeRobot's PI0Policy (`pi0-lerobot`).

openpi route: openpi's `scripts/serve_policy.py --env LIBERO` serves pi0 over websocket +
msgpack (evalkit.serve.wire speaks the same format). Each query sends the observation the way
openpi's LIBERO example builds it:
  "observation/image"       agent view, 180-degree flipped (the suite already did that),
                            resized with padding to 224x224, uint8 HxWx3;
  "observation/wrist_image" the wrist camera, likewise;
  "observation/state"       (8,) eef position, eef axis-angle (from robosuite's xyzw
                            quaternion), the two gripper finger positions;
  "prompt"                  the instruction;
and reads "actions" (H, 7+) back, executed as they come (pi0's LIBERO outputs are in
LIBERO's own action space: convention "native"). openpi's example re-plans every 5
steps: run with `--mode receding:5`. openpi's server keeps no per-episode state, and an
upstream server treats any other message as an observation, so `reset` sends nothing.
"""

from __future__ import annotations

import math
import numpy as np

from evalkit.core.types import Observation, PolicySpec
from policies.hub import default_device

LIBERO_CAMERAS = ("agentview", "robot0_eye_in_hand")
LIBERO_STATE = ("eef_pos", "eef_quat", "gripper_qpos")
LAYOUTS = ("libero",)
# openpi's LIBERO example executes the first 5 actions of each chunk, then re-plans (replan_steps=5).
PI0_REFERENCE_MODES = (("libero", "receding:5"),)


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """robosuite's (x, y, z, w) quaternion -> axis * angle, as openpi's LIBERO example computes it."""
    quat = np.asarray(quat_xyzw, dtype=np.float64)
    w = float(np.clip(quat[3], -1.0, 1.0))
    sin_half = math.sqrt(1.0 - w * w)
    if math.isclose(sin_half, 0.0):
        return np.zeros(3)
    return quat[:3] * 2.0 * math.acos(w) / sin_half


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Fit an HxWx3 uint8 image into size x size keeping its aspect ratio (bilinear), zero padding.

    Sizes as openpi_client.image_tools.resize_with_pad computes them: divide by the larger ratio and
    truncate (rounding instead differs by a row or column for some non-square frames, e.g. 200x301).
    """
    from PIL import Image

    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return np.asarray(image, dtype=np.uint8)
    ratio = max(width / size, height / size)
    new_w, new_h = max(1, int(width / ratio)), max(1, int(height / ratio))
    resized = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((new_w, new_h), Image.BILINEAR)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = np.asarray(resized)
    return canvas


def libero_state(obs: Observation) -> np.ndarray:
    """(8,) eef position, eef axis-angle, gripper finger positions."""
    return np.concatenate([obs.state["eef_pos"], quat_to_axis_angle(obs.state["eef_quat"]),
                           obs.state["gripper_qpos"]]).astype(np.float64)


def openpi_libero_request(obs: Observation, instruction: str, image_size: int = 224) -> dict:
    return {
        "observation/image": resize_with_pad(obs.images["agentview"], image_size),
        "observation/wrist_image": resize_with_pad(obs.images["robot0_eye_in_hand"], image_size),
        "observation/state": libero_state(obs),
        "prompt": instruction,
    }


class OpenPIPolicy:
    """A model behind an openpi policy server: `--policy pi0 --policy-arg url=ws://HOST:8000`."""

    def __init__(self, url: str = "", layout: str = "libero", chunk_size: int = 50, image_size: int = 224,
                 timeout_s: float = 300.0, reconnect_s: float = 30.0):
        if not url:
            raise ValueError("pi0 needs the openpi server's address: --policy-arg url=ws://HOST:8000 (start it with "
                             "openpi's `uv run scripts/serve_policy.py --env LIBERO`)")
        if layout not in LAYOUTS:
            raise ValueError(f"no openpi observation layout {layout!r}; known: {', '.join(LAYOUTS)}")
        from evalkit.serve.wire import WireClient

        self.image_size = int(image_size)
        self.client = WireClient(url, float(timeout_s), float(reconnect_s))
        self.server_metadata = self.client.metadata
        self.spec = PolicySpec(cameras=LIBERO_CAMERAS, state_keys=LIBERO_STATE, chunk_size=int(chunk_size),
                               reference_modes=PI0_REFERENCE_MODES)

    def reset(self) -> None:
        pass  # openpi's server holds no episode state (and would read a control message as an observation)

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        reply = self.client.request(openpi_libero_request(obs, instruction, self.image_size))
        return np.asarray(reply["actions"])[:, : self.spec.action_dim]


class LeRobotPI0Policy:
    """LeRobot's PI0Policy in this process: `--policy pi0-lerobot --policy-arg checkpoint=lerobot/pi0_libero_finetuned`.

    The same LIBERO inputs as the openpi route (images as float CHW in [0, 1], the 8-D
    state, the task string); LeRobot's own pre/post-processors normalise and unnormalise.
    lerobot and torch are imported here only, when this policy is built.
    """

    def __init__(self, checkpoint: str = "lerobot/pi0_libero_finetuned", device: str = "", image_size: int = 224):
        torch, policy_class, processors = _import_lerobot()
        self.torch = torch
        self.device = default_device(device)
        self.image_size = int(image_size)
        try:
            self.model = policy_class.from_pretrained(checkpoint).to(self.device).eval()
        except OSError as exc:
            raise FileNotFoundError(f"could not load pi0 from {checkpoint!r} ({exc}); pass a local folder with "
                                    f"--policy-arg checkpoint=PATH when this machine is offline") from exc
        self.preprocess, self.postprocess = processors(self.model, checkpoint)
        self.image_keys = list(getattr(self.model.config, "image_features", {}) or
                               ["observation.images.image", "observation.images.wrist_image"])
        chunk = int(getattr(self.model.config, "n_action_steps", 50))
        self.spec = PolicySpec(cameras=LIBERO_CAMERAS, state_keys=LIBERO_STATE, chunk_size=chunk,
                               reference_modes=PI0_REFERENCE_MODES)

    def reset(self) -> None:
        self.model.reset()

    def batch(self, obs: Observation, instruction: str) -> dict:
        torch = self.torch
        out = {"observation.state": torch.as_tensor(libero_state(obs), dtype=torch.float32)[None], "task": [instruction]}
        for key, camera in zip(self.image_keys, LIBERO_CAMERAS):
            image = resize_with_pad(obs.images[camera], self.image_size)
            out[key] = torch.as_tensor(image).permute(2, 0, 1)[None].float() / 255.0
        return out

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        batch = self.preprocess(self.batch(obs, instruction))
        batch = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}
        with self.torch.no_grad():
            chunk = self.model.predict_action_chunk(batch)  # (1, H, D), still normalised
        chunk = self.postprocess(chunk)
        return np.asarray(chunk.float().cpu().numpy()).reshape(-1, chunk.shape[-1])[:, : self.spec.action_dim]


def _import_lerobot():
    """(torch, PI0Policy, processor factory); a clear error when lerobot is missing."""
    try:
        import torch

        try:
            from lerobot.policies.vla.pi0.modeling_pi0 import PI0Policy
        except ImportError:  # lerobot < 0.3 kept policies under lerobot.common
            from lerobot.common.policies.vla.pi0.modeling_pi0 import PI0Policy
    except ImportError as exc:
        raise ImportError(f"pi0-lerobot needs LeRobot with its pi0 extra (pip install 'lerobot[pi0]'): {exc}. "
                          f"Or serve pi0 with openpi and use --policy pi0 --policy-arg url=ws://HOST:8000") from exc
    return torch, PI0Policy, _processors


def _processors(model, checkpoint: str):
    """LeRobot >= 0.4 normalises outside the model, in saved processor pipelines; older ones inside it."""
    try:
        from lerobot.policies.factory import make_pre_post_processors
    except ImportError:
        return (lambda batch: batch), (lambda actions: actions)
    pre, post = make_pre_post_processors(model.config, pretrained_path=checkpoint)
    return pre, post
