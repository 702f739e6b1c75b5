"""The scale model of docs/scale.md: runners, upsert-bound ingest, and the memory/recall of each layout.

    python -m benchmarks.scale [--catalog CATALOG --media-root DIR] [--bundle base] [--limit 200]
                               [--cached-items 20000] [--points 100000] [--queries 200]

1. **Runners**: the first ``--limit`` items of a real catalog (default: Tux Paint's stamps, made by
   examples/tuxpaint_catalog.py from the Debian package ``tuxpaint-stamps-default``) ingested with an empty
   feature cache into an empty Edge store by the in-process runner, then by the Ray runner with 1 and 2
   encoder actors on a local Ray cluster of the machine's cores (started once, before any timing, as a
   long-lived cluster would be). Items/s end to end and per stage, the ratio to in-process, and whether the
   points are the same (ids, payloads, max |difference| of the vectors).
2. **Upsert-bound ingest**: ``--cached-items`` synthetic text items whose raw features are already in the
   feature cache (random rows of the text encoder's size, written with the cache's own writer: the encoder
   does not run), ingested in-process into an empty Edge store: what ingest costs after encoding.
3. **Layouts**: ``--points`` synthetic clustered unit vectors (D of the bundle; 200 Gaussian clusters) in
   Edge collections of each layout (float32 in RAM; int8 and binary quantized in RAM with the float32
   originals on disk, for rescoring): upsert and HNSW build time, bytes of the vector data that must stay in
   RAM (vectors or quantized vectors + HNSW links, from the engine's files) per million points, and recall@10
   of ``--queries`` held-out points against exact search.

The machine is shared: the load average is printed at the start and the end; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TUXPAINT = Path("/usr/share/tuxpaint/stamps")


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def stage_table(name: str, report) -> list[str]:
    rows = [f"  {name}: {report.ok} ok, {report.failed} failed, {report.seconds:.1f} s end to end"]
    for stage, timing in report.stages.items():
        rows.append(f"    {stage:<14}{timing.items:>8}{timing.seconds:>9.2f} s{timing.items_per_s:>10.1f}/s")
    return rows


def stored_points(path: Path) -> dict:
    from mmalign.connectors.store import VectorStore
    from mmalign.schemas import StoreConfig

    with VectorStore(StoreConfig(path=str(path))) as vs:
        return {
            p.payload["item_id"]: (
                {k: v for k, v in p.payload.items() if k != "ingested_at"},
                {k: np.asarray(v) for k, v in p.vector.items()},
            )
            for p in vs.scroll("bench", with_vectors=True)
        }


def compare(got: dict, want: dict) -> str:
    if got.keys() != want.keys():
        return f"DIFFERENT ids ({len(got.keys() ^ want.keys())} differ)"
    payloads = sum(got[i][0] != want[i][0] for i in want)
    worst = max(
        (float(np.abs(got[i][1][k] - v).max()) if k in got[i][1] else float("inf"))
        for i in want
        for k, v in want[i][1].items()
    )
    return f"same ids; {payloads} payloads differ; max |vector difference| {worst:.2e}"


def bench_runners(args, catalog_path: Path, media_root: Path, bundle, work: Path) -> None:
    import ray

    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.index.ingest import ingest
    from mmalign.schemas import StoreConfig

    catalog = open_catalog(catalog_path, media_root=media_root)
    items = catalog.items()[: args.limit]
    subset = work / "subset.jsonl"
    subset.write_text("".join(i.model_dump_json(exclude_none=True) + "\n" for i in items))
    counts = {m.value: sum(getattr(i, m.value) is not None for i in items) for m in bundle.modalities}
    print(f"\n## 1. Runners: {len(items)} items of {catalog_path.name} {counts}, bundle {bundle.bundle_id}")
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"local Ray cluster of {os.cpu_count()} CPUs started in {time.perf_counter() - t0:.1f} s (excluded)")
    runs = [
        ("in-process", {}),
        ("ray, 1 actor", {"runner": "ray"}),
        ("ray, 2 actors", {"runner": "ray", "ray_workers": 2}),
    ]
    reports, seconds, lines = {}, {name: [] for name, _ in runs}, []
    try:
        for rep in range(args.repeat):  # every other repetition in reverse order: no runner always goes first
            for name, settings in runs if rep % 2 == 0 else runs[::-1]:
                folder = work / f"{name.replace(' ', '').replace(',', '-')}-{rep}"
                report = ingest(
                    open_catalog(subset, media_root=media_root),
                    bundle=bundle,
                    collection="bench",
                    store=StoreConfig(path=str(folder / "store")),
                    features_dir=folder / "features",
                    device="cpu",
                    **settings,
                )
                seconds[name].append(report.seconds)
                if rep == 0:
                    reports[name] = report
                    lines += stage_table(name, report)
    finally:
        ray.shutdown()
    base = float(np.median(seconds["in-process"]))
    print(f"\n{'runner':<16}{'items/s':>9}{'vs in-process':>15}   runs (s)   points vs in-process (first run)")
    want = stored_points(work / "in-process-0" / "store")
    for name, _ in runs:
        median = float(np.median(seconds[name]))
        rate = len(items) / median
        runs_s = "/".join(f"{x:.0f}" for x in seconds[name])
        same = (
            "-"
            if name == "in-process"
            else compare(stored_points(work / f"{name.replace(' ', '').replace(',', '-')}-0" / "store"), want)
        )
        print(f"{name:<16}{rate:>9.1f}{base / median:>14.2f}x   {runs_s:<10} {same}")
    print("\nper stage (items, worker or wall seconds, items/s; stages overlap):")
    print("\n".join(lines))


def bench_cached(args, bundle, work: Path) -> None:
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import CacheSink, text_hash
    from mmalign.plugin.index.ingest import ingest
    from mmalign.schemas import Modality, StoreConfig

    n = args.cached_items
    print(f"\n## 2. Upsert-bound ingest: {n:,} text items, raw features already cached (synthetic rows)")
    rng = np.random.default_rng(0)
    words = ["red", "green", "frog", "cat", "car", "tree", "house", "coin", "star", "boat", "hat", "drum"]
    texts = [" ".join(rng.choice(words, 4)) + f" {i}" for i in range(n)]
    catalog = work / "cached.jsonl"
    catalog.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    spec = ingest_specs(bundle, work)[Modality.TEXT]
    sink = CacheSink(FeatureCache(work / "cached-features"), spec, shard_size=4096)
    rows = rng.normal(size=(n, spec.dim)).astype(np.float32)
    for i, (text, row) in enumerate(zip(texts, rows)):
        sink.add(f"t{i}", text_hash(text), row, {})
    sink.flush()
    cpu0 = time.process_time()
    report = ingest(
        open_catalog(catalog),
        bundle=bundle,
        collection="bench",
        store=StoreConfig(path=str(work / "cached-store")),
        features_dir=work / "cached-features",
        device="cpu",
        chunk_size=1024,
    )
    cpu_s = time.process_time() - cpu0
    index_s = report.stages["index"].seconds if "index" in report.stages else 0.0
    print(f"{n / report.seconds:,.0f} items/s end to end ({report.seconds:.1f} s, {report.ok:,} written); ", end="")
    print(f"{n / (report.seconds - index_s):,.0f} items/s without the index build ({index_s:.1f} s)")
    print(f"{n / cpu_s:,.0f} items per CPU-second of this process ({cpu_s:.1f} CPU-s: the rate on one idle core)")
    print("\n".join(stage_table("in-process, cached", report)[1:]))


def ingest_specs(bundle, work: Path) -> dict:
    """The encoder specs ingest runs the bundle's encoders with (the runtime chosen included)."""
    from mmalign.connectors.sources import open_catalog
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.ingest import IngestOptions, start_run
    from mmalign.schemas import StoreConfig

    (work / "empty.jsonl").write_text("")
    with VectorStore(StoreConfig(path=":memory:")) as vs:
        empty = open_catalog(work / "empty.jsonl")
        return start_run(empty, bundle, "probe", vs, work, None, IngestOptions(device="cpu")).specs


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, dim))
    x = centres[rng.integers(0, 200, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def resident_bytes(folder: Path, vector: str, on_disk: bool) -> dict[str, int]:
    """Bytes of one named vector's files: originals, quantized copy, HNSW links (largest segment's)."""
    out = {"vectors": 0, "quantized": 0, "graph": 0}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        parts = path.relative_to(folder).parts
        if f"vector_storage-{vector}" in parts and path.name == "matrix.dat":
            out["vectors"] += path.stat().st_size
        elif f"vector_storage-{vector}" in parts and path.name.startswith("quantized"):
            out["quantized"] += path.stat().st_size
        elif f"vector_index-{vector}" in parts and path.name.startswith("links"):
            out["graph"] += path.stat().st_size
    out["ram"] = out["quantized"] + out["graph"] + (0 if on_disk else out["vectors"])
    return out


def bench_layouts(args, dim: int, work: Path) -> None:
    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.schemas import StoreConfig

    n, q = args.points, args.queries
    print(f"\n## 3. Layouts: {n:,} clustered unit vectors of D={dim} (named vector 'fused'), {q} held-out queries")
    data = clustered(n + q, dim, seed=1)
    points, queries = data[:n], data[n:]
    exact = np.argsort(-(queries @ points.T), axis=1)[:, :10]
    layouts = [("float32", None, False), ("int8", "int8", True), ("binary", "binary", True)]
    print(f"{'layout':<9}{'upsert s':>9}{'index s':>9}{'RAM MB/1M':>11}{'vs float32':>11}{'recall@10':>11}{'loss':>8}")
    base_ram = base_recall = None
    for name, kind, on_disk in layouts:
        folder = work / f"layout-{name}"
        # every segment gets its HNSW graph (as a large collection's would), whatever --points is
        config = StoreConfig(path=str(folder), quantization=kind, vectors_on_disk=on_disk, indexing_threshold_kb=1)
        with VectorStore(config) as vs:
            vs.create_collection("c", dim, sparse_vectors=())
            t0 = time.perf_counter()
            vs.upsert("c", (PointData(f"p{i}", {"fused": row}) for i, row in enumerate(points)), batch_size=1024)
            upsert_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            vs.build_index("c")
            index_s = time.perf_counter() - t0
            found = [[int(h.payload["item_id"][1:]) for h in vs.query("c", row, limit=10)] for row in queries]
        recall = float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))
        size = resident_bytes(folder, "fused", on_disk)
        ram = size["ram"] / n * 1e6 / 2**20
        base_ram, base_recall = base_ram or ram, base_recall if base_recall is not None else recall
        print(
            f"{name:<9}{upsert_s:>9.1f}{index_s:>9.1f}{ram:>11.1f}{base_ram / ram:>10.2f}x{recall:>11.3f}"
            f"{base_recall - recall:>8.3f}"
        )
        shutil.rmtree(folder, ignore_errors=True)
    print(
        "RAM = bytes of the vector data search keeps in memory (float32 vectors, or the quantized copy) + HNSW "
        "links, from the engine's files, scaled linearly to 1M points; int8/binary keep the originals on disk"
    )


def main(argv=None) -> int:
    from mmalign.plugin.align.bundle import load_bundle

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", help="Default: Tux Paint's stamps (examples/tuxpaint_catalog.py).")
    parser.add_argument("--media-root")
    parser.add_argument("--bundle", default="base", help="A bundle folder, or 'base' (the shipped base bundle).")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="Runner repetitions (alternating order); medians.")
    parser.add_argument("--cached-items", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[], choices=["runners", "cached", "layouts"])
    args = parser.parse_args(argv)

    print(load_line())
    bundle = load_bundle(args.bundle, with_teacher=False)
    work = Path(tempfile.mkdtemp(prefix="mmalign-scale-"))
    try:
        if "runners" not in args.skip:
            catalog, media_root = _catalog(args, work)
            bench_runners(args, catalog, media_root, bundle, work)
        if "cached" not in args.skip:
            bench_cached(args, bundle, work)
        if "layouts" not in args.skip:
            bench_layouts(args, bundle.dim, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{load_line()}")
    return 0


def _catalog(args, work: Path) -> tuple[Path, Path]:
    if args.catalog:
        return Path(args.catalog), Path(args.media_root or Path(args.catalog).parent)
    if not TUXPAINT.is_dir():
        raise SystemExit(f"{TUXPAINT} is missing: apt-get install tuxpaint-stamps-default, or pass --catalog")
    import subprocess
    import sys

    out = work / "tuxpaint.jsonl"
    script = Path(__file__).resolve().parents[1] / "examples" / "tuxpaint_catalog.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    return out, TUXPAINT


if __name__ == "__main__":
    raise SystemExit(main())
