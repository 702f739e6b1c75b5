"""The write stage: parallel upsert streams (one per shard on a server, 2 to 4; one into an embedded store)."""

from __future__ import annotations

import numpy as np

from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.schemas import StoreConfig
from tests.tiny_catalog import N_ITEMS


def test_streams_follow_the_shards_of_a_server_and_stay_one_for_an_embedded_store():
    assert StoreConfig(path=":memory:").write_streams == 1
    assert StoreConfig(url="http://localhost:6333").write_streams == 2
    assert StoreConfig(url="http://localhost:6333", shard_number=3).write_streams == 3
    assert StoreConfig(url="http://localhost:6333", shard_number=12).write_streams == 4


def test_three_write_streams_store_what_one_stores(trained, tmp_path):
    base, catalog = trained
    stored = {}
    for streams in (1, 3):
        path = tmp_path / f"streams-{streams}"
        report = ingest(
            catalog,
            bundle=base / "bundle",
            collection="items",
            store=StoreConfig(path=str(path)),
            features_dir=base / "features",
            device="cpu",
            chunk_size=4,  # 9 batches, spread over the streams
            write_streams=streams,
        )
        assert report.ok == N_ITEMS and report.stages["upsert"].items == N_ITEMS
        with VectorStore(StoreConfig(path=str(path))) as vs:
            stored[streams] = {
                p.payload["item_id"]: np.asarray(p.vector["fused"]) for p in vs.scroll("items", with_vectors=True)
            }
    assert stored[3].keys() == stored[1].keys()
    for item_id, vector in stored[1].items():
        np.testing.assert_allclose(stored[3][item_id], vector, atol=1e-6)
