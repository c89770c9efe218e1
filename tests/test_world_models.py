"""The V-JEPA2-AC adapter's shapes, rollout and loading, on tiny randomly initialised models.

Real weights cannot be downloaded here. The encoder is a tiny transformers `VJEPA2Model`; the
predictor is a one-layer stand-in with the release predictor's call signature, written into a
fake clone of facebookresearch/vjepa2 (`src/models/...`) so that the loader's import path runs too.
"""

import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evalkit.posttrain.rewards import preference_pairs, score_candidates  # noqa: E402
from evalkit.posttrain.world_models import (VJepa2ACWorldModel, hf_encoder_fn, load_vjepa2_ac, release_modules,  # noqa: E402
                                  release_state_dicts)

AC_PREDICTOR = '''
import torch
from torch import nn


class TinyACPredictor(nn.Module):
    """The release predictor's interface on one layer: per frame, an action and a state token precede
    the frame's tokens, and tokens attend only to their own and earlier frames."""

    def __init__(self, embed_dim, tokens_per_frame, action_dim=7, width=16):
        super().__init__()
        self.tokens_per_frame = tokens_per_frame
        self.embed, self.out = nn.Linear(embed_dim, width), nn.Linear(width, embed_dim)
        self.action, self.state = nn.Linear(action_dim, width), nn.Linear(action_dim, width)
        self.block = nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True)
        self.calls = []

    def forward(self, x, actions, states):
        self.calls.append((tuple(x.shape), actions.clone(), states.clone()))
        b, n, _ = x.shape
        frames, per = n // self.tokens_per_frame, self.tokens_per_frame + 2
        x = self.embed(x).view(b, frames, self.tokens_per_frame, -1)
        x = torch.cat([self.action(actions).unsqueeze(2), self.state(states).unsqueeze(2), x], dim=2)
        frame_of = torch.arange(frames).repeat_interleave(per)
        x = self.block(x.flatten(1, 2), src_mask=frame_of[None, :] > frame_of[:, None])
        return self.out(x.view(b, frames, per, -1)[:, :, 2:].flatten(1, 2))


def vit_ac_predictor(img_size, patch_size, embed_dim, **kwargs):
    return TinyACPredictor(embed_dim, (img_size[0] // patch_size) ** 2)
'''

VISION_TRANSFORMER = '''
from torch import nn


class TinyEncoder(nn.Module):
    def __init__(self, patch_size, tubelet_size, embed_dim=8):
        super().__init__()
        self.embed_dim = embed_dim
        size = (tubelet_size, patch_size, patch_size)
        self.patch = nn.Conv3d(3, embed_dim, size, stride=size)

    def forward(self, x):  # (B, C, T, H, W) -> (B, tokens, D), as the release's encoder
        return self.patch(x).flatten(2).transpose(1, 2)


def vit_giant_xformers(patch_size=16, tubelet_size=2, **kwargs):
    return TinyEncoder(patch_size, tubelet_size)
'''


@pytest.fixture(scope="module")
def release_repo(tmp_path_factory):
    """A fake clone of facebookresearch/vjepa2 with tiny model definitions; unloaded afterwards."""
    root = tmp_path_factory.mktemp("vjepa2")
    (root / "src" / "models").mkdir(parents=True)
    (root / "src" / "models" / "ac_predictor.py").write_text(textwrap.dedent(AC_PREDICTOR))
    (root / "src" / "models" / "vision_transformer.py").write_text(textwrap.dedent(VISION_TRANSFORMER))
    yield root
    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        del sys.modules[name]
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def tiny_hf_encoder():
    transformers = pytest.importorskip("transformers")
    config = transformers.VJEPA2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2.0,
                                       crop_size=32, patch_size=16, frames_per_clip=2, tubelet_size=2,
                                       pred_hidden_size=16, pred_num_hidden_layers=1, pred_num_attention_heads=2)
    torch.manual_seed(0)
    return transformers.VJEPA2Model(config).eval()


@pytest.fixture()
def world(release_repo, tiny_hf_encoder):
    torch.manual_seed(1)
    predictor = release_modules(str(release_repo)).ac_predictor.vit_ac_predictor(img_size=(32, 32), patch_size=16,
                                                                                 embed_dim=32)
    return VJepa2ACWorldModel(hf_encoder_fn(tiny_hf_encoder), predictor.eval(), image_size=32, patch_size=16)


def test_encode_gives_layer_normed_tokens_per_patch(world):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tokens = world.encode(image)
    assert tokens.shape == (4, 32)  # (32 / 16)^2 patches of one tubelet, hidden size 32
    assert np.allclose(tokens.mean(axis=1), 0, atol=1e-5) and np.allclose(tokens.std(axis=1), 1, atol=1e-2)
    assert np.array_equal(world.encode(image), tokens)
    assert world.encode(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).shape == (4, 32)  # resized up


def test_predict_rolls_the_chunk_out_one_frame_per_action(world):
    rng = np.random.default_rng(1)
    now = world.encode(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    chunk = rng.uniform(-1, 1, (5, 7)).astype(np.float32)
    world.predictor.calls.clear()
    future = world.predict(now, chunk)
    assert future.shape == (4, 32)
    calls = world.predictor.calls
    assert [shape for shape, _, _ in calls] == [(1, 4 * t, 32) for t in range(1, 6)]  # context grows a frame a call
    assert all(np.allclose(actions[0].numpy(), chunk[:t]) for t, (_, actions, _) in enumerate(calls, 1))
    assert not calls[-1][2].any()  # no state: zeros, as NORA-1.5 trained its LIBERO predictor
    pose = np.arange(7, dtype=np.float32)
    world.predictor.calls.clear()
    assert not np.allclose(world.predict(now, chunk, state=pose), future)
    assert np.allclose(world.predictor.calls[-1][2][0].numpy(), np.tile(pose, (5, 1)))  # held for every step
    assert not np.allclose(world.predict(now, -chunk), future)
    with pytest.raises(ValueError, match="state of the action's size 7"):
        world.predict(now, chunk, state=np.zeros(3))
    with pytest.raises(ValueError, match="needs 41 frames"):
        world.predict(now, np.zeros((40, 7)))


def test_goal_reward_ranks_candidates_through_the_adapter(world):
    rng = np.random.default_rng(2)
    image, goal = (rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    chunks = rng.uniform(-1, 1, (4, 3, 7))
    scored = score_candidates(chunks, "goal", world_model=world, image=image, goal_image=goal)
    expected = [-np.mean(np.abs(world.predict(world.encode(image), c) - world.encode(goal))) for c in chunks]
    assert np.allclose(scored.rewards, expected) and len(set(scored.rewards.round(6))) == 4
    best = int(np.argmax(expected))
    assert preference_pairs(scored)[:3] == [(best, loser) for loser in np.argsort(expected)[::-1][1:]]


def _release_file(path, modules, seed):
    """A checkpoint laid out like vjepa2-ac-vitg.pt: prefixed keys under "encoder" and "predictor"."""
    torch.manual_seed(seed)
    encoder = modules.vit_encoder.vit_giant_xformers(patch_size=16, tubelet_size=2)
    predictor = modules.ac_predictor.vit_ac_predictor(img_size=(256, 256), patch_size=16, embed_dim=8)
    torch.save({"encoder": {f"module.backbone.{k}": v for k, v in encoder.state_dict().items()},
                "predictor": {f"module.{k}": v for k, v in predictor.state_dict().items()}, "epoch": 3}, path)
    return VJepa2ACWorldModel(encoder.eval(), predictor.eval())


def test_loads_the_release_checkpoint_and_a_fine_tuned_predictor(release_repo, tmp_path):
    from safetensors.torch import save_file

    modules = release_modules(str(release_repo))
    reference = _release_file(tmp_path / "vjepa2-ac-vitg.pt", modules, seed=3)
    loaded = load_vjepa2_ac(checkpoint=str(tmp_path / "vjepa2-ac-vitg.pt"), repo=str(release_repo), device="cpu")
    image = np.random.default_rng(3).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    chunk = np.full((2, 7), 0.5)
    assert loaded.tokens_per_frame == 256 and loaded.max_frames == 32
    assert np.allclose(loaded.encode(image), reference.encode(image), atol=1e-6)
    assert np.allclose(loaded.predict(loaded.encode(image), chunk), reference.predict(reference.encode(image), chunk),
                       atol=1e-5)
    torch.manual_seed(4)  # a fine-tuned predictor (as NORA-1.5's) replaces the release's
    tuned = modules.ac_predictor.vit_ac_predictor(img_size=(256, 256), patch_size=16, embed_dim=8)
    save_file({f"module.{k}": v.contiguous() for k, v in tuned.state_dict().items()}, tmp_path / "tuned.safetensors")
    swapped = load_vjepa2_ac(checkpoint=str(tmp_path / "vjepa2-ac-vitg.pt"), repo=str(release_repo),
                             predictor=str(tmp_path / "tuned.safetensors"), device="cpu")
    expected = VJepa2ACWorldModel(reference.encoder, tuned.eval())
    assert np.allclose(swapped.predict(swapped.encode(image), chunk), expected.predict(expected.encode(image), chunk),
                       atol=1e-5)


def test_encoder_from_a_transformers_folder(release_repo, tiny_hf_encoder, tmp_path):
    from safetensors.torch import save_file

    tiny_hf_encoder.save_pretrained(tmp_path / "encoder")
    predictor = release_modules(str(release_repo)).ac_predictor.vit_ac_predictor(img_size=(256, 256), patch_size=16,
                                                                                 embed_dim=32)
    save_file(predictor.state_dict(), tmp_path / "predictor.safetensors")
    world = load_vjepa2_ac(repo=str(release_repo), predictor=str(tmp_path / "predictor.safetensors"),
                           encoder=str(tmp_path / "encoder"), device="cpu")
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    assert world.encode(image).shape == (256, 32) and world.predict(world.encode(image), np.zeros((1, 7))).shape == (256, 32)


def test_missing_files_are_named_with_the_offline_hint(release_repo, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"vjepa2-ac-vitg.pt\) not found: nope.pt; .*no internet"):
        load_vjepa2_ac(checkpoint="nope.pt", device="cpu")
    with pytest.raises(FileNotFoundError, match="needs its predictor weights"):
        load_vjepa2_ac(device="cpu")
    _release_file(tmp_path / "release.pt", release_modules(str(release_repo)), seed=0)
    with pytest.raises(FileNotFoundError, match=r"has no src/models/ac_predictor.py\): clone it"):
        load_vjepa2_ac(checkpoint=str(tmp_path / "release.pt"), repo=str(tmp_path), device="cpu")
    with pytest.raises(FileNotFoundError, match="Hugging Face cache"):
        load_vjepa2_ac(checkpoint=str(tmp_path / "release.pt"), repo=str(release_repo), encoder=str(tmp_path / "no"),
                       device="cpu")
    state = torch.load(tmp_path / "release.pt")
    torch.save({**state, "encoder": {}}, tmp_path / "no_encoder.pt")  # not strict, yet a missing weight is refused
    with pytest.raises(ValueError, match="its encoder lacks 2 weights"):
        load_vjepa2_ac(checkpoint=str(tmp_path / "no_encoder.pt"), repo=str(release_repo), device="cpu")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a V-JEPA2-AC release checkpoint"):
        release_state_dicts(str(tmp_path / "other.pt"))
