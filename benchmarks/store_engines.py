"""The embedded engines side by side: mmalign's store on Qdrant Edge, raw EdgeShard calls on the same points
(the limit of what the store could reach), and qdrant-client's local mode.

    python -m benchmarks.store_engines [--points 20000] [--local-points 5000] [--queries 200] [--sweep]

Data (synthetic, CLUSTERED, not uniform: HNSW builds slowly on uniform random vectors and real embeddings
are clustered): ``--points // 100`` cluster centres in D = 256; each item's ``image``, ``text`` and
``audio`` vectors (audio on one item in three) are its centre plus its own Gaussian noise (0.6 per
dimension, cosine ≈ 0.85 to the centre); ``fused`` is the normalised mean of the item's modality vectors.
Each point carries the payload ingest writes (``build_payload``: text, media paths, metadata with a
10-value ``group``, a 50-value ``category`` and an integer ``n``, hashes, bundle id, time).
Queries are new items from the same clusters.

1. Upsert throughput (batches of ``--batch``): the store (``VectorStore.upsert``: validation, ids, the
   Edge call), raw Edge (``EdgeShard.update`` with precomputed ids: the limit), local mode on disk
   (``--local-points`` of the same points: it writes a few hundred points a second).
2. Top-10 on ``fused`` before any index (brute force), then the index build: the store's
   ``build_index`` (payload indexes on item_id, modalities and the metadata fields, then ``optimize()``
   with HNSW on ``fused`` only) and the same on the raw shard.
3. After the index: p50/p99 of top-10 on ``fused`` (with payload), with a payload filter (one ``group``
   value: 10 % of the points; items with audio: 33 %), RRF over two ``fused`` prefetches, and on
   ``text`` (no graph: brute force); recall@10 of the HNSW answer against exact search (``exact=True``).
4. Opening the existing store (load + first query), its disk size (allocated blocks), and the resident
   memory of a fresh process that opens it and runs the queries.
5. ``--sweep``: HNSW parameters (m, ef_construct) on ``fused`` alone, raw Edge: build time, recall@10,
   p50 - how the defaults were chosen.

Numbers hold for the machine they ran on (the 2-core CPU of the note in docs/engines.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 256
NAMES = ("image", "text", "audio", "fused")
GROUPS = 10
CATEGORIES = 50


# -- data ---------------------------------------------------------------------------------------------------
def make_items(n: int, dim: int = DIM, seed: int = 0):
    """(item ids, {vector name: matrix with NaN rows where absent}, payloads, centres)."""
    from mmalign.plugin.index.payload import build_payload
    from mmalign.schemas import CatalogItem, Modality

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 10), dim)).astype(np.float32)
    cluster = rng.integers(0, len(centres), n)
    vectors = {}
    for name in ("image", "text", "audio"):
        x = centres[cluster] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
        vectors[name] = x / np.linalg.norm(x, axis=1, keepdims=True)
    has_audio = np.arange(n) % 3 == 0
    present = np.stack([np.ones(n), np.ones(n), has_audio], axis=1)[:, :, None]
    modal = np.stack([vectors["image"], vectors["text"], vectors["audio"]], axis=1)
    fused = (modal * present).sum(axis=1)
    vectors["fused"] = (fused / np.linalg.norm(fused, axis=1, keepdims=True)).astype(np.float32)
    words = ["red", "green", "blue", "big", "small", "frog", "cat", "dog", "car", "tree", "house", "coin"]
    ids, payloads = [], []
    for i in range(n):
        item = CatalogItem(
            id=f"item{i}",
            text="a " + " ".join(words[(i * k) % len(words)] for k in (1, 3, 7)) + f" number {i}",
            image=f"img/{i}.png",
            audio=f"snd/{i}.wav" if has_audio[i] else None,
            metadata={"group": f"g{i % GROUPS}", "category": f"c{(i * 7) % CATEGORIES}", "n": i},
        )
        modalities = [Modality.IMAGE, Modality.TEXT] + ([Modality.AUDIO] if has_audio[i] else [])
        digest = hashlib.sha256(item.id.encode()).hexdigest()
        ids.append(item.id)
        payloads.append(build_payload(item, modalities, digest, "bench-bundle", digest))
    vectors["audio"][~has_audio] = np.nan
    return ids, vectors, payloads, centres


def make_queries(centres: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, centres.shape[1])).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def point_vectors(vectors, i: int) -> dict[str, np.ndarray]:
    return {name: vectors[name][i] for name in NAMES if not np.isnan(vectors[name][i, 0])}


# -- helpers ------------------------------------------------------------------------------------------------
def percentiles(samples) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(fn, inputs) -> tuple[list, list[float]]:
    out, samples = [], []
    for x in inputs:
        t0 = time.perf_counter()
        out.append(fn(x))
        samples.append(time.perf_counter() - t0)
    return out, samples


def recall(got: list[list], want: list[list]) -> float:
    return float(np.mean([len(set(g) & set(w)) / max(len(w), 1) for g, w in zip(got, want)]))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def raw_config(qe, m: int, ef_construct: int, threshold: int, hnsw_names=("fused",), names=NAMES):
    """The EdgeConfig mmalign's store creates (connectors/edge_store.py), built directly."""
    no_graph = qe.HnswIndexConfig(m=0, ef_construct=ef_construct, full_scan_threshold=threshold)
    return qe.EdgeConfig(
        vectors={
            n: qe.EdgeVectorParams(
                size=DIM, distance=qe.Distance.Cosine, hnsw_config=None if n in hnsw_names else no_graph
            )
            for n in names
        },
        hnsw_config=qe.HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=threshold),
    )


# -- the three engines --------------------------------------------------------------------------------------
def time_query_kinds(vs, q, q2, text_q, group, audio, out: dict) -> tuple[list, list]:
    """p50/p99 into ``out`` of the queries on collection "bench" that every engine is timed on: fused with the
    ``group`` filter (10 %) and the ``audio`` filter (33 %), RRF of two fused prefetches (``q`` and ``q2``),
    and text (``text_q``); returns the ids the two filtered kinds found (for their recall)."""
    from mmalign.connectors.query import Fused, Nearest, Prefetch

    filtered, samples = timed(lambda v: [h.id for h in vs.query("bench", v, limit=10, query_filter=group)], q)
    out["filter_p50"], out["filter_p99"] = percentiles(samples)
    broad, samples = timed(lambda v: [h.id for h in vs.query("bench", v, limit=10, query_filter=audio)], q)
    out["broad_p50"], out["broad_p99"] = percentiles(samples)

    def rrf(i):
        branches = tuple(Prefetch(Nearest(v, "fused"), limit=40) for v in (q[i], q2[i]))
        return vs.query("bench", Fused(branches, "rrf"), limit=10)

    _, samples = timed(rrf, range(len(q)))
    out["rrf_p50"], out["rrf_p99"] = percentiles(samples)
    _, samples = timed(lambda v: vs.query("bench", v, using="text", limit=10), text_q)
    out["text_p50"], out["text_p99"] = percentiles(samples)
    return filtered, broad


def bench_store(engine: str, root: Path, ids, vectors, payloads, queries, args, rows: dict) -> dict:

    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.index.search import build_filter
    from mmalign.schemas import StoreConfig

    n = len(ids)
    config = StoreConfig(path=str(root), engine=engine, full_scan_threshold_kb=args.full_scan_threshold_kb)
    out: dict = {"points": n}
    with VectorStore(config) as vs:
        vs.create_collection("bench", DIM, bundle_id="bench-bundle")
        points = [PointData(ids[i], point_vectors(vectors, i), payloads[i]) for i in range(n)]
        t0 = time.perf_counter()
        vs.upsert("bench", points, batch_size=args.batch)
        out["upsert_s"] = time.perf_counter() - t0
        out["upsert_per_s"] = n / out["upsert_s"]
        assert vs.count("bench") == n
        q = queries[: args.queries]
        _, samples = timed(lambda v: vs.query("bench", v, limit=10), q[: max(20, args.queries // 4)])
        out["brute_p50"], out["brute_p99"] = percentiles(samples)
        if engine == "edge":
            report = vs.build_index("bench")
            out["index_s"] = report.seconds
            out["optimize_s"] = report.details["optimize_seconds"]
            out["payload_indexes"] = sorted(report.payload_fields)
        group = build_filter({"group": ["g3"]})
        approx, samples = timed(lambda v: [h.id for h in vs.query("bench", v, limit=10)], q)
        out["fused_p50"], out["fused_p99"] = percentiles(samples)
        out["filter_ok"] = all(
            h.payload["metadata"]["group"] == "g3" for h in vs.query("bench", q[0], limit=10, query_filter=group)
        )
        audio = build_filter({"modalities": ["audio"]})
        q2 = queries[args.queries : 2 * args.queries]
        filtered, broad = time_query_kinds(vs, q, q2, q[: max(20, args.queries // 4)], group, audio, out)
        exact = [[h.id for h in vs.query("bench", v, limit=10, exact=True)] for v in q]
        exact_f = [[h.id for h in vs.query("bench", v, limit=10, query_filter=group, exact=True)] for v in q]
        out["recall"] = recall(approx, exact)
        out["recall_filter"] = recall(filtered, exact_f)
        exact_b = [[h.id for h in vs.query("bench", v, limit=10, query_filter=audio, exact=True)] for v in q]
        out["recall_broad"] = recall(broad, exact_b)
    t0 = time.perf_counter()
    with VectorStore(config) as vs:
        vs.query("bench", queries[0], limit=10)
        out["open_s"] = time.perf_counter() - t0
    out["disk_mib"] = folder_bytes(root) / 2**20
    out["rss"] = rss_of_a_fresh_process(engine, root, args)
    rows[engine] = out
    return out


def bench_raw(root: Path, ids, vectors, payloads, queries, args) -> dict:
    import qdrant_edge as qe

    from mmalign.connectors.store import point_id

    n = len(ids)
    out: dict = {"points": n}
    from mmalign.schemas import StoreConfig

    defaults = StoreConfig()
    shard = qe.EdgeShard.create(
        str(root), raw_config(qe, defaults.hnsw_m, defaults.hnsw_ef_construct, args.full_scan_threshold_kb)
    )
    pids = [point_id(i) for i in ids]
    has = {name: ~np.isnan(vectors[name][:, 0]) for name in NAMES}
    t0 = time.perf_counter()
    for start in range(0, n, args.batch):
        batch = [
            qe.Point(
                pids[i],
                {name: vectors[name][i].tolist() for name in NAMES if has[name][i]},
                {"item_id": ids[i], **payloads[i]},
            )
            for i in range(start, min(n, start + args.batch))
        ]
        shard.update(qe.UpdateOperation.upsert_points(batch))
    out["upsert_s"] = time.perf_counter() - t0
    out["upsert_per_s"] = n / out["upsert_s"]
    q = queries[: args.queries]

    def nearest(v, flt=None, using="fused"):
        return shard.query(
            qe.QueryRequest(limit=10, query=qe.Query.Nearest(v.tolist(), using=using), filter=flt, with_payload=True)
        )

    _, samples = timed(nearest, q[: max(20, args.queries // 4)])
    out["brute_p50"], out["brute_p99"] = percentiles(samples)
    kinds = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}
    fields = {
        "item_id": "keyword",
        "modalities": "keyword",
        "metadata.group": "keyword",
        "metadata.category": "keyword",
        "metadata.n": "integer",
    }
    t0 = time.perf_counter()
    for field, kind in fields.items():
        shard.update(qe.UpdateOperation.create_field_index(field, kinds[kind]))
    t1 = time.perf_counter()
    shard.optimize()
    out["optimize_s"] = time.perf_counter() - t1
    shard.flush()
    out["index_s"] = time.perf_counter() - t0
    group = qe.Filter(must=[qe.FieldCondition("metadata.group", match=qe.MatchAny(["g3"]))])
    _, samples = timed(nearest, q)
    out["fused_p50"], out["fused_p99"] = percentiles(samples)
    _, samples = timed(lambda v: nearest(v, group), q)
    out["filter_p50"], out["filter_p99"] = percentiles(samples)
    audio = qe.Filter(must=[qe.FieldCondition("modalities", match=qe.MatchAny(["audio"]))])
    _, samples = timed(lambda v: nearest(v, audio), q)
    out["broad_p50"], out["broad_p99"] = percentiles(samples)
    q2 = queries[args.queries : 2 * args.queries]

    def rrf(i):
        prefetches = [qe.Prefetch(limit=40, query=qe.Query.Nearest(v.tolist(), using="fused")) for v in (q[i], q2[i])]
        return shard.query(
            qe.QueryRequest(limit=10, query=qe.Fusion.Rrf(k=2), prefetches=prefetches, with_payload=True)
        )

    _, samples = timed(rrf, range(len(q)))
    out["rrf_p50"], out["rrf_p99"] = percentiles(samples)
    _, samples = timed(lambda v: nearest(v, using="text"), q[: max(20, args.queries // 4)])
    out["text_p50"], out["text_p99"] = percentiles(samples)
    shard.close()
    t0 = time.perf_counter()
    shard = qe.EdgeShard.load(str(root))
    nearest(queries[0])
    out["open_s"] = time.perf_counter() - t0
    shard.close()
    out["disk_mib"] = folder_bytes(root) / 2**20
    return out


def bench_local(root: Path, ids, vectors, payloads, queries, args) -> dict:
    """qdrant-client's local mode: upserts, opening, disk and memory on disk with ``--local-points``; query
    latency (``--local-queries`` of each kind) on all the points in a local store in memory (local mode
    searches the same numpy arrays either way; on disk it also persists each point to SQLite, which is
    what makes its writes slow)."""

    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.index.search import build_filter
    from mmalign.schemas import StoreConfig

    k = min(args.local_points, len(ids))
    out: dict = {"points": len(ids), "disk_points": k}
    config = StoreConfig(path=str(root), engine="local")
    with VectorStore(config) as vs:
        vs.create_collection("bench", DIM, bundle_id="bench-bundle")
        points = [PointData(ids[i], point_vectors(vectors, i), payloads[i]) for i in range(k)]
        t0 = time.perf_counter()
        vs.upsert("bench", points, batch_size=args.batch)
        out["upsert_s"] = time.perf_counter() - t0
        out["upsert_per_s"] = k / out["upsert_s"]
    t0 = time.perf_counter()
    with VectorStore(config) as vs:
        vs.query("bench", queries[0], limit=10)
        out["open_s"] = time.perf_counter() - t0
    out["disk_mib"] = folder_bytes(root) / 2**20
    out["rss"] = rss_of_a_fresh_process("local", root, args)
    with VectorStore(StoreConfig(path=":memory:", engine="local")) as vs:
        vs.create_collection("bench", DIM, bundle_id="bench-bundle")
        vs.upsert(
            "bench",
            (PointData(ids[i], point_vectors(vectors, i), payloads[i]) for i in range(len(ids))),
            batch_size=5000,
        )
        q = queries[: args.local_queries]  # local mode takes up to seconds a filtered query at 100k
        _, samples = timed(lambda v: vs.query("bench", v, limit=10), q)
        out["brute_p50"], out["brute_p99"] = percentiles(samples)
        out["fused_p50"], out["fused_p99"] = out["brute_p50"], out["brute_p99"]
        group, audio = build_filter({"group": ["g3"]}), build_filter({"modalities": ["audio"]})
        time_query_kinds(vs, q, queries[args.queries : 2 * args.queries], q, group, audio, out)
    return out


RSS_CHILD = """
import sys, time, numpy as np
from mmalign.connectors.store import VectorStore
from mmalign.schemas import StoreConfig
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import qdrant_client.models, qdrant_edge  # imports counted in the baseline
base = rss()
queries = np.load(sys.argv[3])
with VectorStore(StoreConfig(path=sys.argv[2], engine=sys.argv[1])) as vs:
    for q in queries:
        vs.query("bench", q, limit=10)
    print(base, rss())
"""


def rss_of_a_fresh_process(engine: str, root: Path, args) -> dict:
    queries = root.parent / f"queries-{engine}.npy"
    np.save(queries, args.query_matrix[: args.queries])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, engine, str(root), str(queries)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    base, after = (float(x) for x in done.stdout.split())
    return {"baseline_mib": base, "after_mib": after}


def sweep(ids, vectors, queries, args, root: Path) -> list[dict]:
    """HNSW parameters on ``fused`` alone (raw Edge): build time, recall@10 at the default ef, p50."""
    import qdrant_edge as qe

    from mmalign.connectors.store import point_id

    pids = [point_id(i) for i in ids]
    fused = vectors["fused"]
    q = queries[: args.queries]
    results = []
    for m, ef in [(16, 64), (16, 100), (16, 32), (8, 64)]:
        path = root / f"sweep-{m}-{ef}"
        shard = qe.EdgeShard.create(str(path), raw_config(qe, m, ef, args.full_scan_threshold_kb, names=("fused",)))
        for start in range(0, len(ids), args.batch):
            shard.update(
                qe.UpdateOperation.upsert_points(
                    [
                        qe.Point(pids[i], {"fused": fused[i].tolist()})
                        for i in range(start, min(len(ids), start + args.batch))
                    ]
                )
            )
        t0 = time.perf_counter()
        shard.optimize()
        build = time.perf_counter() - t0

        def top(v, exact=False, shard=shard):
            params = qe.SearchParams(exact=True) if exact else None
            request = qe.QueryRequest(limit=10, query=qe.Query.Nearest(v.tolist(), using="fused"), params=params)
            return [p.id for p in shard.query(request)]

        approx, samples = timed(top, q)
        exact = [top(v, exact=True) for v in q]
        p50, p99 = percentiles(samples)
        results.append({"m": m, "ef_construct": ef, "build_s": build, "recall": recall(approx, exact), "p50": p50})
        shard.close()
        shutil.rmtree(path, ignore_errors=True)
        print(
            f"  sweep m={m} ef_construct={ef}: build {build:.1f}s recall {results[-1]['recall']:.3f} p50 {p50:.2f} ms"
        )
    return results


# -- report -------------------------------------------------------------------------------------------------
def table(rows: dict, args) -> str:
    edge, raw, local = rows.get("edge"), rows.get("raw"), rows.get("local")

    def cell(row, key, fmt="{:.2f}"):
        return fmt.format(row[key]) if row and key in row and row[key] is not None else "-"

    local_note = f" [local: {local['disk_points']:,} points, on disk]" if local else ""

    def lat(row, key):
        return f"{cell(row, key + '_p50')} / {cell(row, key + '_p99')}" if row else "-"

    lines = [
        f"| {args.points:,} points | store on Edge | raw EdgeShard | local mode |",
        "|---|---:|---:|---:|",
        f"| upsert, points/s (4 named vectors, D={DIM}, payload){local_note} | "
        f"{cell(edge, 'upsert_per_s', '{:,.0f}')} | {cell(raw, 'upsert_per_s', '{:,.0f}')} | "
        f"{cell(local, 'upsert_per_s', '{:,.0f}')} |",
        f"| top-10 fused, no index (brute force), p50 / p99 ms | {lat(edge, 'brute')} | {lat(raw, 'brute')} | "
        f"{lat(local, 'brute')} |",
        f"| index build (payload indexes + optimize), s | {cell(edge, 'index_s', '{:.1f}')} | "
        f"{cell(raw, 'index_s', '{:.1f}')} | - (none) |",
        f"| of which optimize() (HNSW on fused), s | {cell(edge, 'optimize_s', '{:.1f}')} | "
        f"{cell(raw, 'optimize_s', '{:.1f}')} | - |",
        f"| top-10 fused after index, p50 / p99 ms | {lat(edge, 'fused')} | {lat(raw, 'fused')} | "
        f"{lat(local, 'fused')} |",
        f"| same + filter (group, 10 %), p50 / p99 ms | {lat(edge, 'filter')} | {lat(raw, 'filter')} | "
        f"{lat(local, 'filter')} |",
        f"| same + filter (has audio, 33 %), p50 / p99 ms | {lat(edge, 'broad')} | {lat(raw, 'broad')} | "
        f"{lat(local, 'broad')} |",
        f"| RRF of two fused prefetches, p50 / p99 ms | {lat(edge, 'rrf')} | {lat(raw, 'rrf')} | {lat(local, 'rrf')} |",
        f"| top-10 text (no graph: brute force), p50 / p99 ms | {lat(edge, 'text')} | {lat(raw, 'text')} | "
        f"{lat(local, 'text')} |",
        f"| recall@10 vs exact: fused / 10 % filter / 33 % filter | {cell(edge, 'recall', '{:.3f}')} / "
        f"{cell(edge, 'recall_filter', '{:.3f}')} / {cell(edge, 'recall_broad', '{:.3f}')} | - | exact |",
        f"| open existing store + first query, s{local_note} | {cell(edge, 'open_s')} | {cell(raw, 'open_s')} | "
        f"{cell(local, 'open_s')} |",
        f"| disk, MiB (allocated){local_note} | {cell(edge, 'disk_mib', '{:.0f}')} | "
        f"{cell(raw, 'disk_mib', '{:.0f}')} | "
        f"{cell(local, 'disk_mib', '{:.0f}')} |",
    ]
    if edge and local:
        lines.append(
            f"| resident memory of a fresh process after the queries, MiB (imports alone){local_note} | "
            f"{edge['rss']['after_mib']:.0f} ({edge['rss']['baseline_mib']:.0f}) | - | "
            f"{local['rss']['after_mib']:.0f} ({local['rss']['baseline_mib']:.0f}) |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    from mmalign.schemas import StoreConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument(
        "--local-points", type=int, default=2_000, help="Points local mode writes to disk (0: skip it)."
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--local-queries", type=int, default=20, help="Queries per kind on local mode (slow).")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--sweep", action="store_true", help="Also sweep HNSW parameters on fused (raw Edge).")
    parser.add_argument(
        "--full-scan-threshold-kb",
        type=int,
        default=StoreConfig().full_scan_threshold_kb,
        help="StoreConfig.full_scan_threshold_kb for the Edge store and the raw shard.",
    )
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args(argv)

    import qdrant_edge  # noqa: F401  (fail early without the package)

    t0 = time.perf_counter()
    ids, vectors, payloads, centres = make_items(args.points)
    queries = make_queries(centres, 2 * args.queries)
    args.query_matrix = queries
    print(f"{args.points:,} clustered items ({len(centres)} clusters), D={DIM}, in {time.perf_counter() - t0:.1f}s")
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="mmalign-bench-") as tmp:
        root = Path(tmp)
        print("store on Edge ...", flush=True)
        bench_store("edge", root / "edge", ids, vectors, payloads, queries, args, rows)
        print("raw EdgeShard ...", flush=True)
        rows["raw"] = bench_raw(root / "raw", ids, vectors, payloads, queries, args)
        if args.local_points:
            print(f"local mode ({min(args.local_points, args.points):,} points on disk, all in memory) ...", flush=True)
            rows["local"] = bench_local(root / "local", ids, vectors, payloads, queries, args)
        if args.sweep:
            print("HNSW sweep (fused only, raw Edge) ...", flush=True)
            rows["sweep"] = sweep(ids, vectors, queries, args, root)
    from importlib.metadata import version

    versions = {p: version(p) for p in ("qdrant-edge-py", "qdrant-client")}
    print(f"\n{args.points:,} points; {args.queries} queries; {os.cpu_count()} CPUs; {versions}")
    print(f"load average at the end (1/5/15 min): {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(table(rows, args))
    edge, raw = rows["edge"], rows["raw"]
    print(
        f"\nstore / raw: upsert {edge['upsert_per_s'] / raw['upsert_per_s']:.0%} of raw; fused p50 "
        f"{edge['fused_p50'] / raw['fused_p50']:.2f}x raw; "
        f"filtered p50 {edge['filter_p50'] / raw['filter_p50']:.2f}x raw"
    )
    if args.sweep:
        print("\n| m | ef_construct | build s | recall@10 | p50 ms |\n|---:|---:|---:|---:|---:|")
        for r in rows["sweep"]:
            print(f"| {r['m']} | {r['ef_construct']} | {r['build_s']:.1f} | {r['recall']:.3f} | {r['p50']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args) | {"query_matrix": None}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
