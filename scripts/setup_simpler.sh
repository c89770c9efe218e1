#!/usr/bin/env bash
# Set up SimplerEnv for evalkit in ./.venv-simpler (a separate environment: SAPIEN 2.2.2 needs numpy<2
# and ManiSkill2_real2sim needs gymnasium<1.0, while .venv holds numpy 2 / gymnasium 1 packages).
#
#   bash scripts/setup_simpler.sh [SRC_DIR]
#
# simpler_env and mani_skill2_real2sim are not on PyPI: they are installed from clones of
# github.com/simpler-env/ManiSkill2_real2sim and github.com/simpler-env/SimplerEnv, taken from
# SRC_DIR (default .simpler-src/, cloned there if missing). Safe to run again.
# Without a GPU, SAPIEN also needs a software Vulkan driver: see ../shared/tools/simpler-cpu/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'setup_simpler: %s\n' "$*"; }
SRC="${1:-.simpler-src}"
PY="${PYTHON:-python3}"

mkdir -p "$SRC"
for repo in ManiSkill2_real2sim SimplerEnv; do
  if [ ! -d "$SRC/$repo" ]; then
    say "cloning simpler-env/$repo into $SRC/$repo"
    git clone -q --depth 1 "https://github.com/simpler-env/$repo.git" "$SRC/$repo"
  fi
done

[ -x .venv-simpler/bin/python ] || { say "creating .venv-simpler"; "$PY" -m venv .venv-simpler; }
pip_install() {
  .venv-simpler/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
# ManiSkill2_real2sim's requirements.txt, versions as tested (../shared/tools/simpler-cpu/README.md),
# plus mediapy and matplotlib: SimplerEnv's official evaluator (simpler_env/evaluation/maniskill2_evaluator.py)
# imports them through simpler_env/utils/visualization.py, and the conformance tests import that evaluator.
pip_install numpy==1.26.4 sapien==2.2.2 gymnasium==0.29.1 scipy transforms3d trimesh rtree ruckig \
  opencv-python-headless "imageio[ffmpeg]" h5py pyyaml tqdm tabulate pillow pytest mediapy matplotlib
# --no-deps: their declared dependencies are above (SimplerEnv's full install would add tensorflow/jax).
pip_install --no-deps -e "$SRC/ManiSkill2_real2sim" -e "$SRC/SimplerEnv" -e .
# Model policies need torch/transformers: rather than a second multi-GB torch, let .venv-simpler see
# .venv's packages *after* its own (its numpy 1.26 wins; torch 2.13 runs with it). SIMPLER_SHARE_VENV=0: skip.
SITE=$(.venv-simpler/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
MAIN_SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
if [ "${SIMPLER_SHARE_VENV:-1}" = 1 ] && [ -n "$MAIN_SITE" ]; then
  echo "$MAIN_SITE" > "$SITE/zz_evalkit_main_venv.pth"
  say "torch and model packages come from .venv ($MAIN_SITE), after .venv-simpler's own"
fi
.venv-simpler/bin/python -c 'import simpler_env, sapien, numpy; print("setup_simpler: ready: sapien", sapien.__version__, "numpy", numpy.__version__)'
# The official evaluation path must import too (it pulls mediapy, matplotlib, transforms3d).
.venv-simpler/bin/python -c 'import simpler_env.evaluation.maniskill2_evaluator' \
  || { say "simpler_env.evaluation.maniskill2_evaluator does not import (see the error above)"; exit 1; }
say "robot descriptions missing from your ManiSkill2_real2sim copy? merge the asset bundle's package_assets/ (its MANIFEST.md)"
