"""Asset resolution: bundle unpacked once (also under concurrent first use), clear errors."""

import io
import multiprocessing
import tarfile

import pytest

from suites.libero import setup as libero_setup
from suites.libero.setup import LiberoSetupError, resolve_assets, unpack_bundle


def make_bundle(path, bad_checksum=False):
    import hashlib

    files = {"libero-assets/scenes/table.xml": b"<mujoco/>", "libero-assets/textures/grey.png": b"png"}
    sums = "".join(f"{'0' * 64 if bad_checksum else hashlib.sha256(data).hexdigest()}  {name.split('/', 1)[1]}\n"
                   for name, data in files.items())
    files["libero-assets/SHA256SUMS"] = sums.encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _unpack_in_child(bundle, cache, queue):
    libero_setup.CACHE_DIR = cache
    queue.put(str(unpack_bundle(bundle)))


def test_bundle_unpacks_once_even_when_raced(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "libero-assets.tar.gz")
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_unpack_in_child, args=(bundle, cache, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    folders = {queue.get(timeout=5) for _ in procs}
    assert len(folders) == 1
    folder = next(iter(folders))
    assert (tmp_path / "cache").joinpath(folder.split("/")[-1], "scenes", "table.xml").read_bytes() == b"<mujoco/>"
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [folder.split("/")[-1]]


def test_damaged_bundle_and_wrong_paths_are_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(libero_setup, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(LiberoSetupError, match="checksum mismatch"):
        unpack_bundle(make_bundle(tmp_path / "bad.tar.gz", bad_checksum=True))
    with pytest.raises(LiberoSetupError, match="--assets not found"):
        resolve_assets(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LiberoSetupError, match="no scenes/"):
        resolve_assets(str(tmp_path / "empty"))
    monkeypatch.setenv("EVALKIT_LIBERO_ASSETS", str(tmp_path / "gone"))
    with pytest.raises(LiberoSetupError, match="EVALKIT_LIBERO_ASSETS not found"):
        resolve_assets(None)
