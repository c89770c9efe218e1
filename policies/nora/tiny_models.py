"""Tiny NORA / NORA-LONG / NORA-1.5 checkpoints, built in seconds, read by the real loaders.

Weights can never be downloaded on CI machines, so tests, the latency benchmark and the
end-to-end LIBERO check build these instead: a Qwen2.5-VL with NORA's token layout
(Qwen's special tokens, then `<robot_action_i>`), a locally trained FAST+ BPE, q01/q99
stats, and a NORA-1.5 expert, saved in the released checkpoints' layouts.

A random-weight backbone almost never emits a decodable FAST sequence, so the backbone is
briefly taught (teacher forcing, a few hundred Adam steps) to answer dark images with one
chunk and bright images with another: generation then decodes, and the image visibly
matters. The expert keeps random weights (its output is continuous, always decodable).

The backbone folders are written in the layout of the released NORA checkpoints (saved by
transformers 4.4x): a flat config.json, weights named `model.layers.*` / `visual.*`, a
Qwen2Tokenizer with Qwen's pre-tokenizer, chat_template.json and a preprocessor_config.json
with min/max_pixels. evalkit (transformers 5) reads them through its compatibility paths and
the official inference code (transformers 4.50 / 4.54) reads them as it reads the releases
(scripts/parity/ runs both).

Regenerate from the command line: `python scripts/make_tiny_checkpoints.py OUT_DIR`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
# Qwen2.5-VL's chat template, reduced to what NORA's prompt uses (same output for it):
# the default system message, images as <|vision_start|><|image_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
INSTRUCTIONS = ["pick up the black bowl and place it on the plate", "open the top drawer of the cabinet",
                "put the cream cheese in the bowl", "turn on the stove"]
# Normalised chunks the tiny backbone learns: a bright frame -> BRIGHT, any other image -> DARK
# (gripper column in [0, 1] like the data; it is not normalised: mask False).
DARK = np.array([0.6, 0.0, -0.4, 0.0, 0.1, 0.0, 1.0])
BRIGHT = np.array([-0.6, 0.3, 0.4, 0.2, 0.0, -0.1, 0.0])
TINY_STATS = {"libero_spatial": {"action": {"q01": [-0.5, -0.5, -0.5, -0.2, -0.2, -0.2, 0.0],
                                            "q99": [0.5, 0.5, 0.5, 0.2, 0.2, 0.2, 1.0],
                                            "mask": [True] * 6 + [False]}}}


def target_chunk(bright: bool, horizon: int) -> np.ndarray:
    """The chunk the tiny backbone is taught; a gentle ramp over time so DCT has content."""
    base = BRIGHT if bright else DARK
    ramp = np.linspace(1.0, 0.8, horizon)[:, None]
    chunk = base[None, :] * ramp
    chunk[:, 6] = base[6]
    return chunk


def synthetic_image(rng: np.random.Generator, bright: bool, size: int = 224) -> np.ndarray:
    """A training/probe image. Bright: a near-uniform bright frame. Otherwise: anything else
    (any level up to mid-grey, coloured blocks, noise), so that real scene renders such as
    LIBERO's fall on the "dark" side and the taught chunk still decodes on them."""
    if bright:
        level = rng.uniform(205, 245) + rng.uniform(-8, 8, size=3)
        return np.clip(level + rng.normal(0, 6, size=(size, size, 3)), 0, 255).astype(np.uint8)
    image = np.full((size, size, 3), rng.uniform(10, 150)) + rng.uniform(-30, 30, size=3)
    for _ in range(rng.integers(0, 6)):  # a few coloured blocks, like objects on a table
        x, y = rng.integers(0, size - 16, size=2)
        w, h = rng.integers(16, size // 2, size=2)
        image[y:y + h, x:x + w] = rng.uniform(0, 255, size=3)
    return np.clip(image + rng.normal(0, 12, size=image.shape), 0, 255).astype(np.uint8)


# -- pieces --------------------------------------------------------------------------------------

def tiny_fast(horizon: int, seed: int = 0):
    from policies.nora.fast import FastCodec

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[:, None]
    chunks = [np.clip(rng.uniform(-0.8, 0.8, 7) + 0.3 * np.sin(3 * t + rng.uniform(0, 6, 7)), -1, 1)
              for _ in range(300)]
    chunks += [target_chunk(b, horizon) for b in (False, True)]
    return FastCodec.fit(chunks, scale=10, vocab_size=300)


# Qwen2's pre-tokenizer split (its tokenizer.json; transformers 5 rebuilds Qwen2Tokenizer with it)
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


def tiny_tokenizer(action_tokens: int):
    """Byte-level BPE with Qwen2's normaliser and pre-tokenizer and Qwen's special tokens, then
    <robot_action_0..n-1> (contiguous ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    corpus = ["You are a helpful assistant.", "system user assistant", *INSTRUCTIONS] * 10
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    bpe.add_special_tokens([f"<robot_action_{i}>" for i in range(action_tokens)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


def tiny_image_processor():
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=224 * 224, max_pixels=224 * 224, patch_size=14, merge_size=2,
                                    temporal_patch_size=2)


def tiny_backbone(tokenizer, seed: int = 0):
    """Qwen2.5-VL with 2 vision blocks and 2 text layers; head_dim 8 so a 0.375x expert fits (3 heads)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=32, out_hidden_size=64, num_heads=2, intermediate_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[1]),
        text_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=1,
                         intermediate_size=128, vocab_size=len(tokenizer), max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         tie_word_embeddings=False, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def teach(model, inputs, codec, first_action_id: int, eos_id: int, horizon: int, steps: int, seed: int) -> float:
    """Teacher-force `dark -> DARK chunk, bright -> BRIGHT chunk` tokens; returns the final loss."""
    import torch

    rng = np.random.default_rng(seed)
    targets = {b: [first_action_id + i for i in codec.encode(target_chunk(b, horizon))] + [eos_id]
               for b in (False, True)}
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        brights = [bool(b) for b in rng.integers(0, 2, size=4)]
        images = [synthetic_image(rng, b) for b in brights]
        batch = inputs(images, [INSTRUCTIONS[i] for i in rng.integers(0, len(INSTRUCTIONS), size=4)])
        ids, labels, mask, types = _append_targets(batch, [targets[b] for b in brights])
        # mm_token_type_ids: trained with the image's 3-D M-RoPE positions, as used at inference
        out = model(input_ids=ids, attention_mask=mask, pixel_values=batch["pixel_values"],
                    image_grid_thw=batch["image_grid_thw"], mm_token_type_ids=types, labels=labels)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        loss = out.loss.detach()
    model.eval()
    return float(loss)


def _append_targets(batch: dict, targets: list[list[int]]):
    """Append each row's target ids (right side, padded with -100 labels) to left-padded prompts;
    returns ids, labels, attention mask and mm_token_type_ids (targets are text: 0)."""
    import torch

    length = max(len(t) for t in targets)
    rows, labels, masks, types = [], [], [], []
    for prompt, mask, kind, target in zip(batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"],
                                          targets):
        pad = length - len(target)
        tail = torch.tensor(target + [target[-1]] * pad)
        rows.append(torch.cat([prompt, tail]))
        labels.append(torch.cat([torch.full_like(prompt, -100), torch.tensor(target + [-100] * pad)]))
        masks.append(torch.cat([mask, torch.tensor([1] * len(target) + [0] * pad)]))
        types.append(torch.cat([kind, torch.zeros(length, dtype=kind.dtype)]))
    return torch.stack(rows), torch.stack(labels), torch.stack(masks), torch.stack(types)


# -- the released layout ----------------------------------------------------------------------------

def legacy_weight_name(name: str) -> str:
    """transformers 5 names -> the release's (4.4x): model.language_model.X -> model.X, model.visual.X -> visual.X."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


# generic PretrainedConfig keys and transformers-5-only ones, absent from the release's config.json
GENERIC_CONFIG_KEYS = {"architectures", "chunk_size_feed_forward", "id2label", "label2id", "problem_type",
                       "_name_or_path", "is_encoder_decoder", "output_attentions", "output_hidden_states",
                       "return_dict", "dtype", "transformers_version", "layer_types", "rope_parameters"}


def legacy_config(config) -> dict:
    """Qwen2.5-VL's config.json as 4.4x wrote it: text settings at the top level, M-RoPE as rope_scaling."""
    def clean(values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in GENERIC_CONFIG_KEYS}

    full = config.to_dict()
    text, vision = full.pop("text_config"), full.pop("vision_config")
    rope = text["rope_parameters"]
    flat = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], **clean(full)}
    flat.update({k: v for k, v in clean(text).items() if k != "model_type"})
    flat.update(vision_config=clean(vision), torch_dtype="float32", rope_theta=rope["rope_theta"],
                rope_scaling={"type": "mrope", "mrope_section": list(rope["mrope_section"])})
    return flat


def save_released_layout(model, tokenizer, image_processor, folder: Path) -> None:
    """The backbone, tokenizer and image processor as in declare-lab's NORA checkpoints."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {legacy_weight_name(k): v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", legacy_config(model.config))
    generation = model.generation_config
    _write_json(folder / "generation_config.json", {"bos_token_id": generation.bos_token_id,
                                                    "eos_token_id": generation.eos_token_id,
                                                    "pad_token_id": generation.pad_token_id})
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "errors": "replace", "add_prefix_space": False,
        "clean_up_tokenization_spaces": False, "split_special_tokens": False, "model_max_length": 32768,
        "chat_template": CHAT_TEMPLATE})
    _write_json(folder / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _write_json(folder / "preprocessor_config.json", {
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "min_pixels": image_processor.size["shortest_edge"], "max_pixels": image_processor.size["longest_edge"],
        "patch_size": image_processor.patch_size, "temporal_patch_size": image_processor.temporal_patch_size,
        "merge_size": image_processor.merge_size, "image_mean": list(image_processor.image_mean),
        "image_std": list(image_processor.image_std), "do_resize": True, "do_rescale": True,
        "do_normalize": True, "do_convert_rgb": True, "resample": 3, "rescale_factor": 1 / 255})


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


# -- checkpoints -----------------------------------------------------------------------------------

def build_tiny_nora(folder: str | Path, horizon: int = 1, seed: int = 0, steps: int = 160) -> Path:
    """A NORA (horizon 1) or NORA-LONG (horizon 5) checkpoint folder: model, tokenizer, image
    processor, `fast/` codec (its time_horizon set) and norm_stats.json."""
    from policies.nora.nora import QwenInputs

    folder = Path(folder)
    codec = tiny_fast(horizon, seed)
    tokenizer = tiny_tokenizer(codec.vocab_size)
    image_processor = tiny_image_processor()
    model = tiny_backbone(tokenizer, seed)
    first_action = tokenizer.convert_tokens_to_ids("<robot_action_0>")
    loss = teach(model, QwenInputs(tokenizer, image_processor), codec, first_action,
                 tokenizer.convert_tokens_to_ids("<|im_end|>"), horizon, steps, seed)
    save_released_layout(model, tokenizer, image_processor, folder)
    codec.save_pretrained(folder / "fast")
    (folder / "norm_stats.json").write_text(json.dumps(TINY_STATS, indent=2))
    (folder / "tiny.json").write_text(json.dumps({"horizon": horizon, "seed": seed, "steps": steps,
                                                  "final_loss": loss}, indent=2))
    return folder


def build_tiny_nora15(folder: str | Path, backbone: str | Path, seed: int = 0) -> Path:
    """A NORA-1.5 checkpoint over a tiny NORA-LONG backbone folder; the expert has random weights."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from policies.nora.nora15 import ExpertConfig, Nora15Model, save_checkpoint

    folder, backbone = Path(folder), Path(backbone)
    # relative to the checkpoint folder, so the pair of folders can be moved together
    relative = os.path.relpath(backbone.resolve(), folder.resolve())
    config = ExpertConfig(vlm_model_id=relative, processor_id=relative, fast_tokenizer_id=f"{relative}/fast",
                          lm_expert_num_attention_head=3, action_chunk_length=5)
    vlm = Qwen2_5_VLForConditionalGeneration.from_pretrained(backbone)
    torch.manual_seed(seed)
    model = Nora15Model(vlm, config)
    save_checkpoint(model, folder)
    (folder / "norm_stats.json").write_text(json.dumps(TINY_STATS, indent=2))
    return folder


def build_all(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """nora (horizon 1), nora-long (horizon 5) and nora-1.5 (over nora-long) under `root`."""
    root = Path(root)
    nora = build_tiny_nora(root / "nora", 1, seed)
    long = build_tiny_nora(root / "nora-long", 5, seed)
    return {"nora": nora, "nora-long": long, "nora-1.5": build_tiny_nora15(root / "nora-1.5", long, seed)}


def cached_tiny_models(seed: int = 0) -> dict[str, Path]:
    """build_all once per version of this code (and of transformers) in evalkit's cache."""
    import hashlib

    import transformers

    from evalkit.core.cache import build_once
    from policies.nora import fast
    from policies.nora import nora15

    sources = [Path(__file__), Path(nora15.__file__), Path(fast.__file__)]
    digest = hashlib.sha256(transformers.__version__.encode() + str(seed).encode())
    for source in sources:
        digest.update(source.read_bytes())
    root = build_once(f"tiny-nora-{digest.hexdigest()[:12]}", lambda folder: build_all(folder, seed))
    return {name: root / name for name in ("nora", "nora-long", "nora-1.5")}

