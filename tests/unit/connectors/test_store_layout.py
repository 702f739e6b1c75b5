"""Server options of a collection's layout go through qdrant-client's create_collection (issue #25)."""

from __future__ import annotations

from qdrant_client import QdrantClient

from mmalign.connectors.store import VectorStore
from mmalign.schemas import StoreConfig

DIM = 16


class RecordingClient(QdrantClient):
    """A real qdrant-client (local mode) that also keeps the arguments of create_collection: the server's
    options (shards, replicas, write consistency) that local mode itself ignores."""

    created: dict = {}

    def create_collection(self, collection_name, **kwargs):
        RecordingClient.created[collection_name] = kwargs
        return super().create_collection(collection_name, **kwargs)


def test_server_options_go_through_the_client_create_call():
    config = StoreConfig(
        path=":memory:",
        engine="local",
        shard_number=3,
        replication_factor=2,
        write_consistency_factor=2,
        quantization="int8",
        vectors_on_disk=True,
    )
    with VectorStore(config, client=RecordingClient(":memory:")) as vs:
        vs.create_collection("items", DIM, bundle_id="b")
        sent = RecordingClient.created["items"]
        assert (sent["shard_number"], sent["replication_factor"], sent["write_consistency_factor"]) == (3, 2, 2)
        fused = sent["vectors_config"]["fused"]
        assert fused.on_disk and fused.quantization_config.scalar.type.value == "int8"
        assert vs.collection_record("items").layout["shard_number"] == 3
