"""The ASGI app (FastAPI): routes over :class:`~mmalign.plugin.serve.service.Service`, the search page,
API-key check, body-size limit, metrics, and errors as JSON without paths or tracebacks.

Routes: ``GET /`` (the page), ``POST /v1/search``, ``POST /v1/recommend``, ``GET /v1/items/{id}``,
``GET /v1/media/{image|audio}/{id}``, ``GET /v1/collections``, ``GET /healthz``, ``GET /readyz``,
``GET /metrics``, and the framework's ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse

from mmalign.connectors.errors import ConfigError, DataError, MediaError, MmalignError
from mmalign.plugin.serve import page
from mmalign.plugin.serve.errors import ServiceError, bad_request, public_message
from mmalign.plugin.serve.limits import JsonDepthLimit, form_number, loads_limited
from mmalign.plugin.serve.models import (
    CollectionInfo,
    Error,
    Health,
    Hit,
    Item,
    Readiness,
    RecommendRequest,
    SearchRequest,
)
from mmalign.plugin.serve.service import RecommendQuery, SearchQuery, Service
from mmalign.plugin.serve.uploads import Upload, decode_base64

log = logging.getLogger(__name__)

#: Paths that need the API key (when one is set). The page shell, health checks and docs do not.
PROTECTED = ("/v1/", "/metrics")
COOKIE = "mmalign_api_key"
FORM_FIELDS = ("text", "image", "audio", "like", "using", "k", "fusion", "filter", "filters")
#: Non-file multipart fields larger than this are refused.
MAX_FORM_FIELD_BYTES = 256 << 10
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


def _json(status: int, body: Any, headers: dict[str, str] | None = None):
    return JSONResponse(body, status_code=status, headers=headers)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return _json(status, {"detail": message, "code": code}, headers)


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",)) or "body"
        if error.get("type") == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        else:
            parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    return "; ".join(parts[:5])


def _as_list(value) -> list:
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


class ServiceMiddleware:
    """API key, body-size limit, per-route metrics, and a JSON 500 (traceback logged) for real faults."""

    def __init__(self, app, service: Service):
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
                response = _error(
                    401,
                    "unauthorized",
                    "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                    {"WWW-Authenticate": "Bearer"},
                )
                return await response(scope, receive, send_tracked)
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None:
                try:
                    too_large = int(length) > self.limit
                except ValueError:
                    return await _error(400, "bad_request", "Content-Length is not a number")(
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
                await _error(500, "internal", "internal error; the service log has the details")(
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
        return _error(413, "too_large", BodyTooLarge(self.limit).detail)


def create_app(service: Service, *, watch_interval_s: float = 5.0):
    """The app over a loaded ``service`` (see :meth:`Service.load`); it closes the service at shutdown."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("mmalign")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        __version__ = "unknown"

    @asynccontextmanager
    async def lifespan(_app):
        watcher = asyncio.create_task(service.watch(watch_interval_s)) if watch_interval_s > 0 else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            await service.aclose()

    app = FastAPI(
        title="mmalign",
        version=__version__,
        description=(
            f"Multimodal search over the Qdrant collection `{service.config.collection}`: text, image, audio or "
            "item ids against any stored vector. Errors are `{detail, code}`."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(JsonDepthLimit)  # inside ServiceMiddleware: the body it reads is size-limited first
    app.add_middleware(ServiceMiddleware, service=service)
    # documents the key for the docs' "Authorize" button; the middleware enforces it
    key_doc = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed when the service has --api-key.")
    secured = [Security(key_doc)]

    @app.exception_handler(ServiceError)
    async def _service_error(_request, exc: ServiceError):
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message, exc_info=exc.__cause__ or exc)
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(MmalignError)
    async def _library_error(request, exc: MmalignError):
        mapped = map_library_error(exc)
        if mapped.status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
        return _error(mapped.status, mapped.code, mapped.message, mapped.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        return _error(400, "bad_request", _validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(_request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "bad_request")
        detail = exc.detail if isinstance(exc.detail, str) else "bad request"
        return _error(exc.status_code, code, public_message(detail), getattr(exc, "headers", None))

    # -- the page ------------------------------------------------------------------------------------------
    page_headers = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page.html(service.config.collection), headers=page_headers)

    @app.get("/static/app.js", include_in_schema=False)
    async def script():
        return Response(page.SCRIPT, media_type="text/javascript", headers=page_headers)

    @app.get("/static/app.css", include_in_schema=False)
    async def style():
        return Response(page.STYLE, media_type="text/css", headers=page_headers)

    @app.get("/static/icon.svg", include_in_schema=False)
    async def icon():
        return Response(page.ICON, media_type="image/svg+xml", headers=page_headers)

    # -- health ---------------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz():
        """The process is alive (says nothing about the models or the store)."""
        return {"status": "alive"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}}, tags=["health"])
    async def readyz():
        """Models loaded, store reachable, and the bundle served is the one the alias points at."""
        ready, body = await service.readiness()
        return _json(200 if ready else 503, body)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=secured, tags=["health"])
    async def metrics():
        """Prometheus text format: requests, latency per route and per stage, batch sizes, reloads."""
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    # -- the API ---------------------------------------------------------------------------------------------
    async def search_from_json(request: Request) -> SearchQuery:
        body = await request.body()
        if not body.strip():
            raise bad_request('the body is empty: send a JSON object such as {"text": "a frog"}', "no_query")
        try:
            data = json.loads(body)
        except ValueError:
            raise bad_request("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise bad_request("the body must be a JSON object")
        try:
            parsed = SearchRequest.model_validate(data)
        except ValidationError as exc:
            raise bad_request(_validation_message(exc.errors())) from None
        uploads = [decode_base64(v, "image", i) for i, v in enumerate(_as_list(parsed.image))]
        uploads += [decode_base64(v, "audio", i) for i, v in enumerate(_as_list(parsed.audio))]
        return SearchQuery(
            text=_as_list(parsed.text),
            uploads=uploads,
            like=_as_list(parsed.like),
            using=parsed.using,
            k=parsed.k,
            filters=parsed.filters,
            fusion=parsed.fusion,
        )

    async def search_from_form(request: Request) -> SearchQuery:
        from mmalign.plugin.index.search import parse_filters

        form = await request.form(
            max_files=service.config.max_inputs, max_fields=64, max_part_size=MAX_FORM_FIELD_BYTES
        )
        try:
            unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
            if unknown:
                raise bad_request(f"unknown field {unknown[0]!r}; fields: {list(FORM_FIELDS)}")
            uploads = []
            for modality in ("image", "audio"):
                for i, value in enumerate(form.getlist(modality)):
                    if isinstance(value, UploadFile):
                        name = (value.filename or f"{modality}[{i}]").replace("\\", "/").rsplit("/", 1)[-1][:80]
                        uploads.append(Upload(modality, await value.read(), name))
                    else:
                        uploads.append(decode_base64(value, modality, i))
            texts = [v for v in form.getlist("text") if isinstance(v, str)]
            filters: dict[str, Any] = {}
            raw_filters = form.get("filters")
            if isinstance(raw_filters, str) and raw_filters.strip():
                try:
                    filters.update(loads_limited(raw_filters))
                except (ValueError, TypeError):
                    raise bad_request('filters must be a JSON object {"key": value}') from None
            try:
                for key, values in parse_filters([v for v in form.getlist("filter") if isinstance(v, str)]).items():
                    filters[key] = _as_list(filters.get(key)) + values
            except ConfigError as exc:
                raise bad_request(str(exc)) from None
            fields: dict[str, Any] = {}
            for name in ("using", "k", "fusion"):
                value = form.get(name)
                if isinstance(value, str) and value.strip():
                    fields[name] = form_number(value) if name == "k" else value.strip()
            try:
                parsed = SearchRequest.model_validate({**fields, "filters": filters or None})
            except ValidationError as exc:
                raise bad_request(_validation_message(exc.errors())) from None
            return SearchQuery(
                text=texts,
                uploads=uploads,
                like=[v for v in form.getlist("like") if isinstance(v, str)],
                using=parsed.using,
                k=parsed.k,
                filters=parsed.filters,
                fusion=parsed.fusion,
            )
        finally:
            await form.close()

    search_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": SearchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "array", "items": {"type": "string"}},
                            "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "audio": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "like": {"type": "array", "items": {"type": "string"}},
                            "using": {"type": "string", "enum": ["fused", "image", "text", "audio"]},
                            "k": {"type": "integer", "default": 10},
                            "fusion": {"type": "string", "enum": ["rrf", "mean"]},
                            "filter": {"type": "array", "items": {"type": "string"}, "description": "KEY=VALUE"},
                            "filters": {"type": "string", "description": "a JSON object, as in the JSON body"},
                        },
                    }
                },
            },
        }
    }

    @app.post(
        "/v1/search",
        response_model=list[Hit],
        responses=ERRORS,
        openapi_extra=search_body,
        dependencies=secured,
        tags=["query"],
    )
    async def search(request: Request):
        """Search with text, images, sounds and/or item ids against one stored vector.

        JSON (media as base64) or multipart/form-data (files as they are). The answer is the list that
        `mmalign search --json` prints: `[{id, score, payload}, ...]`, best first."""
        content_type = request.headers.get("content-type", "").lower()
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            query = await search_from_form(request)
        elif content_type.startswith("application/json") or not content_type:
            query = await search_from_json(request)
        else:
            raise ServiceError(415, "unsupported_content_type", "send application/json or multipart/form-data")
        return _json(200, await service.search(query))

    @app.post("/v1/recommend", response_model=list[Hit], responses=ERRORS, dependencies=secured, tags=["query"])
    async def recommend(body: RecommendRequest):
        """Recommendations for a user (stored interactions), or for an anonymous session's liked and
        disliked items."""
        query = RecommendQuery(
            user_id=body.user_id,
            liked=body.liked,
            disliked=body.disliked,
            k=body.k,
            filters=body.filters,
            include_seen=body.include_seen,
            strategy=body.strategy,
        )
        return _json(200, await service.recommend(query))

    @app.get("/v1/collections", response_model=list[CollectionInfo], dependencies=secured, tags=["catalog"])
    async def collections():
        """The collection served: its alias → version, bundle (live and served), counts, versions."""
        return _json(200, await service.collections())

    @app.get("/v1/items/{item_id:path}", response_model=Item, responses=ERRORS, dependencies=secured, tags=["catalog"])
    async def item(item_id: str):
        """One item's payload by its catalog id (ids may contain slashes)."""
        return _json(200, await service.item(item_id))

    @app.get(
        "/v1/media/{modality}/{item_id:path}",
        responses={200: {"content": {"image/png": {}, "audio/wav": {}}}, 404: {"model": Error}},
        dependencies=secured,
        tags=["catalog"],
    )
    async def media(modality: str, item_id: str):
        """An item's image or sound, from the media root only (no path outside it, no symlink escape)."""
        path, media_type = await service.media(modality, item_id)
        headers = {
            "Content-Security-Policy": MEDIA_CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=300",
        }
        return FileResponse(path, media_type=media_type, headers=headers)

    return app


def run(
    service: Service,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    access_log: bool = True,
    watch_interval_s: float = 5.0,
) -> None:
    """Serve ``service`` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(
        create_app(service, watch_interval_s=watch_interval_s),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=5,
    )


class BackgroundServer:
    """The app served by uvicorn on a thread of this process (tests, notebooks, benchmarks)::

        with BackgroundServer(create_app(service)) as server:
            httpx.get(server.url + "/healthz")

    ``port=0`` takes a free port; ``url`` says which.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = None

    def start(self, timeout_s: float = 60.0) -> BackgroundServer:
        import threading

        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="mmalign-serve", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start (see the log)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
