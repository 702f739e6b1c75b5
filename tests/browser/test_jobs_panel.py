"""The search page's read-only jobs panel (plugin/serve/static: the #jobs block) in Chromium."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")
pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

from tests.browser.test_page import browser  # noqa: E402, F401 - the fixture
from tests.unit.serve.serving import serve_tiny_collection  # noqa: E402


def test_the_jobs_panel_is_hidden_without_jobs_and_shows_a_finished_job(browser, trained):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve_tiny_collection(trained) as (server, _store):
        browser.get(server.url + "/")
        WebDriverWait(browser, 20).until(lambda d: "36 items" in d.find_element(By.ID, "collection-meta").text)
        assert not browser.find_element(By.ID, "jobs").is_displayed()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            job = client.post("/v1/collections/items/jobs", json={"kind": "index"}).json()
        # idle, the panel looks again every 5 s
        text = WebDriverWait(browser, 30).until(
            lambda d: d.find_element(By.ID, "jobs").is_displayed() and d.find_element(By.ID, "jobs-list").text
        )
        assert text.startswith("index items: ")
        WebDriverWait(browser, 30).until(lambda d: "index items: done" in d.find_element(By.ID, "jobs-list").text)
        item = browser.find_element(By.CSS_SELECTOR, "#jobs-list li")
        assert job["id"] in item.get_attribute("title") and "done" in item.get_attribute("class")
