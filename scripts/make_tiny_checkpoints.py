"""Build the tiny NORA, NORA-LONG and NORA-1.5 checkpoints (random/briefly taught weights).

    python scripts/make_tiny_checkpoints.py runs/tiny     # -> runs/tiny/{nora,nora-long,nora-1.5}
    evalkit run --policy nora-1.5 --policy-arg checkpoint=runs/tiny/nora-1.5 ...

Tests use the same builder through policies.nora.tiny_models.cached_tiny_models (evalkit's cache).
The backbones are written in the released NORA layout (transformers 4.4x config and weight names),
so the official inference code reads them too (scripts/parity/run_parity.py).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies.nora.tiny_models import build_all  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to create the three checkpoints in")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    for name, folder in build_all(args.out, args.seed).items():
        print(f"{name}: {folder}")
    print(f"built in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
