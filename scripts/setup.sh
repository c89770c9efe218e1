#!/usr/bin/env bash
# Set up evalkit in ./.venv: system GL libraries for headless MuJoCo, torch (CPU pin) first,
# then evalkit with its LIBERO, video and dev extras. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*"; }

# MuJoCo renders offscreen through EGL; with no GPU, Mesa's llvmpipe provides it. Chromium and its driver:
# the test that opens `evalkit view`'s site in a headless browser (skipped without them).
need=()
for pkg in libegl1 libegl-mesa0 libopengl0 libgl1-mesa-dri chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null
  else
    say "WARNING: missing ${need[*]}; run: sudo apt-get install -y ${need[*]}"
  fi
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
# This machine's pip configuration names local index folders that may not exist; pip warns about
# each one on every install. Drop those lines only (pip's own exit status still counts: pipefail).
pip_install() {
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# torch first, pinned: any other spec may pull gigabytes of CUDA packages.
.venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null \
  || { say "installing torch==2.13.0"; pip_install torch==2.13.0; }
say "installing evalkit[libero,video,nora,ray,wandb,dev]"
pip_install -e ".[libero,video,nora,ray,wandb,dev]"
# hf-libero, robosuite and bddl without their declared training dependencies.
pip_install --no-deps hf-libero==0.1.4 robosuite==1.4.0 bddl==1.0.1
.venv/bin/python -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__'
say "ready: $(.venv/bin/evalkit --help >/dev/null && echo 'evalkit installed in .venv')"
