"""Offline evaluation of recommenders: temporal leave-last-out, Recall@K and NDCG@K.

Baselines on the same split: popularity, item-kNN (cosine on the binarised user–item matrix)
and PureSVD (truncated SVD of that matrix). Ours: scores = item vectors · user vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmalign.plugin.recommend.scorers import (
    collab_scorer,
    hybrid_scorer,
    item_knn_scorer,
    library_scorers,
    popularity_scorer,
    pure_svd_scorer,
    user_vector_scorer,
)
from mmalign.plugin.recommend.splits import (
    KS,
    ColdItemSplit,
    Matrix,
    RecSplit,
    cold_item_split,
    cold_matrix,
    evaluate_cold,
    evaluate_scorer,
    order_key,
    split_interactions,
)
from mmalign.plugin.recommend.tuning import choose_popularity_weight, tune_baselines, tune_collab
from mmalign.schemas import Interaction, RecEvalReport, RecRow, UserVectorConfig
from mmalign.schemas.reports import ColdRow


def baseline_results(
    split: RecSplit, item_ids: Sequence[str], cfg: UserVectorConfig, svd_rank: int = 50, knn_neighbours: int = 100
) -> tuple[Matrix, list[dict]]:
    m = Matrix(split, item_ids, cfg)
    return m, [
        evaluate_scorer("popularity", popularity_scorer(m), m, split),
        evaluate_scorer("item-knn", item_knn_scorer(m, knn_neighbours), m, split),
        evaluate_scorer(f"pure-svd (rank {svd_rank})", pure_svd_scorer(m, svd_rank), m, split),
    ]


def recommend_query_result(
    store,
    collection: str,
    split: RecSplit,
    known: set[str],
    cfg: UserVectorConfig,
    strategy: str = "best_score",
    ks=KS,
    max_examples: int = 50,
) -> dict:
    """Qdrant RecommendQuery with each user's latest positives as examples, seen items excluded."""
    from mmalign.connectors.query import Filter, HasItem
    from mmalign.plugin.recommend.recommender import recommend_query
    from mmalign.plugin.recommend.user_vectors import strength

    history: dict[str, list[Interaction]] = {}
    for row in sorted(split.train, key=order_key):
        history.setdefault(row.user_id, []).append(row)
    totals: dict[str, float] = {}
    n = 0
    for user, target in split.test.items():
        rows = history.get(user, [])
        positives = [r.item_id for r in rows if strength(r.weight, cfg) > 0][-max_examples:]
        negatives = [r.item_id for r in rows if strength(r.weight, cfg) < 0][-max_examples:]
        if not positives or target not in known:
            continue
        seen = {r.item_id for r in rows}
        query = recommend_query(positives, negatives, strategy)
        hits = store.query(
            collection,
            query,
            limit=max(ks),
            with_payload=["item_id"],
            query_filter=Filter(must_not=(HasItem(tuple(seen)),)),
        )
        ranked = [h.payload["item_id"] for h in hits]
        rank = ranked.index(target) if target in ranked else 10**9
        for k in ks:
            totals[f"recall@{k}"] = totals.get(f"recall@{k}", 0.0) + float(rank < k)
            totals[f"ndcg@{k}"] = totals.get(f"ndcg@{k}", 0.0) + (float(1 / np.log2(rank + 2)) if rank < k else 0.0)
        n += 1
    return {"model": f"qdrant RecommendQuery {strategy}", **{k: v / max(n, 1) for k, v in totals.items()}, "n_users": n}


def collection_item_vectors(store, collection: str) -> tuple[list[str], np.ndarray]:
    """Every item id and fused vector of a collection (scrolled in pages)."""
    ids, vectors = [], []
    for p in store.scroll(collection, with_payload=["item_id"], with_vectors=["fused"]):
        ids.append(p.payload["item_id"])
        vectors.append(p.vector["fused"])
    return ids, np.asarray(vectors, dtype=np.float64).reshape(len(ids), -1)


def evaluate_collection(
    collection: str,
    interactions_path,
    *,
    store,
    how: str = "leave-last-out",
    cfg: UserVectorConfig | None = None,
    collab: bool = True,
    cold_fraction: float | None = 0.1,
    seed: int = 0,
    dead_letter: str | Path | None = None,
) -> RecEvalReport:
    """Baselines, user vectors and RecommendQuery on one split of the interactions, over the collection's items.

    With ``collab``: the collab factors and the hybrid (settings chosen on the training part), and
    the tuned baselines (``implicit`` ALS/BPR too when it is installed). With ``cold_fraction``: the
    cold-item protocol (:func:`cold_item_split`) on the same interactions, every method refitted
    without the cold items' interactions. ``dead_letter``: where invalid interaction rows are written
    (each with its file:line and reason); the report counts them and names the file."""
    from mmalign.connectors.interactions import read_interactions
    from mmalign.plugin.index.versions import resolve_for_read

    cfg = cfg or UserVectorConfig()
    resolve_for_read(store, collection)
    item_ids, matrix = collection_item_vectors(store, collection)
    known = set(item_ids)
    load = read_interactions(interactions_path, dead_letter=dead_letter)
    rows = [r for r in load.interactions if r.item_id in known]
    split = split_interactions(rows, how)
    m, results = baseline_results(split, item_ids, cfg)
    results.append(evaluate_scorer("user vector (mmalign)", user_vector_scorer(split, item_ids, matrix, cfg), m, split))
    weight, _ = choose_popularity_weight(split.train, item_ids, matrix, cfg)
    results.append(
        evaluate_scorer(
            f"user vector + popularity prior (w={weight:g})",
            user_vector_scorer(split, item_ids, matrix, cfg, weight, m),
            m,
            split,
        )
    )
    results.append(recommend_query_result(store, collection, split, known, cfg))
    chosen, cold_name, cold_rows = None, None, []
    if collab:
        ccfg, warm_rows = collab_rows(split, item_ids, matrix, cfg, m, seed)
        results.extend(warm_rows)
        chosen = ccfg.model_dump()
    if collab and cold_fraction:
        cold = cold_item_split(rows, cold_fraction, cfg)
        cold_name = cold.name
        cold_rows = cold_results(cold, item_ids, matrix, cfg, seed)
    return RecEvalReport(
        collection=collection,
        split=split.name,
        n_items=len(item_ids),
        interactions=len(load.interactions),
        invalid_rows=len(load.invalid),
        dead_letter=str(dead_letter) if load.invalid and dead_letter is not None else None,
        unknown_item_rows=len(load.interactions) - len(rows),
        unknown_item_ids=len({r.item_id for r in load.interactions} - known),
        results=[RecRow.model_validate(r) for r in results],
        collab=chosen,
        cold_split=cold_name,
        cold_results=[ColdRow.model_validate(r) for r in cold_rows],
    )


def collab_rows(
    split: RecSplit, item_ids: Sequence[str], content: np.ndarray, cfg: UserVectorConfig, m: Matrix, seed: int = 0
):
    """Tuned baselines, collab and hybrid rows on a warm split (settings chosen on ``split.train``)."""
    from mmalign.plugin.recommend.collab import fit_collab

    ccfg, _ = tune_collab(split.train, item_ids, content, cfg, seed=seed)
    base = tune_baselines(split.train, item_ids, cfg)
    rows = [
        evaluate_scorer(f"item-knn (k={base['knn']}, tuned)", item_knn_scorer(m, base["knn"]), m, split),
        evaluate_scorer(f"pure-svd (rank {base['svd']}, tuned)", pure_svd_scorer(m, base["svd"]), m, split),
    ]
    rows += [evaluate_scorer(name, s, m, split) for name, s in library_scorers(m, base, seed).items()]
    factors = fit_collab(split.train, item_ids, ccfg, cfg)
    rows.append(evaluate_scorer(f"collab ({ccfg.method}, rank {ccfg.rank})", collab_scorer(factors), m, split))
    scorer = hybrid_scorer(factors, factors.item_factors, split.train, item_ids, content, cfg, ccfg.content_weight)
    rows.append(evaluate_scorer(f"hybrid (collab + {ccfg.content_weight:g}·content)", scorer, m, split))
    return ccfg, rows


def cold_results(
    cold: ColdItemSplit, item_ids: Sequence[str], content: np.ndarray, cfg: UserVectorConfig, seed: int = 0
) -> list[dict]:
    """Every method refitted without the cold items' interactions, settings chosen on ``cold.train``."""
    from mmalign.plugin.recommend.collab import ContentMap, content_weights, fit_collab, item_collab_vectors

    cm = cold_matrix(cold, item_ids, cfg)
    warm = np.asarray(cm.matrix.sum(0) > 0)
    ccfg, _ = tune_collab(cold.train, item_ids, content, cfg, seed=seed)
    base = tune_baselines(cold.train, item_ids, cfg)
    prior_w, _ = choose_popularity_weight(cold.train, item_ids, content, cfg)
    rows = [
        evaluate_cold("popularity", popularity_scorer(cm), cm, cold, seed=seed),
        evaluate_cold(f"item-knn (k={base['knn']})", item_knn_scorer(cm, base["knn"]), cm, cold, seed=seed),
        evaluate_cold(f"pure-svd (rank {base['svd']})", pure_svd_scorer(cm, base["svd"]), cm, cold, seed=seed),
    ]
    rows += [evaluate_cold(name, s, cm, cold, seed=seed) for name, s in library_scorers(cm, base, seed).items()]
    rows.append(evaluate_cold("content: user vector", user_vector_scorer(cold, item_ids, content, cfg), cm, cold))
    rows.append(
        evaluate_cold(
            f"content: user vector + popularity prior (w={prior_w:g})",
            user_vector_scorer(cold, item_ids, content, cfg, prior_w, cm),
            cm,
            cold,
            seed=seed,
        )
    )
    factors = fit_collab(cold.train, item_ids, ccfg, cfg)
    rows.append(evaluate_cold(f"collab ({ccfg.method}), no content map", collab_scorer(factors), cm, cold, seed=seed))
    items = item_collab_vectors(
        factors, content, warm, ContentMap(ccfg.map_reg).fit(content[warm], factors.item_factors[warm])
    )
    rows.append(
        evaluate_cold("collab, content → collab for cold items", collab_scorer(factors, items), cm, cold, seed=seed)
    )
    per_item = content_weights(~warm, ccfg.content_weight, ccfg.cold_content_weight)
    scorer = hybrid_scorer(factors, items, cold.train, item_ids, content, cfg, per_item)
    label = f"hybrid (content → collab + {ccfg.cold_content_weight:g}·content on cold items)"
    rows.append(evaluate_cold(label, scorer, cm, cold, seed=seed))
    return rows


def incremental_check(
    train: Sequence[Interaction],
    new: Sequence[Interaction],
    item_ids: Sequence[str],
    ccfg,
    cfg: UserVectorConfig,
    k: int = 10,
) -> dict:
    """Does folding ``new`` interactions into the users (item factors fixed) recommend what a full
    refit on ``train + new`` recommends? Mean top-k overlap of the two, next to the overlap of two
    full refits that differ only in the seed (the noise floor of the model itself), and the time of
    one fold-in."""
    import time

    from mmalign.plugin.recommend.collab import fit_collab

    before = fit_collab(train, item_ids, ccfg, cfg)
    refit = fit_collab([*train, *new], item_ids, ccfg, cfg)
    other = fit_collab([*train, *new], item_ids, ccfg.model_copy(update={"seed": ccfg.seed + 1}), cfg)
    history: dict[str, list[str]] = {}
    for row in [*train, *new]:
        if cfg.strength(row.weight) > 0:
            history.setdefault(row.user_id, []).append(row.item_id)
    users = sorted({r.user_id for r in new})
    seen_all: dict[str, set[str]] = {}
    for row in [*train, *new]:
        seen_all.setdefault(row.user_id, set()).add(row.item_id)

    def top(items: np.ndarray, u: np.ndarray, user: str) -> set[int]:
        s = items @ u
        s[[before.item_index[i] for i in seen_all[user] if i in before.item_index]] = -np.inf
        return set(np.argsort(-s)[:k].tolist())

    times, fold_vs_refit, refit_vs_refit = [], [], []
    for user in users:
        t0 = time.perf_counter()
        folded = before.fold_in(history.get(user, []))
        times.append(time.perf_counter() - t0)
        a = top(before.item_factors, folded, user)
        b = top(refit.item_factors, refit.user_vector(user), user)
        c = top(other.item_factors, other.user_vector(user), user)
        fold_vs_refit.append(len(a & b) / k)
        refit_vs_refit.append(len(b & c) / k)
    return {
        "users": len(users),
        f"top{k}_overlap_fold_in_vs_refit": float(np.mean(fold_vs_refit)),
        f"top{k}_overlap_refit_vs_refit_other_seed": float(np.mean(refit_vs_refit)),
        "fold_in_ms_median": 1000 * float(np.median(times)),
        "fold_in_ms_p95": 1000 * float(np.percentile(times, 95)),
    }
