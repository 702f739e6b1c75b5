"""Errors the service answers with: an HTTP status, a short code and a message without file system paths."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A quoted absolute path ('/tmp/x.png', "/usr/share/..."), as library messages name files.
_QUOTED_PATH = re.compile(r"""(['"])(?:/|[A-Za-z]:\\)[^'"]*\1""")
#: An unquoted absolute path with at least two components.
_BARE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.+-]+/)+[\w.+-]*")


class ServiceError(Exception):
    """A request the service answers with ``status`` (4xx: the caller's, 5xx: the service's)."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, code: str = "bad_request") -> ServiceError:
    return ServiceError(400, code, message)


def public_message(message: str, paths: Iterable[str | None] = ()) -> str:
    """``message`` without file system paths: known ``paths`` become ``<upload>``-style names, and any
    other absolute path becomes ``<path>``."""
    for path in sorted((p for p in paths if p), key=len, reverse=True):
        message = message.replace(str(path), "<upload>")
    message = _QUOTED_PATH.sub(lambda m: f"{m.group(1)}<path>{m.group(1)}", message)
    return _BARE_PATH.sub("<path>", message)
