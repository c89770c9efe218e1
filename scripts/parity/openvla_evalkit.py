"""evalkit's side of the OpenVLA parity: the cases, and `OpenVLAPolicy.act` run through
`OpenVLAPolicy.with_model` (evalkit's env has no timm, so the checkpoint's remote code cannot load
here). What stands in, and why:
  - processor: the checkpoint's real tokenizer loaded from the saved folder with this env's
    transformers (AutoTokenizer), plus pixel values made as the official PrismaticImageProcessor makes
    them for a 224 frame with resize-naive (resize and crop are the identity at 224; then /255 and
    (x - mean) / std per backbone, the two stacked on channels), means/stds read from the saved
    preprocessor_config.json;
  - model: records what evalkit hands to generate and returns the tokens the official model produced
    on exactly those inputs (the `cross` step), or zeros in the first (recording) pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from evalkit.core.images import prepare, synthetic_frame
from evalkit.core.types import Observation
from policies.vla.openvla import OpenVLAPolicy

UNNORM_KEY = "libero_spatial"  # resolved by evalkit to the checkpoint's "libero_spatial_no_noops"
# (name, seed, instruction): LIBERO-sized 256x256 renders, flipped as LIBERO's loop does, then the
# `openvla` image path (JPEG round trip + TF lanczos3) to 224; plus two flat-ish probes at 224
CASES = [("libero_a", 11, "pick up the black bowl between the plate and the ramekin and place it on the plate"),
         ("libero_b", 12, "Put the cream cheese in the bowl"),
         ("libero_c", 13, "open the top drawer and put the bowl inside"),
         ("libero_d", 14, "turn on the stove"),
         ("libero_e", 15, "pick up the alphabet soup and place it in the basket"),
         ("gradient", 16, "push the plate to the front of the stove"),
         ("edges", 17, "put the wine bottle on top of the cabinet"),
         ("noise", 18, "pick up the ketchup and place it in the basket")]
GOLDEN_CASES = ("gradient", "edges", "noise")  # rebuilt by tests/test_vla_adapters.py from these formulas


def make_cases(work: Path) -> None:
    images, cases = {}, []
    for name, seed, instruction in CASES:
        if name == "gradient":
            y, x = np.mgrid[0:224, 0:224]
            image = np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)
        elif name == "edges":
            rng = np.random.default_rng(seed)
            image = np.kron(rng.integers(0, 256, (14, 14, 3)), np.ones((16, 16, 1))).astype(np.uint8)
        elif name == "noise":
            image = np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        else:
            frame = synthetic_frame(256, 256, seed)[::-1, ::-1]  # LIBERO renders upside down: the loop flips
            image = prepare("openvla", np.ascontiguousarray(frame), 224)
        images[name] = np.ascontiguousarray(image)
        cases.append({"name": name, "image": name, "instruction": instruction})
    np.savez(work / "images.npz", **images)
    (work / "cases.json").write_text(json.dumps(cases, indent=1))


class ParityProcessor:
    """Stand-in for PrismaticProcessor (see the module docstring); records its calls."""

    def __init__(self, checkpoint: Path):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        config = json.loads((checkpoint / "preprocessor_config.json").read_text())
        self.means, self.stds = config["means"], config["stds"]
        self.calls = []

    def __call__(self, prompt, image, return_tensors="pt"):
        text = self.tokenizer(prompt, return_tensors="pt")
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        assert array.shape == (224, 224, 3), array.shape
        unit = torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div(255)
        pixels = torch.cat([(unit - torch.tensor(m).view(3, 1, 1)) / torch.tensor(s).view(3, 1, 1)
                            for m, s in zip(self.means, self.stds)])
        self.calls.append((prompt, array))
        return {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"], "pixel_values": pixels[None]}


class ReplayModel(torch.nn.Module):
    def __init__(self, tokens: dict):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.tokens, self.case, self.calls = tokens, None, []

    def generate(self, input_ids, **kwargs):
        self.calls.append({"input_ids": input_ids.clone(), **{k: v.clone() for k, v in kwargs.items()
                                                              if isinstance(v, torch.Tensor)}, "kwargs": {
            k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}})
        new = torch.as_tensor(self.tokens.get(self.case, [0] * kwargs["max_new_tokens"]), dtype=input_ids.dtype)
        return torch.cat([input_ids, new[None]], dim=1)


def run(work: Path, checkpoint: Path, tokens: dict) -> tuple[dict, dict]:
    """One pass of evalkit's adapter over the cases; tokens: case -> replayed ids (empty: first pass)."""
    config = json.loads((checkpoint / "config.json").read_text())
    processor, model = ParityProcessor(checkpoint), ReplayModel(tokens)
    policy = OpenVLAPolicy.with_model(processor, model, config["norm_stats"], unnorm_key=UNNORM_KEY, crop=True)
    cases = json.loads((work / "cases.json").read_text())
    with np.load(work / "images.npz") as f:
        images = {k: f[k] for k in f.files}
    arrays, notes = {}, {"unnorm_key": policy.unnorm_key}
    for case in cases:
        name = case["name"]
        model.case = name
        action = policy.act(Observation(images={"agentview": images[name]}, episode_key=f"parity/{name}", step=0),
                            case["instruction"])
        call, (prompt, crop) = model.calls[-1], processor.calls[-1]
        arrays.update({f"{name}/input_ids": call["input_ids"].numpy(), f"{name}/attention_mask":
                       call["attention_mask"].numpy(), f"{name}/pixel_values": call["pixel_values"].numpy(),
                       f"{name}/crop": crop, f"{name}/actions": np.asarray(action)[0]})
        notes[name] = {"prompt": prompt, "generate_kwargs": call["kwargs"]}
    return arrays, notes
