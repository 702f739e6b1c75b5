"""Alignment quality over several seeds (split + init): svd, cca, teacher, student, student without distillation.

    python -m benchmarks.alignment CATALOG --media-root DIR [--features DIR] [--seeds 0 1 2 3 4]

One seed's numbers move by a few points on a catalog of ~1000 items (the test split has ~190
queries), so this prints mean ± std over seeds, and the student-minus-CCA difference per seed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PAIRS = (("text", "image"), ("image", "text"), ("audio", "image"), ("image", "audio"), ("audio", "text"))


def main(argv=None) -> int:
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.workflows.train import catalog_features
    from mmalign.schemas import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("catalog")
    parser.add_argument("--media-root")
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--preset", default="offline-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args(argv)

    catalog = open_catalog(args.catalog, media_root=args.media_root)
    _, specs, _, data = catalog_features(catalog, args.features, args.preset, None, "auto", False)
    rows: dict[tuple[str, str, str], list[float]] = {}
    params = {}
    seconds = []
    for seed in args.seeds:
        for distill in (True, False):
            cfg = TrainConfig(seed=seed, rank=args.rank, dim=args.dim, distill=distill)
            t0 = time.perf_counter()
            result = fit_alignment(data, cfg, echo=lambda line: None)
            seconds.append(time.perf_counter() - t0)
            for r in result.results:
                model = r["model"] if distill else ("student-nodistill" if r["model"] == "student" else None)
                if model is None:
                    continue
                rows.setdefault((model, r["query"], r["target"]), []).append(r["recall@10"])
            if distill:
                params = {
                    "student": result.models["student"].n_parameters(),
                    "teacher": result.models["teacher"].n_parameters(),
                }
        print(f"seed {seed} done", flush=True)

    models = ["svd", "cca", "teacher", "student", "student-nodistill"]
    print(
        f"\nrecall@10 on the held-out test split, mean ± std over seeds {args.seeds} "
        f"(D={args.dim}, r={args.rank}; {len(data)} items)"
    )
    print(f"{'query→target':<16}" + "".join(f"{m:>20}" for m in models))
    for q, t in PAIRS:
        if (models[0], q, t) not in rows:
            continue
        cells = []
        for m in models:
            values = np.array(rows.get((m, q, t), [np.nan]))
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
        print(f"{q + '→' + t:<16}" + "".join(f"{c:>20}" for c in cells))
    print("\nstudent − cca, per seed (recall@10):")
    for q, t in PAIRS[:2]:
        diff = np.array(rows[("student", q, t)]) - np.array(rows[("cca", q, t)])
        print(f"  {q}→{t}: {np.round(diff, 3).tolist()}  (mean {diff.mean():+.3f})")
    retention = np.array(rows[("student", "text", "image")]) / np.array(rows[("teacher", "text", "image")])
    print(f"student / teacher text→image recall@10: {np.round(retention, 3).tolist()} (mean {retention.mean():.3f})")
    print(
        f"parameters: student {params['student']:,}, teacher {params['teacher']:,} "
        f"(1/{params['teacher'] / params['student']:.0f}); mean training time per run {np.mean(seconds):.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
