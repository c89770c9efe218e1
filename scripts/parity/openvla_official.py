"""Official side, model stages: OpenVLA's HF code (prismatic/extern/hf: OpenVLAConfig,
OpenVLAForActionPrediction, PrismaticProcessor) imported from the exported openvla tree, in a side
env with the repository's pins (transformers 4.40.1, timm 0.9.10, tokenizers 0.19.1).

  build  a tiny random OpenVLA (2-layer Llama, hidden 64, text vocab 32064 = 32000 + 64 padding rows,
         so action ids 31744..31999 exist; both timm backbones by their official names, shrunk by the
         create_model shim below), a tiny tokenizer with Llama-2's layout (<unk> 0, <s> 1, </s> 2,
         "▁" 29871, <PAD> 32000) and the official processor; all written with save_pretrained.
  run    per case, the official processor on the official (TF-cropped) frame and prompt, then
         predict_action(**inputs, unnorm_key, do_sample=False) as get_vla_action calls it; records
         what generate received and returned.
  cross  the official model on evalkit's recorded generate inputs: predict_action on them (official
         decode + unnormalisation of the same tokens) and generate with evalkit's exact kwargs.

Shims (here only; the official files are not modified):
  - torchvision: scripts/parity/openvla_shims (PYTHONPATH), the PIL branch of 4 functions;
  - timm.create_model: the official ids, with embed_dim 32 / depth 3 / num_heads 2 added to the
    kwargs (timm's own VisionTransformer, same classes and forward, registers, LayerScale, MAP head);
  - the lm_head rows outside the action range are zeroed after random init, so greedy tokens fall in
    31744..31999 and the 256-bin decode is exercised (a weight choice, not a code change);
  - device cpu and float32 (get_vla_action uses cuda + bfloat16).
  - norm_stats also holds "identity" (q01 = -1, q99 = 1, mask all true): predict_action with it
    returns the official normalised (pre-unnormalisation) actions, up to float rounding.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

VISION_OVERRIDES = {"embed_dim": 32, "depth": 3, "num_heads": 2}
ACTION_RANGE = (31744, 32000)
STATS = {"libero_spatial_no_noops": {"action": {
    "q01": [-0.7454, -0.6664, -0.9375, -0.1071, -0.1607, -0.1718, 0.0],
    "q99": [0.9375, 0.8625, 0.9375, 0.1607, 0.1414, 0.2786, 1.0],
    "mask": [True, True, True, True, True, True, False]}},
    "identity": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 7}}}
UNNORM_KEY = "libero_spatial_no_noops"


def shim_timm():
    import timm

    real = timm.create_model

    def create_model(name, *args, **kwargs):
        return real(name, *args, **{**kwargs, **VISION_OVERRIDES})

    timm.create_model = create_model


def official(src: Path):
    import importlib
    import types

    shim_timm()
    # the three files as one package, as transformers loads them as a checkpoint's remote code
    # (`import prismatic` would pull in the training stack: draccus, ...)
    package = types.ModuleType("openvla_hf")
    package.__path__ = [str(src / "prismatic" / "extern" / "hf")]
    sys.modules["openvla_hf"] = package
    cfg, mdl, prc = (importlib.import_module(f"openvla_hf.{n}") for n in
                     ("configuration_prismatic", "modeling_prismatic", "processing_prismatic"))
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForVision2Seq, AutoProcessor

    AutoConfig.register("openvla", cfg.OpenVLAConfig)  # as vla-scripts/finetune.py
    AutoImageProcessor.register(cfg.OpenVLAConfig, prc.PrismaticImageProcessor)
    AutoProcessor.register(cfg.OpenVLAConfig, prc.PrismaticProcessor)
    AutoModelForVision2Seq.register(cfg.OpenVLAConfig, mdl.OpenVLAForActionPrediction)
    return cfg, mdl, prc


def build_tokenizer(prompts: list, out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence([pre_tokenizers.Punctuation("isolated"),
                                   pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    pieces = []
    for prompt in prompts:
        for piece, _ in pre.pre_tokenize_str(prompt):
            if piece not in pieces and piece != "▁":
                pieces.append(piece)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for piece in pieces:
        vocab[piece] = len(vocab)
    filler = 0
    while len(vocab) < 32000:
        vocab["▁" if len(vocab) == 29871 else f"<extra_{filler}>"] = len(vocab)
        filler += 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=2048, padding_side="right",
                                   model_input_names=["input_ids", "attention_mask"])  # as LlamaTokenizer
    fast.add_special_tokens({"pad_token": "<PAD>"})
    assert fast.convert_tokens_to_ids("<PAD>") == 32000 and fast.convert_tokens_to_ids("▁") == 29871
    fast.save_pretrained(out)
    return fast


def build(args) -> None:
    cfg, mdl, prc = official(args.src)
    cases = json.loads((args.work / "cases.json").read_text())
    prompts = [f"In: What action should the robot take to {c['instruction'].lower()}?\nOut:" for c in cases]
    out = args.checkpoint
    tokenizer = build_tokenizer(prompts, out)
    image_processor = prc.PrismaticImageProcessor(  # openvla-7b's preprocessor_config.json values
        use_fused_vision_backbone=True, image_resize_strategy="resize-naive", input_sizes=[[3, 224, 224]] * 2,
        interpolations=["bicubic", "bicubic"], means=[[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]],
        stds=[[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]])
    prc.PrismaticProcessor(image_processor, tokenizer).save_pretrained(out)
    config = cfg.OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-so-224px", llm_backbone_id="llama2-7b-pure",
        arch_specifier="no-align+fused-gelu-mlp", use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive", norm_stats=STATS, n_action_bins=256, pad_token_id=32000,
        pad_to_multiple_of=64, text_config={"vocab_size": 32064, "hidden_size": 64, "intermediate_size": 128,
                                            "num_hidden_layers": 2, "num_attention_heads": 4,
                                            "num_key_value_heads": 4, "pad_token_id": 32000,
                                            "max_position_embeddings": 2048})
    torch.manual_seed(0)
    model = mdl.OpenVLAForActionPrediction(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than the 0.02 init, so frames move the tokens
            if p.dim() > 1:
                p.normal_(0, 0.2)
        head = model.language_model.lm_head.weight
        head.normal_(0, 1.0)
        head[:ACTION_RANGE[0]] = 0
        head[ACTION_RANGE[1]:] = 0
    model.save_pretrained(out)
    print("built", out, sum(p.numel() for p in model.parameters()), "parameters")


def load(args):
    official(args.src)
    from transformers import AutoModelForVision2Seq, AutoProcessor

    processor = AutoProcessor.from_pretrained(args.checkpoint)
    model = AutoModelForVision2Seq.from_pretrained(args.checkpoint, torch_dtype=torch.float32).eval()
    calls = []
    generate = model.generate

    def recording_generate(input_ids=None, **kwargs):
        out = generate(input_ids, **kwargs)
        calls.append({"input_ids": input_ids.clone(), **{k: v.clone() for k, v in kwargs.items()
                                                         if isinstance(v, torch.Tensor)}, "out": out.clone()})
        return out

    model.generate = recording_generate
    return processor, model, calls


def run(args) -> None:
    from PIL import Image

    processor, model, calls = load(args)
    cases = json.loads((args.work / "cases.json").read_text())
    prompts = json.loads((args.work / "official_tf.json").read_text())["prompts"]
    with np.load(args.work / "official_crops.npz") as f:
        crops = {k: f[k] for k in f.files}
    arrays, notes = {}, {}
    for case in cases:
        name = case["name"]
        inputs = processor(prompts[name], Image.fromarray(crops[name]).convert("RGB"))
        with torch.no_grad():
            actions = model.predict_action(**inputs, unnorm_key=UNNORM_KEY, do_sample=False)
            normalised = model.predict_action(**inputs, unnorm_key="identity", do_sample=False)
        call = calls[-2]
        n = call["input_ids"].shape[1]
        arrays.update({f"{name}/input_ids": call["input_ids"].numpy(),
                       f"{name}/processor_mask": inputs["attention_mask"].numpy(),
                       f"{name}/generate_mask": call["attention_mask"].numpy(),
                       f"{name}/pixel_values": call["pixel_values"].numpy(),
                       f"{name}/tokens": call["out"][0, n:].numpy(),
                       f"{name}/actions": np.asarray(actions), f"{name}/normalised": np.asarray(normalised)})
        notes[name] = {"tokens": call["out"][0, n:].tolist()}
    np.savez(args.work / "official_run.npz", **arrays)
    (args.work / "official_run.json").write_text(json.dumps({"cases": notes, "versions": versions()}, indent=1))


def cross(args) -> None:
    _, model, calls = load(args)
    cases = json.loads((args.work / "cases.json").read_text())
    with np.load(args.work / "evalkit_inputs.npz") as f:
        fed = {k: torch.from_numpy(f[k]) for k in f.files}
    arrays = {}
    for case in cases:
        name = case["name"]
        ids, mask, pixels = fed[f"{name}/input_ids"], fed[f"{name}/attention_mask"], fed[f"{name}/pixel_values"]
        with torch.no_grad():  # evalkit's exact generate call
            out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=7,
                                 do_sample=False)
            actions = model.predict_action(input_ids=ids, attention_mask=mask, pixel_values=pixels,
                                           unnorm_key=UNNORM_KEY, do_sample=False)
            normalised = model.predict_action(input_ids=ids, attention_mask=mask, pixel_values=pixels,
                                              unnorm_key="identity", do_sample=False)
            # the official call on the same frame: processor ids (no 29871) and mask; predict_action
            # appends 29871 to the ids but not to the mask
            official_call = model.predict_action(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
                                                 pixel_values=pixels, unnorm_key=UNNORM_KEY, do_sample=False)
        predict_tokens = calls[-3]["out"][0, ids.shape[1]:]
        official_call_tokens = calls[-1]["out"][0, ids.shape[1]:]
        arrays.update({f"{name}/official_call_tokens": official_call_tokens.numpy(),
                       f"{name}/official_call_actions": np.asarray(official_call)})
        arrays.update({f"{name}/tokens": out[0, ids.shape[1]:].numpy(), f"{name}/predict_tokens":
                       predict_tokens.numpy(), f"{name}/actions": np.asarray(actions),
                       f"{name}/normalised": np.asarray(normalised)})
    np.savez(args.work / "official_cross.npz", **arrays)


def versions() -> dict:
    from importlib.metadata import version

    return {n: version(n) for n in ("transformers", "timm", "tokenizers", "torch", "pillow", "numpy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["build", "run", "cross"])
    parser.add_argument("--src", type=Path, required=True, help="the exported openvla tree")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"build": build, "run": run, "cross": cross}[args.step](args)


if __name__ == "__main__":
    main()
