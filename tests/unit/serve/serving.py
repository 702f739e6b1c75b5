"""The tiny collection served over HTTP on 127.0.0.1, for tests that need the whole app (page, docs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.plugin.serve.app import BackgroundServer, create_app
from mmalign.plugin.serve.config import ServeConfig
from mmalign.plugin.serve.service import Service
from mmalign.schemas import StoreConfig


@contextmanager
def serve_tiny_collection(trained, **settings) -> Iterator[tuple[BackgroundServer, VectorStore]]:
    """Ingest the tiny catalog as ``items`` into an in-memory store and serve it (``settings``: ServeConfig)."""
    base, catalog = trained
    with VectorStore(StoreConfig(path=":memory:")) as store:
        ingest(
            catalog,
            bundle=base / "bundle",
            collection="items",
            store=store,
            features_dir=base / "features",
            device="cpu",
        )
        service = Service(ServeConfig(collection="items", device="cpu", **settings), store=store)
        service.load()
        with BackgroundServer(create_app(service, watch_interval_s=0)) as server:
            yield server, store
