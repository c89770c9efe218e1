"""Official-code parity for evalkit's NORA, NORA-LONG and NORA-1.5 adapters, on the tiny checkpoints.

Given a folder holding the official repositories (fetched by you, never committed):
    OFFICIAL_SRC/nora           github.com/declare-lab/nora
    OFFICIAL_SRC/nora-1.5       github.com/declare-lab/nora-1.5
    OFFICIAL_SRC/dlimp_openvla  github.com/moojink/dlimp_openvla (NORA-1.5's pinned dlimp)
this builds the side environments with the repositories' pins (scripts/parity/envs.py), the tiny
checkpoints, a set of cases (frames of several sizes, instructions, flow noise), runs the official
inference in the side environments and evalkit's adapters in this one, each side writing .npz/.json,
and compares them stage by stage into a markdown report:

    .venv/bin/python scripts/parity/run_parity.py --official-src /work/sidevenvs/src \\
        --envs /work/sidevenvs --out results/parity_nora.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
import report  # noqa: E402

# (name, size (h, w), kind, seed, instruction): different sizes, so the resize paths are covered
CASES = [
    ("dark224", (224, 224), "dark", 1, "turn on the stove"),
    ("bright224", (224, 224), "bright", 2, "pick up the black bowl and place it on the plate"),
    ("libero256", (256, 256), "frame", 3, "put the cream cheese in the bowl"),
    ("wide480x640", (480, 640), "frame", 4, "open the top drawer of the cabinet"),
    ("bright128", (128, 128), "bright", 5, "turn on the stove"),
    ("tall320x200", (320, 200), "frame", 6, "pick up the black bowl and place it on the plate"),
    ("dark300", (300, 300), "dark", 7, "Put the bowl on the plate, then stop."),
]
# NORA-LONG again with a generation_config.json that sets a total max_length and a repetition
# penalty: both sides must follow the checkpoint's generation config the same way
GENCONFIG = {"max_length": 104, "repetition_penalty": 4.0}  # prompts are 92-102 tokens: budgets of 2-12


def make_cases(work: Path) -> None:
    from evalkit.core.images import synthetic_frame
    from policies.nora.tiny_models import synthetic_image

    images, cases, noise = {}, [], {}
    for name, (h, w), kind, seed, instruction in CASES:
        if kind == "frame":
            images[name] = synthetic_frame(h, w, seed)
        else:  # the tiny models' own probes, cropped to the size
            square = synthetic_image(np.random.default_rng(seed), kind == "bright", size=max(h, w))
            images[name] = np.ascontiguousarray(square[:h, :w])
        cases.append({"name": name, "image": name, "instruction": instruction})
        noise[name] = np.random.default_rng(1000 + seed).standard_normal((1, 5, 7)).astype(np.float32)
    np.savez(work / "images.npz", **images)
    np.savez(work / "noise.npz", **noise)
    (work / "cases.json").write_text(json.dumps(cases, indent=1))


def make_checkpoints(work: Path) -> dict:
    tiny = work / "tiny"
    if not (tiny / "nora-1.5" / "model.safetensors").exists():
        envs.run([sys.executable, str(ROOT / "scripts" / "make_tiny_checkpoints.py"), str(tiny)])
    variant = work / "tiny-genconfig" / "nora-long-genconfig"
    shutil.rmtree(variant.parent, ignore_errors=True)
    shutil.copytree(tiny / "nora-long", variant)
    config = json.loads((variant / "generation_config.json").read_text())
    (variant / "generation_config.json").write_text(json.dumps({**config, **GENCONFIG}, indent=2))
    return {"nora": tiny / "nora", "nora-long": tiny / "nora-long", "nora-long-genconfig": variant,
            "nora-1.5": tiny / "nora-1.5"}


def side_env() -> dict:
    """Environment of the side processes: the torchvision stand-in first on the path, one thread
    (the machine is shared; it also keeps float sums in one order)."""
    env = dict(os.environ, PYTHONPATH=str(HERE / "shims"), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def run_sides(args, checkpoints: dict, side_envs: dict) -> None:
    env = side_env()
    for model, checkpoint in checkpoints.items():
        common = ["--checkpoint", str(checkpoint), "--work", str(args.work)]
        if model == "nora-1.5":
            official = [str(envs.python_of(side_envs["nora15-tf4541"])), str(HERE / "official_nora15.py"),
                        "--src", str(args.official_src / "nora-1.5")]
            ours = ["--model", "nora-1.5"]
        else:
            official = [str(envs.python_of(side_envs["nora-tf450"])), str(HERE / "official_nora.py"),
                        "--src", str(args.official_src / "nora"), "--model", model]
            ours = ["--model", "nora", "--name", model]
        envs.run_with(official + common, env)
        envs.run_with([sys.executable, str(HERE / "evalkit_side.py")] + common + ours,
                      dict(env, PYTHONPATH=""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-src", type=Path, required=True)
    parser.add_argument("--envs", type=Path, help="where the side environments live (default: OFFICIAL_SRC/..)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "parity")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "parity_nora.md")
    parser.add_argument("--python", default="python3.11", help="interpreter for the side environments")
    args = parser.parse_args()
    args.official_src = args.official_src.resolve()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    side_envs = {name: envs.ensure_env(name, (args.envs or args.official_src.parent).resolve(), args.python,
                                       args.official_src) for name in envs.ENVS}
    checkpoints = make_checkpoints(args.work)
    make_cases(args.work)
    run_sides(args, checkpoints, side_envs)
    args.out.write_text(report.build(args.work, list(checkpoints), command_line(), sources(args.official_src),
                                     {name: envs.installed(env, report.PACKAGES[name])
                                      for name, env in side_envs.items()}))
    print(args.out)


def command_line() -> str:
    return " ".join(["python", *[a if " " not in a else repr(a) for a in
                                 [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]]])


def sources(official_src: Path) -> dict:
    """Commit of each official tree where it is a git checkout, else what it says it is."""
    out = {}
    for name in ("nora", "nora-1.5", "dlimp_openvla"):
        folder = official_src / name
        if (folder / ".git").exists():
            out[name] = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                       text=True, check=True).stdout.strip()
        else:  # an exported tree: `git archive` users write the commit to COMMIT
            stamp = folder / "COMMIT"
            out[name] = stamp.read_text().strip() if stamp.exists() else "(unknown commit)"
    return out


if __name__ == "__main__":
    main()
