"""The search page at ``/``: plain HTML, CSS and JavaScript served by the app (no build step).

The files are in ``plugin/serve/static/`` (``index.html``, ``app.js``, ``app.css``, ``icon.svg``),
installed with the package as package data and read here with :mod:`importlib.resources`. The page
talks to the same API as apps do (``/v1/collections``, ``/v1/search``, ``/v1/media``); with
``--api-key`` it asks for the key once and keeps it in a same-site cookie, so thumbnails and sounds
load too. ``/?q=TEXT&using=...&k=N`` (and ``fusion``, ``filter=KEY=VALUE``, ``like=ID``) opens with
that search, and each search writes itself into the URL (``history.replaceState``), so a search can
be shared and bookmarked.

``/docs`` is Swagger UI with its script and style served by the app from the ``fastapi-offline``
package (Swagger UI 5, which renders FastAPI's OpenAPI 3.1), so the API docs work without a network.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape
from importlib.resources import files
from pathlib import Path

from mmalign.plugin.serve.errors import ServiceError

#: Where the page's files are, inside the installed package.
STATIC = files("mmalign.plugin.serve") / "static"
#: The placeholder in index.html that :func:`html` replaces with the (escaped) collection name.
PLACEHOLDER = "{collection}"


def read(name: str) -> str:
    """One of the page's files (``index.html``, ``app.js``, ``app.css``, ``icon.svg``) as text."""
    return (STATIC / name).read_text(encoding="utf-8")


_HTML = read("index.html")
SCRIPT = read("app.js")
STYLE = read("app.css")
ICON = read("icon.svg")


def html(collection: str) -> str:
    """The page for ``collection``: the name is HTML-escaped (``<``, ``>``, ``&`` and quotes)."""
    return _HTML.replace(PLACEHOLDER, escape(collection, quote=True))


#: Swagger UI's files that ``/docs`` loads, with their media types, served under :data:`DOCS_STATIC`.
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
DOCS_STATIC = "/static/docs/"
DOCS_PACKAGE = "fastapi_offline"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _docs_folder() -> Path:
    try:
        folder = Path(str(files(DOCS_PACKAGE) / "static"))
    except ModuleNotFoundError:
        folder = None
    if folder is None or not all((folder / name).is_file() for name in DOCS_ASSETS):
        raise ServiceError(
            503,
            "unavailable",
            "the API docs need Swagger UI from the fastapi-offline package, which is not installed "
            "(pip install 'mmalign[serve]'); the OpenAPI document itself is at /openapi.json",
        )
    return folder


def docs_csp(html_text: str) -> str:
    """The Content-Security-Policy of ``/docs``: as strict as the page's, except that the inline script(s)
    of ``html_text`` (FastAPI's Swagger UI set-up) may run, each allowed by its SHA-256 and nothing else."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html_text)
    )
    return (
        f"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self' {hashes}; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


def docs_page(openapi_url: str, title: str):
    """``/docs``: FastAPI's Swagger UI page pointing at the local copies of its files (no CDN), with the
    CSP of :func:`docs_csp`. A 503 naming the package when fastapi-offline is not installed."""
    from fastapi.openapi.docs import get_swagger_ui_html

    _docs_folder()
    response = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=DOCS_STATIC + "swagger-ui-bundle.js",
        swagger_css_url=DOCS_STATIC + "swagger-ui.css",
        swagger_favicon_url=DOCS_STATIC + "favicon.png",
        oauth2_redirect_url=None,
    )
    response.headers["Content-Security-Policy"] = docs_csp(response.body.decode())
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def docs_file(name: str):
    """One of Swagger UI's files for ``/docs`` (:data:`DOCS_ASSETS`); any other name is a 404."""
    from fastapi.responses import FileResponse

    if name not in DOCS_ASSETS:
        raise ServiceError(404, "not_found", f"no docs file {name!r}; the files are {', '.join(DOCS_ASSETS)}")
    return FileResponse(
        _docs_folder() / name, media_type=DOCS_ASSETS[name], headers={"X-Content-Type-Options": "nosniff"}
    )
