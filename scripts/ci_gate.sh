#!/usr/bin/env bash
# CI regression gate: evaluate a policy on a fixed LIBERO subset (libero_spatial, init states 0-1
# of all 10 tasks) and compare it, episode by episode, with a stored baseline export.
#
#   scripts/ci_gate.sh [evalkit run flags...]      e.g. --policy nora --policy-arg checkpoint=PATH
#
# Environment: BASELINE (an `evalkit export` file; default: the oracle's, committed),
#              THRESHOLD (percentage points a drop must exceed to fail; default 10),
#              OUT (candidate run directory; use a fresh one per candidate).
# Exit code: 0 pass, 1 significant regression (tasks named in OUT/compare.md), 2 not comparable,
# 3 bad input (missing baseline or run), 4 evalkit failed (see evalkit compare).
# To store a new baseline: run the same subset, then `evalkit export RUN_DIR results/baselines/NAME.jsonl`.
set -euo pipefail
cd "$(dirname "$0")/.."
BASELINE="${BASELINE:-results/baselines/oracle_libero_spatial_2x10.jsonl}"
OUT="${OUT:-runs/ci-gate-candidate}"
.venv/bin/evalkit run --suite libero_spatial --episodes-per-task 2 --workers 2 --out "$OUT" --no-progress "$@" >/dev/null
exec .venv/bin/evalkit compare "$BASELINE" "$OUT" --threshold "${THRESHOLD:-10}" --out "$OUT/compare.md"
