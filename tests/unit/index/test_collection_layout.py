"""Collections built for size: quantization, vectors on disk, shards/replicas/write consistency reach the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmalign.connectors.store import PointData, VectorStore
from mmalign.schemas import StoreConfig

DIM = 16


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize(("kind", "key"), [("int8", "scalar"), ("binary", "binary")])
def test_edge_collections_get_the_quantization_and_on_disk_vectors_asked_for(tmp_path, kind, key):
    config = StoreConfig(path=str(tmp_path / "q"), quantization=kind, vectors_on_disk=True)
    with VectorStore(config) as vs:
        vs.create_collection("items", DIM, bundle_id="b")
        assert vs.collection_record("items").layout == {"quantization": kind, "vectors_on_disk": True}
    engine = json.loads((tmp_path / "q" / "collections" / "items" / "shard" / "edge_config.json").read_text())
    for name in ("image", "text", "audio", "fused"):
        params = engine["vectors"][name]
        assert key in params["quantization_config"] and params["memory"] == "cold", (name, params)


def test_a_plain_store_keeps_the_float_layout(tmp_path):
    with VectorStore(StoreConfig(path=str(tmp_path / "q"))) as vs:
        vs.create_collection("items", DIM, bundle_id="b")
        assert vs.collection_record("items").layout == {}
    engine = json.loads((tmp_path / "q" / "collections" / "items" / "shard" / "edge_config.json").read_text())
    assert "quantization_config" not in engine["vectors"]["fused"]


@pytest.mark.parametrize("kind", ["int8", "binary"])
def test_a_quantized_edge_collection_finds_each_stored_vector_first(tmp_path, kind):
    """Known answer after rescoring: each stored vector's nearest neighbour is itself."""
    rows = unit_rows(300)
    with VectorStore(StoreConfig(path=str(tmp_path / "q"), quantization=kind)) as vs:
        vs.create_collection("items", DIM, bundle_id="b")
        vs.upsert("items", [PointData(f"i{n}", {"fused": row}) for n, row in enumerate(rows)])
        vs.build_index("items")
        for n in range(0, 300, 37):
            hits = vs.query("items", rows[n], using="fused", limit=1)
            assert hits[0].payload["item_id"] == f"i{n}"


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(config: StoreConfig, points: np.ndarray, queries: np.ndarray) -> float:
    exact = np.argsort(-(queries @ points.T), axis=1)[:, :10]
    with VectorStore(config) as vs:
        found = [[int(h.payload["item_id"][1:]) for h in vs.query("items", q, limit=10)] for q in queries]
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))


def test_a_quantized_collection_is_searched_with_oversampled_rescoring_whatever_the_store_config(tmp_path):
    """The layout recorded with the collection decides: a searcher that opens the store with a plain config
    still oversamples the int8 candidates and rescores them (recall@10 against exact search)."""
    data = clustered(4050, 64, seed=3)
    points, queries = data[:4000], data[4000:]
    path = str(tmp_path / "q")
    with VectorStore(StoreConfig(path=path, quantization="int8", indexing_threshold_kb=1)) as vs:
        vs.create_collection("items", 64, bundle_id="b")
        vs.upsert("items", [PointData(f"p{n}", {"fused": row}) for n, row in enumerate(points)])
        vs.build_index("items")
    plain = recall_at_10(StoreConfig(path=path), points, queries)
    no_oversampling = recall_at_10(StoreConfig(path=path, quantization_oversampling=1.0), points, queries)
    assert plain >= 0.99 and plain > no_oversampling, (plain, no_oversampling)
