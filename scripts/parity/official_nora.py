"""Official side for NORA / NORA-LONG: declare-lab/nora's `inference/nora.py` (class Nora),
imported from the fetched tree and called as its README shows: `Nora(model_path).inference(image,
instruction, unnorm_key)`. Runs in the side environment (transformers 4.50.0, qwen-vl-utils).

Shims (all here; the official file is not modified):
  - torchvision: a stand-in package on PYTHONPATH (scripts/parity/shims), for qwen_vl_utils' imports;
  - hf_hub_download("declare-lab/nora", "norm_stats.json") -> the checkpoint's norm_stats.json;
  - AutoProcessor "physical-intelligence/fast" (hub remote code) -> FastStandIn, recording the FAST ids;
  - Nora._ACTION_TOKEN_MIN/MAX (151665..153712, the released vocabulary) -> the tiny vocabulary's range;
  - device "cpu", torch_dtype float32 (the official default is bfloat16 on any device).

Recorded per case: the inputs handed to generate (ids, mask, pixels, grid), the image qwen_vl_utils
produced, the text decoder's position ids, rope deltas, the new tokens, the FAST ids decoded, and
the prefill keys/values (a forward on the same inputs: generate does not return them).

    python official_nora.py --src SRC/nora --checkpoint DIR --work DIR --model nora
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _shared  # noqa: E402


def load_official(src: Path, checkpoint: Path, fast: _shared.FastStandIn):
    sys.path.insert(0, str(src))
    import inference.nora as official

    official.hf_hub_download = _shared.local_hub_download({("declare-lab/nora", "norm_stats.json"):
                                                           checkpoint / "norm_stats.json"})
    official.AutoProcessor = _shared.auto_processor_with_fast_stand_in(official.AutoProcessor, fast)
    first, count = _shared.action_token_range(checkpoint)
    official.Nora._ACTION_TOKEN_MIN, official.Nora._ACTION_TOKEN_MAX = first, first + count - 1
    return official.Nora(model_path=str(checkpoint), device="cpu", torch_dtype=torch.float32)


def run_case(nora, fast, positions, generate, image, instruction) -> tuple[dict, dict]:
    nora.inference(image, instruction, unnorm_key=_shared.UNNORM_KEY)
    _, inputs, out = generate.calls[-1]
    prefill = positions.take()[0]
    rope_deltas = nora.model.rope_deltas.numpy()
    fed = nora.processor.calls[-1][1]["images"][0]  # what qwen_vl_utils made of the frame
    with torch.no_grad():  # prefill keys/values (a fresh forward recomputes the 3-D positions)
        cache = nora.model(**inputs, use_cache=True).past_key_values
    positions.take()
    arrays = {k: v.numpy() for k, v in inputs.items()}
    arrays.update(positions=prefill.numpy(), rope_deltas=rope_deltas, image=np.asarray(fed),
                  image_features=_shared.image_features(nora.model, inputs["pixel_values"], inputs["image_grid_thw"]),
                  **_shared.kv_arrays(cache, nora.model.config.num_hidden_layers))
    notes = {"new_tokens": out[0, inputs["input_ids"].shape[1]:].tolist(), "fast_ids": fast.decoded[-1]}
    return arrays, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="the declare-lab/nora work tree")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", required=True, help="name for the output files (nora, nora-long, ...)")
    args = parser.parse_args()
    torch.manual_seed(0)
    fast = _shared.FastStandIn()
    nora = load_official(args.src, args.checkpoint.resolve(), fast)
    nora.processor = _shared.Recording(nora.processor)
    generate = nora.model.generate = _shared.Recording(nora.model.generate)
    positions = _shared.PositionRecorder(nora.model)
    cases, images = _shared.load_cases(args.work)
    arrays, notes = {}, {"versions": versions()}
    for case in cases:
        case_arrays, notes[case["name"]] = run_case(nora, fast, positions, generate, images[case["image"]],
                                                    case["instruction"])
        arrays.update({f"{case['name']}/{k}": v for k, v in case_arrays.items()})
    _shared.save(args.work, "official", args.model, arrays, notes)


def versions() -> dict:
    import PIL
    import qwen_vl_utils  # noqa: F401
    import transformers
    from importlib.metadata import version

    return {"transformers": transformers.__version__, "torch": torch.__version__, "pillow": PIL.__version__,
            "qwen-vl-utils": version("qwen-vl-utils")}


if __name__ == "__main__":
    main()
