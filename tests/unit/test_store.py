"""The Qdrant store on the embedded engine (memory and path)."""

import numpy as np
import pytest

from mmalign.connectors.store import PointData, StoreError, VectorStore, point_id
from mmalign.schemas import StoreConfig


@pytest.fixture(params=["memory", "path"])
def store(request, tmp_path):
    path = ":memory:" if request.param == "memory" else str(tmp_path / "qdrant")
    with VectorStore(StoreConfig(path=path)) as vs:
        yield vs


def _points(n, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return [
        PointData(f"item-{i}", {"fused": rng.normal(size=dim), "text": rng.normal(size=dim)}, {"n": i})
        for i in range(n)
    ]


def test_named_vectors_and_record(store):
    record = store.create_collection("c__v1", 4, bundle_id="b1")
    assert (record.dim, record.bundle_id) == (4, "b1")
    assert store.vector_sizes("c__v1") == {"image": 4, "text": 4, "audio": 4, "fused": 4}
    assert store.collection_record("c__v1").bundle_id == "b1"
    with pytest.raises(StoreError, match="already exists"):
        store.create_collection("c__v1", 4)


def test_upsert_is_idempotent_and_points_carry_only_their_vectors(store):
    store.ensure_collection("c", 4, bundle_id="b1")
    assert store.upsert("c", _points(10), batch_size=3) == 10
    store.upsert("c", _points(10, seed=1))
    assert store.count("c") == 10
    [point] = store.retrieve("c", ["item-3"], with_vectors=True)
    assert point.id == point_id("item-3") and set(point.vector) == {"fused", "text"}
    assert point.payload == {"item_id": "item-3", "n": 3}


def test_bundle_and_dim_mismatch_are_refused(store):
    store.ensure_collection("c", 4, bundle_id="b1")
    with pytest.raises(StoreError, match="built with bundle 'b1', not 'b2'"):
        store.ensure_collection("c", 4, bundle_id="b2")
    with pytest.raises(StoreError, match="size 4, not 8"):
        store.ensure_collection("c", 8, bundle_id="b1")


def test_bad_vectors_are_refused(store):
    store.ensure_collection("c", 4)
    with pytest.raises(StoreError, match="NaN"):
        store.upsert("c", [PointData("x", {"fused": [np.nan, 0, 0, 0]})])
    with pytest.raises(StoreError, match="needs a 'fused' vector"):
        store.upsert("c", [PointData("x", {"text": [1, 0, 0, 0]})])
    with pytest.raises(StoreError, match="unknown vector name 'video'"):
        store.upsert("c", [PointData("x", {"fused": [1, 0, 0, 0], "video": [1, 0, 0, 0]})])


def test_alias_swap(store):
    store.create_collection("c__v1", 4, bundle_id="b1")
    store.create_collection("c__v2", 4, bundle_id="b2")
    store.set_alias("c", "c__v1")
    assert store.resolve_alias("c") == "c__v1" and store.collection_record("c").bundle_id == "b1"
    store.set_alias("c", "c__v2")
    assert store.resolve_alias("c") == "c__v2" and store.collection_record("c").bundle_id == "b2"
    with pytest.raises(StoreError, match="missing collection"):
        store.set_alias("c", "c__v9")
    assert store.resolve_alias("c") == "c__v2"


def test_embedded_path_persists(tmp_path):
    path = str(tmp_path / "q")
    with VectorStore(StoreConfig(path=path)) as vs:
        vs.ensure_collection("c", 4, bundle_id="b")
        vs.upsert("c", _points(5))
    with VectorStore(StoreConfig(path=path)) as vs:
        assert vs.count("c") == 5 and vs.collection_record("c").bundle_id == "b"


class FlakyClient:
    """Fails with a connection error ``failures`` times, then answers."""

    def __init__(self, failures, exc=ConnectionError("connection refused")):
        self.failures, self.calls, self.exc = failures, 0, exc

    def collection_exists(self, name):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return True


def test_server_calls_retry_with_backoff_then_fail_clearly(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    config = StoreConfig(url="http://127.0.0.1:1", max_retries=3)
    assert VectorStore(config, client=FlakyClient(2)).collection_exists("c")
    client = FlakyClient(10)
    with pytest.raises(StoreError, match="after 4 attempt"):
        VectorStore(config, client=client).collection_exists("c")
    assert client.calls == 4
    bad_request = FlakyClient(10, exc=ValueError("wrong vector size"))
    with pytest.raises(StoreError, match="after 1 attempt"):
        VectorStore(config, client=bad_request).collection_exists("c")


def test_unreachable_server_is_a_clear_error():
    config = StoreConfig(url="http://127.0.0.1:9", max_retries=1, timeout_s=1)
    with pytest.raises(StoreError, match="127.0.0.1:9"):
        VectorStore(config).list_collections()


@pytest.mark.qdrant_server
def test_server_and_embedded_agree():
    import os

    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to compare against")
    results = []
    for config in (StoreConfig(path=":memory:"), StoreConfig(url=url)):
        with VectorStore(config) as vs:
            if vs.collection_exists("mmalign_congruence"):
                vs.delete_collection("mmalign_congruence")
            vs.create_collection("mmalign_congruence", 4, bundle_id="b")
            vs.upsert("mmalign_congruence", _points(20))
            hits = vs.query("mmalign_congruence", [1, 0, 0, 0], limit=5)
            results.append([h.id for h in hits])
            vs.delete_collection("mmalign_congruence")
    assert results[0] == results[1]


def test_retries_are_decided_by_exception_type_and_status():
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    from mmalign.connectors.store import is_transient

    def response(status):
        return UnexpectedResponse(status, "x", b"", httpx.Headers())

    assert is_transient(response(503)) and is_transient(response(429))
    assert not is_transient(response(400)) and not is_transient(response(404))
    assert is_transient(ResponseHandlingException(httpx.ConnectError("refused")))
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    # the words of a message decide nothing
    assert not is_transient(ValueError("connection refused: timeout 503"))


def test_store_held_by_another_client_is_one_clear_error(tmp_path):
    path = str(tmp_path / "held")
    with VectorStore(StoreConfig(path=path)) as first:
        first.list_collections()
        with pytest.raises(StoreError, match="cannot open the store at"):
            VectorStore(StoreConfig(path=path)).list_collections()
