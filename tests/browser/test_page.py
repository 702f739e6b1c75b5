"""The search page in a real browser: Debian's chromium, headless, driven by Selenium (chromium-driver).

The service runs on 127.0.0.1 over the tiny collection. When selenium, chromium or chromium-driver is
missing, or the browser cannot start, the tests are skipped with the reason.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

from mmalign.plugin.index.search import Searcher  # noqa: E402
from tests.unit.serve.serving import serve_tiny_collection  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PAGE_K = 24  # the page's default number of results


@pytest.fixture(scope="module")
def browser():
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service as DriverService

    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(
            "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium "
            "chromium-driver; .ci/run installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    arguments = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000")
    # a fake microphone (a beeping tone) that needs no permission prompt
    arguments += ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    for arg in arguments:
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=DriverService(driver_path), options=options)
    except WebDriverException as exc:
        pytest.skip(f"chromium could not start: {str(exc.msg or exc).splitlines()[0]}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(trained):
    base, _ = trained
    with serve_tiny_collection(trained, media_root=base / "catalog") as (server, store):
        with Searcher("items", store=store, device="cpu") as searcher:
            server.searcher = searcher
            server.catalog = base / "catalog"
            yield server


def _open(browser, site, query=""):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(site.url + "/" + query)
    WebDriverWait(browser, 20).until(lambda d: "36 items" in d.find_element(By.ID, "collection-meta").text)


def _cards(browser, previous=None) -> list[str]:
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):  # read in one script: the grid may be re-rendered between two calls
        ids = d.execute_script("return [...document.querySelectorAll('#results .card')].map(c => c.dataset.id)")
        return ids if ids and ids != previous else False

    return WebDriverWait(browser, 30).until(ready)


def _same_ranking(ids: list[str], hits) -> None:
    """The page's cards are these hits in order; hits with equal scores (ties) may come in either order."""
    score = {h.id: h.score for h in hits}
    assert len(ids) == len(hits) and set(ids) == set(score), (ids, [h.id for h in hits])
    assert [score[i] for i in ids] == pytest.approx([h.score for h in hits], abs=1e-6), (ids, [h.id for h in hits])


def test_typing_a_query_shows_the_expected_cards(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(browser, site)
    box = browser.find_element(By.ID, "q")
    box.send_keys("a red frog", Keys.ENTER)
    ids = _cards(browser)
    expected = site.searcher.search(text=["a red frog"], k=PAGE_K)
    _same_ranking(ids, expected)
    first = browser.find_element(By.CSS_SELECTOR, "#results .card")
    top = next(h for h in expected if h.id == ids[0])
    assert top.payload["text"] in first.text and f"{top.score:.3f}" in first.text
    assert f"{PAGE_K} results" in browser.find_element(By.ID, "status").text
    loaded = browser.execute_script(
        "const img = document.querySelector('#results .card img'); return img.complete && img.naturalWidth;"
    )
    assert loaded, "the thumbnail did not load from /v1/media"
    audio = browser.find_elements(By.CSS_SELECTOR, "#results .card audio")
    assert len(audio) == sum(1 for h in expected if h.payload.get("audio"))


def test_uploading_an_image_shows_the_expected_cards(browser, site):
    from selenium.webdriver.common.by import By

    _open(browser, site)
    picture = site.catalog / "img5.png"
    browser.find_element(By.ID, "image-input").send_keys(str(picture))
    ids = _cards(browser)
    _same_ranking(ids, site.searcher.search(image=[picture], k=PAGE_K))
    assert not browser.find_element(By.ID, "image-preview").get_attribute("hidden")


def test_more_like_this_and_the_target_vector(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(browser, site)
    browser.find_element(By.ID, "q").send_keys("a blue car", Keys.ENTER)
    ids = _cards(browser)
    browser.find_element(By.CSS_SELECTOR, "#results .card .more").click()
    like = _cards(browser, previous=ids)
    _same_ranking(like, site.searcher.search(like=[ids[0]], k=PAGE_K))
    assert "More like:" in browser.find_element(By.ID, "chips").text
    browser.find_element(By.CSS_SELECTOR, '#using button[data-value="image"]').click()
    on_images = _cards(browser, previous=like)
    _same_ranking(on_images, site.searcher.search(like=[ids[0]], using="image", k=PAGE_K))


def test_errors_are_shown_on_the_page(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, site)
    browser.find_element(By.ID, "go").click()
    status = browser.find_element(By.ID, "status")
    assert "Type something" in status.text and "error" in status.get_attribute("class")
    browser.find_element(By.ID, "filter-text").send_keys("colour=red")
    browser.find_element(By.ID, "filter-add").click()
    browser.find_element(By.ID, "q").send_keys("a frog")
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 20).until(lambda d: "unknown filter key" in d.find_element(By.ID, "status").text)


def test_recording_from_the_microphone_searches_by_sound(browser, site):
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, site)
    if not browser.execute_script("return !!(navigator.mediaDevices && window.MediaRecorder)"):
        pytest.skip("this chromium has no MediaRecorder/getUserMedia")
    record = browser.find_element(By.ID, "record")
    record.click()
    WebDriverWait(browser, 10).until(lambda d: "recording" in record.get_attribute("class"))
    time.sleep(1.5)
    record.click()  # stop: the page decodes the clip, sends 16 kHz mono WAV and searches
    ids = _cards(browser)
    assert len(ids) == PAGE_K
    status = browser.find_element(By.ID, "status").text
    assert "sound → fused" in status, status
    assert browser.find_element(By.ID, "sound-hint").text == "microphone recording"


def _catalog_text(site, item_id: str) -> str:
    import json

    lines = (site.catalog / "catalog.jsonl").read_text().splitlines()
    return next(json.loads(line)["text"] for line in lines if json.loads(line)["id"] == item_id)


def test_a_query_in_the_url_shows_its_results_without_typing(browser, site):
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    text = _catalog_text(site, "item7")
    _open(browser, site, "?" + urlencode({"q": text, "using": "text"}))
    ids = _cards(browser)
    expected = site.searcher.search(text=[text], using="text", k=PAGE_K)
    _same_ranking(ids, expected)
    best = [h.id for h in expected if h.score == pytest.approx(expected[0].score, abs=1e-6)]
    assert "item7" in best  # the item's own text is nearest to itself on the text vector (ties aside)
    assert browser.find_element(By.ID, "q").get_attribute("value") == text
    assert "text → text" in browser.find_element(By.ID, "status").text
    on = browser.find_element(By.CSS_SELECTOR, "#using button.on").get_attribute("data-value")
    assert on == "text"


def test_a_liked_item_in_the_url_searches_more_like_it_on_the_chosen_vector(browser, site):
    from selenium.webdriver.common.by import By

    _open(browser, site, "?like=item3&using=image&k=12")
    _same_ranking(_cards(browser), site.searcher.search(like=["item3"], using="image", k=12))
    assert "More like: item3" in browser.find_element(By.ID, "chips").text
    assert browser.current_url == site.url + "/?like=item3&using=image&k=12"


def test_a_search_writes_itself_into_the_url_and_that_url_repeats_it(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    _open(browser, site)
    Select(browser.find_element(By.ID, "k")).select_by_visible_text("12")
    browser.find_element(By.ID, "filter-text").send_keys("group=odd")
    browser.find_element(By.ID, "filter-add").click()
    browser.find_element(By.ID, "q").send_keys("a green dog", Keys.ENTER)
    ids = _cards(browser)
    shared = browser.current_url
    assert shared == site.url + "/?q=a+green+dog&filter=group%3Dodd&using=fused&k=12"
    expected = site.searcher.search(text=["a green dog"], k=12, filters={"group": "odd"})
    _same_ranking(ids, expected)
    browser.get("about:blank")
    _open(browser, site, shared[len(site.url) + 1 :])
    _same_ranking(_cards(browser), expected)
    assert "group = odd" in browser.find_element(By.ID, "chips").text


def test_a_bad_value_in_the_url_is_named_and_nothing_is_searched(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, site, "?q=a+frog&using=colour&k=0")
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 10).until(lambda d: "Not searched" in status.text)
    assert "using=colour (valid: fused, image, text, audio)" in status.text
    assert "k=0 (valid: a whole number from 1)" in status.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert browser.find_element(By.ID, "q").get_attribute("value") == "a frog"  # kept, to correct and search


def test_the_api_docs_render_every_operation_from_local_files_only(browser, site):
    pytest.importorskip("fastapi_offline", reason="/docs needs fastapi-offline (the serve extra)")
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # CSP violations, recorded from before the page's own scripts run (CDP scripts are not under the CSP)
    watch = "window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => "
    watch += "window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    added = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": watch})
    try:
        spec = httpx.get(site.url + "/openapi.json").json()
        operations = sum(len(methods) for methods in spec["paths"].values())
        browser.get(site.url + "/docs")
        WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == operations)
        assert "/v1/search" in browser.find_element(By.ID, "swagger-ui").text
        fetched = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert fetched and all(url.startswith(site.url + "/") for url in fetched), fetched
        assert browser.execute_script("return window.__csp") == []
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})
