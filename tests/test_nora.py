"""NORA, NORA-LONG and NORA-1.5 on tiny checkpoints built here (policies/nora/tiny_models.py).

Golden values: tests/golden/tiny_models.json pins the tiny models' outputs for fixed
seeds and inputs. Regenerate after an intended change with
    EVALKIT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_nora.py -k golden
and commit the file with the change that explains it.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from evalkit.core.types import NoAction, Observation, Undecodable  # noqa: E402
from policies.hub import CheckpointError  # noqa: E402
from policies.normalization import read_action_stats, unnormalize  # noqa: E402
from policies.nora.tiny_models import TINY_STATS, cached_tiny_models, synthetic_image, target_chunk  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "tiny_models.json"
STATS = read_action_stats(TINY_STATS, "libero_spatial")


@pytest.fixture(scope="session")
def tiny():
    return cached_tiny_models()  # built once per version of the code, in evalkit's cache


@pytest.fixture(scope="session")
def policies(tiny):
    from policies.nora.nora import NoraLongPolicy, NoraPolicy
    from policies.nora.nora15 import Nora15Policy

    return {"nora": NoraPolicy(str(tiny["nora"]), device="cpu"),
            "nora-long": NoraLongPolicy(str(tiny["nora-long"]), device="cpu"),
            "nora-1.5": Nora15Policy(str(tiny["nora-1.5"]), device="cpu")}


def probe(bright: bool, seed: int = 123, key: str = "libero_spatial/0/0/0", step: int = 0) -> Observation:
    """A fixed 256x256 input (resized to 224 by the adapter, as LIBERO frames are)."""
    image = synthetic_image(np.random.default_rng(seed), bright, size=256)
    return Observation(images={"agentview": image}, episode_key=key, step=step)


def fast_bound(horizon: int, scale: float = 10.0) -> np.ndarray:
    """Worst-case unnormalised error of a FAST round trip: rounding of each DCT coefficient
    (<= 0.5/scale) summed through the orthonormal inverse (<= sqrt(T) per value), then x (q99-q01)/2."""
    return 0.5 / scale * np.sqrt(horizon) * (STATS.q99 - STATS.q01) / 2 + 1e-9


# -- inputs ----------------------------------------------------------------------------------------

def test_prompt_is_one_user_turn_image_then_instruction_with_default_system(policies):
    from policies.nora.nora import prompt_text

    text = prompt_text(policies["nora"].tokenizer, "put the bowl on the plate")
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>put the bowl on the plate"
                    "<|im_end|>\n<|im_start|>assistant\n")


def test_224_image_gives_64_image_tokens_and_left_padding(policies):
    nora = policies["nora"]
    batch = nora.inputs([np.zeros((224, 224, 3), np.uint8)] * 2, ["a", "a much longer instruction here"])
    image_id = nora.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (batch["input_ids"] == image_id).sum(dim=1).tolist() == [64, 64]
    assert tuple(batch["pixel_values"].shape) == (2 * 256, 3 * 2 * 14 * 14)
    assert batch["image_grid_thw"].tolist() == [[1, 16, 16], [1, 16, 16]]
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].tolist() == [1, 1]


def mrope_positions(input_ids: list[int], image_id: int, grid_thw, merge: int = 2):
    """Qwen2.5-VL's 3-D positions for one prompt holding one image, computed here from its
    definition: text counts up on all three axes; the image's tokens share the temporal index
    and take their row and column (of the merged grid) as offsets; the text after the image
    resumes after its largest extent. Returns (3, L) positions and the rope delta."""
    t, h, w = (int(v) for v in grid_thw)
    h, w = h // merge, w // merge
    start, count = input_ids.index(image_id), t * h * w
    positions = np.zeros((3, len(input_ids)), dtype=np.int64)
    positions[:, :start] = np.arange(start)
    for k in range(count):
        frame, rest = divmod(k, h * w)
        positions[:, start + k] = [start + frame, start + rest // w, start + rest % w]
    after = start + max(t, h, w)
    positions[:, start + count:] = after + np.arange(len(input_ids) - start - count)
    return positions, int(positions.max()) + 1 - len(input_ids)


def captured_positions(model, run) -> list:
    """The position ids the language model receives on each call made by `run()`."""
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["position_ids"].clone()), with_kwargs=True)
    try:
        run()
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("size", [(224, 224), (196, 252)])
def test_image_tokens_get_3d_mrope_positions(policies, size):
    """The adapter's inputs make Qwen2.5-VL place image tokens by M-RoPE (224x224: the text after the
    image resumes at 8 past its start, rope delta -56), not at plain 1-D positions."""
    nora = policies["nora"]
    batch = nora.inputs([np.full((*size, 3), 90, np.uint8)], ["turn on the stove"])
    [positions] = captured_positions(nora.model, lambda: nora.model(**batch))
    ids = batch["input_ids"][0].tolist()
    expected, delta = mrope_positions(ids, nora.inputs.image_id, batch["image_grid_thw"][0])
    assert np.array_equal(positions[-3:, 0].numpy(), expected)
    assert int(nora.model.model.rope_deltas[0]) == delta
    if size == (224, 224):
        assert delta == 64 // 8 - 64 and expected[:, -1].max() == len(ids) - 1 + delta


def test_generation_decodes_from_3d_positions(policies):
    """generate(): the prompt at its M-RoPE positions, each new token one past the last."""
    from policies.nora.nora import model_image

    nora = policies["nora-long"]
    obs = probe(False)
    calls = captured_positions(nora.model, lambda: nora.generate([obs], ["turn on the stove"]))
    batch = nora.inputs([model_image(obs, "agentview", nora.image_path)], ["turn on the stove"])
    prompt = batch["input_ids"][0].tolist()
    expected, delta = mrope_positions(prompt, nora.inputs.image_id, batch["image_grid_thw"][0])
    assert np.array_equal(calls[0][-3:, 0].numpy(), expected) and len(calls) > 2
    assert [int(c[-1, 0, -1]) for c in calls[1:]] == [len(prompt) + delta + k for k in range(len(calls) - 1)]


def test_generation_length_follows_the_checkpoint_config_as_transformers_4():
    """generate(**inputs) under transformers 4.50/4.54: max_new_tokens if set; max_length left at
    its default of 20 means 20 new tokens; an explicit max_length counts the prompt."""
    from transformers import GenerationConfig

    from policies.nora.nora import generation_length

    default = generation_length(GenerationConfig(), None, max_positions=2048)
    assert [default.budget(n) for n in (124, 2040, 2100)] == [20, 8, 1] and "20 new tokens" in default.describe()
    explicit_total = generation_length(GenerationConfig(max_length=150), None, 2048)
    assert [explicit_total.budget(n) for n in (124, 149, 200)] == [26, 1, 1]
    assert generation_length(GenerationConfig(max_length=20), None, 2048).budget(124) == 20
    assert generation_length(GenerationConfig(max_new_tokens=48, max_length=150), None, 2048).budget(124) == 48
    assert generation_length(GenerationConfig(max_new_tokens=48), 7, 2048).budget(124) == 7


def test_generation_note_records_the_budget_and_config(policies):
    nora = policies["nora"]
    assert nora.generation_note.startswith("greedy, 20 new tokens (transformers' default")
    assert "eos_token_id=2" in nora.generation_note and nora.generation_note in nora.describe()
    assert ("generation", nora.generation_note) in nora.spec.settings


def test_a_left_padded_batch_cuts_each_row_to_its_own_budget_and_end(policies, monkeypatch):
    """With a max_length counting the prompt, rows of different prompt lengths get different budgets;
    each row ends at its first end-of-sequence token (generate pads the rest)."""
    from policies.nora.nora import GenerationLength, greedy_new_tokens

    model = policies["nora"].model
    eos, pad = model.generation_config.eos_token_id, model.generation_config.pad_token_id
    batch = {"input_ids": torch.ones(2, 10, dtype=torch.long),
             "attention_mask": torch.tensor([[1] * 10, [0] * 3 + [1] * 7])}
    answers = torch.tensor([[7, 8, 9, 10, 11, 12], [7, 8, eos, pad, pad, pad]])
    monkeypatch.setattr(model, "generate",
                        lambda input_ids, **kw: torch.cat([input_ids, answers[:, :kw["max_new_tokens"]]], 1))
    assert greedy_new_tokens(model, batch, GenerationLength(max_length=14)) == [[7, 8, 9, 10], [7, 8, eos]]
    assert greedy_new_tokens(model, batch, GenerationLength(max_length=12)) == [[7, 8], [7, 8, eos]]


def test_tiny_backbone_is_in_the_released_layout_and_loads_completely(tiny):
    """config.json flat, weights named as transformers 4.4x saved them, every parameter read."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = json.loads((tiny["nora"] / "config.json").read_text())
    assert "text_config" not in config and config["rope_scaling"]["type"] == "mrope"
    assert json.loads((tiny["nora"] / "tokenizer_config.json").read_text())["tokenizer_class"] == "Qwen2Tokenizer"
    _, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny["nora"], output_loading_info=True)
    assert not any(info.values()), info


def test_action_token_range_is_found_in_the_tokenizer(policies):
    nora = policies["nora"]
    assert nora.first_action_id == nora.tokenizer.convert_tokens_to_ids("<robot_action_0>")
    assert nora.tokenizer.convert_ids_to_tokens(nora.first_action_id + 5) == "<robot_action_5>"


# -- NORA / NORA-LONG decode ---------------------------------------------------------------------

def test_encoded_chunk_after_the_prompt_decodes_back_through_the_adapter(policies, monkeypatch):
    """A 5-action chunk, FAST-encoded and emitted as action tokens after the prompt, comes back
    out of NoraPolicy.act unnormalised with the given stats, within the quantisation error."""
    from policies.nora.nora import GenerationLength

    nora = policies["nora-long"]
    chunk = np.clip(np.random.default_rng(3).normal(0, 0.4, size=(5, 7)), -1, 1)
    emitted = [nora.first_action_id + i for i in nora.codec.encode(chunk)] + [nora.tokenizer.eos_token_id]
    assert len(emitted) > 20  # more than the default budget: as if the checkpoint allowed 64

    def generate(input_ids, **kwargs):  # the model "answers" with the encoded chunk
        assert kwargs["do_sample"] is False and kwargs["max_new_tokens"] == 64
        return torch.cat([input_ids, torch.tensor([emitted] * input_ids.shape[0])], dim=1)

    monkeypatch.setattr(nora, "generation_length", GenerationLength(max_new_tokens=64))
    monkeypatch.setattr(nora.model, "generate", generate)
    actions = nora.act(probe(False), "pick up the bowl")
    expected = unnormalize(chunk, STATS, respect_mask=False)  # NORA's own: every dimension
    assert actions.shape == (5, 7)
    assert np.all(np.abs(actions - expected) <= fast_bound(5))


@pytest.mark.parametrize("name,horizon", [("nora", 1), ("nora-long", 5)])
def test_tiny_backbone_generates_its_taught_chunk_and_the_image_matters(policies, name, horizon):
    policy = policies[name]
    assert policy.spec.chunk_size == horizon and policy.spec.action_convention == "rlds"
    dark, bright = (policy.act(probe(b), "turn on the stove") for b in (False, True))
    for actions, is_bright in ((dark, False), (bright, True)):
        expected = unnormalize(target_chunk(is_bright, horizon), STATS, respect_mask=False)
        assert np.all(np.abs(actions - expected) <= fast_bound(horizon))
    assert not np.allclose(dark, bright)


def test_undecodable_output_is_reported_never_zeros(policies, monkeypatch):
    nora = policies["nora-long"]
    truncated = nora.first_action_id + nora.codec.encode(target_chunk(False, 5))[0]  # one token of many
    monkeypatch.setattr(nora.model, "generate",
                        lambda input_ids, **kw: torch.cat([input_ids, torch.tensor([[truncated]])], dim=1))
    result = nora.act(probe(False), "x")
    assert isinstance(result, (NoAction, Undecodable)) and "did not decode to 5x7" in result.reason


def test_nora_batch_generates_the_tokens_of_single_queries_with_padding(policies):
    """Left padding moves neither the M-RoPE positions nor the tokens of any row."""
    nora = policies["nora-long"]
    observations, texts = [probe(False), probe(True)], ["a", "put the cream cheese in the bowl please"]
    batched = nora.generate(observations, texts)
    assert len(batched[0]) != len(batched[1]) or batched[0] != batched[1]
    for obs, text, together in zip(observations, texts, batched):
        assert nora.generate([obs], [text])[0] == together


# -- NORA-1.5 ----------------------------------------------------------------------------------------

def test_euler_integration_steps_from_one_to_zero():
    from policies.nora.nora15 import euler_integrate

    seen = []

    def velocity(x, t):
        seen.append(float(t[0]))
        return x  # dx/dt = x: each step multiplies by (1 + dt) = (1 - 1/N)

    x = torch.tensor([[2.0, -1.0]])
    out = euler_integrate(velocity, x, steps=4)
    assert np.allclose(seen, [1.0, 0.75, 0.5, 0.25])
    assert torch.allclose(out, x * 0.75 ** 4)


def test_euler_loop_keeps_bf16_time_and_a_float32_state_as_the_release():
    """The release accumulates t += dt in the model's dtype (bf16 drifts: 0.898, 0.797, ...) and
    keeps the state in float32, adding dt * v rounded to the model's dtype."""
    from policies.nora.nora15 import euler_integrate

    seen, v = [], torch.tensor([[0.3]], dtype=torch.bfloat16)

    def velocity(x, t):
        assert x.dtype == torch.float32 and t.dtype == torch.bfloat16
        seen.append(float(t[0]))
        return v

    out = euler_integrate(velocity, torch.zeros(1, 1), steps=10, time_dtype=torch.bfloat16)
    assert seen[:3] == [1.0, 0.8984375, 0.796875] and len(seen) == 10 and seen[-1] == pytest.approx(0.0952, abs=1e-4)
    step = float((-0.1 * v).float())  # dt * v in bf16: -0.030029296875, not -0.03
    assert out.dtype == torch.float32 and float(out) == pytest.approx(10 * step, abs=1e-7) and step != -0.03


def test_velocity_field_shape_and_time_dependence(policies):
    model = policies["nora-1.5"].model
    batch = policies["nora-1.5"].inputs([np.zeros((224, 224, 3), np.uint8)] * 3, ["a", "b", "c"])
    kv = model.backbone_kv(batch)
    assert len(kv) == model.vlm.config.text_config.num_hidden_layers
    x = torch.randn(3, 5, 7)
    v1 = model.velocity(x, torch.ones(3), kv, batch["attention_mask"])
    v0 = model.velocity(x, torch.zeros(3), kv, batch["attention_mask"])
    assert v1.shape == (3, 5, 7) and not torch.allclose(v0, v1)


def test_expert_attends_to_the_backbone_keys_and_values(policies):
    """Same noise (same episode and step), different image -> different actions; and the
    velocity changes when the backbone's keys and values are replaced."""
    nora15 = policies["nora-1.5"]
    dark, bright = (nora15.act(probe(b), "turn on the stove") for b in (False, True))
    assert dark.shape == (5, 7) and not np.allclose(dark, bright)
    model = nora15.model
    batch = nora15.inputs([np.zeros((224, 224, 3), np.uint8)], ["a"])
    kv = model.backbone_kv(batch)
    x, t = torch.randn(1, 5, 7), torch.full((1,), 0.5)
    scrambled = [(k.flip(2), v.flip(2) * 2) for k, v in kv]
    assert not torch.allclose(model.velocity(x, t, kv, batch["attention_mask"]),
                              model.velocity(x, t, scrambled, batch["attention_mask"]))


def test_nora15_noise_is_seeded_per_episode_and_step_so_batching_does_not_matter(policies):
    nora15 = policies["nora-1.5"]
    a, b = probe(False, key="s/0/0/0", step=0), probe(True, key="s/1/0/0", step=5)
    together = nora15.act_batch([a, b], ["pick it up", "turn on the stove now"])
    assert np.allclose(together[0], nora15.act(a, "pick it up"), atol=1e-5)
    assert np.allclose(together[1], nora15.act(b, "turn on the stove now"), atol=1e-5)
    assert not np.allclose(nora15.act(probe(False, step=1), "x"), nora15.act(probe(False, step=2), "x"))


def test_nora15_gripper_is_left_unnormalised_by_its_mask(policies, monkeypatch):
    nora15 = policies["nora-1.5"]
    monkeypatch.setattr(nora15.model, "sample", lambda inputs, noise, steps: torch.full_like(noise, 0.5))
    actions = nora15.act(probe(False), "x")
    assert np.allclose(actions[:, :6], 0.5 * 1.5 * (STATS.q99 - STATS.q01)[:6] + STATS.q01[:6])
    assert np.allclose(actions[:, 6], 0.5)


def test_nora15_fast_output_decodes_the_backbone_tokens(tiny):
    from policies.nora.nora15 import Nora15Policy

    fast = Nora15Policy(str(tiny["nora-1.5"]), output="fast", device="cpu")
    actions = fast.act(probe(True), "turn on the stove")
    expected = unnormalize(target_chunk(True, 5), STATS, respect_mask=True)
    assert np.all(np.abs(actions - expected) <= fast_bound(5))


# -- loading ---------------------------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    """Copy all tiny checkpoints (NORA-1.5 names its backbone by a relative path); return src's copy."""
    import shutil

    shutil.copytree(src.parent, dst)
    return dst / src.name


def test_nora15_missing_and_unexpected_keys_are_listed(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from policies.nora.nora15 import Nora15Policy

    folder = _copy(tiny["nora-1.5"], tmp_path / "broken")
    state = load_file(str(folder / "model.safetensors"))
    del state["action_expert.layers.1.self_attn.k_proj.weight"]
    state["action_expert.extra_head.weight"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        Nora15Policy(str(folder), device="cpu")
    assert "1 missing keys: action_expert.layers.1.self_attn.k_proj.weight" in str(err.value)
    assert "1 unexpected keys: action_expert.extra_head.weight" in str(err.value)


def test_legacy_backbone_key_names_are_mapped():
    from policies.nora.nora15 import legacy_key

    assert legacy_key("vlm.visual.blocks.0.attn.qkv.weight") == "vlm.model.visual.blocks.0.attn.qkv.weight"
    assert legacy_key("vlm.model.layers.3.mlp.up_proj.weight") == "vlm.model.language_model.layers.3.mlp.up_proj.weight"
    assert legacy_key("vlm.model.language_model.norm.weight") == "vlm.model.language_model.norm.weight"
    assert legacy_key("action_expert.norm.weight") == "action_expert.norm.weight"


def test_missing_files_are_named(tiny, tmp_path):
    from policies.nora.nora import NoraPolicy
    from policies.nora.nora15 import Nora15Policy

    no_stats = _copy(tiny["nora"], tmp_path / "no_stats")
    (no_stats / "norm_stats.json").unlink()
    with pytest.raises(CheckpointError, match="has none of norm_stats.json, dataset_statistics.json"):
        NoraPolicy(str(no_stats), device="cpu")
    no_weights = _copy(tiny["nora-1.5"], tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        Nora15Policy(str(no_weights), device="cpu")
    with pytest.raises(ValueError, match="unnorm_key 'libero_spatail' .* Did you mean 'libero_spatial'"):
        NoraPolicy(str(tiny["nora"]), unnorm_key="libero_spatail", device="cpu")


def test_hub_id_on_an_offline_machine_names_the_file(monkeypatch):
    import huggingface_hub.constants

    from policies.hub import checkpoint_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="cannot fetch norm_stats.json of declare-lab/nora-not-cached-here: the machine looks "
                                              "offline"):
        checkpoint_file("declare-lab/nora-not-cached-here", "norm_stats.json")


def test_registry_builds_the_three_policies_from_policy_args(tiny):
    from evalkit.core.registry import make_policy

    for name in ("nora", "nora-long", "nora-1.5"):
        policy = make_policy(name, {"checkpoint": str(tiny[name]), "device": "cpu"})
        assert policy.spec.chunk_size == (1 if name == "nora" else 5)


# -- golden ----------------------------------------------------------------------------------------

def golden_outputs(policies) -> dict:
    out = {}
    for name in ("nora", "nora-long"):
        out[name] = [policies[name].generate([probe(b)], ["turn on the stove"])[0] for b in (False, True)]
    out["nora-1.5"] = [np.round(policies["nora-1.5"].act(probe(b), "turn on the stove"), 4).tolist()
                       for b in (False, True)]
    return out


def test_golden_outputs_of_the_tiny_models(policies):
    current = golden_outputs(policies)
    if os.environ.get("EVALKIT_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(current, indent=1) + "\n")
    pinned = json.loads(GOLDEN.read_text())
    assert current["nora"] == pinned["nora"] and current["nora-long"] == pinned["nora-long"]
    assert np.allclose(current["nora-1.5"], pinned["nora-1.5"], atol=2e-3)


# -- end to end on LIBERO ------------------------------------------------------------------------

@pytest.mark.libero
@pytest.mark.parametrize("name", ["nora", "nora-long", "nora-1.5"])
def test_tiny_checkpoints_run_real_libero_episodes_end_to_end(tiny, name, tmp_path):
    """The plumbing, not the actions: frames in, decoded chunks out, LIBERO's gripper mapping,
    the query budget, results stored with the postprocessor recorded."""
    from evalkit.run.driver import RunConfig, execute
    from evalkit.results.store import ResultStore

    config = RunConfig(suites=["libero_spatial"], policy=name, policy_args={"checkpoint": str(tiny[name])},
                       preset="nora", max_steps=3, tasks=[0], episodes_per_task=1, out=str(tmp_path / name))
    with ResultStore(execute(config, progress=False), readonly=True) as store:
        [result] = store.results()
        semantics = store.meta("semantics")
    chunk = 1 if name == "nora" else 5
    assert (result.termination, result.queries, result.steps) == ("budget", 3, 3 * chunk), result.error
    assert semantics["action_postprocess"] == {"libero_spatial": "libero_gripper"}
