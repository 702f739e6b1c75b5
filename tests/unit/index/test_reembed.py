"""Re-embedding into a new version with a zero-downtime alias swap, resumable, verified, reversible."""

import threading

import numpy as np
import pytest

from mmalign.connectors.store import StoreError, VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.plugin.index.reembed import reembed
from mmalign.plugin.index.versions import rollback, version_table
from tests.tiny_catalog import N_ITEMS


@pytest.fixture
def live(trained, store):  # noqa: F811
    base, catalog = trained
    ingest(
        catalog, bundle=base / "bundle", collection="items", store=store, features_dir=base / "features", device="cpu"
    )
    return base, catalog


def _fused(store, name):
    points = store.scroll(name, with_vectors=["fused"])
    return {p.payload["item_id"]: np.asarray(p.vector["fused"]) for p in points}


def test_reproject_swaps_alias_and_matches_a_full_ingest(live, store):
    base, catalog = live
    report = reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features")
    assert report.mode == "reproject" and report.swapped and report.written == N_ITEMS
    assert store.resolve_alias("items") == "items__v2" and store.count("items") == N_ITEMS
    with VectorStore(store.config) as fresh:
        ingest(
            catalog,
            bundle=base / "bundle2",
            collection="items",
            store=fresh,
            features_dir=base / "features",
            device="cpu",
        )
        direct = _fused(fresh, "items")
    reprojected = _fused(store, "items")
    assert direct.keys() == reprojected.keys()
    for key in direct:
        np.testing.assert_allclose(reprojected[key], direct[key], atol=1e-5)
    rows = version_table(store, "items")
    assert [(r.name, r.live, r.state) for r in rows] == [("items__v1", False, "ready"), ("items__v2", True, "ready")]
    v1, v2 = (store.collection_record(f"items__v{n}").extra for n in (1, 2))
    assert v2["media_root"] == v1["media_root"] == str((base / "catalog").resolve())  # where the media lives


def test_queries_during_reembed_always_see_a_complete_version(live, store):
    base, _ = live
    errors, counts, stop = [], [], threading.Event()
    query = np.ones(8, dtype=np.float32).tolist()

    def reader():
        while not stop.is_set():
            try:
                hits = store.query("items", query, limit=5)
                counts.append((store.count("items"), len(hits)))
            except Exception as exc:  # any failure is a downtime
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        report = reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features", chunk_size=5)
    finally:
        stop.set()
        thread.join()
    assert report.swapped and not errors and counts
    assert all(count == N_ITEMS and hits == 5 for count, hits in counts)


def test_killed_reembed_resumes_with_exact_count(live, store):
    base, _ = live

    def crash(chunk):
        if chunk == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        reembed(
            "items", bundle=base / "bundle2", store=store, features_dir=base / "features", chunk_size=5, on_chunk=crash
        )
    assert store.resolve_alias("items") == "items__v1"  # nothing swapped
    partial = store.count("items__v2")
    report = reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features", chunk_size=5)
    assert report.new_version == "items__v2" and report.resumed == partial and report.written == N_ITEMS - partial
    assert report.swapped and store.count("items") == N_ITEMS


def test_failed_verification_leaves_alias_and_rollback_restores(live, store):
    base, catalog = live
    before = _fused(store, "items")
    refused = reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features", min_quality=2.0)
    assert not refused.swapped and "below min_quality" in refused.reason
    assert store.resolve_alias("items") == "items__v1"
    with pytest.raises(StoreError, match="building"):
        rollback(store, "items", to=2)
    done = reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features")
    assert done.swapped and done.new_version == "items__v2"  # the unfinished version is reused
    assert rollback(store, "items") == "items__v1"
    after = _fused(store, "items")
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_other_encoders_need_the_catalog(live, store, monkeypatch):
    base, _ = live
    monkeypatch.setattr("mmalign.plugin.index.reembed._same_encoders", lambda old, new: False)
    with pytest.raises(StoreError, match="give the catalog"):
        reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features")


def test_keep_drops_old_versions(live, store):
    base, _ = live
    reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features", keep=1)
    report = reembed("items", bundle=base / "bundle", store=store, features_dir=base / "features", keep=0)
    # --keep 0 drops every older version but the one that was live: `rollback` must still work
    assert report.new_version == "items__v3" and report.dropped == ["items__v1"]
    assert [r.name for r in version_table(store, "items")] == ["items__v2", "items__v3"]
    assert rollback(store, "items") == "items__v2"


def test_keep_never_drops_the_rollback_target_for_an_abandoned_build(live, store):
    base, _ = live
    refused = reembed(
        "items", bundle=base / "bundle2", store=store, features_dir=base / "features", min_quality=2.0
    )  # leaves items__v2 'building'
    assert not refused.swapped
    store.update_record("items__v2", state="abandoned")  # an operator gave up on it
    done = reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features", keep=1)
    assert done.new_version == "items__v3" and "items__v1" not in done.dropped
    assert rollback(store, "items") == "items__v1"


def test_reencode_refuses_to_drop_live_items_missing_from_the_catalog(live, store, monkeypatch, tmp_path):
    from mmalign.connectors.sources import open_catalog

    base, catalog = live
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(catalog.read_text().splitlines()[:-3]) + "\n")
    monkeypatch.setattr("mmalign.plugin.index.reembed._same_encoders", lambda old, new: False)
    report = reembed(
        "items",
        bundle=base / "bundle2",
        store=store,
        features_dir=base / "features",
        catalog=open_catalog(partial, media_root=catalog.parent),
        device="cpu",
    )
    assert not report.swapped and "3 item(s) of items__v1 are neither in items__v2" in report.reason
    assert store.resolve_alias("items") == "items__v1"


def test_stale_searchers_and_user_vectors_are_refused_after_a_swap(live, store):
    from datetime import datetime, timezone

    from mmalign.plugin.index.search import Searcher
    from mmalign.plugin.recommend.recommender import Recommender
    from mmalign.schemas import Interaction

    base, catalog = live
    searcher = Searcher("items", store=store, device="cpu")
    rec = Recommender("items", store=store)
    rec.rebuild_users([Interaction(user_id="u", item_id="item1", timestamp=datetime.now(timezone.utc))])
    reembed("items", bundle=base / "bundle2", store=store, features_dir=base / "features")
    with pytest.raises(StoreError, match="now serves bundle"):
        searcher.search(image=[catalog.parent / "img1.png"])
    with pytest.raises(StoreError, match="rebuild them"):
        Recommender("items", store=store).recommend("u")
    fresh = Recommender("items", store=store)
    fresh.rebuild_users([Interaction(user_id="u", item_id="item1", timestamp=datetime.now(timezone.utc))])
    assert fresh.recommend("u", k=3)
