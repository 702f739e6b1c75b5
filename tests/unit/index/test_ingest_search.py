"""Ingest and search on the embedded store with tiny towers and tiny media."""

import json

import numpy as np
import pytest

from mmalign.connectors.store import StoreError, VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.plugin.index.search import Searcher, search_query
from mmalign.schemas import StoreConfig
from tests.tiny_catalog import N_ITEMS  # the `trained` fixture lives there too


def _ingest(trained, store, **kw):
    base, catalog = trained
    return ingest(
        catalog,
        bundle=kw.pop("bundle", base / "bundle"),
        collection="items",
        store=store,
        features_dir=base / "features",
        device="cpu",
        **kw,
    )


def test_ingest_creates_versioned_collection_with_named_vectors(trained, store):
    report = _ingest(trained, store)
    assert (report.ok, report.unchanged, report.failed) == (N_ITEMS, 0, 0)
    assert report.physical_collection == "items__v1" and store.resolve_alias("items") == "items__v1"
    assert store.count("items") == N_ITEMS
    [with_audio, without] = store.retrieve("items", ["item0", "item1"], with_vectors=True)
    assert set(with_audio.vector) == {"image", "text", "audio", "fused"}
    assert set(without.vector) == {"image", "text", "fused"}
    payload = with_audio.payload
    assert payload["modalities"] == ["image", "text", "audio"] and payload["bundle_id"] == report.bundle_id
    assert payload["metadata"] == {"group": "even", "n": 0} and payload["content_hash"] and payload["ingested_at"]
    assert set(report.stages) == {"read", "skip_check", "encode", "project", "upsert", "index"}
    assert report.stages["index"].items == N_ITEMS


def test_ingest_builds_the_indexes_itself(trained, store, monkeypatch):
    """After ingest, queries at scale need no extra step: payload indexes (and HNSW on Edge) are built."""
    import mmalign.connectors.store as store_module

    monkeypatch.setattr(store_module, "PAYLOAD_INDEX_MIN_POINTS", 1)  # the tiny catalog counts as large
    _ingest(trained, store)
    again = store.build_index("items")
    if again.engine == "edge":  # local mode has no indexes
        assert again.payload_fields and again.details["created_payload_indexes"] == []  # ingest made them all
    assert "index" not in _ingest(trained, store).stages  # nothing written: nothing to index


def test_reingest_is_idempotent_and_incremental(trained, store):
    _ingest(trained, store)
    again = _ingest(trained, store)
    assert (again.ok, again.unchanged) == (0, N_ITEMS) and store.count("items") == N_ITEMS
    base, catalog = trained
    lines = catalog.read_text().splitlines()
    changed = json.loads(lines[4])
    changed["text"] = "a completely new description"
    edited = catalog.parent / "edited.jsonl"
    edited.write_text("\n".join([*lines[:4], json.dumps(changed), *lines[5:]]) + "\n")
    third = ingest(
        edited, bundle=base / "bundle", collection="items", store=store, features_dir=base / "features", device="cpu"
    )
    assert (third.ok, third.unchanged) == (1, N_ITEMS - 1) and store.count("items") == N_ITEMS
    [point] = store.retrieve("items", ["item4"])
    assert point.payload["text"] == "a completely new description"


def test_metadata_only_change_updates_payload_without_reembedding(trained, store):
    base, catalog = trained
    _ingest(trained, store)
    [before] = store.retrieve("items", ["item2"], with_vectors=True)
    lines = catalog.read_text().splitlines()
    edited_item = json.loads(lines[2])
    edited_item["metadata"] = {"group": "even", "n": 2, "on_sale": True}
    edited = catalog.parent / "meta_edit.jsonl"
    edited.write_text("\n".join([*lines[:2], json.dumps(edited_item), *lines[3:]]) + "\n")
    report = ingest(
        edited, bundle=base / "bundle", collection="items", store=store, features_dir=base / "features", device="cpu"
    )
    assert (report.ok, report.payload_updated, report.unchanged) == (0, 1, N_ITEMS - 1)
    [after] = store.retrieve("items", ["item2"], with_vectors=True)
    assert after.payload["metadata"]["on_sale"] is True and after.vector == before.vector
    assert after.payload["content_hash"] != before.payload["content_hash"]
    assert _ingest(trained, store).payload_updated == 1  # and back again


def test_resume_after_interruption_has_no_duplicates_or_loss(trained, store):
    def crash(chunk_number):
        if chunk_number == 1:
            raise KeyboardInterrupt("killed half way")

    with pytest.raises(KeyboardInterrupt):
        _ingest(trained, store, chunk_size=10, on_chunk=crash)
    partial = store.count("items")
    assert 0 < partial < N_ITEMS
    report = _ingest(trained, store, chunk_size=10)
    assert report.unchanged == partial and report.ok == N_ITEMS - partial
    assert store.count("items") == N_ITEMS
    ids = {p.payload["item_id"] for p in store.scroll("items")}
    assert ids == {f"item{i}" for i in range(N_ITEMS)}


def test_pipelined_and_naive_give_the_same_points(trained, store_config):
    vectors = []
    for pipelined in (True, False):
        with VectorStore(store_config) as vs:
            _ingest(trained, vs, chunk_size=7, pipelined=pipelined)
            vectors.append({p.payload["item_id"]: p.vector["fused"] for p in vs.scroll("items", with_vectors=True)})
    assert vectors[0].keys() == vectors[1].keys()
    for key in vectors[0]:
        np.testing.assert_allclose(vectors[0][key], vectors[1][key], atol=1e-6)


def test_other_bundle_is_refused_with_the_recorded_one_named(trained, store):
    report = _ingest(trained, store)
    base, _ = trained
    with pytest.raises(StoreError, match=f"built with bundle '{report.bundle_id}'"):
        _ingest(trained, store, bundle=base / "bundle2")
    with pytest.raises(StoreError, match=f"built with bundle '{report.bundle_id}'"):
        Searcher("items", store=store, bundle=base / "bundle2")


def test_bad_items_are_dead_lettered_and_the_run_goes_on(trained, store, tmp_path):
    base, catalog = trained
    (catalog.parent / "broken.png").write_bytes(b"not a png")
    extra = [
        json.dumps({"id": "broken-image", "image": "broken.png"}),
        json.dumps({"id": "broken-but-text", "image": "broken.png", "text": "a red frog"}),
        "{nope",
    ]
    bad = catalog.parent / "with_bad.jsonl"
    bad.write_text(catalog.read_text() + "\n".join(extra) + "\n")
    report = ingest(
        bad,
        bundle=base / "bundle",
        collection="items",
        store=store,
        features_dir=base / "features",
        device="cpu",
        dead_letter=tmp_path / "dl.jsonl",
    )
    assert (report.ok, report.failed, report.degraded) == (N_ITEMS + 1, 2, 1)
    letters = [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert {r["item_id"] for r in letters} >= {"broken-image", "broken-but-text", None}
    [point] = store.retrieve("items", ["broken-but-text"], with_vectors=True)
    assert set(point.vector) == {"text", "fused"}


def test_each_query_modality_finds_its_own_item(trained, store):
    base, catalog = trained
    _ingest(trained, store)
    searcher = Searcher("items", store=store, device="cpu")
    root = catalog.parent
    text = json.loads(catalog.read_text().splitlines()[5])["text"]
    hits = searcher.search(text=[text], using="text", k=3)
    assert hits[0].payload["text"] == text and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert searcher.search(image=[root / "img7.png"], using="image", k=1)[0].id == "item7"
    assert searcher.search(audio=[root / "snd9.wav"], using="audio", k=1)[0].id == "item9"
    assert all(h.id != "item3" for h in searcher.search(like=["item3"], k=5))
    with pytest.raises(ValueError, match="give at least one query"):
        searcher.search()


def test_filters_and_multi_input_rrf(trained, store):
    base, catalog = trained
    _ingest(trained, store)
    searcher = Searcher("items", store=store, device="cpu")
    root = catalog.parent
    hits = searcher.search(image=[root / "img2.png"], using="image", k=10, filters={"group": ["odd"]})
    assert hits and all(h.payload["metadata"]["group"] == "odd" for h in hits)
    assert searcher.search(image=[root / "img2.png"], using="image", k=3, filters={"n": ["2"]})[0].id == "item2"
    both = searcher.search(image=[root / "img6.png", root / "img9.png"], using="image", k=2)
    assert {h.id for h in both} == {"item6", "item9"}  # each input's own top hit wins under RRF
    pair = [str(root / "img6.png"), str(root / "img9.png")]
    mean = searcher.run(search_query(image=pair, using="image", k=5, fusion="mean")).hits
    assert len(mean) == 5


def test_cli_ingest_and_search_json(trained, tmp_path):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    base, catalog = trained
    qdrant = str(tmp_path / "q")
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "ingest",
            str(catalog),
            "--bundle",
            str(base / "bundle"),
            "--collection",
            "c",
            "--features",
            str(base / "features"),
            "--qdrant-path",
            qdrant,
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"ok {N_ITEMS}, unchanged 0, payload-only 0, failed 0" in result.output
    result = runner.invoke(
        main,
        [
            "search",
            "--collection",
            "c",
            "--qdrant-path",
            qdrant,
            "--image",
            str(catalog.parent / "img4.png"),
            "--using",
            "image",
            "-k",
            "3",
            "--json",
            "--filter",
            "group=even",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert hits[0]["id"] == "item4" and set(hits[0]) == {"id", "score", "payload"}
    info = runner.invoke(main, ["store", "info", "--qdrant-path", qdrant, "--json"])
    assert json.loads(info.stdout) == [
        {
            "name": "c__v1",
            "alias": "c",
            "points": N_ITEMS,
            "dim": 8,
            "bundle_id": json.loads((base / "bundle" / "config.json").read_text())["bundle_id"],
        }
    ]
    missing = runner.invoke(main, ["search", "--collection", "nope", "--qdrant-path", qdrant, "--text", "x"])
    assert missing.exit_code != 0 and "does not exist" in missing.output


@pytest.mark.qdrant_server
def test_embedded_and_server_give_the_same_results(trained):
    """Congruence: the same ingest and queries on the embedded engine and on a Qdrant server."""
    import os
    import uuid

    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to compare against")
    base, catalog = trained
    name = f"mmalign_test_{uuid.uuid4().hex[:8]}"
    answers = []
    for config in (StoreConfig(path=":memory:"), StoreConfig(url=url, api_key=os.environ.get("QDRANT_API_KEY"))):
        with VectorStore(config) as vs:
            try:
                _ = ingest(
                    catalog,
                    bundle=base / "bundle",
                    collection=name,
                    store=vs,
                    features_dir=base / "features",
                    device="cpu",
                )
                searcher = Searcher(name, store=vs, device="cpu")
                answers.append(
                    [
                        [
                            h.id
                            for h in searcher.search(
                                image=[catalog.parent / f"img{i}.png"], k=5, filters={"group": ["even"]}
                            )
                        ]
                        for i in range(4)
                    ]
                )
            finally:
                for collection in vs.list_collections():
                    if collection.startswith(name):
                        vs.delete_collection(collection)
    assert answers[0] == answers[1]
