"""One bad feature-cache shard costs its own items only, and is repaired by the next extraction (issue #14, B)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from mmalign.connectors import DataError
from mmalign.plugin.align.metrics import ranks_of_targets, retrieval_metrics
from mmalign.plugin.encoders.registry import get_encoder_spec
from mmalign.plugin.features.cache import QUARANTINE, FeatureCache, shard_checksum
from mmalign.plugin.features.extract import extract_features, preset_specs
from mmalign.schemas import Modality
from tests.tiny_catalog import N_ITEMS

SPEC_NAME = "logmel-stats"


def _rows(n, dim, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _shards(cache, spec):
    return sorted(cache.directory(Modality.AUDIO, spec).glob("shard-*.safetensors"))


def _write_raw_shard(folder, name, ids, hashes, features, *, checksum=True, version="2"):
    """A shard as another (older, or buggy) writer would leave it."""
    from safetensors.numpy import save_file

    ids_json, hashes_json = json.dumps(ids), json.dumps(hashes)
    meta = {"format_version": version, "item_ids": ids_json, "content_hashes": hashes_json}
    if checksum:
        meta["sha256"] = shard_checksum(ids_json, hashes_json, features)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"features": features}, str(folder / name), metadata=meta)
    return folder / name


def test_truncated_shard_is_named_quarantined_and_its_items_missing(tmp_path, caplog):
    spec = get_encoder_spec(SPEC_NAME)
    cache = FeatureCache(tmp_path)
    first = cache.write(Modality.AUDIO, spec, ["a", "b"], ["ha", "hb"], _rows(2, spec.dim))
    later = _rows(1, spec.dim, seed=1)
    cache.write(Modality.AUDIO, spec, ["c"], ["hc"], later)
    first.write_bytes(first.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING):
        table = FeatureCache(tmp_path).load(Modality.AUDIO, spec)
    assert table.item_ids == ["c"]
    np.testing.assert_array_equal(table.features, later)
    assert first.name in caplog.text and "damaged" in caplog.text and "unreadable header" in caplog.text
    moved = first.parent / QUARANTINE / first.name
    assert moved.exists() and not first.exists()
    assert "incomplete metadata" in (first.parent / QUARANTINE / f"{first.name}.reason").read_text()


def test_changed_row_fails_its_checksum_and_is_quarantined(tmp_path, caplog):
    """A plausible but wrong value (a flipped float, still finite) is caught by the checksum."""
    spec = get_encoder_spec(SPEC_NAME)
    cache = FeatureCache(tmp_path)
    rows = _rows(3, spec.dim)
    path = cache.write(Modality.AUDIO, spec, ["a", "b", "c"], ["ha", "hb", "hc"], rows)
    data = bytearray(path.read_bytes())
    offset = len(data) - 4 * spec.dim - 4  # inside the second row's data
    data[offset : offset + 4] = np.float32(0.5).tobytes()
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        table = FeatureCache(tmp_path).load(Modality.AUDIO, spec, ["a", "b", "c"])
    assert table.item_ids == []
    assert "checksum mismatch" in caplog.text and path.name in caplog.text
    assert (path.parent / QUARANTINE / path.name).exists()


def test_damaged_shard_is_reencoded_by_the_next_extraction(media_dir, tmp_path, tiny_preset, caplog):
    catalog = media_dir / "catalog.jsonl"
    out = tmp_path / "features"
    first = extract_features(catalog, out, preset=tiny_preset, modalities=["text"], device="cpu")
    assert first.modalities[Modality.TEXT].encoded == 6
    spec = preset_specs(tiny_preset, modalities=["text"])[Modality.TEXT]  # on the runtime extraction chose
    cache = FeatureCache(out)
    before = cache.load(Modality.TEXT, spec)
    [shard] = cache.directory(Modality.TEXT, spec).glob("shard-*.safetensors")
    data = bytearray(shard.read_bytes())
    data[-8:-4] = np.float32(3.0).tobytes()  # one changed value of the last row
    shard.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = extract_features(catalog, out, preset=tiny_preset, modalities=["text"], device="cpu")
    counts = again.modalities[Modality.TEXT]
    assert (counts.cached, counts.encoded, counts.failed) == (0, 6, 0)
    assert shard.name in caplog.text and "checksum mismatch" in caplog.text
    after = FeatureCache(out).load(Modality.TEXT, spec)
    assert after.item_ids == before.item_ids
    np.testing.assert_allclose(after.features, before.features, atol=1e-5)


def test_non_finite_rows_are_skipped_at_read_and_named(tmp_path, caplog):
    """A shard of an older version (no checksum) with a NaN row: the other rows stay usable, the NaN
    item is skipped and named, and is missing from the cache so that it is encoded again."""
    spec = get_encoder_spec(SPEC_NAME)
    cache = FeatureCache(tmp_path)
    rows = _rows(3, spec.dim)
    rows[1, 4] = np.nan
    folder = cache.directory(Modality.AUDIO, spec)
    _write_raw_shard(
        folder, "shard-000001.safetensors", ["a", "nan", "c"], ["ha", "hn", "hc"], rows, checksum=False, version="1"
    )
    with caplog.at_level(logging.WARNING):
        table = cache.load(Modality.AUDIO, spec, ["a", "nan", "c"])
    assert table.item_ids == ["a", "c"] and np.isfinite(table.features).all()
    np.testing.assert_array_equal(table.features, rows[[0, 2]])
    assert table.rejected == [("nan", "non-finite cached features in shard-000001.safetensors")]
    assert "'nan'" in caplog.text and "non-finite" in caplog.text
    index, _ = cache.verified_index(Modality.AUDIO, spec)
    assert set(index) == {"a", "c"}  # the NaN row is gone for good; a, c live on in a rewritten shard


def test_nan_cached_row_does_not_sink_ingest(trained, tmp_path):
    """One NaN row in the cache used to make the store refuse the whole batch (0 of N stored)."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.index.ingest import ingest
    from mmalign.schemas import StoreConfig

    base, catalog = trained
    features = tmp_path / "features"
    shutil.copytree(base / "features", features)
    bundle = load_bundle(base / "bundle", with_teacher=False)
    spec = bundle.encoder_spec(Modality.TEXT)
    cache = FeatureCache(features)
    good = cache.load(Modality.TEXT, spec, ["item3"])
    bad = good.features.copy()
    bad[0, 0] = np.nan
    _write_raw_shard(
        cache.directory(Modality.TEXT, spec), "shard-999999.safetensors", ["item3"], good.content_hashes, bad
    )
    with VectorStore(StoreConfig(path=":memory:")) as store:
        report = ingest(catalog, bundle=bundle, collection="items", store=store, features_dir=features, device="cpu")
        assert (report.ok, report.failed, report.degraded) == (N_ITEMS, 0, 0)
        [point] = store.retrieve("items", ["item3"], with_vectors=True)
        assert "text" in point.vector and np.isfinite(point.vector["text"]).all()


def test_cache_refuses_to_write_non_finite_features(tmp_path):
    spec = get_encoder_spec(SPEC_NAME)
    rows = _rows(2, spec.dim)
    rows[1, 0] = np.inf
    with pytest.raises(DataError, match=r"NaN or infinite features of 1 item\(s\): \['y'\]"):
        FeatureCache(tmp_path).write(Modality.AUDIO, spec, ["x", "y"], ["hx", "hy"], rows)
    assert not _shards(FeatureCache(tmp_path), spec)


def test_metrics_refuse_non_finite_embeddings():
    queries = np.eye(3, dtype=np.float32)
    corpus = np.eye(3, dtype=np.float32)
    corpus[1, 1] = np.nan
    with pytest.raises(DataError, match=r"1 corpus embedding\(s\) of 3 are NaN or infinite \(rows \[1\]\)"):
        ranks_of_targets(queries, corpus, np.arange(3))
    with pytest.raises(DataError, match="ranks must be finite and >= 0"):
        retrieval_metrics(np.array([0, -1, 2]))
    assert retrieval_metrics(ranks_of_targets(queries, np.eye(3), np.arange(3)))["mrr"] == 1.0


WRITER = """
import sys, time
import numpy as np
from mmalign.plugin.encoders.registry import get_encoder_spec
from mmalign.plugin.features.cache import FeatureCache
from mmalign.schemas import Modality

root, tag, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
spec = get_encoder_spec("logmel-stats")
cache = FeatureCache(root)
while time.time() < start:
    pass
for n in range(40):
    ids = [f"{tag}-{n}-{k}" for k in range(5)]
    cache.write(Modality.AUDIO, spec, ids, ["h"] * 5, np.full((5, spec.dim), n, np.float32))
"""


def test_two_processes_writing_one_cache_never_collide(tmp_path):
    spec = get_encoder_spec(SPEC_NAME)
    start = time.time() + 3
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag, str(start)], stderr=subprocess.PIPE)
        for tag in ("p", "q")
    ]
    errors = [proc.communicate(timeout=120)[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    cache = FeatureCache(tmp_path)
    assert len(_shards(cache, spec)) == 80
    table = cache.load(Modality.AUDIO, spec)
    assert len(table) == 400
    for item_id, row in zip(table.item_ids, table.features):
        assert (row == int(item_id.split("-")[1])).all()
    assert not list(cache.directory(Modality.AUDIO, spec).glob(".*.tmp"))
