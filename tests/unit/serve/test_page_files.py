"""The search page's files: read from the installed package, the collection name escaped."""

from __future__ import annotations

import re

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
