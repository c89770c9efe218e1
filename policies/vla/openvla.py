"""OpenVLA (openvla/openvla-7b and its LIBERO fine-tunes) through transformers' remote code.

As the reference LIBERO evaluation: the agent-view frame (already upright) resized to
224x224, optionally center-cropped to 90% of its area and resized back (checkpoints
trained with crop augmentation: every LIBERO fine-tune), the prompt
"In: What action should the robot take to {instruction}?\\nOut:" (instruction lower-cased),
the empty token 29871 appended when missing, 7 greedy tokens. The tokens decode to one
action with numpy (`decode_action_tokens`), unnormalised with the checkpoint's q01/q99 of
`unnorm_key` except where the mask says not (the gripper). The gripper comes out in
[0, 1] with 1 = open: `action_convention="rlds"`, mapped per suite by the harness.
"""

from __future__ import annotations

import json
from typing import Optional

import numpy as np

from evalkit.core.types import Observation, PolicySpec
from policies.hub import (CheckpointError, checkpoint_file, default_device, is_local, looks_like_path,
                          torch_dtype)
from policies.normalization import ActionStats, read_action_stats, unnormalize

PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
VOCAB_SIZE = 32000  # Llama-2's 32064 minus the 64 padding rows: action ids are the last 256 ids below it
N_BINS = 256
EMPTY_TOKEN = 29871  # the "" token training put after "Out:"
IMAGE_SIZE = 224
CROP_AREA = 0.9


def prompt_for(instruction: str) -> str:
    return PROMPT.format(instruction=instruction.lower())


def bin_centers(n_bins: int = N_BINS) -> np.ndarray:
    """Centres of the n_bins - 1 intervals between n_bins points evenly spread over [-1, 1]."""
    edges = np.linspace(-1.0, 1.0, n_bins)
    return (edges[:-1] + edges[1:]) / 2.0


def decode_action_tokens(token_ids, vocab_size: int = VOCAB_SIZE, n_bins: int = N_BINS) -> np.ndarray:
    """Action token ids -> normalised actions in [-1, 1].

    Id vocab_size - 1 is bin 0; each lower id is the next bin. There are only n_bins - 1
    centres, so the lowest id (vocab_size - n_bins) shares the last centre with the one
    above it; ids outside the action range are clipped to the nearest end, as the reference does.
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    centres = bin_centers(n_bins)
    return centres[np.clip(vocab_size - ids - 1, 0, len(centres) - 1)]


def tokens_to_action(token_ids, stats: ActionStats) -> np.ndarray:
    """The 7 generated ids -> one action in dataset units (masked dims left normalised)."""
    return unnormalize(decode_action_tokens(token_ids), stats, respect_mask=True)


def center_crop(image: np.ndarray, area: float = CROP_AREA) -> np.ndarray:
    """Crop the central `area` fraction of the image (side sqrt(area)) and resize back, as the
    reference LIBERO loop does at test time (openvla/openvla experiments/robot/openvla_utils.py
    `get_vla_action` + `crop_and_resize`): uint8 -> float32 in [0, 1], `tf.image.crop_and_resize`
    (bilinear, box in normalised coordinates, samples at box_start * (n - 1) + i * step), clip, and
    `tf.image.convert_image_dtype(..., tf.uint8, saturate=True)`, which scales by 255.5 and truncates.
    Reproduced here in float32 numpy, value for value (scripts/parity/openvla_parity.py); Pillow's
    bilinear with the same box samples the same points but rounds: ~19% of values came out 1 higher
    (and <1% 1 lower)."""
    image = np.asarray(image, dtype=np.uint8)
    f32 = np.float32
    side = min(max(np.sqrt(f32(area)).astype(f32), f32(0)), f32(1))
    start = ((f32(1) - side) / f32(2)).astype(f32)
    stop = (start + side).astype(f32)
    unit = image.astype(f32) * f32(1.0 / 255.0)

    def sample_points(n: int):
        step = f32((stop - start) * f32(n - 1) / f32(n - 1)) if n > 1 else f32(0)
        where = (f32(start * f32(n - 1)) + np.arange(n, dtype=f32) * step).astype(f32)
        low = np.floor(where).astype(np.int64)
        return low, np.ceil(where).astype(np.int64), (where - low.astype(f32)).astype(f32)

    height, width = image.shape[:2]
    top_i, bottom_i, y_lerp = sample_points(height)
    left_i, right_i, x_lerp = sample_points(width)
    x_lerp = x_lerp[None, :, None]
    top_rows, bottom_rows = unit[top_i], unit[bottom_i]
    top = top_rows[:, left_i] + (top_rows[:, right_i] - top_rows[:, left_i]) * x_lerp
    bottom = bottom_rows[:, left_i] + (bottom_rows[:, right_i] - bottom_rows[:, left_i]) * x_lerp
    out = top + (bottom - top) * y_lerp[:, None, None]
    scaled = np.clip(out, f32(0), f32(1)) * f32(255.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


# How frames reach 224x224 (the harness applies the path, see PolicySpec.image_path): OpenVLA's own
# LIBERO and Bridge loops JPEG-round-trip and resize with TF lanczos3; SimplerEnv's OpenVLA adapter
# (Google robot, WidowX in simulation) resizes with cv2 INTER_AREA.
OPENVLA_IMAGE_PATHS = (("libero", "openvla"), ("google_robot", "simpler_openvla"), ("widowx", "simpler_openvla"),
                       ("*", "openvla"))


def model_image(image: np.ndarray, crop: bool, fallback_path: str = "openvla") -> np.ndarray:
    """The 224x224 input (resized by `fallback_path` when the harness did not), center-cropped."""
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        from evalkit.core.images import prepare

        image = prepare(fallback_path, image, IMAGE_SIZE)
    return center_crop(image) if crop else image


def resolve_unnorm_key(stats: dict, key: Optional[str]) -> Optional[str]:
    """The reference's fallback: a LIBERO suite name matches its "_no_noops" dataset."""
    if key is not None and key not in stats and f"{key}_no_noops" in stats:
        return f"{key}_no_noops"
    return key


class OpenVLAPolicy:
    """`--policy openvla --policy-arg checkpoint=openvla/openvla-7b-finetuned-libero-spatial`."""

    def __init__(self, checkpoint: str = "openvla/openvla-7b-finetuned-libero-spatial", unnorm_key: str = "",
                 center_crop: bool = True, camera: str = "agentview", device: str = "", dtype: str = "auto"):
        processor, model = load_openvla(checkpoint, device, dtype)
        stats = norm_stats(model, checkpoint)
        self._setup(processor, model, stats, unnorm_key or None, center_crop, camera)

    @classmethod
    def with_model(cls, processor, model, stats: dict, unnorm_key: Optional[str] = None, crop: bool = True,
                   camera: str = "agentview") -> "OpenVLAPolicy":
        """An adapter around already-built parts (tests use fakes with the same API)."""
        policy = cls.__new__(cls)
        policy._setup(processor, model, stats, unnorm_key, crop, camera)
        return policy

    def _setup(self, processor, model, stats: dict, unnorm_key, crop, camera: str) -> None:
        self.processor, self.model, self.camera = processor, model, camera
        self.crop = bool(crop)  # --policy-arg center_crop=false arrives as False (evalkit.core.settings)
        self.unnorm_key = resolve_unnorm_key(stats, unnorm_key)
        self.stats = read_action_stats(stats, self.unnorm_key, "the checkpoint's norm_stats")
        self.spec = PolicySpec(cameras=(camera,), chunk_size=1, action_dim=len(self.stats.q01),
                               action_convention="rlds",  # one action per query: every loop re-plans each step
                               reference_modes=(("libero", "open_loop"), ("google_robot", "open_loop"),
                                                ("widowx", "open_loop")),
                               image_path="reference", image_paths=OPENVLA_IMAGE_PATHS, image_size=IMAGE_SIZE)

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, instruction: str) -> np.ndarray:
        image = model_image(obs.image(self.camera), self.crop)
        ids = self.generate(image, prompt_for(instruction))
        return tokens_to_action(ids, self.stats)[None]

    def generate(self, image: np.ndarray, prompt: str) -> np.ndarray:
        """Greedy-generate the action tokens; returns the last action_dim generated ids."""
        import torch
        from PIL import Image

        inputs = self.processor(prompt, Image.fromarray(image), return_tensors="pt")
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if int(input_ids[0, -1]) != EMPTY_TOKEN:
            input_ids = torch.cat([input_ids, torch.tensor([[EMPTY_TOKEN]], dtype=input_ids.dtype)], dim=1)
            mask = torch.cat([mask, torch.ones((1, 1), dtype=mask.dtype)], dim=1)
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                      pixel_values=inputs["pixel_values"].to(device, dtype),
                                      max_new_tokens=self.spec.action_dim, do_sample=False)
        return out[0, -self.spec.action_dim:].cpu().numpy()


def norm_stats(model, checkpoint: str) -> dict:
    """The model's norm_stats (config.json), else the checkpoint's dataset_statistics.json."""
    stats = getattr(model, "norm_stats", None)
    if stats:
        return stats
    path = checkpoint_file(checkpoint, "dataset_statistics.json", required=False)
    if path is None:
        raise CheckpointError(f"{checkpoint} has no norm_stats in its config and no dataset_statistics.json")
    return json.loads(path.read_text())


def check_checkpoint(checkpoint: str, model: str) -> None:
    """Refuse a local path that does not exist before importing transformers (seconds) to say so."""
    if looks_like_path(checkpoint) and not is_local(checkpoint):
        raise CheckpointError(f"{model} checkpoint folder {checkpoint} does not exist; pass a folder holding the "
                              f"checkpoint (config.json, weights, remote code) or a hub id")


def remote_code_error(model: str, checkpoint: str, exc: Exception) -> CheckpointError:
    return CheckpointError(f"cannot load {model} from {checkpoint!r}: {exc}\nThe weights are not on this machine "
                           f"(or it is offline): download them elsewhere (huggingface-cli download {checkpoint}) "
                           f"and pass --policy-arg checkpoint=LOCAL_FOLDER")


def load_openvla(checkpoint: str, device: str = "", dtype: str = "auto"):
    """(processor, model) through the checkpoint's remote code; errors name what is missing."""
    check_checkpoint(checkpoint, "OpenVLA")
    import transformers

    # transformers 5 dropped AutoModelForVision2Seq, the class OpenVLA's config maps to its model.
    auto_model = getattr(transformers, "AutoModelForVision2Seq", None) or transformers.AutoModelForImageTextToText
    device = default_device(device)
    try:
        processor = transformers.AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
        model = auto_model.from_pretrained(checkpoint, trust_remote_code=True, torch_dtype=torch_dtype(dtype),
                                           low_cpu_mem_usage=True)
    except OSError as exc:
        raise remote_code_error("OpenVLA", checkpoint, exc) from exc
    return processor, model.to(device).eval()
