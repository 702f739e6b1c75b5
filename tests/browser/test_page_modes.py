"""The page's "Match" choice in a real browser (Debian's chromium, headless, Selenium): typing a rare exact name
shows its item first; the mode travels in the URL. Skipped with the reason when the browser is missing."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

from tests.browser.test_page import browser  # noqa: E402, F401  (the shared headless chromium)
from tests.words_catalog import RARE, TEXTS, serve_words_collection  # noqa: E402


@pytest.fixture(scope="module")
def words_site(trained, tmp_path_factory):
    with serve_words_collection(trained, tmp_path_factory.mktemp("words-page")) as (server, _):
        yield server


def _first_card(driver) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        ids = d.execute_script("return [...document.querySelectorAll('#results .card')].map(c => c.dataset.id)")
        return ids[0] if ids else False

    return WebDriverWait(driver, 30).until(ready)


def _open(driver, site, query=""):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(site.url + "/" + query)
    WebDriverWait(driver, 20).until(lambda d: f"{len(TEXTS)} items" in d.find_element(By.ID, "collection-meta").text)


def test_typing_a_rare_exact_name_shows_its_item_first(browser, words_site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(browser, words_site)
    assert browser.find_element(By.ID, "mode").get_attribute("value") == ""  # auto: hybrid for typed words
    browser.find_element(By.ID, "q").send_keys("LP-100", Keys.ENTER)
    assert _first_card(browser) == RARE
    first = browser.find_element(By.CSS_SELECTOR, "#results .card")
    assert "LP-100" in first.text


def test_the_words_mode_is_chosen_on_the_page_and_kept_in_the_url(browser, words_site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _open(browser, words_site)
    Select(browser.find_element(By.ID, "mode")).select_by_value("lexical")
    browser.find_element(By.ID, "q").send_keys("umbrella", Keys.ENTER)
    assert _first_card(browser) == "w2"
    WebDriverWait(browser, 10).until(lambda d: "mode=lexical" in d.current_url)
    cards = browser.execute_script("return document.querySelectorAll('#results .card').length")
    assert cards == 1  # words: only the item that has the word
    _open(browser, words_site, "?q=LP-100&mode=lexical")
    assert _first_card(browser) == RARE
    _open(browser, words_site, "?q=LP-100&mode=bm25")
    WebDriverWait(browser, 10).until(lambda d: "mode=bm25" in d.find_element(By.ID, "status").text)
