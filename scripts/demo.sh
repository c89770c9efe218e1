#!/usr/bin/env bash
# The main job on its embedded default: the scripted oracle on libero_spatial (one episode per
# task, bundled assets), real MuJoCo episodes, a success-rate table at the end.
# Extra arguments go to `evalkit run` (e.g. --episodes-per-task 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/evalkit run --suite libero_spatial --policy oracle --episodes-per-task 1 --workers 2 \
  --out runs/demo-oracle-libero_spatial "$@"
