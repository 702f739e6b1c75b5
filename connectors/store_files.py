"""Files an embedded store keeps beside its engine: the ownership lock and JSON records written atomically.

The lock is an ``fcntl.flock`` on ``<store>/.mmalign.lock`` held while the store is open; the lock file
names the holder (pid, host, command, since when), so a second opener is told who holds the store. The
kernel drops the lock when the holder exits, however it exits (a kill included): no stale lock is left.

A JSON record is replaced in three steps: write a temporary file beside it and fsync it, ``os.replace``
it over the record (atomic on POSIX), fsync the folder. A kill at any moment leaves the old record or
the new one, never a mix; a left-over temporary file is ignored and removed at the next open.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from mmalign.connectors.errors import StoreError

LOCK_NAME = ".mmalign.lock"
TMP_SUFFIX = ".tmp"


class StoreLock:
    """An exclusive, non-blocking lock on a store folder, naming its holder."""

    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: str | Path) -> StoreLock:
        import fcntl

        folder = Path(folder)
        path = folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreError(
                f"cannot open the store at {str(folder)!r}: it is held by {holder}. One process owns an "
                f"embedded store at a time: close that one first, or serve the store from a Qdrant server "
                f"(mmalign store push) for several processes"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot open the store at {str(folder)!r}: cannot lock {str(path)!r}: {exc}") from exc
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:300],
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return cls(folder, fd)

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process (it has not written its name yet)"
    where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
    command = f" ({info['command']})" if info.get("command") else ""
    since = f" since {info['since']}" if info.get("since") else ""
    return f"pid {info['pid']}{where}{command}{since}"


def fsync_dir(folder: str | Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON: temporary file + fsync, rename over, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    body = json.dumps(data, indent=1, sort_keys=True).encode()
    with open(tmp, "xb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: str | Path) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())


def remove_temporaries(folder: str | Path) -> None:
    """Drop temporary files that a killed writer left in ``folder`` (the records they were for are intact)."""
    for leftover in Path(folder).glob(f".*{TMP_SUFFIX}"):
        try:
            leftover.unlink()
        except OSError:  # pragma: no cover - best effort
            pass
