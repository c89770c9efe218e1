"""Write SimplerEnv's reference settled-state fingerprints (suites/fingerprints/simpler.json).

    . ../shared/tools/simpler-cpu/env.sh   # without a GPU (or your DIR/env.sh)
    .venv-simpler/bin/python -m suites.simpler.fingerprints suites/fingerprints/simpler.json

Regenerate it after a deliberate change of sapien, mani_skill2_real2sim, simpler_env or numpy
(the versions are stored in the file), and commit it with that change.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from suites.simpler.suite import FINGERPRINT_SUITES, reference_fingerprints


def to_json(data: dict) -> str:
    """Indented JSON with each pose on one line, so a diff of the file shows which objects moved."""
    text = json.dumps(data, indent=1, sort_keys=True)
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write SimplerEnv's reference settled-state fingerprints.")
    parser.add_argument("out", help="JSON file to write (e.g. suites/fingerprints/simpler.json)")
    parser.add_argument("--suites", default=",".join(FINGERPRINT_SUITES), help="comma-separated suite names")
    parser.add_argument("--assets", default=None, help="asset folder or bundle (default: as `evalkit run`)")
    args = parser.parse_args(argv)
    from evalkit.core.suite import EnvOptions

    data = reference_fingerprints([s for s in args.suites.split(",") if s], EnvOptions(assets=args.assets))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(data))
    for name, suite in data["suites"].items():
        print(f"{name}: {suite['fingerprint']} ({len(suite['episodes'])} episodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
