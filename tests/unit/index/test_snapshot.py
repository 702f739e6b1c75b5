"""``store snapshot`` / ``restore`` (issue #23): a backup of a version in one file, restored exactly as the
alias's next version; a damaged archive or a damaged version is refused; a stopped restore resumes."""

from __future__ import annotations

import numpy as np
import pytest

from mmalign.connectors.errors import StoreError
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index import snapshot as snapshots
from mmalign.plugin.index.snapshot import read_manifest, restore_collection, snapshot_collection
from mmalign.plugin.index.verify import verify_collection
from mmalign.plugin.index.versions import rollback
from mmalign.schemas import StoreConfig
from tests.tiny_catalog import N_ITEMS


def _points(store, name):
    got = {}
    for p in store.scroll(name, with_vectors=True, with_sparse=True):
        vectors = {k: (v if hasattr(v, "indices") else np.asarray(v)) for k, v in (p.vector or {}).items()}
        got[p.payload["item_id"]] = (vectors, p.payload)
    return got


def _assert_same(got, want):
    assert got.keys() == want.keys()
    for item, (vectors, payload) in want.items():
        assert got[item][1] == payload, item
        assert got[item][0].keys() == vectors.keys(), item
        for name, vector in vectors.items():
            if hasattr(vector, "indices"):
                assert got[item][0][name] == vector, (item, name)
            else:
                np.testing.assert_array_equal(got[item][0][name], vector, err_msg=f"{item}/{name}")


def test_a_snapshot_restores_exactly_into_another_store_under_the_same_alias(live, store, tmp_path, engine):
    report = snapshot_collection(store, "items", tmp_path / "items.snapshot")
    assert (report.version, report.points) == ("items__v1", N_ITEMS) and len(report.sha256) == 64
    assert read_manifest(tmp_path / "items.snapshot")["alias"] == "items"
    with VectorStore(StoreConfig(path=":memory:", engine=engine)) as other:
        restored = restore_collection(other, tmp_path / "items.snapshot")
        assert (restored.version, restored.points, restored.previous) == ("items__v1", N_ITEMS, None)
        assert other.resolve_alias("items") == "items__v1"
        _assert_same(_points(other, "items"), _points(store, "items"))
        record = other.collection_record("items")
        assert record.state == "ready" and record.points == N_ITEMS
        assert record.bundle_id == store.collection_record("items").bundle_id
        assert verify_collection(other, "items").ok


def test_a_restore_into_the_same_store_is_the_next_version_and_rollback_returns(live, store, tmp_path):
    snapshot_collection(store, "items", tmp_path / "s")
    restored = restore_collection(store, tmp_path / "s")
    assert (restored.version, restored.previous) == ("items__v2", "items__v1")
    assert store.resolve_alias("items") == "items__v2"
    _assert_same(_points(store, "items__v2"), _points(store, "items__v1"))
    assert rollback(store, "items") == "items__v1"


def test_a_damaged_archive_is_refused_naming_the_part(live, store, tmp_path):
    path = tmp_path / "s"
    snapshot_collection(store, "items", path)
    data = bytearray(path.read_bytes())
    start = data.index(b'"item_ids"')  # inside part-00000.json
    data[start + 20] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="part part-00000.json of the snapshot does not match its SHA-256"):
        restore_collection(store, path, alias="copy")
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(StoreError, match="is not a complete mmalign snapshot"):
        restore_collection(store, path, alias="copy")


def test_a_damaged_version_is_not_snapshotted(live, store, tmp_path):
    store.overwrite_payload("items", "item5", {"item_id": "item6", "modalities": ["text"]})
    wanted = r"items__v1 is damaged .* repair it first \(repair_collection; CLI: `mmalign store verify --collection"
    with pytest.raises(StoreError, match=wanted):
        snapshot_collection(store, "items", tmp_path / "s")
    assert not (tmp_path / "s").exists() and not list(tmp_path.iterdir())  # no partial file left


def test_a_stopped_restore_resumes_on_the_version_it_was_building(live, store, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshots, "PART_POINTS", 10)
    snapshot_collection(store, "items", tmp_path / "s")
    with VectorStore(StoreConfig(path=":memory:")) as other:
        real, calls = other.upsert, []

        def failing(name, points, **kw):
            calls.append(len(points))
            if len(calls) == 2:
                raise StoreError("the disk went away")
            return real(name, points, **kw)

        monkeypatch.setattr(other, "upsert", failing)
        with pytest.raises(StoreError, match="the disk went away"):
            restore_collection(other, tmp_path / "s")
        assert other.resolve_alias("items") is None  # the alias moves only when the version is complete
        restored = restore_collection(other, tmp_path / "s")
        assert restored.resumed and restored.version == "items__v1" and other.count("items") == N_ITEMS
