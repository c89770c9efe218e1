"""NORA-1.5: a flow-matching action expert over the NORA-LONG backbone.

The expert is a transformer as deep as the backbone, 0.375x as wide, with its own Q/K/V.
In layer i its queries attend to the backbone's layer-i keys and values (of the prompt:
system, image, instruction) followed by its own; the action tokens use plain 1-D RoPE at
positions 0..H-1 (the backbone's keys keep their M-RoPE). Sampling integrates the
velocity field with Euler steps from t=1 (noise) to t=0 (actions); training's target is
noise - action, so x_{t+dt} = x_t + dt * v with dt = -1/steps.

Parameter names match the released checkpoint (declare-lab/nora-1.5, model.safetensors):
`vlm.*` (the Qwen2.5-VL backbone), `action_expert.layers.{i}.{self_attn,mlp,...}`,
`action_expert.norm`, `action_in_proj`, `action_out_proj`, `action_time_mlp_in/out`.
Its config.json holds the constructor arguments (backbone id, processor id, FAST id,
width multiplier, expert heads, chunk length).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from evalkit.core.types import Observation, PolicySpec
from policies.nora.fast import FastCodec
from policies.hub import CheckpointError, checkpoint_file, default_device
from policies.nora.nora import (DEFAULT_FAST, QwenInputs, action_token_id, chunk_or_reason, generation_note,
                           model_dtype, take_generation_length,
                           IMAGE_SIZE, check_on_undecodable, fallback_image_path, greedy_new_tokens, load_stats,
                           load_tokenizer_and_images, model_batch)
from policies.normalization import unnormalize

MODEL_FILE = "model.safetensors"
# NORA-1.5's SimplerEnv fork predicts 5 and executes with temporal ensembling at -0.8 (applied
# before post-processing); it released no LIBERO loop (its README: plug sample_actions into
# OpenVLA's run_libero_eval.py, which runs a returned chunk open-loop).
NORA15_REFERENCE_MODES = (("libero", "open_loop"), ("google_robot", "ensemble:-0.8"), ("widowx", "ensemble:-0.8"))
# Its images: OpenVLA's LIBERO path there (the loop its README points to); elsewhere TF lanczos3
# as its dlimp data pipeline and SimplerEnv fork resize.
NORA15_IMAGE_PATHS = (("libero", "openvla"), ("*", "dlimp_lanczos3"))


@dataclass
class ExpertConfig:
    """The released constructor's arguments (config.json), with its defaults."""

    vlm_model_id: str = "declare-lab/nora-long"
    processor_id: str = "declare-lab/nora"
    fast_tokenizer_id: str = DEFAULT_FAST
    lm_expert_width_multiplier: float = 0.375
    lm_expert_num_attention_head: int = 6
    action_chunk_length: int = 5
    action_dim: int = 7

    @classmethod
    def from_checkpoint(cls, checkpoint) -> "ExpertConfig":
        path = checkpoint_file(checkpoint, "config.json", required=False)
        raw = json.loads(path.read_text()) if path else {}
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        for key in ("vlm_model_id", "processor_id", "fast_tokenizer_id"):  # "../x": beside the checkpoint
            if str(known.get(key, "")).startswith(("./", "../")) and Path(checkpoint).is_dir():
                known[key] = str((Path(checkpoint) / known[key]).resolve())
        return cls(**known)


def expert_intermediate_size(hidden: int, multiplier: int = 4, multiple_of: int = 256) -> int:
    """The release's MLP width: 4 * (2/3 hidden), rounded up to a multiple of 256."""
    size = int(multiplier * int(2 * hidden / 3))
    return multiple_of * ((size + multiple_of - 1) // multiple_of)


# -- the expert ----------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_1d(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Rotate-half RoPE on (B, S, heads, head_dim) at integer positions (S,); angles as the release
    computes them (position / base^(2i/d), in float32), so they agree to the last bit."""
    half = x.shape[-1] // 2
    timescale = base ** ((2.0 / x.shape[-1]) * torch.arange(half, dtype=torch.float32, device=x.device))
    angles = positions.float()[:, None] / timescale[None, :]  # (S, half)
    sin, cos = angles.sin()[None, :, None, :], angles.cos()[None, :, None, :]
    x1, x2 = x.float()[..., :half], x.float()[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class ExpertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=True)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=True)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=True)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x, prefix_keys, prefix_values, mask, positions):
        """x (B, S, hidden); prefix_* (B, kv_heads, L, head_dim); mask (B, 1, S, L + S) bool."""
        b, s, _ = x.shape
        q = rope_1d(self.q_proj(x).view(b, s, self.heads, self.head_dim), positions).transpose(1, 2)
        k = rope_1d(self.k_proj(x).view(b, s, self.kv_heads, self.head_dim), positions).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        keys = torch.cat([prefix_keys.to(q.dtype), k], dim=2)
        values = torch.cat([prefix_values.to(q.dtype), v], dim=2)
        groups = self.heads // self.kv_heads  # grouped-query attention, as in the backbone
        keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.head_dim ** -0.5)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class ExpertMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ExpertLayer(nn.Module):
    def __init__(self, hidden, intermediate, heads, kv_heads, head_dim, eps):
        super().__init__()
        self.self_attn = ExpertAttention(hidden, heads, kv_heads, head_dim)
        self.mlp = ExpertMLP(hidden, intermediate)
        self.input_layernorm = RMSNorm(hidden, eps)
        self.post_attention_layernorm = RMSNorm(hidden, eps)

    def forward(self, x, prefix_keys, prefix_values, mask, positions):
        x = x + self.self_attn(self.input_layernorm(x), prefix_keys, prefix_values, mask, positions)
        return x + self.mlp(self.post_attention_layernorm(x))


class ActionExpert(nn.Module):
    def __init__(self, layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int,
                 eps: float):
        super().__init__()
        self.layers = nn.ModuleList(ExpertLayer(hidden, intermediate, heads, kv_heads, head_dim, eps)
                                    for _ in range(layers))
        self.norm = RMSNorm(hidden, eps)

    def forward(self, x, backbone_kv: Sequence[tuple[torch.Tensor, torch.Tensor]], mask):
        positions = torch.arange(x.shape[1], device=x.device)
        for layer, (keys, values) in zip(self.layers, backbone_kv):
            x = layer(x, keys, values, mask, positions)
        return self.norm(x)


def time_embedding(t: torch.Tensor, width: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """Sine-cosine embedding of the flow time (B,) -> (B, width), periods 4e-3 .. 4."""
    fraction = torch.linspace(0.0, 1.0, width // 2, dtype=torch.float32, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    # the release's order of float32 operations: angles reach ~1600 rad, where one rounding
    # step of the frequency moves the sine by ~1e-4
    frequency = 1.0 / period * 2 * math.pi
    angle = frequency[None, :] * t.float()[:, None]
    return torch.cat([angle.sin(), angle.cos()], dim=1)


class Nora15Model(nn.Module):
    """Backbone (`vlm`) + expert + the action/time projections, named as in the release."""

    def __init__(self, vlm, config: ExpertConfig):
        super().__init__()
        text = vlm.config.text_config
        backbone_head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        hidden = int(text.hidden_size * config.lm_expert_width_multiplier)
        heads = config.lm_expert_num_attention_head
        if hidden % heads or hidden // heads != backbone_head_dim:
            raise ValueError(f"expert width {hidden} / {heads} heads must equal the backbone's head_dim "
                             f"{backbone_head_dim}: the expert attends to the backbone's keys and values")
        self.vlm = vlm
        self.config = config
        self.chunk = config.action_chunk_length
        self.action_expert = ActionExpert(text.num_hidden_layers, hidden, expert_intermediate_size(hidden), heads,
                                          text.num_key_value_heads, backbone_head_dim, text.rms_norm_eps)
        self.action_in_proj = nn.Linear(config.action_dim, hidden)
        self.action_out_proj = nn.Linear(hidden, config.action_dim)
        self.action_time_mlp_in = nn.Linear(2 * hidden, hidden)
        self.action_time_mlp_out = nn.Linear(hidden, hidden)

    def backbone_kv(self, inputs: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (keys, values) of the backbone over the prompt, each (B, kv_heads, L, head_dim)."""
        cache = self.vlm(**inputs, use_cache=True).past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    def velocity(self, x_t, t, backbone_kv, prefix_mask):
        """The velocity field v(x_t, t) for noisy chunks x_t (B, H, action_dim) at times t (B,), in
        the model's dtype (the state is cast to it on the way in, as the release does)."""
        embedded = self.action_in_proj(x_t.to(self.action_in_proj.weight.dtype))
        time = time_embedding(t, embedded.shape[-1]).to(embedded.dtype)[:, None, :].expand_as(embedded)
        h = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(torch.cat([embedded, time], dim=-1))))
        # every action token sees the whole (unpadded) prompt and every action token
        own = torch.ones(x_t.shape[0], x_t.shape[1], dtype=torch.bool, device=x_t.device)
        mask = torch.cat([prefix_mask.bool(), own], dim=1)[:, None, None, :].expand(-1, 1, x_t.shape[1], -1)
        return self.action_out_proj(self.action_expert(h, backbone_kv, mask))

    @torch.no_grad()
    def sample(self, inputs: dict, noise: torch.Tensor, steps: int = 10) -> torch.Tensor:
        """Euler-integrate from noise at t=1 to actions at t=0; returns normalised float32 chunks (B, H, D)."""
        kv = self.backbone_kv(inputs)
        return euler_integrate(lambda x, t: self.velocity(x, t, kv, inputs["attention_mask"]), noise, steps,
                               time_dtype=self.action_in_proj.weight.dtype)


def euler_integrate(velocity, noise: torch.Tensor, steps: int, time_dtype=torch.float32) -> torch.Tensor:
    """x += dt * v(x, t), dt = -1/steps, from t = 1 while t >= -dt/2, as the release's loop: the
    state stays float32 while v comes in the model's dtype (dt * v rounded there), and t is
    accumulated in the model's dtype (bf16: 1, 0.898, 0.797, ... 0.0952 for 10 steps)."""
    if steps < 1:
        raise ValueError(f"flow_steps must be >= 1, got {steps}")
    dt = -1.0 / steps
    x = noise.to(torch.float32).clone()
    t = torch.tensor(1.0, dtype=time_dtype, device=x.device)
    while t >= -dt / 2:
        x += dt * velocity(x, t.expand(x.shape[0]))
        t += dt
    return x


# -- loading -----------------------------------------------------------------------------------

def build_model(config: ExpertConfig, dtype) -> Nora15Model:
    """The architecture from the backbone's config (no backbone weights: model.safetensors has them)."""
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    try:
        backbone_config = AutoConfig.from_pretrained(config.vlm_model_id)
    except OSError as exc:
        raise CheckpointError(f"cannot load the backbone config of {config.vlm_model_id}: {exc}") from exc
    vlm = Qwen2_5_VLForConditionalGeneration._from_config(backbone_config, attn_implementation="sdpa")
    vlm.generation_config = backbone_generation_config(config.vlm_model_id, vlm.generation_config)
    return Nora15Model(vlm, config).to(dtype)


def backbone_generation_config(backbone, derived):
    """The backbone's generation_config.json, as the release's from_pretrained(vlm_model_id) loads it
    (stop tokens, penalties, length for output=fast); else the one derived from its config."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(backbone)
    except OSError:
        return derived


def legacy_key(key: str) -> str:
    """Checkpoints saved before transformers 4.52 name the backbone vlm.model.layers / vlm.visual."""
    if key.startswith("vlm.visual."):
        return "vlm.model.visual." + key[len("vlm.visual."):]
    if key.startswith("vlm.model.") and not key.startswith(("vlm.model.visual.", "vlm.model.language_model.")):
        return "vlm.model.language_model." + key[len("vlm.model."):]
    return key


def load_weights(model: Nora15Model, weights_file: Path) -> None:
    """Load the release's state dict; any missing or unexpected key is an error listing them."""
    from safetensors.torch import load_file

    state = {legacy_key(k): v for k, v in load_file(str(weights_file)).items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not _tied(model, k)]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{weights_file} does not match NORA-1.5's parameters: "
                              f"{_listing('missing', missing)}; {_listing('unexpected', result.unexpected_keys)}")
    model.vlm.tie_weights()


def _tied(model: Nora15Model, key: str) -> bool:
    tied = getattr(model.vlm.config, "tie_word_embeddings", False) or getattr(
        model.vlm.config.get_text_config(), "tie_word_embeddings", False)
    return key == "vlm.lm_head.weight" and tied


def _listing(kind: str, keys: Sequence[str], show: int = 8) -> str:
    if not keys:
        return f"no {kind} keys"
    more = f" ... and {len(keys) - show} more" if len(keys) > show else ""
    return f"{len(keys)} {kind} keys: {', '.join(keys[:show])}{more}"


# -- the policy --------------------------------------------------------------------------------

class Nora15Policy:
    """NORA-1.5: continuous actions from the expert (default) or FAST actions from the backbone.

    Flow sampling noise is seeded by (seed, episode, step), so outcomes do not depend on
    how queries were batched or on the worker count.
    """

    def __init__(self, checkpoint: str = "declare-lab/nora-1.5", output: str = "flow", flow_steps: int = 10,
                 unnorm_key: Optional[str] = None, norm_stats: Optional[str] = None,
                 fast_tokenizer: Optional[str] = None, max_new_tokens: Optional[int] = None, seed: int = 0,
                 dtype: str = "auto", device: Optional[str] = None, camera: str = "agentview",
                 image_path: str = "reference", on_undecodable: str = "reference"):
        if output not in ("flow", "fast"):
            raise ValueError(f"output must be 'flow' (the expert) or 'fast' (backbone tokens), got {output!r}")
        self.output, self.flow_steps, self.seed = output, int(flow_steps), int(seed)
        self.camera, self.image_path = camera, fallback_image_path(image_path, NORA15_IMAGE_PATHS)
        self.on_undecodable = check_on_undecodable(on_undecodable)  # output=fast only: the expert always decodes
        self.device = default_device(device)
        self.config = ExpertConfig.from_checkpoint(checkpoint)
        self.stats = load_stats(checkpoint, norm_stats, unnorm_key)
        self.codec = FastCodec.from_pretrained(fast_tokenizer or self.config.fast_tokenizer_id)
        self.tokenizer, image_processor = load_tokenizer_and_images(self.config.processor_id)
        self.inputs = QwenInputs(self.tokenizer, image_processor)
        self.first_action_id = action_token_id(self.tokenizer)
        self.dtype = model_dtype(dtype, self.device)
        self.model = build_model(self.config, self.dtype)
        load_weights(self.model, checkpoint_file(checkpoint, MODEL_FILE))
        self.model.to(self.device).eval()
        self.horizon = self.config.action_chunk_length
        # output=fast only: the backbone's generate, as long as the reference's would run
        self.generation_length = take_generation_length(self.model.vlm, max_new_tokens)
        self.generation_note = generation_note(self.generation_length, self.model.vlm.generation_config)
        self.spec = PolicySpec(cameras=(camera,), chunk_size=self.horizon, action_dim=self.config.action_dim,
                               action_convention="rlds", reference_modes=NORA15_REFERENCE_MODES,
                               sticky_gripper_variant="on_sticky_start", image_path=image_path,
                               image_paths=NORA15_IMAGE_PATHS, image_size=IMAGE_SIZE,
                               settings=(("output", self.output), ("flow_steps", self.flow_steps),
                                         ("on_undecodable", self.on_undecodable),
                                         ("generation", self.generation_note)))

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, **options) -> "Nora15Policy":
        """Same as the constructor: options are output, flow_steps, dtype, device, unnorm_key, ..."""
        return cls(path_or_hub_id, **options)

    def describe(self) -> str:
        """The adapter's settings that no PolicySpec field holds."""
        dtype = str(self.dtype).replace("torch.", "")
        if self.output == "fast":
            return f"NORA-1.5 backbone FAST tokens, {dtype} on {self.device}; {self.generation_note}"
        return (f"NORA-1.5 flow expert, {self.flow_steps} Euler steps (time accumulated in {dtype}, state in "
                f"float32), {dtype} on {self.device}, noise seeded by (seed={self.seed}, episode, step)")

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, instruction: str):
        return self.act_batch([obs], [instruction])[0]

    def act_batch(self, observations: Sequence[Observation], instructions: Sequence[str]) -> list:
        # generation pads on the left; the expert reads keys, whose M-RoPE positions must not
        # shift with padding, so its batch pads on the right (pad keys are masked out)
        batch = model_batch(self.inputs, observations, instructions, self.camera, self.image_path, self.device,
                            padding_side="left" if self.output == "fast" else "right")
        if self.output == "fast":
            return [chunk_or_reason(ids, self.codec, self.stats, self.horizon, self.first_action_id, True, "NORA-1.5",
                                    self.on_undecodable)
                    for ids in greedy_new_tokens(self.model.vlm, batch, self.generation_length)]
        noise = torch.stack([self._noise(o) for o in observations]).to(self.device)  # float32, as the release
        normalised = self.model.sample(batch, noise, self.flow_steps).float().cpu().numpy()
        return [unnormalize(chunk, self.stats, respect_mask=True) for chunk in normalised]

    def _noise(self, obs: Observation) -> torch.Tensor:
        seed = (self.seed * 1_000_003 + zlib.crc32(obs.episode_key.encode()) * 7919 + obs.step) % 2**63
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(self.horizon, self.config.action_dim, generator=generator)


def save_checkpoint(model: Nora15Model, folder: Path) -> None:
    """Write model.safetensors + config.json in the release's layout (tiny fixtures use this)."""
    from dataclasses import asdict

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if _tied(model, "vlm.lm_head.weight"):
        state.pop("vlm.lm_head.weight", None)
    save_file(state, str(folder / MODEL_FILE))
    (folder / "config.json").write_text(json.dumps(asdict(model.config), indent=2))

