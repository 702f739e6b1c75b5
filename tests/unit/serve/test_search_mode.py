"""``"mode"`` in ``POST /v1/search`` (JSON and form): a rare exact name is found first by words (lexical) and by
words + meaning (hybrid, the default for typed words); a bad mode is a 400 that names the valid ones."""

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from tests.words_catalog import RARE, serve_words_collection  # noqa: E402


@pytest.fixture(scope="module")
def words_site(trained, tmp_path_factory):
    with serve_words_collection(trained, tmp_path_factory.mktemp("words")) as (server, _):
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client


@pytest.mark.parametrize("mode", [None, "lexical", "hybrid"])
def test_a_rare_exact_name_comes_first_in_json_and_form_requests(words_site, mode):
    body = {"text": "LP-100", "k": 3, **({"mode": mode} if mode else {})}
    hits = words_site.post("/v1/search", json=body).json()
    assert hits[0]["id"] == RARE, hits
    form = {"text": "LP-100", "k": "3", **({"mode": mode} if mode else {})}
    assert words_site.post("/v1/search", data=form).json()[0]["id"] == RARE


def test_lexical_mode_finds_only_items_that_share_a_word_and_filters_hold(words_site):
    hits = words_site.post("/v1/search", json={"text": "fire", "mode": "lexical", "k": 10}).json()
    assert {h["id"] for h in hits} == {"w0", "w1"}
    odd = words_site.post("/v1/search", json={"text": "fire", "mode": "lexical", "filters": {"group": "odd"}}).json()
    assert [h["id"] for h in odd] == ["w1"]


def test_a_bad_mode_is_refused_with_the_valid_ones(words_site):
    response = words_site.post("/v1/search", json={"text": "frog", "mode": "bm25"})
    assert response.status_code == 400
    assert all(m in response.text for m in ("dense", "lexical", "hybrid")), response.text
    spec = words_site.get("/openapi.json").text
    assert '"hybrid"' in spec and '"lexical"' in spec
