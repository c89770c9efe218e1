"""Make hf-libero importable non-interactively, headless, with a chosen asset location.

- hf-libero asks for a config on stdin at first import unless LIBERO_CONFIG_PATH points
  at a folder with config.yaml: we write one (pointing into the installed package).
- MuJoCo must pick its GL backend before it is imported: EGL (Mesa llvmpipe on CPU)
  unless the user set MUJOCO_GL.
- hf-libero ships no assets and ignores the config's `assets` key; we set
  `libero.libero._assets_path_cache` to the resolved asset folder.

Asset location, first found wins: the `assets` option (--assets), $EVALKIT_LIBERO_ASSETS,
the bundle `../shared/assets/libero-assets.tar.gz` beside this checkout. Either may be
a folder or the .tar.gz bundle (unpacked once into a cache folder and checked).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import importlib.util
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from evalkit.core.cache import CACHE_DIR, build_once  # CACHE_DIR stays a module attribute: tests redirect it

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = REPO_ROOT.parent / "shared" / "assets" / "libero-assets.tar.gz"
INSTALL_HINT = 'pip install -e ".[libero]" && pip install --no-deps hf-libero==0.1.4 robosuite==1.4.0 bddl==1.0.1'


class LiberoSetupError(RuntimeError):
    pass


def resolve_assets(option: Optional[str] = None) -> Path:
    """The LIBERO asset folder to use (unpacking a bundle if given one)."""
    candidates = [(option, "--assets"), (os.environ.get("EVALKIT_LIBERO_ASSETS"), "$EVALKIT_LIBERO_ASSETS"),
                  (str(DEFAULT_BUNDLE), "the bundled default")]
    found = first_asset_source(candidates, "LIBERO", LiberoSetupError)
    if found is None:
        raise LiberoSetupError(
            "no LIBERO assets found: pass --assets DIR_OR_BUNDLE or set EVALKIT_LIBERO_ASSETS to LIBERO's "
            "assets folder (libero/libero/assets of the LIBERO repository) or to libero-assets.tar.gz"
        )
    path, origin = found
    return unpack_bundle(path) if path.is_file() else _check_asset_dir(path, origin)


def first_asset_source(candidates, what: str, error=RuntimeError) -> Optional[tuple[Path, str]]:
    """(path, origin) of the first given (value, origin) candidate, or None. A missing path named
    by the user is an error; the last candidate, the bundled default, is skipped when absent."""
    for index, (value, origin) in enumerate(candidates):
        if not value:
            continue
        path = Path(value).expanduser()
        if path.exists():
            return path, origin
        if index < len(candidates) - 1:
            raise error(f"{what} assets given by {origin} not found: {path}")
    return None


def _check_asset_dir(path: Path, origin: str) -> Path:
    if not (path / "scenes").is_dir():
        raise LiberoSetupError(f"{path} (from {origin}) does not look like LIBERO's assets folder: no scenes/ inside")
    return path


def unpack_bundle(bundle: Path) -> Path:
    """Unpack libero-assets.tar.gz once into the cache (see unpack_cached)."""
    return _check_asset_dir(unpack_cached(bundle, "libero-assets"), str(bundle))


def unpack_cached(bundle: Path, top: str) -> Path:
    """Unpack a .tar.gz bundle whose top-level folder is `top` once into the cache, keyed by
    the bundle's checksum, checking its SHA256SUMS; returns that folder in the cache.

    A lock file serialises concurrent first uses (several workers, several runs)."""
    digest = hashlib.sha256()
    with open(bundle, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return build_once(f"{top}-{digest.hexdigest()[:16]}", lambda folder: _unpack(bundle, folder, top), CACHE_DIR)


def _unpack(bundle: Path, folder: Path, top: str) -> None:
    """Extract the bundle's `top` folder's contents into `folder`, checksums verified."""
    with tarfile.open(bundle) as tar:
        tar.extractall(folder, filter="data")
    inner = folder / top
    if not inner.is_dir():
        raise LiberoSetupError(f"{bundle} has no top-level {top}/ folder")
    _verify_checksums(inner)
    for item in inner.iterdir():
        os.replace(item, folder / item.name)
    inner.rmdir()


def _verify_checksums(folder: Path) -> None:
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        return
    for line in sums.read_text().splitlines():
        expected, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != expected:
            raise LiberoSetupError(f"asset bundle damaged: checksum mismatch for {name}")


def _write_config() -> None:
    spec = importlib.util.find_spec("libero")
    if spec is None:
        raise LiberoSetupError(f"hf-libero is not installed. Install the LIBERO extra: {INSTALL_HINT}")
    if os.environ.get("LIBERO_CONFIG_PATH") and (Path(os.environ["LIBERO_CONFIG_PATH"]) / "config.yaml").exists():
        return
    root = Path(spec.origin).parent / "libero"
    folder = CACHE_DIR / "libero-config"
    folder.mkdir(parents=True, exist_ok=True)
    entries = {"benchmark_root": root, "bddl_files": root / "bddl_files", "init_states": root / "init_files",
               "datasets": root.parent / "datasets", "assets": root / "assets"}
    (folder / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in entries.items()))
    os.environ["LIBERO_CONFIG_PATH"] = str(folder)


def import_libero(assets: Optional[Path] = None) -> SimpleNamespace:
    """Import hf-libero without prompts; point it at `assets` when given."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    _write_config()
    # robosuite warns at every import (in every worker) that it has no private macro file;
    # that file only holds defaults we do not change.
    logging.getLogger("robosuite_logs").addFilter(
        lambda record: "macro file" not in record.getMessage() and "setup_macros" not in record.getMessage())
    import libero.libero as libero_pkg
    from libero.libero import get_libero_path
    from libero.libero.envs.env_wrapper import ControlEnv

    if assets is not None:
        libero_pkg._assets_path_cache = str(assets)
    return SimpleNamespace(get_libero_path=get_libero_path, ControlEnv=ControlEnv, make_benchmark=make_benchmark)


def make_benchmark(name: str):
    """LIBERO's benchmark object, without the line it prints on every construction."""
    from libero.libero import benchmark

    with contextlib.redirect_stdout(io.StringIO()):
        return benchmark.get_benchmark_dict()[name]()
