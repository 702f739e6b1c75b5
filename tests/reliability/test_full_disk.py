"""A full disk is a clear error and a resumable state, never a signal (issue #23).

The probe ingested into a store on a 30 MB tmpfs: the process died with "Bus error" (exit 135) and
printed nothing else, because Qdrant Edge writes through memory-mapped files and the kernel answers a
write to a full filesystem with SIGBUS. Here, on a small tmpfs of our own (it needs root and ``mount``;
skipped with the reason elsewhere): an ingest that cannot fit is refused before it writes, one that
fills the disk anyway ends with one error line and exit status 1, and the rerun after the disk grows
leaves exactly the store of a clean run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmalign.connectors.disk import DiskSpaceError
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.schemas import StoreConfig
from tests.reliability.test_crasher import assert_same, vectors

ROOT = Path(__file__).resolve().parents[2]


def _mount(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; the reason when it cannot be done."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None:
        return "the mount command is not installed"
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return None if done.returncode == 0 else f"mount -t tmpfs failed: {done.stderr.decode().strip()}"


def _grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


def _small_disk(tmp_path, size: str):
    mountpoint = tmp_path / "disk"
    reason = _mount(mountpoint, size)
    if reason is not None:
        pytest.skip(f"{reason}: the full-disk tests run on a tmpfs of their own")
    return mountpoint


@pytest.fixture
def small_disk(tmp_path):
    """4 MiB: too small for a collection, so the unchecked engine fills it."""
    mountpoint = _small_disk(tmp_path, "4m")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


@pytest.fixture
def tight_disk(tmp_path):
    """24 MiB: room for this ingest (4 MB), not for the estimate (a store on tmpfs allocates its vector files in
    full, 32 MiB each, when it is opened) and the margin; a regression fails here instead of killing pytest."""
    mountpoint = _small_disk(tmp_path, "24m")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


@pytest.fixture(scope="module")
def reference(trained, tmp_path_factory):
    """The vectors of a clean ingest on a disk with room."""
    base, catalog = trained
    with VectorStore(StoreConfig(path=str(tmp_path_factory.mktemp("roomy") / "store"))) as vs:
        _ingest(vs, base, catalog)
        return vectors(vs, "items")


def _ingest(store, base, catalog):
    return ingest(
        catalog, bundle=base / "bundle", collection="items", store=store, features_dir=base / "features", device="cpu"
    )


def _cli_ingest(base: Path, store: Path, **env: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "mmalign.plugin",
        "ingest",
        str(base / "catalog" / "catalog.jsonl"),
        "--bundle",
        str(base / "bundle"),
        "--collection",
        "items",
        "--features",
        str(base / "features"),
        "--device",
        "cpu",
        "--qdrant-path",
        str(store),
    ]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environ.pop("MMALIGN_SUPERVISED", None)
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300)


def test_an_ingest_that_cannot_fit_is_refused_before_it_writes(trained, tight_disk, reference):
    base, catalog = trained
    store = tight_disk / "store"
    with VectorStore(StoreConfig(path=str(store))) as vs:
        with pytest.raises(DiskSpaceError, match=r"not enough disk space for .* MiB free; free space"):
            _ingest(vs, base, catalog)
        assert not vs.collection_exists("items")
    _grow(tight_disk, "400m")
    with VectorStore(StoreConfig(path=str(store))) as vs:
        assert _ingest(vs, base, catalog).ok == len(reference)
        assert_same(vectors(vs, "items"), reference)


def test_a_disk_that_fills_anyway_is_one_error_line_and_the_rerun_completes_exactly(trained, small_disk, reference):
    base, _ = trained
    store = small_disk / "store"
    full = _cli_ingest(base, store, MMALIGN_DISK_CHECK="0")  # no estimate: the engine fills the disk
    assert full.returncode == 1, full.stderr  # was: 135 ("Bus error") and nothing else
    [line] = full.stderr.strip().splitlines()
    assert line.startswith("Error: the disk is full") and "SIGBUS" in line and str(store) in line
    assert "Traceback" not in full.stderr and "Bus error" not in full.stderr
    _grow(small_disk, "400m")
    rerun = _cli_ingest(base, store)
    assert rerun.returncode == 0, rerun.stderr
    with VectorStore(StoreConfig(path=str(store))) as vs:
        assert vs.resolve_alias("items") == "items__v1" and vs.count("items") == len(reference)
        assert_same(vectors(vs, "items"), reference)
