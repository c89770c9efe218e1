"""SpatialVLA (IPEC-COMMUNITY/spatialvla-4b-*) through transformers' remote code.

The checkpoint's processor owns the action grids (spherical translation, rotation and
gripper bins) and the statistics; the model's `predict_action` generates 3 tokens per
step for `processor.action_chunk_size` steps and `processor.decode_actions` turns them
into (chunk, 7) actions, unnormalised with `unnorm_key`. As SpatialVLA's SimplerEnv
policy: images resized to 224x224 (area interpolation), the last `num_obs_steps` frames
`obs_delta` queries apart as input (the released models use one), the instruction as the
prompt, `do_normalize=False` (the processor's image normaliser is not applied). Outputs
are roll/pitch/yaw deltas and gripper in [0, 1]: `action_convention="rlds"`; the paper
executes them with temporal ensembling (`--mode ensemble:-0.8`).
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

from evalkit.core.types import Observation, PolicySpec
from policies.hub import default_device, torch_dtype
from policies.vla.openvla import check_checkpoint, remote_code_error

IMAGE_SIZE = 224


def resolve_unnorm_key(statistics: dict, key: Optional[str]) -> str:
    """A statistics key; a short name ("bridge_orig") matches its versioned key ("bridge_orig/1.0.0")."""
    if key is None:
        if len(statistics) != 1:
            raise ValueError(f"the processor holds statistics of several datasets; choose unnorm_key=... from "
                             f"{sorted(statistics)}")
        return next(iter(statistics))
    if key in statistics:
        return key
    versioned = [k for k in statistics if k.split("/")[0] == key]
    if len(versioned) == 1:
        return versioned[0]
    raise ValueError(f"unnorm_key {key!r} is not in the processor's statistics; available: {sorted(statistics)}")


class SpatialVLAPolicy:
    """`--policy spatialvla --policy-arg checkpoint=IPEC-COMMUNITY/spatialvla-4b-224-pt --policy-arg unnorm_key=bridge_orig`."""

    def __init__(self, checkpoint: str = "IPEC-COMMUNITY/spatialvla-4b-224-pt", unnorm_key: str = "",
                 camera: str = "agentview", device: str = "", dtype: str = "auto"):
        processor, model = load_spatialvla(checkpoint, device, dtype)
        self._setup(processor, model, unnorm_key or None, camera)

    @classmethod
    def with_model(cls, processor, model, unnorm_key: Optional[str] = None,
                   camera: str = "agentview") -> "SpatialVLAPolicy":
        """An adapter around already-built parts (tests use fakes with the same API)."""
        policy = cls.__new__(cls)
        policy._setup(processor, model, unnorm_key, camera)
        return policy

    def _setup(self, processor, model, unnorm_key: Optional[str], camera: str) -> None:
        self.processor, self.model, self.camera = processor, model, camera
        self.unnorm_key = resolve_unnorm_key(processor.statistics, unnorm_key)
        self.num_obs_steps = int(getattr(processor, "num_obs_steps", 1))
        self.obs_delta = int(getattr(processor, "obs_delta", 1))
        # Frames of earlier queries, newest last; enough to pick num_obs_steps of them obs_delta apart.
        self.history: deque = deque(maxlen=(self.num_obs_steps - 1) * self.obs_delta + 1)
        self.spec = PolicySpec(cameras=(camera,), chunk_size=int(processor.action_chunk_size),
                               action_convention="rlds", stateful=self.num_obs_steps > 1,
                               sticky_gripper_repeats=10,  # SpatialVLA's SimplerEnv script holds 10 steps
                               sticky_gripper_variant="on_sticky_start",  # and updates "previous" only then
                               reference_modes=(("google_robot", "ensemble:-0.8"), ("widowx", "ensemble:-0.8")),
                               # its SimplerEnv adapter: cv2.resize(INTER_AREA) to 224
                               image_path="reference", image_paths=(("*", "cv2_area"),), image_size=IMAGE_SIZE)

    def reset(self) -> None:
        self.history.clear()

    def frames(self, image: np.ndarray) -> list:
        """The model's image input: this frame and earlier ones, oldest first (the first frame repeated
        while the episode is younger than the window, as the reference pads it)."""
        from PIL import Image

        from evalkit.core.images import cv2_area

        frame = image if image.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE) else cv2_area(image, IMAGE_SIZE)
        if not self.history:
            self.history.extend([frame] * self.history.maxlen)
        else:
            self.history.append(frame)
        chosen = list(self.history)[::-1][:: self.obs_delta][: self.num_obs_steps][::-1]
        return [Image.fromarray(f) for f in chosen]

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        inputs = self.processor(images=self.frames(obs.image(self.camera)), text=instruction,
                                unnorm_key=self.unnorm_key, return_tensors="pt", do_normalize=False)
        inputs = self._to_model(inputs)
        outputs = self.model.predict_action(inputs)
        actions = np.asarray(self.processor.decode_actions(outputs, unnorm_key=self.unnorm_key)["actions"],
                             dtype=np.float64)
        if actions.shape != (self.spec.chunk_size, self.spec.action_dim):
            raise ValueError(f"SpatialVLA decoded actions of shape {actions.shape}; expected "
                             f"({self.spec.chunk_size}, {self.spec.action_dim}) from the processor's chunk size")
        return actions

    def _to_model(self, inputs):
        """Move tensors to the model's device (floating ones to its dtype), leave the rest."""
        parameters = getattr(self.model, "parameters", None)
        if parameters is None:
            return inputs
        first = next(parameters())
        return {k: (v.to(first.device, first.dtype) if v.is_floating_point() else v.to(first.device))
                if hasattr(v, "is_floating_point") else v for k, v in inputs.items()}


def load_spatialvla(checkpoint: str, device: str = "", dtype: str = "auto"):
    """(processor, model) through the checkpoint's remote code (AutoProcessor + AutoModel)."""
    check_checkpoint(checkpoint, "SpatialVLA")
    from transformers import AutoModel, AutoProcessor

    device = default_device(device)
    try:
        processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
        model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True, torch_dtype=torch_dtype(dtype))
    except OSError as exc:
        raise remote_code_error("SpatialVLA", checkpoint, exc) from exc
    return processor, model.to(device).eval()
