"""V-JEPA 2-AC as an evalkit world model, for NORA-1.5's goal reward R_g (`evalkit.posttrain.rewards`).

V-JEPA 2-AC is a frozen V-JEPA 2 video encoder (ViT-g/16, 256 px, tubelets of 2 frames) and an
action-conditioned predictor (24 layers, width 1024). Given the tokens of frames 0..t, the actions
0..t and the robot states 0..t, the predictor returns the tokens of frames 1..t+1; a chunk of N
actions is therefore rolled out with N predictor calls, each appending its last frame, and the
last predicted frame is the future embedding that R_g compares with the goal image's.

Loading (`load_vjepa2_ac`) never downloads; every file must already be on the machine:

- `checkpoint`: Meta's release `vjepa2-ac-vitg.pt` (a dict with "encoder" and "predictor" state
  dicts, keys prefixed "module."/"backbone."), from https://dl.fbaipublicfiles.com/vjepa2/;
- `repo`: a clone of https://github.com/facebookresearch/vjepa2, whose `src/models` defines the
  predictor (transformers has the encoder, `VJEPA2Model`, but not the action-conditioned predictor);
- `predictor` (optional): a fine-tuned predictor, e.g. NORA-1.5's LIBERO one (.safetensors or .pt),
  loaded in place of the release's;
- `encoder` (optional): "release" (the checkpoint's own encoder, default) or a transformers id or
  folder such as facebook/vjepa2-vitg-fpc64-256 (read from the local Hugging Face cache only).

torch and transformers are imported inside functions, so `import evalkit` stays light.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import numpy as np

RELEASE_URL = "https://dl.fbaipublicfiles.com/vjepa2/vjepa2-ac-vitg.pt"
REPO_URL = "https://github.com/facebookresearch/vjepa2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the release's video transform normalises with these
IMAGENET_STD = (0.229, 0.224, 0.225)
# The released architecture (facebookresearch/vjepa2, src/hub/backbones.py, "vit_ac_giant").
RELEASE_ARCH = {"img_size": 256, "patch_size": 16, "tubelet_size": 2, "num_frames": 64}
OFFLINE_HINT = "this machine cannot download it (no internet): fetch it elsewhere and copy it here"


class VJepa2ACWorldModel:
    """`encode(image)` -> tokens (H*W/patch^2, D); `predict(tokens, chunk, state)` -> tokens.

    encoder: callable on a clip tensor (B, C, T, H, W) returning tokens (B, T/tubelet * P, D).
    predictor: the release's call signature, predictor(tokens (B, F*P, D), actions (B, F, A),
    states (B, F, A)) -> tokens (B, F*P, D), frame f+1 predicted from frames, actions and states <= f.
    """

    def __init__(self, encoder: Callable, predictor: Any, *, image_size: int = 256, patch_size: int = 16,
                 tubelet_size: int = 2, max_frames: int = 32, normalize_reps: bool = True, device: str = "cpu"):
        self.encoder, self.predictor = encoder, predictor
        self.image_size, self.tubelet_size, self.max_frames = image_size, tubelet_size, max_frames
        self.tokens_per_frame = (image_size // patch_size) ** 2
        self.normalize_reps, self.device = normalize_reps, device

    def encode(self, image: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.no_grad():
            tokens = self.encoder(self._clip(image))[0]
            return self._normalize(tokens).float().cpu().numpy()

    def predict(self, embedding: np.ndarray, chunk: np.ndarray, state: Optional[np.ndarray] = None) -> np.ndarray:
        torch = _torch()
        chunk = np.asarray(chunk, dtype=np.float32)
        if len(chunk) + 1 > self.max_frames:
            raise ValueError(f"a chunk of {len(chunk)} actions needs {len(chunk) + 1} frames; the predictor's "
                             f"attention mask covers {self.max_frames}: score shorter chunks")
        actions = torch.as_tensor(chunk, device=self.device)[None]  # (1, N, A)
        states = self._states(state, len(chunk), chunk.shape[1])
        frames = torch.as_tensor(np.asarray(embedding, dtype=np.float32), device=self.device)[None]
        with torch.no_grad():
            for t in range(len(chunk)):  # autoregressive: frame t+1 from frames 0..t and actions 0..t
                nxt = self.predictor(frames, actions[:, : t + 1], states[:, : t + 1])[:, -self.tokens_per_frame:]
                frames = torch.cat([frames, self._normalize(nxt)], dim=1)
        return frames[0, -self.tokens_per_frame:].float().cpu().numpy()

    def _clip(self, image: np.ndarray):
        """HxWx3 uint8 -> (1, 3, tubelet, S, S): resized, ImageNet-normalised, the frame repeated
        to fill one tubelet (the release encodes single frames this way)."""
        torch = _torch()
        frame = torch.as_tensor(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        frame = torch.nn.functional.interpolate(frame, size=(self.image_size, self.image_size), mode="bilinear",
                                                align_corners=False, antialias=True)
        frame = (frame - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        return frame.unsqueeze(2).repeat(1, 1, self.tubelet_size, 1, 1).to(self.device)

    def _states(self, state: Optional[np.ndarray], length: int, action_dim: int):
        """The robot state held for every step of the chunk; zeros when the data has none, which is
        what NORA-1.5 trained its LIBERO predictor with (its training passes zero states)."""
        torch = _torch()
        if state is None:
            return torch.zeros((1, length, action_dim), device=self.device)
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        if len(state) != action_dim:
            raise ValueError(f"V-JEPA2-AC reads a robot state of the action's size {action_dim} (xyz, euler xyz, "
                             f"gripper); got {len(state)} values: pass a {action_dim}-D pose or no state (zeros)")
        return torch.as_tensor(state, device=self.device).expand(1, length, action_dim)

    def _normalize(self, tokens):
        if not self.normalize_reps:
            return tokens
        return _torch().nn.functional.layer_norm(tokens, (tokens.size(-1),))


def load_vjepa2_ac(checkpoint: str = "", repo: str = "", predictor: str = "", encoder: str = "release",
                   device: str = "", normalize_reps: bool = True) -> VJepa2ACWorldModel:
    """Build V-JEPA 2-AC from local files (see the module docstring); nothing is downloaded.

    normalize_reps=False skips the release's layer norm of the tokens (`--world-model-arg
    normalize_reps=false` arrives as a bool: evalkit.core.settings.coerce_policy_args)."""
    repo = repo or os.environ.get("EVALKIT_VJEPA2_REPO", "")
    device = device or ("cuda" if _torch().cuda.is_available() else "cpu")
    encoder_state, predictor_state = release_state_dicts(checkpoint) if checkpoint else (None, None)
    if predictor:
        predictor_state = clean_keys(read_state_dict(_require_file(predictor, "fine-tuned V-JEPA2-AC predictor")))
    if predictor_state is None:
        raise FileNotFoundError(f"V-JEPA2-AC needs its predictor weights: checkpoint=vjepa2-ac-vitg.pt (from "
                                f"{RELEASE_URL}) or predictor=FILE; {OFFLINE_HINT}")
    modules = release_modules(repo)  # after the weights: the missing download is the likelier problem
    arch = RELEASE_ARCH
    if encoder == "release":
        if encoder_state is None:
            raise FileNotFoundError(f"encoder=release takes the encoder from checkpoint=vjepa2-ac-vitg.pt "
                                    f"({RELEASE_URL}); {OFFLINE_HINT}, or pass encoder=<transformers id or folder>")
        net = modules.vit_encoder.vit_giant_xformers(
            img_size=(arch["img_size"],) * 2, num_frames=arch["num_frames"], tubelet_size=arch["tubelet_size"],
            patch_size=arch["patch_size"], use_sdpa=True, use_SiLU=False, wide_SiLU=True, uniform_power=False,
            use_rope=True)
        # not strict, as the release: its file keeps a pos_embed the RoPE encoder does not use
        missing = net.load_state_dict(encoder_state, strict=False).missing_keys
        if missing:
            raise ValueError(f"{checkpoint}: its encoder lacks {len(missing)} weights of the ViT-g (e.g. {missing[:3]}); "
                             "is it the V-JEPA 2-AC release file?")
        embed_dim, encode_fn = net.embed_dim, net.to(device).eval()
    else:
        net = load_hf_encoder(encoder, device)
        embed_dim, encode_fn = net.config.hidden_size, hf_encoder_fn(net)
    pred = modules.ac_predictor.vit_ac_predictor(img_size=(arch["img_size"],) * 2, patch_size=arch["patch_size"],
                                                 num_frames=arch["num_frames"], tubelet_size=arch["tubelet_size"],
                                                 embed_dim=embed_dim)
    pred.load_state_dict(predictor_state, strict=True)
    return VJepa2ACWorldModel(encode_fn, pred.to(device).eval(), image_size=arch["img_size"],
                              patch_size=arch["patch_size"], tubelet_size=arch["tubelet_size"],
                              max_frames=arch["num_frames"] // arch["tubelet_size"], normalize_reps=normalize_reps,
                              device=device)


def release_modules(repo: str) -> SimpleNamespace:
    """Import the predictor and encoder definitions from a local clone of facebookresearch/vjepa2."""
    root = Path(repo) if repo else None
    if root is None or not (root / "src" / "models" / "ac_predictor.py").is_file():
        where = f"{repo!r} has no src/models/ac_predictor.py" if repo else "no clone given"
        raise FileNotFoundError(f"V-JEPA2-AC's predictor is defined only in {REPO_URL} ({where}): clone it "
                                f"and pass repo=PATH (or set EVALKIT_VJEPA2_REPO); {OFFLINE_HINT}")
    loaded = sys.modules.get("src")
    if loaded is not None and Path(getattr(loaded, "__path__", [""])[0]).resolve() != (root / "src").resolve():
        raise RuntimeError(f"a different package named 'src' is already imported ({loaded}); load V-JEPA2-AC "
                           "in a fresh process")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # the release's modules import each other as `src.models...`
    try:
        return SimpleNamespace(ac_predictor=importlib.import_module("src.models.ac_predictor"),
                               vit_encoder=importlib.import_module("src.models.vision_transformer"))
    except ImportError as exc:
        raise RuntimeError(f"the vjepa2 model code in {root} could not be imported ({exc}); install what it "
                           f"needs (timm, einops: see its requirements.txt)") from exc


def release_state_dicts(checkpoint: str) -> tuple[dict, dict]:
    """(encoder, predictor) state dicts of the release file, keys without "module."/"backbone."."""
    state = read_state_dict(_require_file(checkpoint, "V-JEPA2-AC checkpoint (vjepa2-ac-vitg.pt)"))
    missing = [k for k in ("encoder", "predictor") if k not in state]
    if missing:
        raise ValueError(f"{checkpoint}: not a V-JEPA2-AC release checkpoint (no {missing} entry; it has "
                         f"{sorted(state)[:5]}); pass a fine-tuned predictor alone as predictor=FILE")
    return clean_keys(state["encoder"]), clean_keys(state["predictor"])


def clean_keys(state: dict) -> dict:
    """Drop the wrappers' prefixes (DDP/accelerate "module.", the release's "backbone.")."""
    return {key.replace("module.", "").replace("backbone.", ""): value for key, value in state.items()}


def read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return _torch().load(path, map_location="cpu", weights_only=True)


def load_hf_encoder(name_or_path: str, device: str = "cpu"):
    """The V-JEPA 2 encoder from transformers, from a local folder or the local HF cache only."""
    from transformers import VJEPA2Model

    try:
        return VJEPA2Model.from_pretrained(name_or_path, local_files_only=True).to(device).eval()
    except OSError as exc:
        raise FileNotFoundError(f"V-JEPA 2 encoder {name_or_path!r} is neither a local folder nor in the Hugging "
                                f"Face cache; {OFFLINE_HINT} (huggingface-cli download {name_or_path})") from exc


def hf_encoder_fn(model) -> Callable:
    """transformers' VJEPA2Model takes (B, T, C, H, W) and also runs its masked predictor unless told not to."""
    def encode(clip):
        return model(pixel_values_videos=clip.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
    return encode


def _require_file(path: str, what: str) -> Path:
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path or '(no path given)'}; {OFFLINE_HINT}")
    return Path(path)


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("the V-JEPA2-AC world model needs torch: pip install torch") from exc
    return torch
