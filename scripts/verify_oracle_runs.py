"""The oracle on libero_spatial through `evalkit run`, three ways, compared episode by episode.

1. W=2, uninterrupted (the reference table);
2. W=2, SIGKILLed (whole process group) once about half the episodes are stored, then the
   same command again, which finishes what is missing;
3. W=1, uninterrupted.

    python scripts/verify_oracle_runs.py --episodes-per-task 5 --out results/oracle_libero_spatial.md

Writes the reference table and the three comparisons to --out. Run directories go to
runs/verify-oracle/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evalkit.results.report import report_runs  # noqa: E402
from evalkit.results.store import ResultStore  # noqa: E402


def command(out: Path, workers: int, per_task: int) -> list[str]:
    return [sys.executable, "-m", "evalkit", "run", "--suite", "libero_spatial", "--policy", "oracle",
            "--episodes-per-task", str(per_task), "--workers", str(workers), "--out", str(out), "--no-progress"]


def stored(out: Path) -> int:
    try:
        with sqlite3.connect(out / "results.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def outcomes(out: Path) -> list[tuple]:
    with ResultStore(out, readonly=True) as store:
        return sorted((r.key, r.success, r.termination, r.steps, r.queries) for r in store.results())


def timed(cmd: list[str]) -> float:
    start = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.time() - start


def killed_then_resumed(out: Path, per_task: int, total: int) -> tuple[int, float]:
    proc = subprocess.Popen(command(out, 2, per_task), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while stored(out) < total // 2 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = stored(out)
    return at_kill, timed(command(out, 2, per_task))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes-per-task", type=int, default=5)
    parser.add_argument("--out", default="results/oracle_libero_spatial.md")
    args = parser.parse_args()
    per_task, total = args.episodes_per_task, 10 * args.episodes_per_task
    base = ROOT / "runs" / "verify-oracle"
    shutil.rmtree(base, ignore_errors=True)
    reference, resumed, single = base / "w2", base / "w2-killed", base / "w1"

    t_reference = timed(command(reference, 2, per_task))
    at_kill, t_resume = killed_then_resumed(resumed, per_task, total)
    t_single = timed(command(single, 1, per_task))

    ref_rows = outcomes(reference)
    checks = [
        f"- W=2 SIGKILLed with {at_kill} of {total} episodes stored, then re-run "
        f"({t_resume:.0f} s to finish): per-episode outcomes identical to the uninterrupted run: "
        f"{outcomes(resumed) == ref_rows}; episodes stored: {len(outcomes(resumed))} (no duplicate, none lost).",
        f"- W=1 ({t_single:.0f} s) vs W=2 ({t_reference:.0f} s): per-episode outcomes (success, termination, "
        f"steps, queries) identical: {outcomes(single) == ref_rows}.",
    ]
    text = "\n".join([
        "# Oracle on libero_spatial (bundled assets, real MuJoCo episodes)",
        "",
        f"Command: `python scripts/verify_oracle_runs.py --episodes-per-task {per_task}`, which runs "
        f"`python {' '.join(command(Path('RUN_DIR'), 2, per_task)[1:])}` and the variants below.",
        "",
        *checks,
        "",
        report_runs([reference]).replace(str(reference), "W=2 run"),
    ])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
