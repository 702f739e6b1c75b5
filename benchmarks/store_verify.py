"""What checking the stored points costs: ingest's skip-check with and without the vectors, the read-back
after a write, ``store verify``'s full read, and a snapshot and its restore.

    python -m benchmarks.store_verify [--points 20000] [--dim 256] [--page 256]

Data (synthetic): ``--points`` items, each with ``image``, ``text`` and ``fused`` unit vectors of size
``--dim`` (random Gaussian, normalised) and a 0.7 KB payload, upserted into an Edge store in a temporary
folder. Times are wall seconds of one run each, on the machine it runs on; compare the rows with each
other (ratios), not across machines.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--page", type=int, default=256, help="items per skip-check call (ingest's chunk)")
    args = parser.parse_args(argv)

    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.index.checks import seal_written, stored_payloads
    from mmalign.plugin.index.snapshot import restore_collection, snapshot_collection
    from mmalign.plugin.index.verify import verify_collection
    from mmalign.schemas import StoreConfig

    rng = np.random.default_rng(0)
    ids = [f"item{i}" for i in range(args.points)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmalign-verify-bench-") as tmp:
        with VectorStore(StoreConfig(path=str(Path(tmp) / "store"))) as vs:
            vs.create_collection("items__v1", args.dim, bundle_id="bench", extra={"alias": "items"})
            vs.set_alias("items", "items__v1")
            for start in range(0, args.points, 512):
                batch = []
                for item_id in ids[start : start + 512]:
                    v = rng.normal(size=(3, args.dim)).astype(np.float32)
                    v /= np.linalg.norm(v, axis=1, keepdims=True)
                    payload = {"text": "x" * 500, "modalities": ["image", "text"], "bundle_id": "bench"}
                    batch.append(PointData(item_id, {"image": v[0], "text": v[1], "fused": v[2]}, payload))
                vs.upsert("items__v1", batch)
            vs.build_index("items__v1")

            def timed(label, fn):
                started = time.perf_counter()
                fn()
                rows.append((label, time.perf_counter() - started))

            pages = [ids[s : s + args.page] for s in range(0, len(ids), args.page)]
            timed("skip-check, payloads only (before #23)", lambda: [vs.retrieve("items__v1", p) for p in pages])
            timed(
                "skip-check, vectors read and checked",
                lambda: [stored_payloads(vs, "items__v1", p, args.dim) for p in pages],
            )
            timed("read-back of every point written", lambda: seal_written(vs, "items__v1", ids, before=None))
            timed("store verify (every point, no sample)", lambda: verify_collection(vs, "items", sample=0))
            archive = Path(tmp) / "items.snapshot"
            timed("store snapshot", lambda: snapshot_collection(vs, "items", archive))
            timed("store restore (+ index build)", lambda: restore_collection(vs, archive))
    base = rows[0][1]
    print(f"{args.points:,} points of 3 x {args.dim}-d, pages of {args.page}")
    print(f"{'step':<42}{'seconds':>9}{'x skip-check before':>22}")
    for label, seconds in rows:
        print(f"{label:<42}{seconds:>9.2f}{seconds / base:>22.1f}")


if __name__ == "__main__":
    main()
