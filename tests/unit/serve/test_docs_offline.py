"""`/docs` without a network: Swagger UI's page and files come from the service, under a CSP of their own."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("fastapi_offline", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from mmalign.plugin.serve import page  # noqa: E402
from tests.unit.serve.serving import serve_tiny_collection  # noqa: E402

URL_ATTRIBUTE = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.fixture(scope="module")
def client(trained):
    with serve_tiny_collection(trained, warm_up=False) as (server, _store):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            yield c


def test_the_docs_page_names_only_local_urls_and_each_answers(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "http://" not in docs.text and "https://" not in docs.text
    urls = URL_ATTRIBUTE.findall(docs.text)
    assert sorted(urls) == sorted(page.DOCS_STATIC + name for name in page.DOCS_ASSETS)
    assert "'/openapi.json'" in docs.text and client.get("/openapi.json").status_code == 200
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert asset.headers["content-type"].startswith(page.DOCS_ASSETS[url.rsplit("/", 1)[1]]), url


def test_the_docs_csp_lets_only_its_own_inline_script_run_and_the_page_csp_is_unchanged(client):
    docs = client.get("/docs")
    script_src = next(p for p in docs.headers["content-security-policy"].split(";") if "script-src" in p)
    assert script_src.split()[:2] == ["script-src", "'self'"] and len(script_src.split()) == 3
    assert script_src.split()[2].startswith("'sha256-") and "unsafe" not in script_src
    assert docs.text.count("<script>") == 1  # the one inline script that hash allows
    shell = client.get("/").headers["content-security-policy"]
    assert "sha256" not in shell and "unsafe-inline" not in shell


def test_other_docs_files_and_redoc_are_not_served(client):
    missing = client.get(page.DOCS_STATIC + "swagger-ui.js.map")
    assert missing.status_code == 404
    assert "swagger-ui-bundle.js" in missing.json()["detail"]  # names the files there are
    assert client.get(page.DOCS_STATIC + "..%2Fcore.py").status_code == 404
    assert client.get("/redoc").status_code == 404  # it loaded ReDoc from a CDN: blank offline
