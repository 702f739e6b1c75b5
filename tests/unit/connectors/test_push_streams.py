"""store push writes a page on parallel streams (a server: about one per shard) before it records the page."""

from __future__ import annotations

import numpy as np

from mmalign.connectors.push import upsert_parallel
from mmalign.connectors.store import PointData, VectorStore
from mmalign.schemas import StoreConfig


def test_three_streams_write_every_point_of_a_page_once(tmp_path):
    rows = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    with VectorStore(StoreConfig(path=str(tmp_path / "q"))) as vs:
        vs.create_collection("items", 8)
        upsert_parallel(vs, "items", [PointData(f"p{i}", {"fused": r}) for i, r in enumerate(rows)], 64, 3)
        assert vs.count("items") == 1000
        got = {p.payload["item_id"]: p.vector["fused"] for p in vs.retrieve("items", ["p0", "p999"], with_vectors=True)}
        np.testing.assert_allclose(got["p999"], rows[999], atol=1e-6)
