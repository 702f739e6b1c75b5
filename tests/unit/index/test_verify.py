"""``store verify``'s checks, one known answer each: a point, a version, the catalog and the recomputed sample."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from mmalign.connectors.errors import StoreError
from mmalign.connectors.store import PointData, point_id
from mmalign.plugin.index.checks import point_problems, seal_written
from mmalign.plugin.index.verify import verify_collection
from tests.tiny_catalog import N_ITEMS


def EdgePoint(id, payload, vector):  # noqa: N802 - what a store returns: id, payload, vector
    return SimpleNamespace(id=id, payload=payload, vector=vector)


def _point(item_id="a", vectors=None, **payload):
    unit = np.eye(4)[0].tolist()
    vectors = {"fused": unit, "text": unit} if vectors is None else vectors
    return EdgePoint(point_id(item_id), {"item_id": item_id, "modalities": ["text"], **payload}, vectors)


@pytest.mark.parametrize(
    "point,reason",
    [
        (_point(), None),
        (_point(vectors={"fused": [1e38, 0, 0, 0], "text": [1, 0, 0, 0]}), "vector 'fused' has norm 1e+38, not 1"),
        (_point(vectors={"fused": [float("nan"), 0, 0, 0]}), "vector 'fused' has NaN or infinite values"),
        (_point(vectors={"fused": [1, 0, 0]}), "vector 'fused' has 3 values, not 4"),
        (_point(vectors={"text": [1, 0, 0, 0]}), "no 'fused' vector"),
        (_point(vectors={"fused": [1, 0, 0, 0]}), "payload lists modalities ['text'] that have no vector"),
        (EdgePoint(point_id("a"), None, {}), "payload is NoneType, not an object"),
        (EdgePoint(point_id("a"), {"item_id": "b"}, {}), "payload item_id 'b' is not the item point"),
        (EdgePoint(point_id("a"), {"text": "x"}, {}), "payload has no item_id"),
    ],
)
def test_each_point_check_names_what_is_wrong(point, reason):
    problems = point_problems(point, 4)
    if reason is None:
        assert problems == []
    else:
        assert any(p.startswith(reason) for p in problems), problems


def test_a_point_of_another_bundle_is_named(tmp_path):
    assert (
        "written by bundle 'b1', not the collection's 'b2'"
        in point_problems(_point(bundle_id="b1"), 4, bundle_id="b2")[0]
    )


def test_ingest_records_the_count_and_catalog_it_verified(live, store):
    base, catalog = live
    extra = store.collection_record("items").extra
    assert extra["points"] == N_ITEMS and extra["verified_at"] and extra["catalog"] == str(catalog.resolve())


def test_a_clean_version_verifies_with_every_sampled_point_recomputed_from_its_features(live, store):
    base, catalog = live
    report = verify_collection(store, "items", catalog=catalog, features_dir=base / "features", sample=N_ITEMS)
    assert report.ok, report.problems()
    assert (report.read, report.counted, report.recorded, report.catalog_items) == (N_ITEMS,) * 4
    assert report.sampled == N_ITEMS and report.sample_skipped == 0 and report.drift == []


def test_a_plausible_but_wrong_vector_is_found_by_the_recomputed_sample(live, store):
    base, _ = live
    [point] = store.retrieve("items", ["item3"], with_vectors=True)
    other = np.random.default_rng(0).normal(size=8)
    changed = {**point.vector, "fused": other / np.linalg.norm(other)}
    payload = {k: v for k, v in point.payload.items() if k != "item_id"}
    store.upsert("items", [PointData("item3", changed, payload)])
    report = verify_collection(store, "items", features_dir=base / "features", sample=N_ITEMS)
    assert report.bad_total == 0 and not report.ok  # a unit vector of the right size: only the sample sees it
    assert [p.item_id for p in report.drift] == ["item3"] and "vector 'fused' has cosine" in report.drift[0].reason


def test_a_payload_moved_to_another_point_is_found(live, store):
    store.overwrite_payload("items", "item5", {"item_id": "item6", "modalities": ["text"]})
    report = verify_collection(store, "items")
    assert report.bad_total == 1 and "payload item_id 'item6' is not the item point" in report.bad[0].reason


def test_catalog_items_missing_from_the_store_count_unless_they_were_dead_lettered(live, store, tmp_path):
    _, catalog = live
    bigger = tmp_path / "catalog.jsonl"
    bigger.write_text(catalog.read_text() + json.dumps({"id": "extra", "text": "never ingested"}) + "\n")
    (tmp_path / "media").mkdir()
    report = verify_collection(store, "items", catalog=bigger)
    assert report.missing == ["extra"] and not report.ok
    letters = tmp_path / "dead.jsonl"
    letters.write_text(
        json.dumps({"item_id": "extra", "stage": "load", "reason": "bad", "at": "2024-01-01T00:00:00Z"}) + "\n"
    )
    assert verify_collection(store, "items", catalog=bigger, dead_letters=[letters]).ok


def test_sealing_a_write_refuses_a_version_that_lost_points(live, store):
    with pytest.raises(StoreError, match=f"has {N_ITEMS} points, fewer than the {N_ITEMS + 5} recorded"):
        seal_written(store, "items", ["item1"], before=N_ITEMS + 5)
    with pytest.raises(StoreError, match="1 of the 2 points written are not there"):
        seal_written(store, "items", ["item1", "never-written"], before=None)
