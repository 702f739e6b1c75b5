"""The service's routes, one router per concern: the page, health, queries, and the catalog."""

from __future__ import annotations

from fastapi import APIRouter, Request, Security
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader

from mmalign.plugin.serve import page
from mmalign.plugin.serve.errors import ServiceError
from mmalign.plugin.serve.http import ERRORS, MEDIA_CSP, PAGE_CSP, json_response
from mmalign.plugin.serve.models import CollectionInfo, Error, Health, Hit, Item, Readiness, RecommendRequest
from mmalign.plugin.serve.requests import search_from_form, search_from_json, search_openapi_body
from mmalign.plugin.serve.service import Service
from mmalign.plugin.serve.validation import RecommendQuery

#: Documents the key for the docs' "Authorize" button; the middleware enforces it.
KEY_DOC = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed when the service has --api-key.")
SECURED = [Security(KEY_DOC)]
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"}


def page_routes(service: Service) -> APIRouter:
    """The search page and its static files (no key needed: the page asks for one)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page.html(service.config.collection), headers=PAGE_HEADERS)

    @router.get("/static/app.js")
    async def script():
        return Response(page.SCRIPT, media_type="text/javascript", headers=PAGE_HEADERS)

    @router.get("/static/app.css")
    async def style():
        return Response(page.STYLE, media_type="text/css", headers=PAGE_HEADERS)

    @router.get("/static/icon.svg")
    async def icon():
        return Response(page.ICON, media_type="image/svg+xml", headers=PAGE_HEADERS)

    @router.get("/docs", response_class=HTMLResponse)
    async def docs(request: Request):
        return page.docs_page(request.app.openapi_url, f"{request.app.title} API")

    @router.get(page.DOCS_STATIC + "{name}")
    async def docs_file(name: str):
        return page.docs_file(name)

    return router


def health_routes(service: Service) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health)
    async def healthz():
        """The process is alive (says nothing about the models or the store)."""
        return {"status": "alive"}

    @router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz():
        """Models loaded, store reachable, and the bundle served is the one the alias points at."""
        ready, body = await service.readiness()
        return json_response(200 if ready else 503, body)

    @router.get("/metrics", response_class=PlainTextResponse, dependencies=SECURED)
    async def metrics():
        """Prometheus text format: requests, latency per route and per stage, batch sizes, reloads."""
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    return router


def query_routes(service: Service) -> APIRouter:
    router = APIRouter(tags=["query"], dependencies=SECURED)

    @router.post("/v1/search", response_model=list[Hit], responses=ERRORS, openapi_extra=search_openapi_body())
    async def search(request: Request):
        """Search with text, images, sounds and/or item ids against one stored vector.

        JSON (media as base64) or multipart/form-data (files as they are). The answer is the list that
        `mmalign search --json` prints: `[{id, score, payload}, ...]`, best first."""
        content_type = request.headers.get("content-type", "").lower()
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            query = await search_from_form(request, service.config.max_inputs)
        elif content_type.startswith("application/json") or not content_type:
            query = await search_from_json(request)
        else:
            raise ServiceError(415, "unsupported_content_type", "send application/json or multipart/form-data")
        return json_response(200, await service.search(query))

    @router.post("/v1/recommend", response_model=list[Hit], responses=ERRORS)
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
        return json_response(200, await service.recommend(query))

    return router


def catalog_routes(service: Service) -> APIRouter:
    router = APIRouter(tags=["catalog"], dependencies=SECURED)

    @router.get("/v1/collections", response_model=list[CollectionInfo])
    async def collections():
        """The collection served: its alias → version, bundle (live and served), counts, versions."""
        return json_response(200, await service.collections())

    @router.get("/v1/items/{item_id:path}", response_model=Item, responses=ERRORS)
    async def item(item_id: str):
        """One item's payload by its catalog id (ids may contain slashes)."""
        return json_response(200, await service.item(item_id))

    @router.get(
        "/v1/media/{modality}/{item_id:path}",
        responses={200: {"content": {"image/png": {}, "audio/wav": {}}}, 404: {"model": Error}},
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

    return router
