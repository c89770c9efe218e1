"""evalkit's side: the NORA / NORA-LONG / NORA-1.5 adapters on the same cases, through their
public paths (`generate` / `act` on an Observation holding the raw frame, so the adapter's own
resize of non-224 frames is covered), recording the stages the official sides record.
Runs in evalkit's environment (transformers 5):

    python evalkit_side.py --checkpoint DIR --work DIR --model nora|nora-long|nora-1.5
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))
import _shared  # noqa: E402

from evalkit.core.types import Observation  # noqa: E402
from policies.nora.nora import model_image  # noqa: E402
from policies.nora.actions import action_token_ids  # noqa: E402


def observation(name: str, image: np.ndarray) -> Observation:
    return Observation(images={"agentview": image}, episode_key=f"parity/{name}", step=0)


def run_nora(policy, positions, name: str, image: np.ndarray, instruction: str) -> tuple[dict, dict]:
    obs = observation(name, image)
    policy.model.generate.calls.clear()
    tokens = policy.generate([obs], [instruction])[0]
    (_, batch, _), = policy.model.generate.calls
    prefill = positions.take()[0][-3:]  # generate adds a text row in front of the three M-RoPE rows
    rope_deltas = policy.model.model.rope_deltas.numpy()
    with torch.no_grad():
        cache = policy.model(**batch, use_cache=True).past_key_values
    positions.take()
    arrays = {k: v.numpy() for k, v in batch.items() if isinstance(v, torch.Tensor)}
    arrays.update(positions=prefill.numpy(), rope_deltas=rope_deltas,
                  image=model_image(obs, policy.camera, policy.image_path),
                  image_features=_shared.image_features(policy.model, batch["pixel_values"], batch["image_grid_thw"]),
                  **_shared.kv_arrays(cache, policy.model.config.get_text_config().num_hidden_layers))
    decoded = policy.decode(tokens)
    fast_ids = action_token_ids(tokens, policy.first_action_id, policy.codec.vocab_size)
    notes = {"new_tokens": tokens, "fast_ids": fast_ids,
             "decoded": np.asarray(getattr(decoded, "actions", decoded)).tolist(), "decoded_as": type(decoded).__name__}
    return arrays, notes


def run_nora15(policy, positions, noise: np.ndarray, name: str, image: np.ndarray,
               instruction: str) -> tuple[dict, dict]:
    obs = observation(name, image)
    policy._noise = lambda o: torch.from_numpy(noise[0])  # the case's fixed noise (one chunk)
    model = policy.model
    for recording in (model.sample, model.velocity, model.backbone_kv):
        recording.calls.clear()
    actions = policy.act(obs, instruction)
    (args, _, normalised), = model.sample.calls
    (_, _, kv), = model.backbone_kv.calls
    steps = model.velocity.calls
    prefill = positions.take()[0]
    arrays = {k: v.numpy() for k, v in args[0].items()}
    arrays.update(image=model_image(obs, policy.camera, policy.image_path), positions=prefill.numpy(),
                  image_features=_shared.image_features(model.vlm, args[0]["pixel_values"], args[0]["image_grid_thw"]),
                  states=np.stack([s[0][0].numpy() for s in steps]),
                  velocities=np.stack([s[2].float().numpy() for s in steps]),
                  normalised=normalised.numpy(), actions=np.asarray(actions)[None])
    for i, (keys, values) in enumerate(kv):
        arrays[f"keys{i}"], arrays[f"values{i}"] = keys.float().numpy(), values.float().numpy()
    return arrays, {"times": [float(s[0][1][0]) for s in steps]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", required=True, help="nora, nora-long (NoraPolicy) or nora-1.5 (Nora15Policy)")
    parser.add_argument("--name", help="name for the output files (default: --model)")
    args = parser.parse_args()
    cases, images = _shared.load_cases(args.work)
    arrays, notes = {}, {"versions": versions()}
    if args.model == "nora-1.5":
        from policies.nora.nora15 import Nora15Policy

        policy = Nora15Policy(str(args.checkpoint), device="cpu", dtype="float32")
        for method in ("sample", "velocity", "backbone_kv"):
            setattr(policy.model, method, _shared.Recording(getattr(policy.model, method)))
        positions = _shared.PositionRecorder(policy.model.vlm)
        noise = _shared.load_noise(args.work)
        run = lambda case, image: run_nora15(policy, positions, noise[case["name"]], case["name"], image,  # noqa: E731
                                             case["instruction"])
    else:
        from policies.nora.nora import NoraPolicy

        policy = NoraPolicy(str(args.checkpoint), device="cpu", dtype="float32")
        policy.model.generate = _shared.Recording(policy.model.generate)
        positions = _shared.PositionRecorder(policy.model)
        run = lambda case, image: run_nora(policy, positions, case["name"], image, case["instruction"])  # noqa: E731
        notes["generation_note"] = policy.generation_note
    for case in cases:
        case_arrays, notes[case["name"]] = run(case, images[case["image"]])
        arrays.update({f"{case['name']}/{k}": v for k, v in case_arrays.items()})
    _shared.save(args.work, "evalkit", args.name or args.model, arrays, notes)


def versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("transformers", "torch", "pillow", "numpy")}


if __name__ == "__main__":
    main()
