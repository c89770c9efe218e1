"""NORA and NORA-LONG (declare-lab): Qwen2.5-VL-3B emitting FAST+ action tokens.

One adapter for both; the only difference is the time horizon (1 for NORA, 5 for
NORA-LONG), read from the checkpoint's FAST config or given. Inputs follow the reference
inference exactly: one user turn holding the 224x224 image then the instruction, Qwen's
chat template with its default system message, greedy `generate` under the checkpoint's
generation config, as long as the reference's `model.generate(**inputs)` would run.

The inputs are built from AutoTokenizer + AutoImageProcessor instead of the
Qwen2.5-VL processor, which needs torchvision for its video half; they hold everything
the processor gives, `mm_token_type_ids` included (tests/test_nora_processor_parity.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from evalkit.core.types import NoAction, Observation, PolicySpec, Undecodable
from policies.nora.fast import FastCodec
from policies.hub import CheckpointError, checkpoint_file, default_device, is_local, torch_dtype
from policies.nora.actions import decode_actions
from policies.normalization import ActionStats, read_action_stats, unnormalize

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


# Modality of each prompt token, as the processor's mm_token_type_ids: text 0, image 1, video 2.
IMAGE_TOKEN, VIDEO_TOKEN = "<|image_pad|>", "<|video_pad|>"


def mm_token_type_ids(input_ids, image_id: int, video_id: int):
    """Qwen2.5-VL (transformers >= 5) places image tokens by M-RoPE (3-D positions) only when
    these are given; without them every token gets a plain 1-D position."""
    import torch

    types = torch.zeros_like(input_ids)
    types[input_ids == image_id] = 1
    types[input_ids == video_id] = 2
    return types


class QwenInputs:
    """Builds Qwen2.5-VL model inputs for a batch of (image, instruction) pairs (left-padded)."""

    def __init__(self, tokenizer, image_processor, image_token: str = IMAGE_TOKEN, merge_size: int = 2):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_token = image_token
        self.merge = merge_size ** 2  # patches merged into one image token
        self.image_id = tokenizer.convert_tokens_to_ids(image_token)
        self.video_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)

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
        ids = encoded["input_ids"]
        return {"input_ids": ids, "attention_mask": encoded["attention_mask"],
                "pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"],
                "mm_token_type_ids": mm_token_type_ids(ids, self.image_id, self.video_id)}


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
    from evalkit.core.images import prepare

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


# transformers' GenerationConfig default max_length, in 4.x and 5.x alike
DEFAULT_MAX_LENGTH = 20


@dataclass(frozen=True)
class GenerationLength:
    """How many tokens the reference call `model.generate(**inputs)` (transformers 4.50/4.54, a
    batch of one, no length argument) emits at most: the generation config's max_new_tokens;
    else, max_length at its default of 20 (unset or written as 20), 20 new tokens (capped by
    max_position_embeddings); else the explicit max_length, which counts the prompt. transformers 5
    counts the prompt in a max_length of 20 written in the file too, so the adapter computes the
    budget itself and passes max_new_tokens."""

    max_new_tokens: Optional[int] = None  # fixed budget
    max_length: Optional[int] = None      # total budget, prompt included
    max_positions: Optional[int] = None   # caps the default budget, as 4.x does
    source: str = "given"

    def budget(self, prompt_length: int) -> int:
        if self.max_new_tokens is not None:
            return int(self.max_new_tokens)
        if self.max_length is not None:  # the first token is always generated
            return max(1, int(self.max_length) - prompt_length)
        total = prompt_length + DEFAULT_MAX_LENGTH
        return max(1, min(total, self.max_positions or total) - prompt_length)

    def describe(self) -> str:
        if self.max_new_tokens is not None:
            return f"{self.max_new_tokens} new tokens ({self.source})"
        if self.max_length is not None:
            return f"max_length {self.max_length} counting the prompt ({self.source})"
        return f"{DEFAULT_MAX_LENGTH} new tokens (transformers' default: {self.source})"


def generation_length(generation_config, given: Optional[int], max_positions: Optional[int]) -> GenerationLength:
    """The budget: given > the checkpoint's max_new_tokens > its non-default max_length > 20 new."""
    if given is not None:
        return GenerationLength(max_new_tokens=int(given), source="given: max_new_tokens")
    new = getattr(generation_config, "max_new_tokens", None)
    if new is not None:
        return GenerationLength(max_new_tokens=int(new), source="the checkpoint's generation_config max_new_tokens")
    total = getattr(generation_config, "max_length", None)
    if total is not None and int(total) != DEFAULT_MAX_LENGTH:
        return GenerationLength(max_length=int(total), source="the checkpoint's generation_config max_length")
    return GenerationLength(max_positions=max_positions,
                            source="the checkpoint's generation_config sets no length")


# generation-config fields that change greedy tokens when set (value: the neutral setting)
GREEDY_FIELDS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0, "min_length": 0}


def generation_note(length: GenerationLength, generation_config) -> str:
    """What the run records: the length rule, the stop tokens and any field that changes greedy tokens."""
    fields = [f"eos_token_id={generation_config.eos_token_id}"]
    for name, neutral in GREEDY_FIELDS.items():
        value = getattr(generation_config, name, None)
        if value not in (None, neutral):
            fields.append(f"{name}={value}")
    return f"greedy, {length.describe()}; generation_config: {', '.join(fields)}"


def take_generation_length(model, given: Optional[int]) -> GenerationLength:
    """The budget of `model`'s generation config; its length fields are then cleared, since each
    call passes max_new_tokens (transformers 5 warns when both are set)."""
    config = model.generation_config
    length = generation_length(config, given, model_max_positions(model))
    config.max_length = config.max_new_tokens = None
    return length


def model_max_positions(model) -> Optional[int]:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None) or getattr(config, "max_position_embeddings", None)


def greedy_new_tokens(model, batch: dict, length: GenerationLength) -> list[list[int]]:
    """Greedy generation under the model's generation config, as the reference's `generate(**inputs)`
    with do_sample=False; returns the new token ids of each row, each cut to its own budget (rows
    of a left-padded batch have different prompt lengths; one row's tokens do not depend on
    another's, so generating to the longest budget and cutting is what each alone would give)."""
    import torch

    lengths = batch["attention_mask"].sum(dim=1).tolist()
    budgets = [length.budget(int(n)) for n in lengths]
    with torch.no_grad():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max(budgets))
    rows = out[:, batch["input_ids"].shape[1]:].tolist()
    return [strip_padding(row, budget, model.generation_config) for row, budget in zip(rows, budgets)]


def strip_padding(row: list[int], budget: int, generation_config) -> list[int]:
    """A row cut to its budget, without the pad tokens generate appends after a row's end."""
    row = row[:budget]
    eos = generation_config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    for i, token in enumerate(row):
        if token in eos:
            return row[:i + 1]
    return row


ON_UNDECODABLE = ("reference", "strict")


def chunk_or_reason(generated: Sequence[int], codec: FastCodec, stats: ActionStats, horizon: int,
                    first_action_id: int, respect_mask: bool, model_name: str, on_undecodable: str = "reference"):
    """Decoded, unnormalised (horizon, 7) actions; for an output that does not decode, what the
    reference executes (`reference`: its FAST decoder returns zeros, unnormalised to the q01/q99
    midpoint, as an Undecodable the runner counts) or the end of the episode (`strict`: NoAction)."""
    decoded = decode_actions(generated, codec, stats, horizon, first_action_id, respect_mask=respect_mask)
    if decoded.ok:
        return decoded.actions
    reason = f"{model_name} output did not decode to {horizon}x7 actions: {decoded.error}"
    if on_undecodable == "strict":
        return NoAction(reason)
    return Undecodable(unnormalize(np.zeros((horizon, len(stats.q01))), stats, respect_mask), reason)


def check_on_undecodable(value: str) -> str:
    if value not in ON_UNDECODABLE:
        raise ValueError(f"on_undecodable must be 'reference' (execute the reference's zeros, counted) or 'strict' "
                         f"(end the episode as invalid_action); got {value!r}")
    return value


# -- loading -----------------------------------------------------------------------------------

# NORA's LIBERO script unnormalises with the bare suite names (libero_spatial, ...) and OpenVLA's
# no-noops q01/q99, built into its inference code rather than read from the checkpoint.
NORA_LIBERO_STATS = Path(__file__).parent / "libero_stats.json"


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


def model_dtype(dtype: str, device: str):
    """torch dtype; "auto": bfloat16 on a GPU, as the reference code runs there (NORA's default
    torch_dtype; NORA-1.5's SimplerEnv loop casts the model to bfloat16), float32 elsewhere."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return torch_dtype(dtype)


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
                 camera: str = "agentview", image_path: str = "reference", on_undecodable: str = "reference"):
        from transformers import Qwen2_5_VLForConditionalGeneration

        self.checkpoint, self.camera = checkpoint, camera
        self.image_path = fallback_image_path(image_path, NORA_IMAGE_PATHS)
        self.respect_mask = respect_mask  # False: NORA's reference unnormalises every dimension
        self.on_undecodable = check_on_undecodable(on_undecodable)
        self.device = default_device(device)
        self.stats = load_stats(checkpoint, norm_stats, unnorm_key)
        self.codec = load_fast(checkpoint, fast_tokenizer)
        self.horizon = resolve_horizon(checkpoint, self.codec, time_horizon)
        self.tokenizer, image_processor = load_tokenizer_and_images(checkpoint)
        self.inputs = QwenInputs(self.tokenizer, image_processor)
        self.first_action_id = action_token_id(self.tokenizer)
        self.dtype = model_dtype(dtype, self.device)
        try:
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                checkpoint, dtype=self.dtype, attn_implementation="sdpa").to(self.device).eval()
        except OSError as exc:
            raise CheckpointError(f"cannot load the Qwen2.5-VL weights of {checkpoint}: {exc}") from exc
        self.generation_length = take_generation_length(self.model, max_new_tokens)
        # recorded with each run: how long generation may go and what else shapes its tokens
        self.generation_note = generation_note(self.generation_length, self.model.generation_config)
        self.spec = PolicySpec(cameras=(camera,), chunk_size=self.horizon, action_convention="rlds",
                               reference_modes=NORA_REFERENCE_MODES, image_path=image_path,
                               image_paths=NORA_IMAGE_PATHS, image_size=IMAGE_SIZE,
                               settings=(("on_undecodable", self.on_undecodable),
                                         ("generation", self.generation_note)))

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, **options) -> "NoraPolicy":
        """Same as the constructor: options are dtype, device, unnorm_key, norm_stats, ..."""
        return cls(path_or_hub_id, **options)

    def describe(self) -> str:
        """The adapter's settings that no PolicySpec field holds."""
        return (f"NORA (horizon {self.horizon}) from {self.checkpoint}, {str(self.dtype).replace('torch.', '')} "
                f"on {self.device}; {self.generation_note}")

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
        return greedy_new_tokens(self.model, batch, self.generation_length)

    def decode(self, generated: Sequence[int]):
        return chunk_or_reason(generated, self.codec, self.stats, self.horizon, self.first_action_id,
                               self.respect_mask, "NORA", self.on_undecodable)


def action_token_id(tokenizer) -> int:
    """Id of <robot_action_0> (151665 in declare-lab checkpoints), found in the tokenizer."""
    token_id = tokenizer.convert_tokens_to_ids(FIRST_ACTION_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise CheckpointError(f"the tokenizer has no {FIRST_ACTION_TOKEN} token: not a NORA checkpoint")
    return int(token_id)


def NoraLongPolicy(checkpoint: str = "declare-lab/nora-long", time_horizon: Optional[int] = 5, **kwargs) -> NoraPolicy:
    """NORA-LONG: the NORA adapter with a 5-step horizon and its own default checkpoint."""
    return NoraPolicy(checkpoint, time_horizon=time_horizon, **kwargs)


# --policy-arg values for **kwargs are typed by NoraPolicy's signature (evalkit.core.settings.coerce_policy_args)
NoraLongPolicy.forwards_kwargs_to = NoraPolicy
