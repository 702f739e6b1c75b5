"""Ingest throughput per stage, pipelined vs. naive, and query latency.

    python -m benchmarks.ingest --catalog CATALOG --media-root DIR --bundle BUNDLE [--limit 300]

1. Pipelined ingest (``plugin.ingest``) of the first ``--limit`` items with an empty feature
   cache and an empty embedded store: items/s per stage and end to end.
2. A naive loop over the same items, one at a time: decode, encode, project, fuse, upsert.
   Both use the same already-loaded encoders (loading is excluded from both); the ratio is
   measured in this run.
3. Query latency, p50/p99: encoding a text/image/audio query with the real encoders, and a
   Qdrant query on a collection of ``--points`` synthetic unit vectors (D of the bundle; the
   store part does not depend on where the vectors came from).
Timings hold for the machine they ran on; on a 2-core CPU they are not GPU figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def naive_ingest(items, catalog, bundle, encoders, store, collection) -> float:
    """One item at a time: decode, encode each modality, project and fuse, upsert."""
    from mmalign.connectors.store import PointData
    from mmalign.plugin.index.ingest import build_payload, item_content_hash, media_hash, modality_hashes, project_items
    from mmalign.schemas import Modality

    t0 = time.perf_counter()
    for item in items:
        hashes = modality_hashes(catalog, item)
        features = {}
        for m in bundle.student.modalities:
            if getattr(item, m.value) is None:
                continue
            enc = encoders[m]
            value = item.text if m is Modality.TEXT else enc.load_input(catalog.resolve(item, m), item.id)
            features[m] = {item.id: enc.encode([value], batch_size=1)[0]}
        [named] = project_items(bundle, [item.id], features)
        store.upsert(
            collection,
            [
                PointData(
                    item.id,
                    named,
                    build_payload(
                        item, list(features), item_content_hash(item, hashes), bundle.bundle_id, media_hash(hashes)
                    ),
                )
            ],
        )
    return time.perf_counter() - t0


def percentile_ms(samples, q):
    return float(np.percentile(np.asarray(samples) * 1000, q))


def main(argv=None) -> int:
    from mmalign.connectors.sources import open_catalog
    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.registry import encoder_id
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.versions import resolve_for_write
    from mmalign.schemas import Modality, StoreConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--media-root")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    catalog = open_catalog(args.catalog, media_root=args.media_root)
    items = catalog.items()[: args.limit]
    bundle = load_bundle(args.bundle, with_teacher=False)
    specs = {m: bundle.encoder_spec(m) for m in bundle.modalities}
    t0 = time.perf_counter()
    encoders = {m: build_encoder(s, device=args.device) for m, s in specs.items()}
    load_s = time.perf_counter() - t0
    pool = {encoder_id(s): encoders[m] for m, s in specs.items()}
    counts = {m.value: sum(getattr(i, m.value) is not None for i in items) for m in specs}
    print(f"{len(items)} items {counts}; bundle {bundle.bundle_id}; encoders loaded in {load_s:.1f}s (excluded)")

    subset = Path(tempfile.mkdtemp()) / "subset.jsonl"
    subset.write_text("".join(i.model_dump_json(exclude_none=True) + "\n" for i in items))
    sub_catalog = open_catalog(subset, media_root=catalog.media_root)

    with tempfile.TemporaryDirectory() as tmp:
        with VectorStore(StoreConfig(path=str(Path(tmp) / "q"))) as store:
            report = ingest(
                sub_catalog,
                bundle=bundle,
                collection="bench",
                store=store,
                features_dir=Path(tmp) / "features",
                encoder_pool=pool,
                device=args.device,
            )
        pipelined_s = report.seconds
        print("\npipelined ingest, per stage (stages overlap; encode = decode + encode of all modalities)")
        print(f"{'stage':<12}{'items':>7}{'seconds':>10}{'items/s':>10}")
        for name, stage in report.stages.items():
            print(f"{name:<12}{stage.items:>7}{stage.seconds:>10.2f}{stage.items_per_s:>10.1f}")
        print(f"{'end-to-end':<12}{report.ok:>7}{pipelined_s:>10.2f}{report.ok / pipelined_s:>10.1f}")

        with VectorStore(StoreConfig(path=str(Path(tmp) / "q2"))) as store:
            record = resolve_for_write(store, "naive", bundle.dim, bundle.bundle_id)
            naive_s = naive_ingest(items, sub_catalog, bundle, encoders, store, record.name)
            assert store.count(record.name) == report.ok
        print(f"\nnaive loop (one item at a time): {naive_s:.2f}s, {len(items) / naive_s:.1f} items/s")
        print(f"pipelined / naive throughput ratio: {naive_s / pipelined_s:.2f}x")

    print(f"\nquery latency ({args.queries} queries each)")
    print(f"{'what':<34}{'p50 ms':>9}{'p99 ms':>9}")
    rng = np.random.default_rng(0)
    texts = [i.text for i in items if i.text][: args.queries]
    images = [catalog.resolve(i, Modality.IMAGE) for i in items if i.image][: args.queries]
    audios = [catalog.resolve(i, Modality.AUDIO) for i in items if i.audio][: min(args.queries, 50)]
    for m, inputs in ((Modality.TEXT, texts), (Modality.IMAGE, images), (Modality.AUDIO, audios)):
        if m not in encoders or not inputs:
            continue
        samples = []
        for value in inputs:
            t0 = time.perf_counter()
            x = value if m is Modality.TEXT else encoders[m].load_input(value, "q")
            bundle.embed(m, encoders[m].encode([x], batch_size=1))
            samples.append(time.perf_counter() - t0)
        print(
            f"{'encode+project ' + m.value + ' query':<34}{percentile_ms(samples, 50):>9.1f}"
            f"{percentile_ms(samples, 99):>9.1f}"
        )
    with tempfile.TemporaryDirectory() as tmp, VectorStore(StoreConfig(path=str(Path(tmp) / "q"))) as store:
        store.create_collection("synthetic", bundle.dim)
        t0 = time.perf_counter()
        for start in range(0, args.points, 2000):
            vecs = rng.normal(size=(min(2000, args.points - start), bundle.dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            store.upsert(
                "synthetic",
                [PointData(f"s{start + n}", {"fused": v, "text": v}, {"n": start + n}) for n, v in enumerate(vecs)],
                batch_size=1000,
            )
        upsert_s = time.perf_counter() - t0
        samples = []
        for _ in range(args.queries):
            q = rng.normal(size=bundle.dim).astype(np.float32)
            t0 = time.perf_counter()
            store.query("synthetic", q, limit=10)
            samples.append(time.perf_counter() - t0)
        print(
            f"{f'qdrant query, {args.points:,} points':<34}{percentile_ms(samples, 50):>9.1f}"
            f"{percentile_ms(samples, 99):>9.1f}"
        )
        print(f"(synthetic upsert of {args.points:,} points: {args.points / upsert_s:,.0f} points/s, embedded engine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
