#!/usr/bin/env bash
# CI regression gate: evaluate a policy on a fixed LIBERO subset (libero_spatial, init states 0-1
# of all 10 tasks) and compare it, episode by episode, with a stored baseline export.
#
#   scripts/ci_gate.sh [evalkit run flags...]      e.g. --policy nora --policy-arg checkpoint=PATH
#
# Every call evaluates from scratch, in a directory no earlier run has filled: a checkpoint changed
# at the same path is evaluated again, never "resumed" from the previous candidate's results.
# Flags after the script name follow the subset's own (for `evalkit run`, the last one wins), so
# `--suite`, `--tasks`, `--episodes-per-task` or `--workers` can change the subset; `--out` cannot.
#
# Environment: BASELINE (an `evalkit export` file or a run directory; default: the oracle's, committed),
#              THRESHOLD (percentage points a drop must exceed to fail; default 10),
#              OUT (candidate run directory; default: a new runs/ci-gate.XXXXXX per call. An OUT holding
#                   an earlier run (evalkit's or this gate's) is deleted first; any other non-empty one is refused),
#              EVALKIT (the evalkit command; default .venv/bin/evalkit).
# Exit code: 0 pass, 1 significant regression (tasks named in OUT/compare.md), 2 not comparable
# (see evalkit compare), 3 bad input (missing baseline, unusable OUT or THRESHOLD, --out given),
# 4 evalkit failed: the candidate run did not finish (its exit code and output are named on
# stderr) or compare ended without a verdict. A failed run is never reported as a regression.
# To store a new baseline: run the same subset, then `evalkit export RUN_DIR results/baselines/NAME.jsonl`.
set -euo pipefail
cd "$(dirname "$0")/.."
BASELINE="${BASELINE:-results/baselines/oracle_libero_spatial_2x10.jsonl}"
THRESHOLD="${THRESHOLD:-10}"
EVALKIT="${EVALKIT:-.venv/bin/evalkit}"
MARK=.ci-gate  # written into every OUT this script makes (before evalkit run has written anything)

fail() { local code=$1; shift; printf 'ci_gate: %s\n' "$*" >&2; exit "$code"; }

for arg in "$@"; do
  case "$arg" in
    --out|--out=*) fail 3 "choose the candidate directory with OUT=DIR, not --out (the gate compares OUT)" ;;
  esac
done
[ -e "$BASELINE" ] || fail 3 "baseline not found: $BASELINE (make one with \`evalkit export RUN_DIR FILE\`)"
[[ "$THRESHOLD" =~ ^[0-9]+([.][0-9]+)?$ ]] || fail 3 "THRESHOLD must be a number of percentage points >= 0, got '$THRESHOLD'"

if [ -z "${OUT:-}" ]; then
  mkdir -p runs
  OUT="$(mktemp -d runs/ci-gate.XXXXXX)"
elif [ -e "$OUT" ] && [ -n "$(ls -A -- "$OUT" 2>/dev/null || echo not-a-directory)" ]; then
  # An earlier candidate (a gate's directory, or any evalkit run directory) is deleted, never resumed;
  # anything else is not ours to delete.
  [ -d "$OUT" ] && { [ -f "$OUT/$MARK" ] || [ -f "$OUT/results.sqlite" ]; } \
    || fail 3 "OUT=$OUT is neither empty nor an evalkit run directory; the gate evaluates from scratch and" \
              "will not delete it: remove it, or choose another OUT"
  echo "ci_gate: deleting the earlier candidate run in $OUT (the gate evaluates from scratch)" >&2
  rm -rf -- "$OUT"
  mkdir -p -- "$OUT"
else
  mkdir -p -- "$OUT"
fi
echo "made by scripts/ci_gate.sh: emptied by the next ci_gate.sh run with OUT=$OUT" > "$OUT/$MARK"
echo "ci_gate: candidate run in $OUT" >&2

rc=0
"$EVALKIT" run --suite libero_spatial --episodes-per-task 2 --workers 2 --no-progress "$@" --out "$OUT" \
  > "$OUT/run.log" || rc=$?
if [ "$rc" -ne 0 ]; then
  fail 4 "evalkit failed: \`evalkit run\` exited with $rc, so nothing was compared (this is not a regression);" \
         "its output: $OUT/run.log"
fi

rc=0
"$EVALKIT" compare "$BASELINE" "$OUT" --threshold "$THRESHOLD" --out "$OUT/compare.md" || rc=$?
# compare writes OUT/compare.md with every verdict (0, 1, 2); a code without it was a crash (e.g. a
# Python exception before compare ran exits 1, which must not read as a regression).
case "$rc" in
  0|1|2) [ -f "$OUT/compare.md" ] || fail 4 "evalkit failed: \`evalkit compare\` exited with $rc without a verdict" ;;
  3|4) ;;
  *) fail 4 "evalkit failed: \`evalkit compare\` exited with $rc" ;;
esac
exit "$rc"
