"""Build-once folders in evalkit's cache ($EVALKIT_CACHE, default ~/.cache/evalkit).

Used for unpacked asset bundles and the tiny test checkpoints: the folder is built into a
partial folder and renamed when complete, under a lock file, so concurrent first uses
(several workers, several test runs) build it once and never see half a folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

CACHE_DIR = Path(os.environ.get("EVALKIT_CACHE", Path.home() / ".cache" / "evalkit"))


def build_once(name: str, build: Callable[[Path], None], cache_dir: Path | None = None) -> Path:
    """Return CACHE_DIR/name, calling build(partial_folder) first if it is not complete yet."""
    cache_dir = Path(cache_dir or CACHE_DIR)
    target = cache_dir / name
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            partial.mkdir()
            build(partial)
            os.replace(partial, target)
            (target / ".complete").touch()
    return target
