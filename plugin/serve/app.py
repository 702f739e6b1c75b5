"""The ASGI app (FastAPI): routes over :class:`~mmalign.plugin.serve.service.Service`, the search page,
API-key check, body-size limit, metrics, and errors as JSON without paths or tracebacks.

Routes: ``GET /`` (the page), ``POST /v1/search``, ``POST /v1/recommend``, ``GET /v1/items/{id}``,
``GET /v1/media/{image|audio}/{id}``, ``GET /v1/collections``, ``GET /healthz``, ``GET /readyz``,
``GET /metrics``, and the framework's ``/docs`` and ``/openapi.json``. The routers live in
:mod:`.routes`, the middleware and error handlers in :mod:`.http`, request parsing in :mod:`.requests`,
running the app in :mod:`.server`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mmalign.plugin.serve.http import ServiceMiddleware, install_error_handlers
from mmalign.plugin.serve.limits import JsonDepthLimit
from mmalign.plugin.serve.routes import catalog_routes, health_routes, page_routes, query_routes
from mmalign.plugin.serve.routes_jobs import jobs_routes
from mmalign.plugin.serve.server import BackgroundServer, serve_app
from mmalign.plugin.serve.service import Service

__all__ = ["BackgroundServer", "create_app", "run"]


def create_app(service: Service, *, watch_interval_s: float = 5.0) -> FastAPI:
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
        docs_url=None,  # /docs is the page router's: Swagger UI from local files, no CDN
        redoc_url=None,  # ReDoc loads from a CDN (blank offline): /docs covers the API
    )
    app.add_middleware(JsonDepthLimit)  # inside ServiceMiddleware: the body it reads is size-limited first
    app.add_middleware(ServiceMiddleware, service=service)
    install_error_handlers(app)
    for routes in (page_routes, health_routes, query_routes, catalog_routes, jobs_routes):
        app.include_router(routes(service))
    return app


def run(
    service: Service,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    access_log: bool = True,
    watch_interval_s: float = 5.0,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve ``service`` with uvicorn until interrupted (see :func:`.server.serve_app`)."""
    app = create_app(service, watch_interval_s=watch_interval_s)
    serve_app(app, host=host, port=port, log_level=log_level, access_log=access_log, on_listening=on_listening)
