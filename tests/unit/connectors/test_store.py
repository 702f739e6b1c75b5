"""The Qdrant store on both embedded engines (Qdrant Edge and qdrant-client's local mode, in memory and in a
folder): records, aliases (crash-safe on Edge), ownership, congruence of the engines, indexes, push."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmalign.connectors.push import push_collection
from mmalign.connectors.store import PointData, StoreError, VectorStore, point_id
from mmalign.schemas import StoreConfig

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["memory", "path"])
def store(request, engine, tmp_path):
    path = ":memory:" if request.param == "memory" else str(tmp_path / "qdrant")
    with VectorStore(StoreConfig(path=path, engine=engine)) as vs:
        yield vs


def _points(n, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return [
        PointData(f"item-{i}", {"fused": rng.normal(size=dim), "text": rng.normal(size=dim)}, {"n": i})
        for i in range(n)
    ]


def test_named_vectors_and_record(store):
    record = store.create_collection("c__v1", 4, bundle_id="b1")
    assert (record.dim, record.bundle_id) == (4, "b1")
    assert store.vector_sizes("c__v1") == {"image": 4, "text": 4, "audio": 4, "fused": 4}
    assert store.collection_record("c__v1").bundle_id == "b1"
    with pytest.raises(StoreError, match="already exists"):
        store.create_collection("c__v1", 4)
    assert store.collection_record("nope") is None and not store.collection_exists("nope")


def test_upsert_is_idempotent_and_points_carry_only_their_vectors(store):
    store.ensure_collection("c", 4, bundle_id="b1")
    assert store.upsert("c", _points(10), batch_size=3) == 10
    store.upsert("c", _points(10, seed=1))
    assert store.count("c") == 10
    [point] = store.retrieve("c", ["item-3"], with_vectors=True)
    assert point.id == point_id("item-3") and set(point.vector) == {"fused", "text"}
    assert point.payload == {"item_id": "item-3", "n": 3}
    assert store.retrieve("c", ["not-there"]) == []


def test_bundle_and_dim_mismatch_are_refused(store):
    store.ensure_collection("c", 4, bundle_id="b1")
    with pytest.raises(StoreError, match="built with bundle 'b1', not 'b2'"):
        store.ensure_collection("c", 4, bundle_id="b2")
    with pytest.raises(StoreError, match="size 4, not 8"):
        store.ensure_collection("c", 8, bundle_id="b1")


def test_bad_vectors_are_refused(store):
    store.ensure_collection("c", 4)
    with pytest.raises(StoreError, match="NaN"):
        store.upsert("c", [PointData("x", {"fused": [np.nan, 0, 0, 0]})])
    with pytest.raises(StoreError, match="needs a 'fused' vector"):
        store.upsert("c", [PointData("x", {"text": [1, 0, 0, 0]})])
    with pytest.raises(StoreError, match="unknown vector name 'video'"):
        store.upsert("c", [PointData("x", {"fused": [1, 0, 0, 0], "video": [1, 0, 0, 0]})])
    with pytest.raises(StoreError):
        store.upsert("c", [PointData("x", {"fused": [1, 0, 0]})])  # wrong size


def test_alias_swap(store):
    store.create_collection("c__v1", 4, bundle_id="b1")
    store.create_collection("c__v2", 4, bundle_id="b2")
    store.set_alias("c", "c__v1")
    assert store.resolve_alias("c") == "c__v1" and store.collection_record("c").bundle_id == "b1"
    store.set_alias("c", "c__v2")
    assert store.resolve_alias("c") == "c__v2" and store.collection_record("c").bundle_id == "b2"
    with pytest.raises(StoreError, match="missing collection"):
        store.set_alias("c", "c__v9")
    assert store.resolve_alias("c") == "c__v2"
    store.upsert("c", _points(3))  # writes and reads follow the alias
    assert store.count("c") == store.count("c__v2") == 3 and store.count("c__v1") == 0


def test_deleting_a_collection_drops_its_aliases(store):
    store.create_collection("c__v1", 4)
    store.set_alias("c", "c__v1")
    store.delete_collection("c__v1")
    assert store.list_collections() == [] and store.aliases() == {} and not store.collection_exists("c")
    store.delete_collection("c__v1")  # nothing there: nothing happens
    store.create_collection("c__v1", 4)  # the name is free again
    assert store.count("c__v1") == 0


def test_update_record_merges_typed_fields_and_keeps_unknown_ones(store):
    from pydantic import ValidationError

    store.create_collection("c", 4, bundle_id="b", extra={"state": "building", "a": 1})
    store.update_record("c", state="ready", previous="c__v0")
    record = store.collection_record("c")
    assert (record.state, record.previous, record.bundle_id, record.extra["a"]) == ("ready", "c__v0", "b", 1)
    with pytest.raises(ValidationError, match="points"):
        store.update_record("c", points="many")  # a typed field refuses what it cannot hold
    assert store.collection_record("c").points is None


def test_a_record_written_before_it_was_typed_reads_the_same():
    from mmalign.schemas.store import CollectionRecord

    stored = {
        "dim": 8,
        "bundle_id": "abc",
        "schema_version": 1,
        "extra": {"alias": "c", "state": "verified", "previous": "c__v1", "bundle_path": "/b", "push": {"source": "s"}},
    }
    record = CollectionRecord.from_stored("c__v2", stored)
    assert (record.alias, record.state, record.previous, record.push.source) == ("c", "verified", "c__v1", "s")
    again = CollectionRecord.from_stored("c__v2", record.stored())
    assert again == record and again.stored()["extra"]["bundle_path"] == "/b"


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_embedded_path_persists(tmp_path, engine):
    path = str(tmp_path / "q")
    with VectorStore(StoreConfig(path=path, engine=engine)) as vs:
        vs.ensure_collection("c__v1", 4, bundle_id="b")
        vs.set_alias("c", "c__v1")
        vs.upsert("c", _points(5))
        vs.update_record("c", state="ready")
    with VectorStore(StoreConfig(path=path, engine=engine)) as vs:
        assert vs.count("c") == 5 and vs.collection_record("c").bundle_id == "b"
        assert vs.resolve_alias("c") == "c__v1" and vs.collection_record("c").state == "ready"


def test_engines_refuse_each_others_folders(tmp_path):
    edge, local = str(tmp_path / "edge"), str(tmp_path / "local")
    with VectorStore(StoreConfig(path=edge)) as vs:
        vs.create_collection("c", 4)
    with VectorStore(StoreConfig(path=local, engine="local")) as vs:
        vs.create_collection("c", 4)
    with pytest.raises(StoreError, match=r"StoreConfig\(engine='edge'\) \(CLI: --engine edge\)"):
        VectorStore(StoreConfig(path=edge, engine="local")).list_collections()
    wanted = r"local mode: open it with StoreConfig\(engine='local'\) \(CLI: --engine local"
    with pytest.raises(StoreError, match=wanted):
        VectorStore(StoreConfig(path=local, engine="edge")).list_collections()
    with VectorStore(StoreConfig(path=local)) as vs:  # no engine asked: a local-mode folder stays local
        assert vs.engine == "local" and vs.list_collections() == ["c"]
    with VectorStore(StoreConfig(path=str(tmp_path / "new"))) as vs:  # a new folder: Edge
        assert vs.engine == "edge" and vs.list_collections() == []


def test_invalid_names_are_refused_on_edge(tmp_path):
    with VectorStore(StoreConfig(path=str(tmp_path / "q"))) as vs:
        for bad in ("a/b", ".hidden", "", "x" * 300):
            with pytest.raises(StoreError, match="not valid"):
                vs.create_collection(bad, 4)
        vs.create_collection("c", 4)
        with pytest.raises(StoreError, match="a collection has that name"):
            vs.set_alias("c", "c")


class FlakyClient:
    """Fails with a connection error ``failures`` times, then answers."""

    def __init__(self, failures, exc=ConnectionError("connection refused")):
        self.failures, self.calls, self.exc = failures, 0, exc

    def collection_exists(self, name):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return True


def test_server_calls_retry_with_backoff_then_fail_clearly(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    config = StoreConfig(url="http://127.0.0.1:1", max_retries=3)
    assert VectorStore(config, client=FlakyClient(2)).collection_exists("c")
    client = FlakyClient(10)
    with pytest.raises(StoreError, match="after 4 attempt"):
        VectorStore(config, client=client).collection_exists("c")
    assert client.calls == 4
    bad_request = FlakyClient(10, exc=ValueError("wrong vector size"))
    with pytest.raises(StoreError, match="after 1 attempt"):
        VectorStore(config, client=bad_request).collection_exists("c")


def test_unreachable_server_is_a_clear_error():
    config = StoreConfig(url="http://127.0.0.1:9", max_retries=1, timeout_s=1)
    with pytest.raises(StoreError, match="127.0.0.1:9"):
        VectorStore(config).list_collections()


def test_engine_is_for_embedded_stores_only():
    with pytest.raises(ValueError, match="always a server"):
        StoreConfig(url="http://localhost:6333", engine="edge")
    assert StoreConfig().backend == "edge" and StoreConfig(engine="local").backend == "local"
    assert StoreConfig(url="http://localhost:6333").backend == "server"


def test_retries_are_decided_by_exception_type_and_status():
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    from mmalign.connectors.store import is_transient

    def response(status):
        return UnexpectedResponse(status, "x", b"", httpx.Headers())

    assert is_transient(response(503)) and is_transient(response(429))
    assert not is_transient(response(400)) and not is_transient(response(404))
    assert is_transient(ResponseHandlingException(httpx.ConnectError("refused")))
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    # the words of a message decide nothing
    assert not is_transient(ValueError("connection refused: timeout 503"))


# -- ownership -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["edge", "local"])
def test_store_held_by_another_client_is_one_clear_error(tmp_path, engine):
    path = str(tmp_path / "held")
    with VectorStore(StoreConfig(path=path, engine=engine)) as first:
        first.list_collections()
        with pytest.raises(StoreError, match=rf"cannot open the store at .* held by pid {os.getpid()}"):
            VectorStore(StoreConfig(path=path, engine=engine)).list_collections()
    with VectorStore(StoreConfig(path=path, engine=engine)) as again:  # released on close
        assert again.list_collections() == []


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


HOLD = """
import sys, time
from mmalign.connectors.store import VectorStore
from mmalign.schemas import StoreConfig
vs = VectorStore(StoreConfig(path=sys.argv[1]))
vs.create_collection("c", 4)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_told_which_process_holds_the_store_and_a_kill_frees_it(tmp_path):
    path = str(tmp_path / "held")
    holder = _child(HOLD, path)
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        with pytest.raises(StoreError, match=rf"held by pid {holder.pid} \(.*-c"):
            VectorStore(StoreConfig(path=path)).list_collections()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with VectorStore(StoreConfig(path=path)) as vs:  # the kernel dropped the lock with the process
        assert vs.list_collections() == ["c"]


# -- crash safety of Edge's own records ---------------------------------------------------------------------
SWAP = """
import os, signal, sys
import mmalign.connectors.store_files as files
from mmalign.connectors.store import VectorStore
from mmalign.schemas import StoreConfig
path, kill_at = sys.argv[1], sys.argv[2]
vs = VectorStore(StoreConfig(path=path))
vs.list_collections()
real_replace, real_fsync = os.replace, os.fsync
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst):
    if kill_at == "before_rename":
        die()
    real_replace(src, dst)
    if kill_at == "after_rename":
        die()
def fsync(fd):
    if kill_at == "before_fsync":
        die()
    real_fsync(fd)
files.os.replace, files.os.fsync = replace, fsync
print("ready", flush=True)
if kill_at == "loop":
    files.os.replace, files.os.fsync = real_replace, real_fsync
    n = 0
    while True:
        vs.set_alias("c", "c__v2" if n % 2 == 0 else "c__v1")
        n += 1
vs.set_alias("c", "c__v2")
print("done", flush=True)
"""


def _two_versions(path: str) -> None:
    with VectorStore(StoreConfig(path=path)) as vs:
        for name, n in (("c__v1", 3), ("c__v2", 5)):
            vs.create_collection(name, 4)
            vs.upsert(name, _points(n))
        vs.set_alias("c", "c__v1")


def _check_after_kill(path: str, allowed) -> str:
    with VectorStore(StoreConfig(path=path)) as vs:
        live = vs.resolve_alias("c")
        assert live in allowed
        assert vs.count("c") == {"c__v1": 3, "c__v2": 5}[live]
        assert vs.list_collections() == ["c__v1", "c__v2"]
    assert not list(Path(path).glob(".*.tmp"))  # a killed writer's temporary file was removed at open
    json.loads((Path(path) / "aliases.json").read_text())  # never a torn file
    return live


@pytest.mark.parametrize(
    ("kill_at", "expected"), [("before_fsync", "c__v1"), ("before_rename", "c__v1"), ("after_rename", "c__v2")]
)
def test_alias_swap_killed_between_its_steps_leaves_the_old_or_the_new_alias(tmp_path, kill_at, expected):
    path = str(tmp_path / "q")
    _two_versions(path)
    child = _child(SWAP, path, kill_at)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    assert _check_after_kill(path, {expected}) == expected


def test_alias_swaps_killed_at_random_moments_leave_a_whole_alias(tmp_path):
    import random

    path = str(tmp_path / "q")
    _two_versions(path)
    rng = random.Random(7)
    seen = set()
    for _ in range(4):
        child = _child(SWAP, path, "loop")
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.01, 0.3))
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
        seen.add(_check_after_kill(path, {"c__v1", "c__v2"}))


CREATE = """
import os, signal, sys
import mmalign.connectors.store_files as files
from mmalign.connectors.store import VectorStore
from mmalign.schemas import StoreConfig
vs = VectorStore(StoreConfig(path=sys.argv[1]))
vs.list_collections()
real = files.os.replace
def replace(src, dst):
    if str(dst).endswith("record.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
files.os.replace = replace
print("ready", flush=True)
vs.create_collection("c__v3", 4)
"""


def test_create_killed_before_its_record_leaves_no_collection(tmp_path):
    path = str(tmp_path / "q")
    _two_versions(path)
    child = _child(CREATE, path)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert (Path(path) / "collections" / "c__v3").is_dir()  # the half-made folder
    with VectorStore(StoreConfig(path=path)) as vs:
        assert vs.list_collections() == ["c__v1", "c__v2"] and vs.resolve_alias("c") == "c__v1"
        assert not (Path(path) / "collections" / "c__v3").exists()  # removed at open
        vs.create_collection("c__v3", 4)


# -- the engines agree -----------------------------------------------------------------------------------------------
def _catalog_points(n=300, dim=16, seed=3):
    rng = np.random.default_rng(seed)
    points = []
    for i in range(n):
        vectors = {"fused": rng.normal(size=dim), "image": rng.normal(size=dim)}
        if i % 3 == 0:
            vectors["audio"] = rng.normal(size=dim)
        metadata = {"group": ["a", "b", "c"][i % 3], "n": i, "tags": ["x", "y"] if i % 5 == 0 else ["y"]}
        points.append(PointData(f"item{i}", vectors, {"metadata": metadata, "modalities": sorted(vectors)}))
    return points


def assert_same_hits(got, want, atol=1e-4):
    """Same ids and scores, in the same order, except that points of equal score may swap."""
    assert len(got) == len(want)
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=atol)
    for g, w in zip(got, want):
        if g.id != w.id:
            tied_g = {h.id for h in got if abs(h.score - g.score) <= atol}
            tied_w = {h.id for h in want if abs(h.score - w.score) <= atol}
            assert tied_g == tied_w, (g, w)


def _queries():
    from mmalign.connectors.query import Fused, Nearest, Prefetch
    from mmalign.plugin.index.filters import build_filter
    from mmalign.plugin.recommend.recommender import recommend_query

    rng = np.random.default_rng(11)
    q = [rng.normal(size=16).tolist() for _ in range(4)]
    even = build_filter({"group": ["a"]})
    yield "vector", {"query": q[0], "limit": 10}
    yield "vector image", {"query": q[1], "using": "image", "limit": 10}
    yield "vector audio (points without it are skipped)", {"query": q[1], "using": "audio", "limit": 10}
    yield "keyword filter", {"query": q[2], "limit": 10, "query_filter": even}
    yield "int-as-string filter", {"query": q[2], "limit": 5, "query_filter": build_filter({"n": ["7", "8"]})}
    yield (
        "list filter and exclusion",
        {
            "query": q[3],
            "limit": 10,
            "query_filter": build_filter({"tags": "x"}, exclude_ids=["item0", "item5"]),
        },
    )
    yield "exact", {"query": q[0], "limit": 10, "exact": True}
    yield (
        "rrf fusion",
        {
            "query": Fused(tuple(Prefetch(Nearest(v, "fused"), limit=20, filter=even) for v in q[:3]), "rrf"),
            "limit": 60,
        },
    )
    yield (
        "dbsf fusion",
        {
            "query": Fused(tuple(Prefetch(Nearest(v, "image"), limit=15) for v in q[:2]), "dbsf"),
            "limit": 30,
        },
    )
    for strategy in ("best_score", "average_vector", "sum_scores"):
        yield (
            f"recommend {strategy}",
            {
                "query": recommend_query(["item1", "item4"], ["item2"], strategy),
                "limit": 10,
                "query_filter": build_filter({"group": ["b", "c"]}),
            },
        )
    yield "recommend positives only", {"query": recommend_query(["item3"], [], "best_score"), "limit": 8}
    yield "nearest to an item", {"query": Nearest("item9"), "limit": 6}


def _fill(vs):
    vs.create_collection("cat__v1", 16, bundle_id="b")
    vs.set_alias("cat", "cat__v1")
    vs.upsert("cat", _catalog_points(), batch_size=64)


def test_edge_and_local_mode_return_the_same_results(tmp_path):
    """Congruence: the same points and queries on both embedded engines (exact search on a small collection)."""
    answers = {}
    for engine in ("edge", "local"):
        with VectorStore(StoreConfig(path=str(tmp_path / engine), engine=engine)) as vs:
            _fill(vs)
            if engine == "edge":
                assert vs.build_index("cat").details["created_payload_indexes"] == []  # small: no payload index
                report = vs.build_index("cat", fields=vs.filter_fields("cat"))  # forced; the answers stay exact
                assert "metadata.group" in report.details["created_payload_indexes"]
            answers[engine] = {name: vs.query("cat", **kw) for name, kw in _queries()}
            answers[engine]["count"] = vs.count("cat")
            answers[engine]["scroll"] = sorted(p.payload["item_id"] for p in vs.scroll("cat", page_size=37))
    assert answers["edge"]["count"] == answers["local"]["count"] == 300
    assert answers["edge"]["scroll"] == answers["local"]["scroll"]
    for name, _ in _queries():
        got, want = answers["edge"][name], answers["local"][name]
        assert got, name
        assert_same_hits(got, want), name
        assert [h.payload for h in got] == [h.payload for h in want] or name.startswith(("rrf", "dbsf")), name
    assert not {"item1", "item4", "item2"} & {h.payload["item_id"] for h in answers["edge"]["recommend best_score"]}
    assert all(h.payload["item_id"] != "item9" for h in answers["edge"]["nearest to an item"])


@pytest.mark.qdrant_server
def test_server_and_embedded_engines_agree():
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to compare against")
    configs = [
        StoreConfig(path=":memory:", engine="edge"),
        StoreConfig(path=":memory:", engine="local"),
        StoreConfig(url=url, api_key=os.environ.get("QDRANT_API_KEY")),
    ]
    answers = []
    for config in configs:
        with VectorStore(config) as vs:
            for name in ("cat__v1",):
                if vs.collection_exists(name):
                    vs.delete_collection(name)
            try:
                _fill(vs)
                answers.append({name: vs.query("cat", exact=True, **kw) for name, kw in _queries()})
            finally:
                vs.delete_collection("cat__v1")
    for name, _ in _queries():
        assert_same_hits(answers[0][name], answers[2][name])
        assert_same_hits(answers[1][name], answers[2][name])


def test_ingest_and_search_agree_on_edge_and_local_mode(trained):
    """The same ingest and searches (filters, multi-input fusion, recommendations) on both embedded engines."""
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.search import Searcher, search_query
    from mmalign.plugin.recommend.recommender import Recommender

    base, catalog = trained
    root = catalog.parent
    answers = []
    for engine in ("edge", "local"):
        with VectorStore(StoreConfig(path=":memory:", engine=engine)) as vs:
            ingest(catalog, bundle=base / "bundle", collection="items", store=vs, features_dir=base / "features")
            vs.build_index("items")
            searcher = Searcher("items", store=vs, device="cpu")
            rec = Recommender("items", store=vs)
            got = [searcher.search(image=[root / f"img{i}.png"], k=5, filters={"group": ["even"]}) for i in range(4)]
            # dense: the engines' agreement on vectors; hybrid ranks fuse BM25 ranks whose ties at the prefetch
            # cut-off either engine may order its own way (hybrid agreement: test_lexical_store.py, exact)
            got.append(searcher.run(search_query(text=["a red frog"], using="text", k=8, mode="dense")).hits)
            pair = [str(root / "img1.png"), str(root / "img2.png")]
            got.append(searcher.run(search_query(image=pair, text=["a blue car"], k=6, mode="dense")).hits)
            got += [rec.more_like(["item3", "item4"], k=6, negative=["item5"], strategy=s) for s in ("best_score",)]
            got.append(rec.more_like(["item7"], k=6, strategy="average_vector"))
            answers.append(got)
    for edge_hits, local_hits in zip(*answers):
        assert_same_hits(edge_hits, local_hits)


# -- indexes ---------------------------------------------------------------------------------------------------
def test_build_index_on_edge_builds_hnsw_and_payload_indexes_and_keeps_answers(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 16))
    points = []
    for i in range(3000):
        v = centers[i % 20] + 0.3 * rng.normal(size=16)
        points.append(PointData(f"p{i}", {"fused": v, "text": v[::-1]}, {"metadata": {"shard": f"s{i % 4}", "n": i}}))
    # small thresholds: 3,000 points of D=16 get their graph, and queries walk it
    config = StoreConfig(path=str(tmp_path / "q"), indexing_threshold_kb=10, full_scan_threshold_kb=1, hnsw_ef=128)
    queries = [centers[j] + 0.3 * rng.normal(size=16) for j in range(20)]
    with VectorStore(config) as vs:
        vs.create_collection("big", 16)
        vs.upsert("big", points, batch_size=500)
        before = [[h.id for h in vs.query("big", q, limit=10)] for q in queries]  # brute force, before any index
        report = vs.build_index("big")
        assert report.engine == "edge" and report.hnsw_vectors == ["fused"] and report.details["optimized"]
        assert report.payload_fields == {
            "item_id": "keyword",
            "modalities": "keyword",
            "metadata.shard": "keyword",
            "metadata.n": "integer",
        }
        assert set(report.details["payload_indexes"]) == set(report.payload_fields)
        after = [[h.id for h in vs.query("big", q, limit=10)] for q in queries]
        exact = [[h.id for h in vs.query("big", q, limit=10, exact=True)] for q in queries]
        assert before == exact
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(after, exact)])
        assert recall >= 0.95, recall
        text = [[h.id for h in vs.query("big", q, using="text", limit=10)] for q in queries]  # no graph: exact
        assert text == [[h.id for h in vs.query("big", q, using="text", limit=10, exact=True)] for q in queries]
        from mmalign.plugin.index.filters import build_filter

        hits = vs.query("big", queries[0], limit=10, query_filter=build_filter({"shard": ["s1"]}))
        assert len(hits) == 10 and {h.payload["metadata"]["shard"] for h in hits} == {"s1"}
        assert vs.build_index("big").details["created_payload_indexes"] == []  # again: nothing new
    with VectorStore(config) as vs:  # the index is on disk
        assert [[h.id for h in vs.query("big", q, limit=10)] for q in queries] == after


def test_build_index_on_local_mode_is_a_no_op():
    with VectorStore(StoreConfig(path=":memory:", engine="local")) as vs:
        vs.create_collection("c", 4)
        report = vs.build_index("c")
        assert report.engine == "local" and "no indexes" in report.note
        with pytest.raises(StoreError, match="does not exist"):
            vs.build_index("nope")


# -- push ---------------------------------------------------------------------------------------------------------
def _vectors(vs, name):
    return {p.payload["item_id"]: (p.payload, p.vector) for p in vs.scroll(name, with_vectors=True)}


@pytest.mark.parametrize("target_engine", ["edge", "local"])
def test_push_copies_a_version_and_its_alias_and_resumes(tmp_path, target_engine):
    source = VectorStore(StoreConfig(path=str(tmp_path / "src")))
    target = VectorStore(StoreConfig(path=str(tmp_path / "dst"), engine=target_engine))
    with source, target:
        source.create_collection("cat__v2", 16, bundle_id="b", extra={"state": "ready", "bundle_path": "/x"})
        source.set_alias("cat", "cat__v2")
        source.upsert("cat", _catalog_points())

        def interrupt(batch):
            if batch == 2:
                raise KeyboardInterrupt("killed")

        with pytest.raises(KeyboardInterrupt):
            push_collection(source, "cat", target, alias="cat", batch_size=50, on_batch=interrupt)
        assert target.resolve_alias("cat") is None  # no alias on a partial copy
        assert target.collection_record("cat__v2").state == "pushing"
        assert target.count("cat__v2") == 150
        report = push_collection(source, "cat", target, alias="cat", batch_size=50)
        assert report.resumed_from is not None and report.points == 300 and report.collection == "cat__v2"
        assert target.resolve_alias("cat") == "cat__v2" and target.count("cat") == 300
        record = target.collection_record("cat")
        assert (record.bundle_id, record.dim, record.state, record.bundle_path) == (
            "b",
            16,
            "ready",
            "/x",
        )
        assert record.push.done is True
        got, want = _vectors(target, "cat"), _vectors(source, "cat")
        assert got.keys() == want.keys()
        for key, (payload, vectors) in want.items():
            assert got[key][0] == payload and got[key][1].keys() == vectors.keys()
            for name in vectors:
                np.testing.assert_allclose(got[key][1][name], vectors[name], atol=1e-6)
        q = np.random.default_rng(1).normal(size=16)
        assert [h.id for h in target.query("cat", q, exact=True)] == [h.id for h in source.query("cat", q, exact=True)]


def test_push_refuses_a_different_bundle_on_the_target():
    with VectorStore(StoreConfig(path=":memory:")) as source, VectorStore(StoreConfig(path=":memory:")) as target:
        source.create_collection("c__v1", 4, bundle_id="b1")
        target.create_collection("c__v1", 4, bundle_id="b2")
        with pytest.raises(StoreError, match="built with bundle 'b2'"):
            push_collection(source, "c__v1", target)


def test_cli_push_to_another_embedded_store_and_info_and_index(tmp_path):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    with VectorStore(StoreConfig(path=src, engine="local")) as vs:
        vs.create_collection("cat__v1", 16, bundle_id="b")
        vs.set_alias("cat", "cat__v1")
        vs.upsert("cat", _catalog_points(n=40))
    runner = CliRunner()
    pushed = runner.invoke(
        main,
        ["store", "push", "--engine", "local", "--qdrant-path", src, "--collection", "cat", "--to-path", dst, "--json"],
    )
    assert pushed.exit_code == 0, pushed.output
    report = json.loads(pushed.stdout)
    assert (report["collection"], report["alias"], report["points"]) == ("cat__v1", "cat", 40)
    info = runner.invoke(main, ["store", "info", "--qdrant-path", dst])
    assert info.exit_code == 0, info.output
    assert info.output.startswith(f"edge store at {dst} (qdrant-edge-py ")
    assert "cat__v1" in info.output and "(alias cat)" in info.output
    indexed = runner.invoke(main, ["store", "index", "--qdrant-path", dst, "--collection", "cat"])
    assert indexed.exit_code == 0 and "cat__v1: indexed in" in indexed.output, indexed.output
    wrong = runner.invoke(main, ["store", "info", "--qdrant-path", src, "--engine", "edge"])  # local-mode folder
    assert wrong.exit_code == 1 and "--engine local" in wrong.output
    kept = runner.invoke(main, ["store", "info", "--qdrant-path", src])  # no --engine: it stays local
    assert kept.exit_code == 0 and kept.output.startswith("local store at"), kept.output
    neither = runner.invoke(main, ["store", "push", "--qdrant-path", src, "--collection", "cat"])
    assert neither.exit_code != 0 and "give the target" in neither.output


def test_cli_qdrant_path_wins_over_qdrant_url_from_the_environment(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(main, ["store", "info", "--qdrant-path", str(tmp_path / "q"), "--engine", "local"])
    assert result.exit_code == 0 and result.output.startswith("local store at"), result.output
    monkeypatch.setenv("MMALIGN_ENGINE", "local")
    result = CliRunner().invoke(main, ["store", "info", "--qdrant-path", str(tmp_path / "q2")])
    assert result.exit_code == 0 and result.output.startswith("local store at"), result.output


@pytest.mark.qdrant_server
def test_push_to_a_real_server(tmp_path):
    import uuid

    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to push to")
    name = f"mmalign_push_{uuid.uuid4().hex[:8]}"
    with VectorStore(StoreConfig(path=str(tmp_path / "src"))) as source:
        source.create_collection(f"{name}__v1", 16, bundle_id="b", extra={"state": "ready"})
        source.set_alias(name, f"{name}__v1")
        source.upsert(name, _catalog_points())
        with VectorStore(StoreConfig(url=url, api_key=os.environ.get("QDRANT_API_KEY"))) as server:
            try:
                report = push_collection(source, name, server, alias=name, batch_size=64)
                assert report.points == 300 and server.resolve_alias(name) == f"{name}__v1"
                assert server.count(name) == 300 and server.collection_record(name).bundle_id == "b"
                for _, kw in _queries():
                    assert_same_hits(server.query(name, exact=True, **kw), source.query(name, exact=True, **kw))
            finally:
                server.delete_collection(f"{name}__v1")
