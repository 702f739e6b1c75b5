"""`mmalign serve` over HTTP: a real uvicorn server on 127.0.0.1, tiny towers, the embedded store."""

from __future__ import annotations

import base64
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from mmalign.connectors.store import VectorStore  # noqa: E402
from mmalign.plugin.index.ingest import ingest  # noqa: E402
from mmalign.plugin.index.search import Searcher  # noqa: E402
from mmalign.plugin.serve.app import BackgroundServer, create_app  # noqa: E402
from mmalign.plugin.serve.config import ServeConfig  # noqa: E402
from mmalign.plugin.serve.service import Service  # noqa: E402
from mmalign.schemas import Interaction, Modality, StoreConfig  # noqa: E402
from tests.conftest import write_corrupt_png, write_png, write_wav  # noqa: E402
from tests.tiny_catalog import N_ITEMS  # noqa: E402

QUERIES = ["a red frog", "a big green tree", "a small blue car", "the dog", "a cat on a house", "a coin", "red"]
#: No 4xx/5xx message may name a file: no absolute path, no traceback.
LEAK = re.compile(r"(/tmp/|/home/|/usr/|/work/|\.py\b|Traceback|File \")")


def _ingest(trained, store, bundle=None):
    base, catalog = trained
    return ingest(
        catalog,
        bundle=bundle or base / "bundle",
        collection="items",
        store=store,
        features_dir=base / "features",
        device="cpu",
    )


def make_service(trained, store, pool, **overrides) -> Service:
    base, _ = trained
    settings = {
        "collection": "items",
        "store": StoreConfig(path=":memory:"),
        "device": "cpu",
        "media_root": base / "catalog",
        "max_body_bytes": 64 << 10,
        "max_wait_ms": 30.0,
        **overrides,
    }
    service = Service(ServeConfig(**settings), store=store, encoder_pool=pool)
    service.load()
    return service


@pytest.fixture(scope="module")
def pool():
    return {}


@pytest.fixture(scope="module")
def store(trained):
    from mmalign.plugin.recommend.recommender import Recommender

    with VectorStore(StoreConfig(path=":memory:")) as vs:
        _ingest(trained, vs)
        likes = [("u1", "item0"), ("u1", "item2"), ("u1", "item4"), ("u2", "item1"), ("u2", "item0")]
        Recommender("items", store=vs).rebuild_users([Interaction(user_id=u, item_id=i) for u, i in likes])
        yield vs


@pytest.fixture(scope="module")
def server(trained, store, pool):
    service = make_service(trained, store, pool)
    with BackgroundServer(create_app(service, watch_interval_s=0)) as srv:
        srv.service = service
        yield srv


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def searcher(store):
    with Searcher("items", store=store, device="cpu") as s:
        yield s


def _same_hits(got: list[dict], expected) -> None:
    """The same hits and scores; items with tied scores (hybrid search fuses ranks) may come in either order,
    and a tie at the k-th place may be broken either way."""
    np.testing.assert_allclose([h["score"] for h in got], [h.score for h in expected], atol=1e-4)
    for g, w in zip(got, expected):
        tied = {h.id for h in expected if abs(h.score - w.score) <= 1e-4}
        assert g["id"] == w.id or (g["id"] in tied or abs(g["score"] - w.score) <= 1e-4), (g["id"], w.id)
    same = {h.id: h for h in expected}
    assert all(g["payload"] == same[g["id"]].payload for g in got if g["id"] in same)


def _check_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "code"} and body["detail"], body
    assert not LEAK.search(body["detail"]), body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


# -- endpoints --------------------------------------------------------------------------------------------
def test_health_ready_page_docs(client, server):
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["bundle_id"] == server.service.generation.bundle_id
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "Content-Security-Policy" in page.headers
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").status_code == 200
    spec = client.get("/openapi.json").json()
    search = spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert set(search) == {"application/json", "multipart/form-data"}
    assert {"/v1/recommend", "/v1/items/{item_id}", "/v1/collections", "/metrics"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_text_search_is_the_cli_contract(client, searcher):
    response = client.post("/v1/search", json={"text": "a red frog", "using": "image", "k": 5})
    assert response.status_code == 200
    hits = response.json()
    assert all(set(h) == {"id", "score", "payload"} for h in hits)
    _same_hits(hits, searcher.search(text=["a red frog"], using="image", k=5))


def test_image_query_as_base64_and_as_upload(client, searcher, trained):
    base, _ = trained
    path = base / "catalog" / "img3.png"
    expected = searcher.search(image=[path], using="text", k=4)
    as_json = client.post(
        "/v1/search", json={"image": base64.b64encode(path.read_bytes()).decode(), "using": "text", "k": 4}
    )
    _same_hits(as_json.json(), expected)
    data_url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    _same_hits(client.post("/v1/search", json={"image": [data_url], "using": "text", "k": 4}).json(), expected)
    upload = client.post(
        "/v1/search", files={"image": ("photo.png", path.read_bytes(), "image/png")}, data={"using": "text", "k": "4"}
    )
    _same_hits(upload.json(), expected)


def test_audio_query_upload_and_several_inputs(client, searcher, trained):
    base, _ = trained
    sound = base / "catalog" / "snd3.wav"
    expected = searcher.search(audio=[sound], k=5)
    got = client.post("/v1/search", files={"audio": ("clip.wav", sound.read_bytes(), "audio/wav")}, data={"k": "5"})
    _same_hits(got.json(), expected)
    image = base / "catalog" / "img6.png"
    fused = searcher.search(text=["a red frog"], image=[image], audio=[sound], k=6)
    got = client.post(
        "/v1/search",
        files=[("image", ("i.png", image.read_bytes())), ("audio", ("a.wav", sound.read_bytes()))],
        data={"text": "a red frog", "k": "6"},
    )
    _same_hits(got.json(), fused)


def test_like_and_filters(client, searcher):
    got = client.post("/v1/search", json={"like": "item0", "filters": {"group": "odd"}, "k": 6}).json()
    assert got and all(h["payload"]["metadata"]["group"] == "odd" for h in got)
    assert "item0" not in {h["id"] for h in got}
    _same_hits(got, searcher.search(like=["item0"], filters={"group": ["odd"]}, k=6))
    form = client.post("/v1/search", data={"like": "item0", "filter": "group=odd", "k": "6"}).json()
    assert [h["id"] for h in form] == [h["id"] for h in got]
    numbers = client.post("/v1/search", json={"text": "a cat", "filters": {"metadata.n": [3, 4, 5]}, "k": 10}).json()
    assert {h["id"] for h in numbers} == {"item3", "item4", "item5"}


def test_items_and_collections(client, server, store):
    item = client.get("/v1/items/item0").json()
    assert item["id"] == "item0" and item["payload"]["metadata"] == {"group": "even", "n": 0}
    _check_error(client.get("/v1/items/no-such-item"), 404, "unknown_item")
    [info] = client.get("/v1/collections").json()
    assert info["name"] == "items" and info["alias_of"] == "items__v1" and info["points"] == N_ITEMS
    assert info["bundle_id"] == info["served_bundle_id"] == server.service.generation.bundle_id
    assert [v["name"] for v in info["versions"]] == ["items__v1"] and info["versions"][0]["live"]
    assert info["users"]["name"] == "items_users" and info["users"]["points"] == 2
    assert info["filters"]["group"] == ["even", "odd"] and set(info["modalities"]) == {"image", "text", "audio"}


def test_recommend_user_and_anonymous_session(client):
    user = client.post("/v1/recommend", json={"user_id": "u1", "k": 5}).json()
    assert len(user) == 5 and not {"item0", "item2", "item4"} & {h["id"] for h in user}
    with_seen = client.post("/v1/recommend", json={"user_id": "u1", "k": N_ITEMS, "include_seen": True}).json()
    assert {"item0", "item2", "item4"} <= {h["id"] for h in with_seen}
    cold = client.post("/v1/recommend", json={"user_id": "newcomer", "k": 2}).json()
    assert len(cold) == 2 and cold[0]["id"] == "item0"  # popularity: item0 is liked twice
    session = client.post("/v1/recommend", json={"liked": ["item3"], "disliked": ["item4"], "k": 5}).json()
    assert len(session) == 5 and not {"item3", "item4"} & {h["id"] for h in session}
    odd = client.post("/v1/recommend", json={"liked": ["item3"], "k": 5, "filters": {"group": "odd"}}).json()
    assert all(h["payload"]["metadata"]["group"] == "odd" for h in odd)
    _check_error(client.post("/v1/recommend", json={"user_id": "u1", "liked": ["item1"]}), 400)
    _check_error(client.post("/v1/recommend", json={"k": 3}), 400, "no_query")
    _check_error(client.post("/v1/recommend", json={"liked": ["nope"]}), 404, "unknown_item")
    _check_error(client.post("/v1/recommend", json={"user_id": "u1", "k": 0}), 400, "bad_k")
    _check_error(client.post("/v1/recommend", json={"user_id": "u1", "strategy": "magic"}), 400)
    _check_error(client.post("/v1/recommend", json={"user_id": "u1", "wat": 1}), 400)


# -- bad input ---------------------------------------------------------------------------------------------
BAD_JSON = [
    ({}, 400, "no_query"),
    ({"text": []}, 400, "no_query"),
    ({"text": "   "}, 400, None),
    ({"text": "a", "using": "smell"}, 400, None),
    ({"text": "a", "fusion": "max"}, 400, None),
    ({"text": "a", "k": 0}, 400, "bad_k"),
    ({"text": "a", "k": 101}, 400, "bad_k"),
    ({"text": "a", "k": "many"}, 400, None),
    ({"text": "a", "filters": {"colour": "red"}}, 400, "unknown_filter"),
    ({"text": "a", "filters": {"group": 1.5}}, 400, None),
    ({"text": "a", "wat": 1}, 400, None),
    ({"text": ["a"] * 9}, 400, None),
    ({"image": "not base64!!"}, 400, None),
    ({"image": base64.b64encode(b"just some text, not an image").decode()}, 415, "unsupported_media"),
    ({"audio": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 64).decode()}, 415, "unsupported_media"),
    ({"like": ["no-such-item"]}, 404, "unknown_item"),
]


@pytest.mark.parametrize("body,status,code", BAD_JSON, ids=[f"{i}-{s}" for i, (_, s, _) in enumerate(BAD_JSON)])
def test_bad_json_input_is_a_clear_4xx(client, body, status, code):
    _check_error(client.post("/v1/search", json=body), status, code)


def test_bad_bodies_uploads_and_media(client, tmp_path):
    _check_error(client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"}), 400)
    _check_error(client.post("/v1/search", content=b"[1, 2]", headers={"content-type": "application/json"}), 400)
    _check_error(client.post("/v1/search", content=b"text=a", headers={"content-type": "text/plain"}), 415)
    corrupt = write_corrupt_png(tmp_path / "broken.png").read_bytes()
    body = _check_error(client.post("/v1/search", files={"image": ("broken.png", corrupt)}), 422, "bad_media")
    assert "broken.png" in body["detail"] and "cannot decode" in body["detail"]
    empty_wav = write_wav(tmp_path / "t.wav").read_bytes()[:44]  # a header and no samples
    _check_error(client.post("/v1/search", files={"audio": ("t.wav", empty_wav)}), 422, "bad_media")
    _check_error(client.post("/v1/search", files={"image": ("notes.txt", b"hello there")}), 415, "unsupported_media")
    _check_error(client.post("/v1/search", files={"audio": ("x.png", (tmp_path / "broken.png").read_bytes())}), 415)
    _check_error(client.post("/v1/search", data={"text": "a", "colour": "red"}), 400)
    _check_error(client.post("/v1/search", data={"text": "a", "filter": "nokeyvalue"}), 400)


def test_oversized_bodies_are_refused(client):
    big = "a " * (40 << 10)  # 80 KiB, over the 64 KiB limit of this service
    _check_error(client.post("/v1/search", json={"text": big}), 413, "too_large")
    _check_error(client.post("/v1/search", files={"image": ("big.png", b"\x89PNG" + b"0" * (70 << 10))}), 413)

    def chunks():  # no Content-Length: counted while it is read
        for _ in range(40):
            yield b'{"text": "' + b"a" * 4096

    _check_error(client.post("/v1/search", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert client.post("/v1/search", json={"text": "a frog"}).status_code == 200  # nothing else affected


def test_service_is_unharmed_after_bad_input(client, server):
    for body, _, _ in BAD_JSON[:5]:
        client.post("/v1/search", json=body)
    assert client.get("/readyz").json()["ready"] is True
    assert client.post("/v1/search", json={"text": "a red frog", "k": 3}).status_code == 200


# -- API key ------------------------------------------------------------------------------------------------
def test_api_key_is_required_on_the_api(trained, store, pool):
    service = make_service(trained, store, pool, api_key="s3cret-key")
    with BackgroundServer(create_app(service, watch_interval_s=0)) as srv, httpx.Client(base_url=srv.url) as c:
        for path in ("/v1/collections", "/v1/items/item0", "/metrics", "/v1/media/image/item0"):
            _check_error(c.get(path), 401, "unauthorized")
            _check_error(c.get(path, headers={"X-API-Key": "wrong"}), 401)
        refused = c.post("/v1/search", json={"text": "a"}, headers={"Authorization": "Bearer nope"})
        _check_error(refused, 401)
        assert refused.headers["www-authenticate"] == "Bearer"
        bearer = {"Authorization": "Bearer s3cret-key"}
        assert c.post("/v1/search", json={"text": "a"}, headers=bearer).status_code == 200
        assert c.get("/v1/items/item0", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        with httpx.Client(base_url=srv.url, cookies={"mmalign_api_key": "s3cret-key"}) as page:
            assert page.get("/v1/media/image/item0").status_code == 200  # the page's cookie
        for open_path in ("/", "/healthz", "/readyz", "/static/app.js"):
            assert c.get(open_path).status_code == 200, open_path


# -- micro-batching ------------------------------------------------------------------------------------------
def _post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(bodies))

    def one(body):
        with httpx.Client(base_url=url, timeout=60) as c:
            barrier.wait()
            return c.post("/v1/search", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_concurrent_requests_are_batched_and_answered_individually(server, searcher):
    metrics = server.service.metrics
    sum_before, batches_before = metrics.batch_size.totals("text")
    texts = [f"{q} {w}" for q in QUERIES for w in ("tree", "coin")][:12]
    responses = _post_all(server.url, [{"text": t, "k": 3} for t in texts])
    for text, response in zip(texts, responses):
        assert response.status_code == 200, response.text
        _same_hits(response.json(), searcher.search(text=[text], k=3))
    sum_after, batches_after = metrics.batch_size.totals("text")
    assert sum_after - sum_before == len(texts)
    assert batches_after - batches_before < len(texts), "every request was encoded alone"
    assert 'mmalign_batch_size_bucket{modality="text",le="1"}' in metrics.render()


def test_a_failing_request_never_fails_its_batch_mates(server, searcher, monkeypatch, caplog):
    encoder = server.service.generation.encoder.encoder(Modality.TEXT)
    original = encoder.encode

    def flaky(inputs, batch_size=None, **kw):
        if "boom" in inputs:
            raise RuntimeError("the encoder exploded on this input")
        out = original(inputs, batch_size=batch_size)
        out[[i for i, t in enumerate(inputs) if t == "nan"]] = np.nan
        return out

    monkeypatch.setattr(encoder, "encode", flaky)
    retries_before = server.service.metrics.batch_failures.value("text")
    texts = ["a red frog", "boom", "a blue car", "nan", "the dog", "a coin"]
    responses = _post_all(server.url, [{"text": t, "k": 3} for t in texts])
    by_text = dict(zip(texts, responses))
    for text in ("a red frog", "a blue car", "the dog", "a coin"):
        assert by_text[text].status_code == 200
        _same_hits(by_text[text].json(), searcher.search(text=[text], k=3))
    _check_error(by_text["boom"], 500, "internal")
    _check_error(by_text["nan"], 422, "bad_media")
    assert server.service.metrics.batch_failures.value("text") > retries_before  # it was inside a batch
    assert any(r.exc_info and "exploded" in str(r.exc_info[1]) for r in caplog.records)  # logged with traceback


def test_model_process_batches_isolates_bad_media_and_comes_back_after_a_crash(
    trained, store, pool, searcher, tmp_path
):
    import os
    import signal
    import time

    base, _ = trained
    service = make_service(trained, store, pool, model_process=True, threads=1, max_batch={"image": 4})
    with (
        BackgroundServer(create_app(service, watch_interval_s=0)) as srv,
        httpx.Client(base_url=srv.url, timeout=120) as c,
    ):
        first = service.model.pid
        assert first and first != os.getpid()
        texts = QUERIES[:6]
        responses = _post_all(srv.url, [{"text": t, "k": 3} for t in texts])
        for text, response in zip(texts, responses):
            _same_hits(response.json(), searcher.search(text=[text], k=3))
        assert service.metrics.batch_size.totals("text")[1] < len(texts)  # batched in the model process

        pictures = [base / "catalog" / f"img{i}.png" for i in (1, 2, 4)]
        corrupt = write_corrupt_png(tmp_path / "broken.png")
        bodies = [{"image": base64.b64encode(p.read_bytes()).decode(), "k": 3} for p in [*pictures, corrupt]]
        *good, bad = _post_all(srv.url, bodies)
        for picture, response in zip(pictures, good):
            _same_hits(response.json(), searcher.search(image=[picture], k=3))
        assert "cannot decode" in _check_error(bad, 422, "bad_media")["detail"]
        assert service.metrics.batch_size.totals("image")[1] < len(bodies)  # the corrupt one was in a batch

        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while service.model.pid == first and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        again = c.post("/v1/search", json={"text": "a red frog", "k": 3})  # a new model process answers
        print(f"restart took {time.monotonic() - started:.1f}s")
        assert again.status_code == 200 and service.model.pid not in (None, first)
        _same_hits(again.json(), searcher.search(text=["a red frog"], k=3))
    assert service.model.pid is None  # stopped with the service


# -- the alias moves ------------------------------------------------------------------------------------------
def test_alias_swap_is_followed_and_a_bundle_that_cannot_load_is_refused(trained, pool, tmp_path, monkeypatch):
    from mmalign.plugin.index.reembed import reembed
    from mmalign.plugin.index.versions import rollback
    from mmalign.plugin.serve import generations as service_module

    base, _ = trained
    b1, b2 = tmp_path / "b1", tmp_path / "b2"
    shutil.copytree(base / "bundle", b1)
    shutil.copytree(base / "bundle2", b2)
    query = {"text": "a red frog", "k": 5}
    with VectorStore(StoreConfig(path=":memory:")) as vs:
        _ingest(trained, vs, bundle=b1)
        service = make_service(trained, vs, pool, model_process=True)  # as `mmalign serve` runs
        first = service.generation.bundle_id
        with (
            BackgroundServer(create_app(service, watch_interval_s=0)) as srv,
            httpx.Client(base_url=srv.url, timeout=120) as c,
        ):
            with Searcher("items", store=vs, device="cpu") as old:
                _same_hits(c.post("/v1/search", json=query).json(), old.search(text=["a red frog"], k=5))
            report = reembed("items", bundle=b2, store=vs, features_dir=base / "features", device="cpu")
            assert report.swapped
            answer = c.post("/v1/search", json=query)
            assert answer.status_code == 200
            with Searcher("items", store=vs, device="cpu") as new:
                assert new.bundle.bundle_id != first
                _same_hits(answer.json(), new.search(text=["a red frog"], k=5))
            assert service.generation.bundle_id == new.bundle.bundle_id
            [info] = c.get("/v1/collections").json()
            assert info["alias_of"] == "items__v2" and info["served_bundle_id"] == info["bundle_id"]
            assert service.metrics.reloads.value("ok") == 1

            # back to v1, whose bundle folder has gone: refused, never answered with the v2 student
            b1.rename(tmp_path / "b1-moved")
            rollback(vs, "items")
            refused = _check_error(c.post("/v1/search", json=query), 503, "stale_bundle")
            assert first in refused["detail"] and "b1" not in refused["detail"].replace(first, "")  # no folder name
            assert c.get("/readyz").status_code == 503
            _check_error(c.post("/v1/search", json={"like": ["item1"]}), 503, "stale_bundle")
            (tmp_path / "b1-moved").rename(b1)
            monkeypatch.setattr(service_module, "RELOAD_RETRY_S", 0.0)
            again = c.post("/v1/search", json=query)
            assert again.status_code == 200 and service.generation.bundle_id == first
            with Searcher("items", store=vs, device="cpu") as back:
                _same_hits(again.json(), back.search(text=["a red frog"], k=5))
            assert c.get("/readyz").json()["ready"] is True


# -- media ----------------------------------------------------------------------------------------------------
def test_media_is_served_from_the_root_only(trained, store, pool, tmp_path):
    base, _ = trained
    root = tmp_path / "media"
    shutil.copytree(base / "catalog", root)
    outside = write_png(tmp_path / "secret.png")
    (root / "img7.png").unlink()
    (root / "img7.png").symlink_to(outside)  # an escape by symlink, planted after ingest
    service = make_service(trained, store, pool, media_root=root)
    [point] = store.retrieve("items", ["item5"])
    try:
        store.overwrite_payload("items", "item5", {**point.payload, "image": "../secret.png"})
        with BackgroundServer(create_app(service, watch_interval_s=0)) as srv, httpx.Client(base_url=srv.url) as c:
            image = c.get("/v1/media/image/item0")
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            assert image.content == (root / "img0.png").read_bytes()
            assert "sandbox" in image.headers["content-security-policy"]
            sound = c.get("/v1/media/audio/item0")
            assert sound.status_code == 200 and sound.headers["content-type"] == "audio/wav"
            _check_error(c.get("/v1/media/image/item5"), 404, "no_media")  # ../ in the payload
            _check_error(c.get("/v1/media/image/item7"), 404, "no_media")  # symlink out of the root
            _check_error(c.get("/v1/media/audio/item1"), 404, "no_media")  # has no sound
            _check_error(c.get("/v1/media/video/item0"), 404)
            _check_error(c.get("/v1/media/image/no-such-item"), 404, "unknown_item")
            assert c.get("/v1/media/image/..%2F..%2Fetc%2Fpasswd").status_code == 404
    finally:
        store.overwrite_payload("items", "item5", point.payload)


def test_media_root_defaults_to_the_catalogs_and_none_serves_no_media(client, trained, store, pool):
    base, _ = trained
    live = store.resolve_alias("items")
    assert store.collection_record(live).media_root == str((base / "catalog").resolve())  # ingest's
    service = make_service(trained, store, pool, media_root=None)
    with BackgroundServer(create_app(service, watch_interval_s=0)) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get("/v1/media/image/item0").content == (base / "catalog" / "img0.png").read_bytes()
    store.update_record(live, media_root=None)  # a collection that does not say where its media is
    try:
        service = make_service(trained, store, pool, media_root=None)
        with BackgroundServer(create_app(service, watch_interval_s=0)) as srv, httpx.Client(base_url=srv.url) as c:
            _check_error(c.get("/v1/media/image/item0"), 404, "media_off")
            assert c.get("/v1/collections").json()[0]["media"] is False
    finally:
        store.update_record(live, media_root=str((base / "catalog").resolve()))


# -- metrics ----------------------------------------------------------------------------------------------------
def test_metrics_are_prometheus_text(client):
    client.post("/v1/search", json={"text": "a frog", "k": 2})
    client.post("/v1/search", json={"k": 2})
    text = client.get("/metrics").text
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? [-+0-9.eInf]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert 'mmalign_http_requests_total{route="/v1/search",method="POST",status="200"}' in text
    assert 'mmalign_http_requests_total{route="/v1/search",method="POST",status="400"}' in text
    for stage in ("queue", "encode", "query"):
        assert f'mmalign_stage_seconds_count{{stage="{stage}"' in text
    assert "mmalign_batch_size_sum" in text and "mmalign_bundle_info{" in text


# -- the command ---------------------------------------------------------------------------------------------
def test_cli_serve_options_and_a_missing_collection_is_one_line(tmp_path):
    import subprocess
    import sys

    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    runner = CliRunner()
    usage = runner.invoke(main, ["serve", "--help"])
    assert usage.exit_code == 0
    for option in ("--api-key", "--qdrant-api-key", "--media-root", "--no-batching", "--max-body-mb", "--port"):
        assert option in usage.output
    result = runner.invoke(main, ["serve", "--collection", "nope", "--qdrant-path", str(tmp_path / "store")])
    assert result.exit_code == 1 and "Error: collection 'nope' does not exist" in result.output
    code = "import sys, mmalign.plugin.cli; assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0
