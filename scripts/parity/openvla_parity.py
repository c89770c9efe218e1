"""Official-code parity for evalkit's OpenVLA adapter (policies/vla/openvla.py), on a tiny random OpenVLA.

One command (from evalkit's env) builds nothing it already has and runs, in order:
  1. evalkit env: the cases: 224 frames after evalkit's `openvla` image path (LIBERO-sized 256x256
     renders, flipped as LIBERO's loop does) plus two 224 probes, and instructions;
  2. OpenVLA side env (transformers 4.40.1, timm 0.9.10, tokenizers 0.19.1, torch 2.13.0 CPU):
     openvla_official.py build: the tiny checkpoint, written with save_pretrained;
  3. TF env: openvla_official_tf.py: the official get_vla_action crop (tf.image.crop_and_resize) + prompt;
  4. OpenVLA side env: openvla_official.py run: official processor + predict_action on those;
  5. evalkit env: OpenVLAPolicy.act through with_model (openvla_evalkit.py), recording its generate inputs;
  6. OpenVLA side env: openvla_official.py cross: the official model on evalkit's exact inputs;
  7. evalkit env: OpenVLAPolicy.act again, replaying the step-6 tokens, and the report.

    .venv/bin/python scripts/parity/openvla_parity.py --official-src /work/sidevenvs/src/openvla \\
        --env /work/sidevenvs/openvla-tf4401 --tf-env /work/sidevenvs/tf --out results/parity_openvla.md

The side env: python3.11 -m venv ENV; ENV/bin/pip install torch==2.13.0; then, with a constraint
file holding torch==2.13.0: transformers==4.40.1 tokenizers==0.19.1 timm==0.9.10 sentencepiece pillow
numpy safetensors accelerate. The TF env: tensorflow-cpu (numpy, pillow).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import openvla_evalkit  # noqa: E402
from policies.vla.openvla import decode_action_tokens  # noqa: E402


def side(python: Path, script: str, *args: str, shims: bool = True) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(HERE / "openvla_shims") if shims else "")
    command = [str(python), str(HERE / script), *args]
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, env=env)


def npz(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-src", type=Path, required=True, help="exported openvla/openvla tree")
    parser.add_argument("--env", type=Path, required=True, help="the OpenVLA side env (official pins)")
    parser.add_argument("--tf-env", type=Path, required=True, help="an env with tensorflow-cpu")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "parity_openvla")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "parity_openvla.md")
    parser.add_argument("--golden", type=Path, help="also write the official values the tests pin here "
                        "(tests/golden/openvla_parity.json)")
    args = parser.parse_args()
    work, src = args.work.resolve(), args.official_src.resolve()
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "tiny-openvla"
    python, tf_python = args.env / "bin" / "python", args.tf_env / "bin" / "python"
    common = ["--src", str(src), "--checkpoint", str(checkpoint), "--work", str(work)]
    openvla_evalkit.make_cases(work)
    if not (checkpoint / "model.safetensors").exists():
        side(python, "openvla_official.py", "build", *common)
    side(tf_python, "openvla_official_tf.py", "--src", str(src), "--work", str(work), shims=False)
    side(python, "openvla_official.py", "run", *common)
    first, _ = openvla_evalkit.run(work, checkpoint, {})
    np.savez(work / "evalkit_inputs.npz", **{k: v for k, v in first.items()
                                             if k.split("/")[1] in ("input_ids", "attention_mask", "pixel_values")})
    side(python, "openvla_official.py", "cross", *common)
    cross = npz(work / "official_cross.npz")
    cases = json.loads((work / "cases.json").read_text())
    tokens = {c["name"]: cross[f"{c['name']}/tokens"].tolist() for c in cases}
    ours, notes = openvla_evalkit.run(work, checkpoint, tokens)
    for key in first:
        if key.split("/")[1] in ("input_ids", "attention_mask", "pixel_values"):
            assert np.array_equal(first[key], ours[key]), f"evalkit's inputs changed between passes: {key}"
    text = report(work, src, args, cases, ours, notes, cross)
    args.out.write_text(text)
    if args.golden:
        write_golden(args.golden, work, cases)
    print(args.out)


def write_golden(path: Path, work: Path, cases: list) -> None:
    """The official crop (sha256 + per-channel sums) of the formula-built frames, and the official
    predict_action outputs (tokens -> normalised -> unnormalised) with the statistics used."""
    import hashlib

    crops, run = npz(work / "official_crops.npz"), npz(work / "official_run.npz")
    config = json.loads((work / "tiny-openvla" / "config.json").read_text())
    prompts = json.loads((work / "official_tf.json").read_text())["prompts"]
    out = {"source": "scripts/parity/openvla_parity.py: openvla/openvla get_vla_action crop (TF) and "
                     "OpenVLAForActionPrediction.predict_action on the tiny checkpoint",
           "stats": config["norm_stats"]["libero_spatial_no_noops"], "crops": {}, "actions": {}}
    for case in cases:
        n = case["name"]
        if n in openvla_evalkit.GOLDEN_CASES:
            crop = np.ascontiguousarray(crops[n])
            out["crops"][n] = {"sha256": hashlib.sha256(crop.tobytes()).hexdigest(),
                               "channel_sums": crop.reshape(-1, 3).sum(0).tolist()}
        out["actions"][n] = {"instruction": case["instruction"], "prompt": prompts[n],
                             "tokens": run[f"{n}/tokens"].tolist(),
                             "normalised": run[f"{n}/normalised"].tolist(), "actions": run[f"{n}/actions"].tolist()}
    path.write_text(json.dumps(out, indent=1) + "\n")


def pillow_crop(image: np.ndarray, area: float = 0.9) -> np.ndarray:
    """Pillow bilinear resize of the central sqrt(area) box back to the frame size: what evalkit's
    center_crop did before it followed TF (measured in the report)."""
    from PIL import Image

    h, w = image.shape[:2]
    ch, cw = np.sqrt(area) * h, np.sqrt(area) * w
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR, box=box))


def fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.1e}"


def same_or(a, b) -> str:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    if np.array_equal(a, b):
        return "="
    if a.dtype.kind in "iub":
        return f"{int((a != b).sum())}/{a.size} differ"
    return fmt(float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()))


def report(work, src, args, cases, ours, notes, cross) -> str:
    run = npz(work / "official_run.npz")
    crops = npz(work / "official_crops.npz")
    tf_notes = json.loads((work / "official_tf.json").read_text())
    run_notes = json.loads((work / "official_run.json").read_text())
    processor = openvla_evalkit.ParityProcessor(work / "tiny-openvla")
    from PIL import Image

    rows_inputs, rows_model, rows_e2e, crop_stats, pillow_stats = [], [], [], [], []
    images = npz(work / "images.npz")
    for case in cases:
        n = case["name"]
        o_crop, e_crop = crops[n].astype(int), ours[f"{n}/crop"].astype(int)
        d = np.abs(o_crop - e_crop)
        crop_stats.append(d)
        pillow = pillow_crop(images[n]).astype(int) - o_crop  # evalkit's crop before the fix
        pillow_stats.append(np.abs(pillow))
        same_frame = processor("x", Image.fromarray(crops[n]))["pixel_values"].numpy()
        rows_inputs.append(
            f"| {n} | {'=' if tf_notes['prompts'][n] == notes[n]['prompt'] else 'DIFF'} "
            f"| {same_or(run[f'{n}/input_ids'], ours[f'{n}/input_ids'])} ({run[f'{n}/input_ids'].shape[1]}) "
            f"| {run[f'{n}/generate_mask'].shape[1]} vs {ours[f'{n}/attention_mask'].shape[1]} "
            f"| {d.max()} / {d.mean():.3f} / {100 * (d > 0).mean():.1f}% "
            f"| {pillow_stats[-1].max()} / {pillow_stats[-1].mean():.3f} / {100 * (pillow_stats[-1] > 0).mean():.1f}% "
            f"| {same_or(run[f'{n}/pixel_values'], same_frame)} "
            f"| {same_or(run[f'{n}/pixel_values'], ours[f'{n}/pixel_values'])} |")
        rows_model.append(
            f"| {n} | {same_or(cross[f'{n}/tokens'], cross[f'{n}/predict_tokens'])} "
            f"| {same_or(cross[f'{n}/tokens'], cross[f'{n}/official_call_tokens'])} "
            f"| {same_or(decode_action_tokens(cross[f'{n}/tokens']), cross[f'{n}/normalised'])} "
            f"| {same_or(ours[f'{n}/actions'], cross[f'{n}/actions'])} "
            f"| {same_or(ours[f'{n}/actions'], cross[f'{n}/official_call_actions'])} |")
        rows_e2e.append(
            f"| {n} | {' '.join(map(str, run[f'{n}/tokens'].tolist()))} "
            f"| {' '.join(map(str, cross[f'{n}/tokens'].tolist()))} "
            f"| {same_or(run[f'{n}/tokens'], cross[f'{n}/tokens'])} "
            f"| {same_or(ours[f'{n}/actions'], run[f'{n}/actions'])} |")
    all_d = np.concatenate([d.ravel() for d in crop_stats])
    all_p = np.concatenate([d.ravel() for d in pillow_stats])
    from importlib.metadata import version

    ek = {k: version(k) for k in ("transformers", "torch", "pillow", "numpy")}
    commit = (src / "COMMIT").read_text().strip() if (src / "COMMIT").exists() else "(unknown commit)"
    notes_md = (HERE / "openvla_report_notes.md").read_text() if (HERE / "openvla_report_notes.md").exists() else ""
    head = ["# Official-code parity: OpenVLA (tiny random checkpoint)", "",
            "Generated by `scripts/parity/openvla_parity.py` (text after the tables: "
            "`scripts/parity/openvla_report_notes.md`). Reproduce:", "", "```",
            "git -C OPENVLA_GIT_DIR archive HEAD | tar -x -C /work/sidevenvs/src/openvla",
            "git -C OPENVLA_GIT_DIR rev-parse HEAD > /work/sidevenvs/src/openvla/COMMIT",
            f".venv/bin/python scripts/parity/openvla_parity.py --official-src {src} --env {args.env} "
            f"--tf-env {args.tf_env} --out {os.path.relpath(args.out.resolve(), ROOT)}"
            + (f" --golden {os.path.relpath(args.golden.resolve(), ROOT)}" if args.golden else ""), "```", "",
            f"Official source: openvla/openvla `{commit}` (prismatic/extern/hf, experiments/robot/openvla_utils.py).",
            "",
            f"Versions: OpenVLA side env: {', '.join(f'{k} {v}' for k, v in run_notes['versions'].items())}; "
            f"TF env: tensorflow {tf_notes['tensorflow']}; evalkit: "
            f"{', '.join(f'{k} {v}' for k, v in ek.items())}.", "",
            f"evalkit resolved unnorm_key `libero_spatial` to `{notes['unnorm_key']}`; generate kwargs: "
            f"`{notes[cases[0]['name']]['generate_kwargs']}`.", "",
            "## Inputs: prompt, ids, crop, pixel values", "",
            "Crop columns: |official TF crop - evalkit's crop| on the uint8 frames: max / mean / share of "
            "values that differ; then the same for Pillow bilinear with the crop box (evalkit's crop before "
            "this harness; kept as a measurement). Pixel values: the official processor's output against evalkit's stand-in on "
            "the same (official) crop, then against what evalkit fed generate (its own crop).", "",
            "| case | prompt string | prompt ids (length) | mask length official vs evalkit | crop max / mean / differ | Pillow crop (before fix) "
            "| pixel values, same crop | pixel values, each side's crop |",
            "|---|---|---|---|---|---|---|---|", *rows_inputs, "",
            f"All cases: crop |diff| max {all_d.max()}, mean {all_d.mean():.3f}, "
            f"{100 * (all_d > 0).mean():.1f}% of values differ. Pillow bilinear (before the fix): max "
            f"{all_p.max()}, mean {all_p.mean():.3f}, {100 * (all_p > 0).mean():.1f}% of values differ, "
            f"{100 * (all_p > 1).mean():.2f}% by more than 1.", "",
            "## Model stages on evalkit's exact inputs", "",
            "The official model, given what evalkit handed generate: evalkit's generate call vs predict_action "
            "(tokens), vs the official call convention (ids without 29871 and the processor's mask; "
            "predict_action appends 29871 to the ids only); evalkit's 256-bin decode of those tokens vs the "
            "official normalised actions; evalkit's actions (q01/q99 with the mask) vs the official "
            "predict_action's.", "",
            "| case | generate vs predict_action tokens | vs official call convention | normalised actions "
            "| unnormalised actions | vs official call convention actions |",
            "|---|---|---|---|---|---|", *rows_model, "",
            "## End to end (each side its own crop)", "",
            "| case | official tokens (TF crop) | tokens on evalkit's inputs (evalkit's crop) | tokens | actions max abs diff |",
            "|---|---|---|---|---|", *rows_e2e, ""]
    return "\n".join(head) + "\n" + notes_md


if __name__ == "__main__":
    main()
