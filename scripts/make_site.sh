#!/usr/bin/env bash
# Rebuild results/site/: the site of results/' committed runs (the oracle's CI baseline, an `evalkit export`,
# and the oracle chunking sweep, from its committed table: the sweep's run directories are not committed), and
# screenshots. Needs .venv (scripts/setup.sh), and for the screenshots chromium + chromium-driver + selenium.
#
#   bash scripts/make_site.sh          # results/site/{index.html,tables/,screenshot.png}: no simulation, ~2 s
#   bash scripts/make_site.sh --demo   # also results/site/demo.png: the episode browser of a fake-suite run and
#                                      # two short real LIBERO episodes with videos (runs/site-demo/, ~30 s)
set -euo pipefail
cd "$(dirname "$0")/.."
EVALKIT=.venv/bin/evalkit
PY=.venv/bin/python

$EVALKIT view results/baselines/oracle_libero_spatial_2x10.jsonl \
  --sweep results/sweeps/oracle_chunking_libero_spatial.yaml --out results/site
$PY scripts/screenshot_site.py results/site/index.html results/site/screenshot.png

if [ "${1:-}" = "--demo" ]; then
  rm -rf runs/site-demo
  $EVALKIT run --suite libero_spatial --tasks 0 --episodes-per-task 2 --max-steps 30 --policy random \
    --policy-arg cameras=agentview,robot0_eye_in_hand --policy-arg scale=0.3 --video all \
    --out runs/site-demo/libero --no-progress >/dev/null
  $EVALKIT run --suite fake --policy scripted-reach --episodes-per-task 4 --max-steps 20 --video failures \
    --out runs/site-demo/fake --no-progress >/dev/null
  $EVALKIT view runs/site-demo/libero runs/site-demo/fake --out runs/site-demo/site
  $PY scripts/screenshot_site.py runs/site-demo/site/index.html results/site/demo.png --section episodes
fi
