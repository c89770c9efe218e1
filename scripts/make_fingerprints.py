"""Write the committed reference fingerprints of LIBERO's settled states (see evalkit.core.fingerprint).

Run it with the pinned simulator versions only (scripts/setup.sh installs them); the file records
the versions it was made with, and `evalkit doctor` compares an install against it.

    python scripts/make_fingerprints.py [--out suites/fingerprints/libero.json]

SimplerEnv's reference is written by `python -m suites.simpler.fingerprints OUT.json` in .venv-simpler.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalkit.core import registry  # noqa: E402
from evalkit.checks.doctor import reference_file  # noqa: E402
from evalkit.core.protocol import OPENVLA  # noqa: E402
from suites.libero.suite import FINGERPRINTS, LIBERO_SUITES  # noqa: E402

PACKAGES = ("mujoco", "robosuite", "hf-libero", "bddl", "numpy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(FINGERPRINTS))
    parser.add_argument("--suites", default=",".join(LIBERO_SUITES))
    args = parser.parse_args()
    suites = [registry.make_suite(name) for name in args.suites.split(",")]
    reference = reference_file(suites, OPENVLA.wait_steps, PACKAGES)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    for name, entry in reference["suites"].items():
        print(f"{name}: {entry['fingerprint']} ({len(entry['episodes'])} settled states)")


if __name__ == "__main__":
    main()
