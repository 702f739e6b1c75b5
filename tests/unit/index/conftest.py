"""Fixtures of the index tests: the tiny catalog ingested into the store under test."""

import pytest

from mmalign.plugin.index.ingest import ingest


@pytest.fixture
def live(trained, store):
    """The tiny catalog ingested into ``store`` as the alias ``items`` (``items__v1``); (base, catalog)."""
    base, catalog = trained
    ingest(
        catalog, bundle=base / "bundle", collection="items", store=store, features_dir=base / "features", device="cpu"
    )
    return base, catalog
