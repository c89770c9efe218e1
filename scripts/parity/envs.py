"""Side environments for the official NORA / NORA-1.5 inference code, with the repositories' pins.

declare-lab/nora `inference/requirements.txt`: torch==2.4.0, transformers==4.50.0, qwen_vl_utils,
torchvision==0.19.0, accelerate==1.5.2, scipy.
declare-lab/nora-1.5 `requirements.txt`: tensorflow==2.15.0, tensorflow_datasets==4.9.3, tensorflow_graphics,
dlimp @ git+moojink/dlimp_openvla, torch==2.6.0, transformers==4.54.1, qwen_vl_utils, torchvision==0.21.0,
accelerate==1.10.0, wandb, scipy, pillow, safetensors, lerobot==0.3.3, numpydantic, numpy==1.26.4.

Deviations (each in the report): torch 2.13.0 (the CPU wheel this machine has; the pinned CUDA
builds are not installable here); no torchvision (no CPU build here: a stand-in package,
scripts/parity/shims); qwen_vl_utils is unpinned: 0.0.11 for NORA, 0.0.14 for NORA-1.5 (their image
path, fetch_image with resized_height/width 224, is the same in both); dlimp from the fetched
moojink/dlimp_openvla tree without its dependencies (its tensorflow pin is already met); training-only
packages left out (tensorflow_graphics, wandb, lerobot, numpydantic); einops added (imported by
modelling_expert.py, missing from its requirements); tensorflow-metadata 1.16.1 (the newest needs
protobuf >= 5, which tensorflow 2.15 excludes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TORCH = "torch==2.13.0"
ENVS = {
    "nora-tf450": ["transformers==4.50.0", "accelerate==1.5.2", "qwen-vl-utils==0.0.11", "scipy", "pillow",
                   "safetensors"],
    "nora15-tf4541": ["transformers==4.54.1", "accelerate==1.10.0", "qwen-vl-utils==0.0.14", "numpy==1.26.4",
                      "tensorflow==2.15.0", "tensorflow_datasets==4.9.3", "tensorflow-metadata==1.16.1",
                      "einops", "safetensors", "pillow", "scipy"],
}
LOCAL_PACKAGES = {"nora15-tf4541": ["dlimp_openvla"]}  # folders of --official-src, installed --no-deps
MARKER = "evalkit-parity-env.json"


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def ensure_env(name: str, root: Path, python: str, official_src: Path) -> Path:
    """Create (once) the named side environment under root; returns its folder."""
    env = root / name
    wanted = {"torch": TORCH, "packages": ENVS[name], "local": LOCAL_PACKAGES.get(name, [])}
    marker = env / MARKER
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return env
    run([python, "-m", "venv", str(env)])
    pip = [str(python_of(env)), "-m", "pip", "install", "-q"]
    run(pip + [TORCH])  # first and alone: a later resolve must not replace the CPU build
    constraints = env / "constraints.txt"
    constraints.write_text(TORCH + "\n" + "".join(p + "\n" for p in ENVS[name] if "==" in p))
    run(pip + ["-c", str(constraints)] + ENVS[name])
    for folder in wanted["local"]:
        run(pip + ["--no-deps", str(official_src / folder)])
    marker.write_text(json.dumps(wanted, indent=1))
    return env


def installed(env: Path, names: list[str]) -> dict:
    code = ("import json, importlib.metadata as m, sys; "
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([str(python_of(env)), "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run(command: list[str]) -> None:
    run_with(command, None)


def run_with(command: list[str], env) -> None:
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, env=env)
