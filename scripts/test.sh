#!/usr/bin/env bash
# Set up, then run the test suite (fast tests and a few real LIBERO episodes; `-m slow` for the long ones).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
