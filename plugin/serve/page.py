"""The search page at ``/``: plain HTML, CSS and JavaScript served by the app (no build step).

The files are in ``plugin/serve/static/`` (``index.html``, ``app.js``, ``app.css``, ``icon.svg``),
installed with the package as package data and read here with :mod:`importlib.resources`. The page
talks to the same API as apps do (``/v1/collections``, ``/v1/search``, ``/v1/media``); with
``--api-key`` it asks for the key once and keeps it in a same-site cookie, so thumbnails and sounds
load too. ``/?q=TEXT&using=...&k=N`` (and ``fusion``, ``filter=KEY=VALUE``, ``like=ID``) opens with
that search, and each search writes itself into the URL (``history.replaceState``), so a search can
be shared and bookmarked.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files

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
