"""The search page's files: read from the installed package, the collection name escaped."""

from __future__ import annotations

import re

import pytest

from mmalign.plugin.serve import page


def test_the_page_files_are_read_from_the_package_folder():
    assert page.SCRIPT.startswith('"use strict";') and "/v1/search" in page.SCRIPT
    assert ".card" in page.STYLE and page.ICON.startswith("<svg")
    for name in ("index.html", "app.js", "app.css", "icon.svg"):
        assert (page.STATIC / name).is_file(), name


def test_every_static_url_of_the_page_is_a_file_of_the_package():
    urls = set(re.findall(r'(?:src|href)="/static/([^"]+)"', page.html("items")))
    assert urls == {"icon.svg", "app.css", "app.js"}
    assert all((page.STATIC / name).is_file() for name in urls)


def test_the_collection_name_is_escaped_in_the_title_and_the_pill():
    text = page.html('<script>alert("x")</script>&co\'')
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;co&#x27;"
    assert text.count(escaped) == 2
    assert "<script>alert" not in text and page.PLACEHOLDER not in text


def test_the_docs_csp_allows_each_inline_script_by_its_sha256_and_nothing_inline_else():
    csp = page.docs_csp('<script src="/static/docs/swagger-ui-bundle.js"></script><script>alert(1)</script>')
    # the hash of "alert(1)", as `echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64` prints it
    assert "script-src 'self' 'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='; " in csp
    assert "unsafe" not in csp and "style-src 'self';" in csp


def test_the_docs_without_fastapi_offline_are_a_503_that_names_the_package(monkeypatch):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
    from mmalign.plugin.serve.errors import ServiceError

    monkeypatch.setattr(page, "DOCS_PACKAGE", "no_such_package_here")
    with pytest.raises(ServiceError) as raised:
        page.docs_page("/openapi.json", "mmalign API")
    assert raised.value.status == 503 and "fastapi-offline" in raised.value.message
    assert "/openapi.json" in raised.value.message
