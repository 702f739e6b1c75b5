"""Bodies the service must refuse with a 4xx before parsing (issue #23): JSON nested thousands of levels
deep was a RecursionError answered 500, and ``k: "5"`` / ``k: true`` were accepted as numbers."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from mmalign.plugin.serve.app import BackgroundServer, create_app  # noqa: E402
from mmalign.plugin.serve.limits import MAX_JSON_DEPTH, form_number, json_depth, loads_limited  # noqa: E402
from tests.unit.serve.test_serve import _check_error, make_service, pool, store  # noqa: E402, F401


@pytest.fixture(scope="module")
def server(trained, store, pool):  # noqa: F811
    service = make_service(trained, store, pool, max_body_bytes=1 << 20)  # room for 100,000 levels
    with BackgroundServer(create_app(service, watch_interval_s=0)) as srv:
        yield srv


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_json_depth_counts_arrays_and_objects_and_ignores_brackets_in_strings():
    assert json_depth(b"5") == 0
    assert json_depth(b'{"text": "a", "filters": {"group": ["odd", "even"]}}') == 3
    assert json_depth(b'{"text": "[[[[{{{{ \\" [[[["}') == 1  # brackets inside a string, an escaped quote
    assert json_depth("[" * 100_000 + "]" * 100_000) == 100_000
    assert json_depth("[" * 3_000_000, limit=10) == 1 << 20  # stops after the first block of 2^20 brackets


def test_loads_limited_refuses_deep_nesting_with_a_value_error_not_a_recursion_error():
    assert loads_limited('{"group": ["odd"]}') == {"group": ["odd"]}
    with pytest.raises(ValueError, match=f"nested 3000 levels deep; at most {MAX_JSON_DEPTH}"):
        loads_limited("[" * 3000 + "]" * 3000)


def test_form_numbers_become_ints_and_anything_else_stays_text():
    assert form_number(" 5 ") == 5 and form_number("-2") == -2
    assert form_number("5.0") == "5.0" and form_number("true") == "true" and form_number("9" * 40) == "9" * 40


@pytest.mark.parametrize("levels", [3000, 100_000])
def test_deeply_nested_json_is_a_400_not_a_500(client, levels):
    body = '{"text": "a", "filters": ' + "[" * levels + "]" * levels + "}"
    got = _check_error(client.post("/v1/search", content=body, headers={"content-type": "application/json"}), 400)
    assert got["code"] == "too_deep" and f"{MAX_JSON_DEPTH} levels" in got["detail"]
    deep = "[" * levels + "]" * levels
    _check_error(client.post("/v1/recommend", content=deep, headers={"content-type": "application/json"}), 400)
    no_type = client.post("/v1/search", content=deep.encode(), headers={"content-type": ""})
    _check_error(no_type, 400)
    form = client.post("/v1/search", data={"text": "a", "filters": "[" * levels + "]" * levels})
    _check_error(form, 400)
    assert client.post("/v1/search", json={"text": "a frog", "k": 2}).status_code == 200  # nothing else affected


def test_a_body_nested_within_the_limit_is_answered(client):
    body = {"text": ["a frog", "a cat"], "like": ["item0"], "k": 2}
    assert client.post("/v1/search", content=json.dumps(body), headers={"content-type": "application/json"}).is_success


@pytest.mark.parametrize("k", ["5", True, 5.0, "5.5"])
def test_k_must_be_a_json_whole_number_not_a_string_or_a_boolean(client, k):
    body = _check_error(client.post("/v1/search", json={"text": "a frog", "k": k}), 400)
    assert "k" in body["detail"]
    _check_error(client.post("/v1/recommend", json={"liked": ["item0"], "k": k}), 400)


def test_include_seen_must_be_a_json_boolean(client):
    _check_error(client.post("/v1/recommend", json={"user_id": "u1", "include_seen": "yes"}), 400)
    assert client.post("/v1/recommend", json={"user_id": "u1", "include_seen": True, "k": 2}).is_success


def test_a_form_still_sends_k_as_text(client):
    got = client.post("/v1/search", data={"text": "a frog", "k": "3"})
    assert got.status_code == 200 and len(got.json()) == 3
    _check_error(client.post("/v1/search", data={"text": "a frog", "k": "three"}), 400)
