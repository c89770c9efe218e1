"""NORA and NORA-LONG (declare-lab): Qwen2.5-VL-3B emitting FAST+ action tokens.

One adapter for both; the only difference is the time horizon (1 for NORA, 5 for
NORA-LONG), read from the checkpoint's FAST config or given. Inputs follow the reference
inference exactly: one user turn holding the 224x224 image then the instruction, Qwen's
chat template with its default system message, greedy `generate` with `max_new_tokens`.

The inputs are built from AutoTokenizer + AutoImageProcessor instead of the
Qwen2.5-VL processor, which needs torchvision for its video half.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from evalkit.types import NoAction, Observation, PolicySpec
from policies.fast import FastCodec
from policies.hub import CheckpointError, checkpoint_file, default_device, is_local, torch_dtype
from policies.nora_actions import decode_actions
from policies.normalization import ActionStats, read_action_stats

IMAGE_SIZE = 224  # 224x224 -> 16x16 patches of 14 -> 64 merged image tokens
FIRST_ACTION_TOKEN = "<robot_action_0>"
DEFAULT_FAST = "physical-intelligence/fast"
STATS_FILES = ("norm_stats.json", "dataset_statistics.json")


# -- prompt and model inputs (shared with NORA-1.5) ------------------------------------------

def chat_messages(instruction: str) -> list[dict]:
    """The reference's single user turn: the image, then the instruction."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]


def prompt_text(tokenizer, instruction: str) -> str:
    """The chat-templated prompt, `<|image_pad|>` not yet expanded; generation prompt appended."""
    return tokenizer.apply_chat_template(chat_messages(instruction), tokenize=False, add_generation_prompt=True)


class QwenInputs:
    """Builds Qwen2.5-VL model inputs for a batch of (image, instruction) pairs (left-padded)."""

    def __init__(self, tokenizer, image_processor, image_token: str = "<|image_pad|>", merge_size: int = 2):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_token = image_token
        self.merge = merge_size ** 2  # patches merged into one image token

    def __call__(self, images: Sequence[np.ndarray], instructions: Sequence[str], padding_side: str = "left") -> dict:
        """padding_side: "left" for generation (it appends on the right); "right" keeps every row's
        positions as in a batch of one, which matters when keys are read out (NORA-1.5)."""
        from PIL import Image

        pil = [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images]
        vision = self.image_processor(images=pil, return_tensors="pt")
        texts = []
        for grid, instruction in zip(vision["image_grid_thw"], instructions):
            tokens = int(grid.prod()) // self.merge
            texts.append(prompt_text(self.tokenizer, instruction).replace(self.image_token,
                                                                           self.image_token * tokens, 1))
        self.tokenizer.padding_side = padding_side
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                "pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}


# How NORA's published numbers executed chunks: its LIBERO script runs the whole chunk open-loop
# (experiments/libero/run_libero_eval_nora.py); its real-WidowX loop executes only action[0] of
# each chunk (experiments/bridge/run_widowx.py).
NORA_REFERENCE_MODES = (("libero", "open_loop"), ("widowx", "receding:1"))


# How camera frames reach 224x224 in NORA's reference loops (the harness applies the path, see
# PolicySpec.image_path): its LIBERO script takes OpenVLA's get_libero_image (flip, JPEG round trip,
# TF lanczos3 to 224; the qwen_vl_utils resize that follows is then a no-op at 224); elsewhere the
# raw frame goes through qwen_vl_utils (smart_resize, Pillow bicubic).
NORA_IMAGE_PATHS = (("libero", "openvla"), ("*", "qwen_bicubic"))


def model_image(obs: Observation, camera: str, fallback_path: str = "qwen_bicubic") -> np.ndarray:
    """The camera frame (already upright for models) at 224x224: the harness has applied the image
    path; a frame of another size (a caller outside the harness) goes through `fallback_path`."""
    from evalkit.images import prepare

    image = obs.image(camera)
    return image if image.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE) else prepare(fallback_path, image, IMAGE_SIZE)


def fallback_image_path(image_path: str, paths: tuple) -> str:
    """The path an adapter applies itself to frames the harness did not prepare."""
    return dict(paths).get("*", "none") if image_path == "reference" else image_path


def model_batch(inputs: QwenInputs, observations: Sequence[Observation], instructions: Sequence[str], camera: str,
                image_path: str, device: str, padding_side: str = "left") -> dict:
    """Model inputs for a batch of observations, on the model's device."""
    batch = inputs([model_image(o, camera, image_path) for o in observations], instructions, padding_side)
    return {k: v.to(device) for k, v in batch.items()}


def greedy_new_tokens(model, batch: dict, max_new_tokens: int) -> list[list[int]]:
    """Greedy generation, as the reference; returns the new token ids of each row."""
    import torch

    with torch.no_grad():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def chunk_or_reason(generated: Sequence[int], codec: FastCodec, stats: ActionStats, horizon: int,
                    first_action_id: int, respect_mask: bool, model_name: str):
    """Decoded, unnormalised (horizon, 7) actions, or NoAction saying why they could not be decoded."""
    decoded = decode_actions(generated, codec, stats, horizon, first_action_id, respect_mask=respect_mask)
    if not decoded.ok:
        return NoAction(f"{model_name} output did not decode to {horizon}x7 actions: {decoded.error}")
    return decoded.actions


def default_max_new_tokens(horizon: int, given: Optional[int]) -> int:
    # Each step is 7 DCT coefficients before BPE; 16 tokens per step is ample and bounds a runaway.
    return int(given or 16 * horizon + 16)


# -- loading -----------------------------------------------------------------------------------

# NORA's LIBERO script unnormalises with the bare suite names (libero_spatial, ...) and OpenVLA's
# no-noops q01/q99, built into its inference code rather than read from the checkpoint.
NORA_LIBERO_STATS = Path(__file__).parent / "nora_libero_stats.json"


def load_stats(checkpoint, norm_stats: Optional[str], unnorm_key: Optional[str]) -> ActionStats:
    """q01/q99 stats: a given file; else, for a bare LIBERO suite name, NORA's built-in LIBERO
    statistics (as its LIBERO script); else the checkpoint's norm_stats.json / dataset_statistics.json."""
    if norm_stats is None and unnorm_key in nora_libero_keys():
        norm_stats = str(NORA_LIBERO_STATS)
    if norm_stats is not None:
        path = Path(norm_stats)
        if not path.exists():
            raise CheckpointError(f"norm_stats file {path} does not exist")
    else:
        path = next((p for p in (checkpoint_file(checkpoint, f, required=False) for f in STATS_FILES) if p), None)
        if path is None:
            raise CheckpointError(f"checkpoint {checkpoint} has none of {', '.join(STATS_FILES)}; "
                                  f"pass --policy-arg norm_stats=PATH")
    return read_action_stats(json.loads(Path(path).read_text()), unnorm_key, str(path))


def nora_libero_keys() -> set[str]:
    return {k for k in json.loads(NORA_LIBERO_STATS.read_text()) if not k.startswith("_")}


def load_fast(checkpoint, fast_tokenizer: Optional[str]) -> FastCodec:
    """The FAST+ codec: given, else a `fast/` folder in the checkpoint, else physical-intelligence/fast."""
    if fast_tokenizer is None:
        local = Path(checkpoint) / "fast"
        fast_tokenizer = str(local) if is_local(checkpoint) and local.is_dir() else DEFAULT_FAST
    return FastCodec.from_pretrained(fast_tokenizer)


def load_tokenizer_and_images(source):
    """AutoTokenizer + AutoImageProcessor (the PIL one: no torchvision), errors naming the source."""
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        image_processor = AutoImageProcessor.from_pretrained(source, backend="pil")
    except OSError as exc:
        raise CheckpointError(f"cannot load the tokenizer / image processor of {source}: {exc}") from exc
    if tokenizer.chat_template is None:
        raise CheckpointError(f"the tokenizer of {source} has no chat template (chat_template.jinja or "
                              f"tokenizer_config.json); NORA's prompt needs Qwen2.5-VL's")
    return tokenizer, image_processor


def resolve_horizon(checkpoint, codec: FastCodec, time_horizon: Optional[int]) -> int:
    """Given > the FAST config's time_horizon > 5 for a 'nora-long' id, else 1."""
    if time_horizon is not None:
        return int(time_horizon)
    if codec.time_horizon:
        return int(codec.time_horizon)
    return 5 if "long" in Path(str(checkpoint)).name.lower() else 1


# -- the policy --------------------------------------------------------------------------------

class NoraPolicy:
    """NORA (horizon 1) / NORA-LONG (horizon 5).

    Outputs model-convention actions (gripper in [0, 1]); the suite's postprocessor maps
    them (e.g. LIBERO's -1 open / +1 close). A generation that does not decode to a full
    chunk is returned as `NoAction` with the reason, never as zeros.
    """

    def __init__(self, checkpoint: str = "declare-lab/nora", time_horizon: Optional[int] = None,
                 unnorm_key: Optional[str] = None, norm_stats: Optional[str] = None,
                 fast_tokenizer: Optional[str] = None, max_new_tokens: Optional[int] = None,
                 dtype: str = "auto", device: Optional[str] = None, respect_mask: bool = False,
                 camera: str = "agentview", image_path: str = "reference"):
        from transformers import Qwen2_5_VLForConditionalGeneration

        self.checkpoint, self.camera = checkpoint, camera
        self.image_path = fallback_image_path(image_path, NORA_IMAGE_PATHS)
        self.respect_mask = respect_mask  # False: NORA's reference unnormalises every dimension
        self.device = default_device(device)
        self.stats = load_stats(checkpoint, norm_stats, unnorm_key)
        self.codec = load_fast(checkpoint, fast_tokenizer)
        self.horizon = resolve_horizon(checkpoint, self.codec, time_horizon)
        self.max_new_tokens = default_max_new_tokens(self.horizon, max_new_tokens)
        self.tokenizer, image_processor = load_tokenizer_and_images(checkpoint)
        self.inputs = QwenInputs(self.tokenizer, image_processor)
        self.first_action_id = action_token_id(self.tokenizer)
        try:
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                checkpoint, dtype=torch_dtype(dtype), attn_implementation="sdpa").to(self.device).eval()
        except OSError as exc:
            raise CheckpointError(f"cannot load the Qwen2.5-VL weights of {checkpoint}: {exc}") from exc
        self.spec = PolicySpec(cameras=(camera,), chunk_size=self.horizon, action_convention="rlds",
                               reference_modes=NORA_REFERENCE_MODES, image_path=image_path,
                               image_paths=NORA_IMAGE_PATHS, image_size=IMAGE_SIZE)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, **options) -> "NoraPolicy":
        """Same as the constructor: options are dtype, device, unnorm_key, norm_stats, ..."""
        return cls(path_or_hub_id, **options)

    def reset(self) -> None:
        pass  # stateless: every query sees only the current frame

    def act(self, obs: Observation, instruction: str):
        return self.act_batch([obs], [instruction])[0]

    def act_batch(self, observations: Sequence[Observation], instructions: Sequence[str]) -> list:
        generated = self.generate(observations, instructions)
        return [self.decode(ids) for ids in generated]

    def generate(self, observations: Sequence[Observation], instructions: Sequence[str]) -> list[list[int]]:
        """Greedy generation for a batch; returns the new token ids of each row."""
        batch = model_batch(self.inputs, observations, instructions, self.camera, self.image_path, self.device)
        return greedy_new_tokens(self.model, batch, self.max_new_tokens)

    def decode(self, generated: Sequence[int]):
        return chunk_or_reason(generated, self.codec, self.stats, self.horizon, self.first_action_id,
                               self.respect_mask, "NORA")


def action_token_id(tokenizer) -> int:
    """Id of <robot_action_0> (151665 in declare-lab checkpoints), found in the tokenizer."""
    token_id = tokenizer.convert_tokens_to_ids(FIRST_ACTION_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise CheckpointError(f"the tokenizer has no {FIRST_ACTION_TOKEN} token: not a NORA checkpoint")
    return int(token_id)


def NoraLongPolicy(checkpoint: str = "declare-lab/nora-long", time_horizon: Optional[int] = 5, **kwargs) -> NoraPolicy:
    """NORA-LONG: the NORA adapter with a 5-step horizon and its own default checkpoint."""
    return NoraPolicy(checkpoint, time_horizon=time_horizon, **kwargs)
