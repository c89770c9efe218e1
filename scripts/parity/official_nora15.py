"""Official side for NORA-1.5: declare-lab/nora-1.5's `inference/modelling_expert.py`
(VLAWithExpert), imported from the fetched tree and called as its README shows:
`VLAWithExpert.from_pretrained(checkpoint).sample_actions(image, instruction, num_steps=10)`.
Runs in the side environment (transformers 4.54.1, tensorflow 2.15 + dlimp for its resize).

Shims (all here; the official file is not modified):
  - torchvision: a stand-in package on PYTHONPATH (scripts/parity/shims), for qwen_vl_utils' imports;
  - transformers' AutoVideoProcessor (torchvision-only) -> an images-only stand-in, so that
    AutoProcessor can build Qwen2_5_VLProcessor;
  - hf_hub_download of the statistics (declare-lab/nora norm_stats.json, moojink's LIBERO
    dataset_statistics.json) -> the checkpoint's norm_stats.json;
  - AutoProcessor "physical-intelligence/fast" (hub remote code; sample_actions never uses it) -> FastStandIn;
  - constructor arguments from the checkpoint's config.json, its backbone/processor ids made local
    paths (from_pretrained passes **kwargs to the constructor and reads no config);
  - sample_noise -> the case's fixed float32 noise tensor (same on both sides);
  - device cpu, float32 (the release loads float32; its SimplerEnv loop casts to bfloat16 on GPU).

Recorded per case: the image after the official resize, the processor's outputs, the text decoder's
position ids, the backbone keys/values, every denoise step (state in, time, velocity out), the
normalised chunk and the chunk unnormalised by the official `unnormalize_action`.

    python official_nora15.py --src SRC/nora-1.5 --checkpoint DIR --work DIR
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _shared  # noqa: E402

CONSTRUCTOR_ARGS = ("vlm_model_id", "processor_id", "fast_tokenizer_id", "lm_expert_width_multiplier",
                    "lm_expert_num_attention_head", "action_chunk_length", "action_dim")


def images_only_video_processor() -> None:
    """SHIM: AutoVideoProcessor needs torchvision; NORA-1.5's prompts hold no video. The processor
    gets a stand-in, accepted by the processor's class check."""
    from transformers import processing_utils
    from transformers.video_processing_utils import BaseVideoProcessor

    class NoVideo(BaseVideoProcessor):
        """Stand-in video processor (never called: no video in the prompt)."""

    class AutoVideoProcessor:  # what ProcessorMixin looks up by name in the transformers package
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return NoVideo()

    check = processing_utils.ProcessorMixin.check_argument_for_proper_class

    def check_argument(self, name, argument):
        return type(argument) if isinstance(argument, NoVideo) else check(self, name, argument)

    processing_utils.transformers_module.AutoVideoProcessor = AutoVideoProcessor
    processing_utils.ProcessorMixin.check_argument_for_proper_class = check_argument


def constructor_args(checkpoint: Path) -> dict:
    config = json.loads((checkpoint / "config.json").read_text())
    args = {k: config[k] for k in CONSTRUCTOR_ARGS if k in config}
    for key in ("vlm_model_id", "processor_id"):  # relative to the checkpoint -> absolute
        args[key] = str((checkpoint / args[key]).resolve())
    args["fast_tokenizer_id"] = "physical-intelligence/fast"  # the stand-in answers this id
    return args


def load_official(src: Path, checkpoint: Path):
    sys.path.insert(0, str(src))
    images_only_video_processor()
    import inference.modelling_expert as official

    stats = checkpoint / "norm_stats.json"
    official.hf_hub_download = _shared.local_hub_download({
        ("declare-lab/nora", "norm_stats.json"): stats,
        ("moojink/openvla-7b-oft-finetuned-libero-spatial-object-goal-10", "dataset_statistics.json"): stats})
    official.AutoProcessor = _shared.auto_processor_with_fast_stand_in(official.AutoProcessor, _shared.FastStandIn())
    model = official.VLAWithExpert.from_pretrained(str(checkpoint), **constructor_args(checkpoint))
    return model.to("cpu", torch.float32).eval()


def load_report(model, checkpoint: Path) -> dict:
    """The official loader uses load_state_dict(strict=False): check here that every tensor landed."""
    from safetensors.torch import load_file

    stored, live = load_file(str(checkpoint / "model.safetensors")), model.state_dict()
    return {"missing": sorted(k for k in live if k not in stored),
            "unexpected": sorted(k for k in stored if k not in live),
            "different": sorted(k for k in stored if k in live and not torch.equal(stored[k], live[k]))}


def run_case(model, positions, noise: np.ndarray, image: np.ndarray, instruction: str) -> tuple[dict, dict]:
    fixed = torch.from_numpy(noise)
    model.sample_noise = lambda shape, device, dtype=torch.float32: fixed.to(device, dtype).clone()
    model.processor.calls.clear()
    model.denoise_step.calls.clear()
    normalised = model.sample_actions(image, instruction, num_steps=10)
    (_, kwargs, inputs), = model.processor.calls
    steps = model.denoise_step.calls
    prefill = positions.take()[0]
    arrays = {k: v.numpy() for k, v in inputs.items()}
    arrays.update(image=np.asarray(kwargs["images"][0]), positions=prefill.numpy(),
                  image_features=_shared.image_features(model.vlm, inputs["pixel_values"], inputs["image_grid_thw"]),
                  states=np.stack([s[1]["x_t"].numpy() for s in steps]),
                  velocities=np.stack([s[2].float().numpy() for s in steps]),
                  normalised=normalised, actions=model.unnormalize_action(normalised, _shared.UNNORM_KEY),
                  **_shared.kv_arrays(steps[0][1]["vlm_kv_cache"], model.vlm.config.num_hidden_layers))
    return arrays, {"times": [float(s[1]["timestep"][0]) for s in steps]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="the declare-lab/nora-1.5 work tree")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    checkpoint = args.checkpoint.resolve()
    model = load_official(args.src, checkpoint)
    model.processor = _shared.Recording(model.processor)
    model.denoise_step = _shared.Recording(model.denoise_step)
    positions = _shared.PositionRecorder(model.vlm)
    cases, images = _shared.load_cases(args.work)
    noise = _shared.load_noise(args.work)
    arrays, notes = {}, {"versions": versions(), "load": load_report(model, checkpoint)}
    for case in cases:
        case_arrays, notes[case["name"]] = run_case(model, positions, noise[case["name"]], images[case["image"]],
                                                    case["instruction"])
        arrays.update({f"{case['name']}/{k}": v for k, v in case_arrays.items()})
    _shared.save(args.work, "official", "nora-1.5", arrays, notes)


def versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("transformers", "torch", "pillow", "qwen-vl-utils", "tensorflow",
                                             "numpy")}


if __name__ == "__main__":
    main()
