"""Limits checked on a request body before anything parses it.

Python's JSON parser recurses once per nesting level: a body of 3,000 (or 100,000) ``[`` is a
``RecursionError`` deep inside the framework, answered 500. :class:`JsonDepthLimit` measures the nesting
of a JSON body without parsing it (strings removed with one regular expression, the brackets counted
with numpy) and answers 400 ``too_deep`` above :data:`MAX_JSON_DEPTH`. Form fields that hold JSON go
through :func:`loads_limited`, and form numbers through :func:`form_number`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

#: Deepest nesting of a JSON body the service parses; its requests need 3 levels (filters of lists).
MAX_JSON_DEPTH = 32
#: A JSON string, escapes included (the unrolled form: linear time on long strings such as base64 media).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_CHUNK = 1 << 20


def json_depth(body: bytes | str, limit: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``body`` (0 for a scalar), counted without parsing.

    With ``limit``, counting stops once a block of brackets goes past it: the value returned is then over
    the limit but may be short of the full depth. Brackets inside strings do not count; for a body that is
    not valid JSON the count is a bound, not a parse.
    """
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    opens = np.frombuffer(brackets, dtype=np.uint8)
    depth, deepest = 0, 0
    for start in range(0, opens.size, _CHUNK):
        part = opens[start : start + _CHUNK]
        steps = np.where((part == ord("[")) | (part == ord("{")), 1, -1).astype(np.int64)
        levels = depth + np.cumsum(steps)
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
        if limit is not None and deepest > limit:
            return deepest
    return deepest


def too_deep_message(depth: int, limit: int = MAX_JSON_DEPTH) -> str:
    return f"the JSON is nested {depth} levels deep; at most {limit} levels are accepted"


def loads_limited(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` after a nesting check: ValueError (never RecursionError) for what is too deep."""
    depth = json_depth(text, limit)
    if depth > limit:
        raise ValueError(too_deep_message(depth, limit))
    return json.loads(text)


def form_number(value: str) -> int | str:
    """A whole number sent as a form field (forms carry only text) as an int; anything else stays text,
    for the model's strict validation to refuse with its message."""
    text = value.strip()
    return int(text) if re.fullmatch(r"[+-]?\d{1,18}", text) else text


class JsonDepthLimit:
    """ASGI middleware: a JSON request body nested deeper than ``limit`` is answered 400 ``too_deep``
    before any route parses it. Mount it inside the body-size limit, so the body it buffers is bounded."""

    def __init__(self, app, limit: int = MAX_JSON_DEPTH):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if content_type and not (content_type.startswith("application/json") or "+json" in content_type):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        depth = json_depth(body, self.limit)
        if depth > self.limit:
            from starlette.responses import JSONResponse

            response = JSONResponse({"detail": too_deep_message(depth, self.limit), "code": "too_deep"}, 400)
            return await response(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
