"""Reference LIBERO loops vs evalkit on real episodes, as a table (tests/test_conformance_libero.py).

    python scripts/conformance_libero.py --tasks 0,1,2,3,4,5 --out results/conformance_libero.md

Replays the oracle's executed actions (init state 0 of each task) through OpenVLA's and NORA's
reference loops, re-implemented independently in the test module, and through evalkit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_conformance_libero import compare_on_libero, record_oracle_actions  # noqa: E402


def cell(outcome: dict) -> str:
    return f"{'success' if outcome['success'] else 'fail'} {outcome['steps']} steps / {outcome['queries']} q"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="0,1,2,3,4,5")
    parser.add_argument("--out", default="results/conformance_libero.md")
    args = parser.parse_args()
    tasks = [int(t) for t in args.tasks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = compare_on_libero(Path(tmp), record_oracle_actions(tasks))
    columns = ["reference openvla", "evalkit openvla", "reference nora", "evalkit nora"]
    lines = ["# Reference LIBERO loops vs evalkit (replayed oracle actions, libero_spatial init state 0)", "",
             f"Command: `python scripts/conformance_libero.py --tasks {args.tasks} --out {args.out}`", "",
             "| episode | " + " | ".join(columns) + " | agree |", "|---" * (len(columns) + 2) + "|"]
    for row in rows:
        agree = row[columns[0]] == row[columns[1]] and row[columns[2]] == row[columns[3]]
        lines.append(f"| {row['episode']} | " + " | ".join(cell(row[c]) for c in columns) + f" | {'yes' if agree else 'NO'} |")
    lines += ["", "The reference loops (tests/test_conformance_libero.py) follow OpenVLA's run_libero_eval.py and "
              "NORA's run_libero_eval_nora.py line by line on LIBERO's own ControlEnv (no cameras: replayed "
              "actions read no images). Under NORA's loop \"close\" is sent as exactly 0.0, which only its "
              "gripper rule (`np.where(a >= 0, 1, a)`) turns into +1."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
