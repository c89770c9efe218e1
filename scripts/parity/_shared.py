"""Helpers shared by the parity sides. Imported by the official sides (side environments:
transformers 4.50 / 4.54) and by evalkit's side alike, so it needs only numpy and torch and
never imports evalkit.

Files passed between the sides, in the work folder:
  cases.json            [{"name", "image", "instruction"}] (image: a key of images.npz)
  images.npz            uint8 HxWx3 frames, fed unchanged to both sides
  noise.npz             one float32 (1, 5, 7) noise tensor per case (NORA-1.5's flow)
  <side>_<model>.npz    recorded stages, keys "<case>/<stage>"
  <side>_<model>.json   per case: token lists, flow times, notes
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

UNNORM_KEY = "libero_spatial"  # the tiny checkpoints' statistics


def load_cases(work: Path) -> tuple[list[dict], dict]:
    cases = json.loads((work / "cases.json").read_text())
    with np.load(work / "images.npz") as images:
        return cases, {k: images[k] for k in images.files}


def load_noise(work: Path) -> dict:
    with np.load(work / "noise.npz") as noise:
        return {k: noise[k] for k in noise.files}


def action_token_range(checkpoint: Path) -> tuple[int, int]:
    """(first id, count) of the <robot_action_i> tokens, read from tokenizer.json."""
    added = json.loads((Path(checkpoint) / "tokenizer.json").read_text())["added_tokens"]
    ids = sorted(t["id"] for t in added if t["content"].startswith("<robot_action_"))
    assert ids == list(range(ids[0], ids[0] + len(ids))), "action tokens must be contiguous"
    return ids[0], len(ids)


def language_model(vlm):
    """The text decoder of a Qwen2_5_VLForConditionalGeneration: `model` up to transformers 4.51,
    `model.language_model` from 4.52."""
    inner = vlm.model
    return getattr(inner, "language_model", inner)


class PositionRecorder:
    """Keeps the position_ids the text decoder receives, one entry per forward call."""

    def __init__(self, vlm):
        self.calls = []
        self.hook = language_model(vlm).register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.calls.append(kwargs["position_ids"].detach().clone())

    def take(self) -> list:
        calls, self.calls = self.calls, []
        return calls


def snapshot(value):
    """Tensors cloned (callers update some in place, e.g. the flow state), containers walked."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    return value


class Recording:
    """Stands in front of an object: records calls made to it (arguments as they were at the call),
    passes everything through."""

    def __init__(self, target):
        self._target = target
        self.calls = []

    def __call__(self, *args, **kwargs):
        before = snapshot(args), snapshot(kwargs)
        out = self._target(*args, **kwargs)
        self.calls.append((*before, snapshot(out)))
        return out

    def __getattr__(self, name):
        return getattr(self._target, name)


class FastStandIn:
    """SHIM for AutoProcessor.from_pretrained("physical-intelligence/fast", trust_remote_code=True):
    FAST+ is remote code on the Hugging Face hub, unreachable here. It records the FAST ids the
    official code hands to decode() and returns a zero chunk (the harness compares those ids; the
    tiny checkpoints carry their own FAST codec that only evalkit reads)."""

    def __init__(self, horizon: int = 1):
        self.decoded = []
        self.action_dim, self.time_horizon = 7, horizon

    def decode(self, tokens, *args, **kwargs):
        self.decoded.append([int(t) for t in np.asarray(tokens[0]).reshape(-1)])
        return np.zeros((1, self.time_horizon, self.action_dim))


def auto_processor_with_fast_stand_in(real_auto_processor, fast: FastStandIn, fast_ids=("physical-intelligence/fast",)):
    """SHIM: an AutoProcessor whose from_pretrained gives `fast` for the FAST+ id and the real
    processor for anything else (the checkpoint's Qwen2.5-VL processor)."""

    class AutoProcessorShim:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            if str(name) in fast_ids:
                return fast
            return real_auto_processor.from_pretrained(name, *args, **kwargs)

    return AutoProcessorShim


def local_hub_download(files: dict):
    """SHIM for hf_hub_download: (repo_id, filename) -> a local file (no hub on this machine)."""

    def download(repo_id, filename, **kwargs):
        try:
            return str(files[(repo_id, filename)])
        except KeyError:
            raise FileNotFoundError(f"parity shim: no local file for {repo_id}/{filename}") from None

    return download


def kv_arrays(cache, layers: int) -> dict:
    """Per-layer keys/values of a DynamicCache: `cache.layers[i]` from transformers 4.54, `cache[i]` before."""
    out = {}
    for i in range(layers):
        stored = getattr(cache, "layers", None)
        keys, values = (stored[i].keys, stored[i].values) if stored is not None else cache[i]
        out[f"keys{i}"], out[f"values{i}"] = keys.float().numpy(), values.float().numpy()
    return out


def image_features(vlm, pixel_values, grid_thw) -> np.ndarray:
    """The vision encoder's merged image features (`visual` sits on the model up to transformers
    4.51, on model.model from 4.52; 5.x returns them as pooler_output)."""
    import torch

    visual = vlm.model.visual if hasattr(vlm.model, "visual") else vlm.visual
    with torch.no_grad():
        out = visual(pixel_values, grid_thw=grid_thw)
    out = getattr(out, "pooler_output", out)
    if isinstance(out, (list, tuple)):
        out = torch.cat(list(out))
    return out.float().numpy()


def save(work: Path, side: str, model: str, arrays: dict, notes: dict) -> None:
    np.savez(work / f"{side}_{model}.npz", **arrays)
    (work / f"{side}_{model}.json").write_text(json.dumps(notes, indent=1))
