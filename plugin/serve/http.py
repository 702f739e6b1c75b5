"""HTTP plumbing of the service: the API-key and body-size middleware, per-route metrics, and every error
as JSON ``{detail, code}`` without paths or tracebacks."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any
from urllib.parse import unquote

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse

from mmalign.connectors.errors import ConfigError, DataError, MediaError, MmalignError
from mmalign.plugin.serve.errors import ServiceError, public_message
from mmalign.plugin.serve.models import Error

log = logging.getLogger(__name__)

#: Paths that need the API key (when one is set). The page shell, health checks and docs do not.
PROTECTED = ("/v1/", "/metrics")
#: Write jobs (plugin/serve/jobs.py): without an API key, only clients on this machine may use them.
LOOPBACK = ("127.0.0.1", "::1", "localhost")
COOKIE = "mmalign_api_key"
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
MEDIA_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Bad request: no query, unknown field, using, filter key, k out of range"},
    401: {"model": Error, "description": "Missing or wrong API key"},
    404: {"model": Error, "description": "Unknown item"},
    413: {"model": Error, "description": "Body over the size limit"},
    415: {"model": Error, "description": "An upload that is not an image/audio file"},
    422: {"model": Error, "description": "Corrupt media"},
    503: {"model": Error, "description": "Reloading after a re-embed, or the store is unavailable"},
}


class BodyTooLarge(HTTPException):
    """The body grew past the limit while it was read (a body without Content-Length)."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the limit of {limit / (1 << 20):g} MiB (--max-body-mb)")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None):
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return json_response(status, {"detail": message, "code": code}, headers)


def validation_message(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",)) or "body"
        if error.get("type") == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        else:
            parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    return "; ".join(parts[:5])


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def map_library_error(exc: MmalignError) -> ServiceError:
    """A library error that reached the HTTP layer: the caller's (4xx) or the service's (503)."""
    message = public_message(str(exc))
    if isinstance(exc, MediaError):
        return ServiceError(422, "bad_media", public_message(exc.reason))
    if isinstance(exc, (ConfigError, DataError)):
        return ServiceError(400, "bad_request", message)
    return ServiceError(503, "unavailable", message, headers={"Retry-After": "5"})


def is_jobs_path(path: str) -> bool:
    """``/v1/jobs...`` or ``/v1/collections/{name}/jobs``."""
    return path.startswith("/v1/jobs") or (path.startswith("/v1/collections/") and path.rstrip("/").endswith("/jobs"))


class ServiceMiddleware:
    """API key, body-size limit, per-route metrics, and a JSON 500 (traceback logged) for real faults."""

    def __init__(self, app, service):
        self.app = app
        self.service = service
        self.limit = service.config.max_body_bytes
        self.key = (service.config.api_key or "").encode() or None

    def _authorized(self, scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        supplied = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if not supplied and auth[:7].lower() == "bearer ":
            supplied = auth[7:].strip()
        if not supplied and "cookie" in headers:
            supplied = unquote(cookie_parser(headers["cookie"]).get(COOKIE) or "")
        return bool(supplied) and hmac.compare_digest(supplied.encode(), self.key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        path = scope["path"]
        try:
            if self.key is not None and path.startswith(PROTECTED) and not self._authorized(scope):
                response = error_response(
                    401,
                    "unauthorized",
                    "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                    {"WWW-Authenticate": "Bearer"},
                )
                return await response(scope, receive, send_tracked)
            if self.key is None and is_jobs_path(path) and (scope.get("client") or ("",))[0] not in LOOPBACK:
                response = error_response(
                    403, "jobs_local_only", "write jobs are taken only from 127.0.0.1 when the service has no --api-key"
                )
                return await response(scope, receive, send_tracked)
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None:
                try:
                    too_large = int(length) > self.limit
                except ValueError:
                    return await error_response(400, "bad_request", "Content-Length is not a number")(
                        scope, receive, send_tracked
                    )
                if too_large:
                    return await self._too_large()(scope, receive, send_tracked)
            await self.app(scope, receive_limited, send_tracked)
        except BodyTooLarge:
            if not state["started"]:
                await self._too_large()(scope, receive, send_tracked)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), path)
            if not state["started"]:
                await error_response(500, "internal", "internal error; the service log has the details")(
                    scope, receive, send_tracked
                )
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or ("/static" if path.startswith("/static/") else "unmatched")
            method = scope.get("method", "")
            metrics = self.service.metrics
            metrics.requests.inc(label, method, str(state["status"]))
            metrics.request_seconds.observe(time.perf_counter() - started, label, method)

    def _too_large(self):
        return error_response(413, "too_large", BodyTooLarge(self.limit).detail)


def install_error_handlers(app) -> None:
    """Service errors, library errors, validation errors and framework errors, all as ``{detail, code}``."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request, exc: ServiceError):
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message, exc_info=exc.__cause__ or exc)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(MmalignError)
    async def _library_error(request, exc: MmalignError):
        mapped = map_library_error(exc)
        if mapped.status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
        return error_response(mapped.status, mapped.code, mapped.message, mapped.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        return error_response(400, "bad_request", validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(_request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "bad_request")
        detail = exc.detail if isinstance(exc.detail, str) else "bad request"
        return error_response(exc.status_code, code, public_message(detail), getattr(exc, "headers", None))
