"""Files an embedded store keeps beside its engine: the ownership lock and JSON records written atomically.

The lock is an ``fcntl.flock`` on ``<store>/.mmalign.lock`` held while the store is open; the lock file
names the holder (pid, host, command, since when), so a second opener is told who holds the store. The
kernel drops the lock when the holder exits, however it exits (a kill included): no stale lock is left.

A JSON record is replaced in three steps: write a temporary file beside it and fsync it, ``os.replace``
it over the record (atomic on POSIX), fsync the folder. A kill at any moment leaves the old record or
the new one, never a mix; a left-over temporary file is ignored and removed at the next open.

A service that holds the store (``mmalign serve``) records where it listens in ``<store>/.mmalign-serve.json``
(:func:`write_service_address`), so that the CLI can send it the write jobs it cannot run itself; the
record counts only while its pid holds the lock (:func:`read_service_address`).
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
SERVICE_NAME = ".mmalign-serve.json"
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


def _holder_info(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def _read_holder(fd: int) -> str:
    info = _holder_info(fd)
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


# -- the service that holds a store ---------------------------------------------------------------------
def lock_holder(folder: str | Path) -> dict | None:
    """What the lock file of the store at ``folder`` says about its holder (pid, host, command, since), or
    None when nobody holds the lock now (checked with a non-blocking lock that is released at once)."""
    import fcntl

    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_info(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def write_service_address(folder: str | Path, url: str, **info: Any) -> Path:
    """Record that this process serves the store at ``folder`` on ``url`` (removed by
    :func:`remove_service_address` when it stops; a record whose pid no longer holds the lock is ignored)."""
    path = Path(folder) / SERVICE_NAME
    record = {"pid": os.getpid(), "url": url, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
    write_json_atomic(path, record)
    return path


def read_service_address(folder: str | Path) -> dict | None:
    """The service recorded for the store at ``folder`` (``url``, ``pid``, ...), or None when there is no
    record, or its process no longer holds the store (a killed service leaves a stale record)."""
    path = Path(folder) / SERVICE_NAME
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    holder = lock_holder(folder)
    if not isinstance(record, dict) or not record.get("url") or holder is None:
        return None
    if holder.get("pid") != record.get("pid") or holder.get("host", socket.gethostname()) != socket.gethostname():
        return None
    return record


def remove_service_address(folder: str | Path) -> None:
    """Remove this process's service record of the store at ``folder`` (another process's is left alone)."""
    path = Path(folder) / SERVICE_NAME
    try:
        if read_json(path).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
