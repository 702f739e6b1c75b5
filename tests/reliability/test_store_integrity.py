"""A damaged embedded store is found and repaired (issue #23), never trusted.

The probe's three failures, on a copy of a good store: random bytes over the fused vectors' file
(search scored ~1e38 and a rerun of ingest said "unchanged"), that file truncated (ingest said
"unchanged" and the store stayed broken), and the id tracker truncated (the store silently counted
a third of its points). Each must be named by ``verify``, never trusted by ``ingest``, and repaired
to exactly the vectors of a clean run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmalign.connectors.errors import StoreError
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.plugin.index.verify import repair_collection, verify_collection
from mmalign.schemas import StoreConfig
from tests.reliability.test_crasher import assert_same, vectors
from tests.tiny_catalog import N_ITEMS


@pytest.fixture(scope="module")
def good(trained, tmp_path_factory):
    """A store written by a clean ingest (Edge, in a folder) and its vectors."""
    base, catalog = trained
    path = tmp_path_factory.mktemp("integrity") / "good"
    with VectorStore(StoreConfig(path=str(path))) as vs:
        _ingest(vs, base, catalog)
        # a payload index makes Edge flush its segments and acknowledge its write-ahead log, as every ingest of
        # 1,000+ points does; else the log still holds every point and a reopen replays what was damaged
        vs.build_index("items", fields={"item_id": "keyword"})
        ref = vectors(vs, "items")
    assert len(ref) == N_ITEMS
    return base, catalog, path, ref


def _ingest(vs, base, catalog):
    return ingest(
        catalog, bundle=base / "bundle", collection="items", store=vs, features_dir=base / "features", device="cpu"
    )


def _copy(good, tmp_path) -> Path:
    path = tmp_path / "store"
    shutil.copytree(good[2], path)
    return path


def _segment_files(store: Path, pattern: str) -> list[Path]:
    found = sorted((store / "collections" / "items__v1" / "shard" / "segments").glob(pattern))
    assert found, f"no {pattern} in the store: has the Edge layout changed?"
    return found


def _scribble_over_fused(store: Path) -> None:
    rng = np.random.default_rng(7)
    for path in _segment_files(store, "*/vector_storage-fused/vectors/chunk_0.mmap"):
        with open(path, "r+b") as handle:
            handle.write(rng.bytes(N_ITEMS * 8 * 4))  # every stored fused vector (D = 8)


def test_random_bytes_over_the_vector_file_are_found_and_an_ingest_rerun_rewrites_them(good, tmp_path):
    base, catalog, _, ref = good
    store = _copy(good, tmp_path)
    _scribble_over_fused(store)
    with VectorStore(StoreConfig(path=str(store))) as vs:
        report = verify_collection(vs, "items")
        assert not report.ok and not report.structural
        assert report.bad_total == N_ITEMS and "vector 'fused'" in report.bad[0].reason
        assert any("fail their checks" in line for line in report.problems())
        rerun = _ingest(vs, base, catalog)  # was: unchanged 36, and search scored ~1e38
        assert (rerun.ok, rerun.unchanged) == (N_ITEMS, 0)
        assert verify_collection(vs, "items").ok
        assert_same(vectors(vs, "items"), ref)


def test_random_bytes_over_the_vector_file_are_repaired_in_place(good, tmp_path):
    base, catalog, _, ref = good
    store = _copy(good, tmp_path)
    _scribble_over_fused(store)
    with VectorStore(StoreConfig(path=str(store))) as vs:
        result = repair_collection(vs, "items", features_dir=base / "features", device="cpu")  # catalog recorded
        assert result.action == "rewritten" and result.written == N_ITEMS and result.after.ok
        assert vs.resolve_alias("items") == "items__v1"
        assert_same(vectors(vs, "items"), ref)


def test_a_truncated_vector_file_is_structural_damage_that_ingest_refuses_and_repair_rebuilds(good, tmp_path):
    base, catalog, _, ref = good
    store = _copy(good, tmp_path)
    for path in _segment_files(store, "*/vector_storage-fused/vectors/chunk_0.mmap"):
        os.truncate(path, 100)
    with VectorStore(StoreConfig(path=str(store))) as vs:
        report = verify_collection(vs, "items")
        assert report.structural and not report.ok and "out of bounds" in report.unreadable
        with pytest.raises(StoreError, match="damaged: run `mmalign store verify --collection items__v1 --repair`"):
            _ingest(vs, base, catalog)  # was: unchanged 36, exit 0
        result = repair_collection(vs, "items", catalog=catalog, features_dir=base / "features", device="cpu")
        assert (result.action, result.rebuilt, result.swapped) == ("rebuilt", "items__v2", True)
        assert vs.resolve_alias("items") == "items__v2" and result.after.ok
        assert_same(vectors(vs, "items"), ref)
        damaged = vs.collection_record("items__v1").extra
        assert damaged["state"] == "damaged" and damaged["replaced_by"] == "items__v2"
        assert vs.collection_record("items__v2").extra.get("previous") == damaged.get("previous")  # same rollback


def test_a_truncated_id_tracker_is_found_by_the_recorded_count_and_repaired(good, tmp_path):
    base, catalog, _, ref = good
    store = _copy(good, tmp_path)
    for path in _segment_files(store, "*/mutable_id_tracker.mappings"):
        os.truncate(path, path.stat().st_size * 3 // 10)
    with VectorStore(StoreConfig(path=str(store))) as vs:
        counted = vs.count("items")
        assert counted < N_ITEMS  # what `store info` showed, without a warning
        report = verify_collection(vs, "items")
        assert report.structural and report.recorded == N_ITEMS and report.counted == counted
        assert f"{counted} points now, {N_ITEMS} recorded" in report.problems()[0]
        result = repair_collection(vs, "items", catalog=catalog, features_dir=base / "features", device="cpu")
        assert result.action == "rebuilt" and result.after.ok and vs.count("items") == N_ITEMS
        assert_same(vectors(vs, "items"), ref)


def test_a_healthy_store_needs_no_repair(good, tmp_path):
    base, catalog, _, _ = good
    store = _copy(good, tmp_path)
    with VectorStore(StoreConfig(path=str(store))) as vs:
        result = repair_collection(vs, "items", catalog=catalog, features_dir=base / "features", device="cpu")
        assert result.action == "none" and result.before.ok and result.before.sampled > 0
        assert vs.resolve_alias("items") == "items__v1"


def test_the_cli_names_the_damage_exits_4_and_repairs_then_backs_up_and_restores(good, tmp_path):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    base, _, _, ref = good
    store = _copy(good, tmp_path)
    _scribble_over_fused(store)
    runner = CliRunner()
    where = ["--qdrant-path", str(store), "--features", str(base / "features")]
    damaged = runner.invoke(main, ["store", "verify", "--collection", "items", *where])
    assert damaged.exit_code == 4, damaged.output
    assert f"PROBLEM: {N_ITEMS} point(s) fail their checks" in damaged.output and "damaged" in damaged.output
    snapshot = ["store", "snapshot", "--collection", "items", "--out", str(tmp_path / "s"), "--qdrant-path", str(store)]
    refused = runner.invoke(main, snapshot)
    assert refused.exit_code == 1 and "items__v1 is damaged" in refused.output, refused.output
    repaired = runner.invoke(main, ["store", "verify", "--collection", "items", *where, "--repair", "--device", "cpu"])
    assert repaired.exit_code == 0, repaired.output
    assert f"repair: rewrote {N_ITEMS} point(s) of items__v1 in place" in repaired.output
    saved = runner.invoke(main, snapshot)
    assert saved.exit_code == 0 and f"saved items__v1 ({N_ITEMS} points" in saved.output, saved.output
    other = tmp_path / "other"
    restored = runner.invoke(main, ["store", "restore", str(tmp_path / "s"), "--qdrant-path", str(other)])
    assert restored.exit_code == 0 and "alias 'items' -> items__v1" in restored.output, restored.output
    with VectorStore(StoreConfig(path=str(other))) as vs:
        assert_same(vectors(vs, "items"), ref)
