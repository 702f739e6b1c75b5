"""Disk space for the embedded store: estimate what a write takes, refuse early, and turn SIGBUS into one line.

Qdrant Edge writes its vectors through memory-mapped files. When the filesystem is full, a write to a
mapped page that has no block yet is not an error the engine can return: the kernel stops the process
with SIGBUS ("Bus error", exit status 135), and a store opened on a full disk dies the same way
(opening replays the write-ahead log). So mmalign checks first: :func:`ensure_store_space` refuses a
write whose estimate (:func:`estimate_write_bytes`) plus a margin does not fit in the free space of the
store's filesystem. When the disk fills anyway (another process wrote meanwhile), :func:`supervised`
runs the CLI command in a child process; the parent turns the child's SIGBUS into one error line and
exit status 1. The rerun after freeing space resumes the interrupted run (ingest and reembed are
resumable, see docs/design.md § Guarantees).

``MMALIGN_DISK_MARGIN_MB`` sets the margin (default 32 MiB); ``MMALIGN_DISK_CHECK=0`` turns the check off.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmalign.connectors.errors import ConfigError, StoreError
from mmalign.schemas.store import DEFAULT_QDRANT_PATH

#: Free space kept beyond the estimate.
DEFAULT_MARGIN_BYTES = 32 << 20
#: A new collection on Edge: its write-ahead log, record and first segment (measured: 0.1-4.3 MB).
COLLECTION_BYTES = 8 << 20
#: Disk bytes per vector byte at the peak of a write: the segment, the write-ahead log's copy and the
#: optimizer's new segment before the old one goes (measured: 14.8 KB a point for 4 x 256-d float32
#: vectors and a 0.7 KB payload at the peak of upsert + build_index, 20,000 points; 3.5 gives 16.9 KB).
VECTOR_FACTOR = 3.5
#: Payload bytes assumed per point (text is cut to 2,000 characters) and their copies (segment, log, optimizer).
PAYLOAD_BYTES = 2048
PAYLOAD_FACTOR = 3
POINT_OVERHEAD = 512
#: On tmpfs, opening a store allocates each named vector's 32 MiB memory-mapped file in full (measured with
#: qdrant-edge-py 0.9: 4.2 MB after an ingest of 36 points, 100 MB once `store info` had opened it); a
#: new collection's files are counted in full, an existing one's by what is still unallocated.
TMPFS_VECTOR_FILE_BYTES = 32 << 20
ENV_MARGIN = "MMALIGN_DISK_MARGIN_MB"
ENV_CHECK = "MMALIGN_DISK_CHECK"
ENV_SUPERVISED = "MMALIGN_SUPERVISED"


class DiskSpaceError(StoreError):
    """The store's filesystem cannot hold what a run would write."""


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def margin_bytes(environ=None) -> int:
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV_MARGIN, "").strip()
    if not raw:
        return DEFAULT_MARGIN_BYTES
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_MARGIN}={raw!r} is not a number of MiB (e.g. 32)") from None
    if value < 0:
        raise ConfigError(f"{ENV_MARGIN}={raw!r} must be >= 0")
    return int(value * (1 << 20))


def free_bytes(path: str | Path) -> tuple[int, Path]:
    """Bytes free to an unprivileged writer on the filesystem of ``path`` (or of its nearest existing
    parent), and that existing path."""
    place = Path(path).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    stats = os.statvfs(place)
    return stats.f_bavail * stats.f_frsize, place


def filesystem_type(path: str | Path) -> str | None:
    """The type of the filesystem holding ``path`` (``ext4``, ``tmpfs``...), from /proc/mounts; None elsewhere."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    place = str(free_bytes(path)[1].resolve())
    best, kind = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = place == point or place.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def unallocated_mmap_bytes(root: str | Path) -> int:
    """Bytes of the memory-mapped files (``*.mmap``) under ``root`` that have no block yet (sparse)."""
    total = 0
    for path in Path(root).rglob("*.mmap"):
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile
            continue
        total += max(stat.st_size - stat.st_blocks * 512, 0)
    return total


def estimate_write_bytes(points: int, dim: int, vectors: int = 4, *, payload_bytes: int = PAYLOAD_BYTES) -> int:
    """Disk bytes ``points`` new points of ``vectors`` named vectors of size ``dim`` take at the peak of a
    write into Edge (upserts, then the index build). An upper bound for new points; it does not cover
    the optimizer merging segments that were already on disk."""
    per_point = VECTOR_FACTOR * vectors * dim * 4 + PAYLOAD_FACTOR * payload_bytes + POINT_OVERHEAD
    return int(max(points, 0) * per_point)


def ensure_space(path: str | Path, need: int, what: str, *, detail: str = "") -> None:
    """Refuse (DiskSpaceError) when the filesystem of ``path`` has less than ``need`` + the margin free."""
    if os.environ.get(ENV_CHECK, "1").strip() == "0":
        return
    margin = margin_bytes()
    free, place = free_bytes(path)
    if free >= need + margin:
        return
    raise DiskSpaceError(
        f"not enough disk space for {what}: it writes about {mib(need)}{detail} and keeps a margin of "
        f"{mib(margin)} ({ENV_MARGIN}), but the filesystem of {str(place)!r} has {mib(free)} free; free "
        f"space or put the store on another disk (StoreConfig.path; CLI: --qdrant-path), then run the same "
        f"command again"
    )


def ensure_store_space(store: Any, points: int, dim: int, what: str, *, collection: str | None = None) -> int:
    """:func:`ensure_space` for writing ``points`` points of size ``dim`` into an embedded ``store`` in a
    folder (nothing to check on a server or in memory); ``collection``, when given and absent, adds a new
    collection's bytes. Returns the estimate."""
    config = store.config
    if config.is_server or config.resolved_path == ":memory:":
        return 0
    need = estimate_write_bytes(points, dim)
    tmpfs = filesystem_type(config.resolved_path) == "tmpfs"
    if collection is not None and not store.collection_exists(collection):
        need += COLLECTION_BYTES + (TMPFS_VECTOR_FILE_BYTES * 4 if tmpfs else 0)
    if tmpfs:  # the engine's sparse memory-mapped files are allocated in full when a store is opened
        need += unallocated_mmap_bytes(config.resolved_path)
    detail = f" ({points:,} points of 4 x {dim} floats, at the peak of writing and indexing)" if points else ""
    ensure_space(config.resolved_path, need, what, detail=detail)
    return need


# -- SIGBUS: one clear line ------------------------------------------------------------------------------------
def sigbus_message(store_paths: Sequence[str] = ()) -> str:
    """What the user reads when the command died of SIGBUS: where (the embedded store folders it wrote to;
    default: the default store), how much is free, and what to do."""
    places = []
    full = False
    for path in [p for p in store_paths if p != ":memory:"] or [DEFAULT_QDRANT_PATH]:
        try:
            free, place = free_bytes(path)
        except OSError:
            continue
        places.append(f"{mib(free)} free on the filesystem of {str(place)!r}")
        full = full or free < margin_bytes()
    where = "; ".join(places) or "the store's filesystem could not be read"
    if full:
        return (
            f"the disk is full: Qdrant's engine was stopped by SIGBUS writing a memory-mapped store file ({where}); "
            f"free space and run the same command again: it resumes where it stopped"
        )
    return (
        f"Qdrant's engine was stopped by SIGBUS on a memory-mapped store file ({where}): the disk was full for a "
        f"moment, or a store file was truncated; run the same command again, and verify the collection "
        f"if it happens again (verify_collection; CLI: `mmalign store verify --collection NAME`)"
    )


def _real_stdio() -> bool:
    try:
        sys.stdout.fileno()
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's captured streams
        return False
    return True


def _terminal_interrupts_the_group() -> bool:
    """Whether a Ctrl-C would reach the child as well: this process is in its terminal's foreground group."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _end_with_parent(parent: int) -> None:
    """The child gets SIGTERM when the supervisor dies (even of SIGKILL), so that it never runs on as an
    orphan holding the store (Linux: PR_SET_PDEATHSIG; elsewhere nothing is done)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the supervisor died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def supervised(run: Callable[[], Any], store_paths: Sequence[str] = ()) -> Any:
    """Run ``run()`` (a CLI command) in a forked child and wait for it; a child stopped by SIGBUS becomes the
    one line of :func:`sigbus_message` (of ``store_paths``, the store folders the command writes to) on stderr
    and exit status 1, any other end is passed on as it is.

    Runs ``run()`` in this process instead where there is no ``fork``, where stdout/stderr are not real
    files (a test runner's CliRunner), inside a supervised child, and with ``MMALIGN_SUPERVISED=1``.
    """
    if not hasattr(os, "fork") or os.environ.get(ENV_SUPERVISED) or not _real_stdio():
        return run()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child runs the command; its exit (sys.exit, an exception) ends it as usual
        os.environ[ENV_SUPERVISED] = "1"
        _end_with_parent(parent)
        return run()
    forwarded = [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2]
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, *forwarded)}
    if _terminal_interrupts_the_group():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child too (same process group)
    else:  # a SIGINT sent to this pid alone (kill -INT, a process manager): the child must get it
        forwarded.append(signal.SIGINT)
    for sig in forwarded:
        signal.signal(sig, lambda number, _frame: os.kill(pid, number))
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for old kernels
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGBUS:
            sys.stderr.write(f"Error: {sigbus_message(store_paths)}\n")
            sys.stderr.flush()
            os._exit(1)
        if number not in (signal.SIGKILL, signal.SIGSTOP):  # their handler cannot be set, and is the default
            signal.signal(number, signal.SIG_DFL)  # die of the same signal, as the child did
        os.kill(os.getpid(), number)
        os._exit(128 + number)  # pragma: no cover - the signal above ends the process
    os._exit(os.waitstatus_to_exitcode(status))
