"""The sparse ``lexical`` vector on every engine: BM25 terms computed once (plugin/index/lexical.py), IDF by the
engine; lexical and hybrid (dense + lexical, RRF/weighted RRF/DBSF) queries rank the same on Qdrant Edge,
qdrant-client's local mode and a server."""

import os

import numpy as np
import pytest

from mmalign.connectors.query import Filter, Fused, Match, Nearest, Prefetch, SparseVector
from mmalign.connectors.store import PointData, StoreError, VectorStore
from mmalign.plugin.index.lexical import document_vector, query_vector
from mmalign.schemas import StoreConfig

TEXTS = [
    "A red fire truck.",
    "A fire hydrant on a street.",
    "The red planet Mars.",
    "A blue umbrella in the rain.",
    "A pair of sunglasses.",
    "A soccer ball on green grass.",
    "A slice of pizza with cheese.",
    "A dog face, smiling.",
    "Two dogs playing with a ball.",
    "A Gibson Les Paul guitar, model LP-100.",
    "An umbrella stand.",
    "Sunglasses for a dog.",
]


def _points(dim=8, seed=5):
    rng = np.random.default_rng(seed)
    points = []
    for i, text in enumerate(TEXTS):
        vectors = {"fused": rng.normal(size=dim), "text": rng.normal(size=dim), "lexical": document_vector(text)}
        metadata = {"group": "even" if i % 2 == 0 else "odd"}
        points.append(PointData(f"item{i}", vectors, {"text": text, "metadata": metadata}))
    return points


def _queries(dim=8):
    rng = np.random.default_rng(9)
    dense = rng.normal(size=dim).tolist()
    odd = Filter(must=(Match("metadata.group", ("odd",)),))
    for text in ("umbrella", "red fire", "sunglasses dog", "LP-100 guitar", "balls"):
        lexical = Nearest(query_vector(text), "lexical")
        yield f"lexical {text!r}", {"query": lexical, "limit": 5}
        yield f"lexical {text!r}, filtered", {"query": lexical, "limit": 5, "query_filter": odd}
        both = (Prefetch(Nearest(dense, "fused"), limit=6, filter=odd), Prefetch(lexical, limit=6, filter=odd))
        yield f"hybrid rrf {text!r}", {"query": Fused(both, "rrf"), "limit": 6}
        yield f"hybrid weighted rrf {text!r}", {"query": Fused(both, "rrf", weights=(1.0, 3.0)), "limit": 6}
        yield f"hybrid dbsf {text!r}", {"query": Fused(both, "dbsf"), "limit": 6}


def assert_same_ranking(got, want, atol=1e-4):
    """Same scores in the same order and the same ids, except that points of equal score may swap."""
    assert len(got) == len(want)
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=atol)
    for g in got:
        tied_g = {h.id for h in got if abs(h.score - g.score) <= atol}
        tied_w = {h.id for h in want if abs(h.score - g.score) <= atol}
        assert tied_g == tied_w, (g, want)


def _answers(config: StoreConfig) -> dict:
    with VectorStore(config) as vs:
        if vs.collection_exists("lex"):
            vs.delete_collection("lex")
        vs.create_collection("lex", 8, bundle_id="b")
        try:
            vs.upsert("lex", _points())
            return {name: vs.query("lex", exact=True, **kw) for name, kw in _queries()}
        finally:
            if config.is_server:
                vs.delete_collection("lex")


def test_bm25_ranks_the_same_on_edge_and_local_mode():
    edge = _answers(StoreConfig(path=":memory:", engine="edge"))
    local = _answers(StoreConfig(path=":memory:", engine="local"))
    for name in edge:
        assert_same_ranking(edge[name], local[name]), name
    hits = {name: [h.payload["text"] for h in found] for name, found in edge.items()}
    assert hits["lexical 'umbrella'"][:2] == ["An umbrella stand.", "A blue umbrella in the rain."]  # shorter first
    assert hits["lexical 'LP-100 guitar'"][0] == "A Gibson Les Paul guitar, model LP-100."
    assert set(hits["lexical 'balls'"]) == {"A soccer ball on green grass.", "Two dogs playing with a ball."}
    assert all(t in TEXTS[1::2] for t in hits["lexical 'red fire', filtered"])  # the filter holds in each branch
    assert all(t in TEXTS[1::2] for t in hits["hybrid rrf 'red fire'"])


@pytest.mark.qdrant_server
def test_bm25_ranks_the_same_on_a_server():
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to compare against")
    server = _answers(StoreConfig(url=url, api_key=os.environ.get("QDRANT_API_KEY")))
    edge = _answers(StoreConfig(path=":memory:", engine="edge"))
    for name in edge:
        assert_same_ranking(server[name], edge[name]), name


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_sparse_vectors_are_returned_only_when_asked_for(engine, tmp_path):
    with VectorStore(StoreConfig(path=str(tmp_path / engine), engine=engine)) as vs:
        vs.create_collection("lex", 8)
        assert vs.sparse_vectors("lex") == ["lexical"]
        vs.upsert("lex", _points()[:3])
        [dense] = vs.retrieve("lex", ["item0"], with_vectors=True)
        assert set(dense.vector) == {"fused", "text"}
        [both] = vs.retrieve("lex", ["item0"], with_vectors=True, with_sparse=True)
        assert both.vector["lexical"] == document_vector(TEXTS[0])
        [page] = list(vs.scroll_pages("lex", with_vectors=["lexical"]))
        assert all(isinstance(p.vector["lexical"], SparseVector) for p in page)


def test_a_collection_created_without_sparse_vectors_says_so(tmp_path):
    with VectorStore(StoreConfig(path=str(tmp_path / "s"), engine="edge")) as vs:
        vs.create_collection("old", 8, sparse_vectors=())
        assert vs.sparse_vectors("old") == []
        with pytest.raises(StoreError):
            vs.query("old", Nearest(query_vector("umbrella"), "lexical"))


def test_sparse_and_dense_vectors_cannot_be_mixed_up():
    with VectorStore(StoreConfig(path=":memory:", engine="edge")) as vs:
        vs.create_collection("lex", 8)
        with pytest.raises(StoreError, match="'lexical' is sparse: give a SparseVector"):
            vs.upsert("lex", [PointData("x", {"fused": np.ones(8), "lexical": np.ones(8)})])
        with pytest.raises(StoreError, match="'text' is dense"):
            vs.upsert("lex", [PointData("x", {"fused": np.ones(8), "text": document_vector("a cat")})])
    with pytest.raises(StoreError, match="searched with a sparse vector"):
        Nearest([1.0, 0.0], "lexical")
    with pytest.raises(StoreError, match="searched with a sparse vector"):
        Nearest(query_vector("cat"), "fused")
    with pytest.raises(StoreError, match="indices must be distinct"):
        SparseVector((1, 1), (0.5, 0.5))
    with pytest.raises(StoreError, match="one positive weight per branch"):
        Fused((Prefetch(Nearest([1.0], "fused")),), "rrf", weights=(1.0, 2.0))
    with pytest.raises(StoreError, match="rrf fusion only"):
        Fused((Prefetch(Nearest([1.0], "fused")),), "dbsf", weights=(1.0,))


def test_push_carries_the_lexical_vector_to_the_other_engine(tmp_path):
    from mmalign.connectors.push import push_collection

    query = Nearest(query_vector("umbrella"), "lexical")
    with VectorStore(StoreConfig(path=str(tmp_path / "edge"), engine="edge")) as source:
        source.create_collection("lex__v1", 8, bundle_id="b")
        source.upsert("lex__v1", _points())
        want = source.query("lex__v1", query, limit=3)
        with VectorStore(StoreConfig(path=str(tmp_path / "local"), engine="local")) as target:
            push_collection(source, "lex__v1", target)
            assert target.sparse_vectors("lex__v1") == ["lexical"]
            assert_same_ranking(target.query("lex__v1", query, limit=3), want)
