"""Choosing settings on the training part of a split only: grids, the one-standard-error rule, and the
tuning of the popularity prior, the collab factors and the baselines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mmalign.plugin.recommend.scorers import (
    LIBRARY_GRID,
    collab_scorer,
    has_implicit,
    hybrid_scorer,
    implicit_scorer,
    item_knn_scorer,
    pure_svd_scorer,
    user_vector_scorer,
)
from mmalign.plugin.recommend.splits import (
    Matrix,
    cold_item_split,
    cold_matrix,
    evaluate_cold,
    evaluate_scorer,
    split_interactions,
)
from mmalign.schemas import Interaction, UserVectorConfig

POPULARITY_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def choose_popularity_weight(
    train: Sequence[Interaction],
    item_ids: Sequence[str],
    item_matrix: np.ndarray,
    cfg: UserVectorConfig,
    grid: Sequence[float] = POPULARITY_GRID,
) -> tuple[float, dict]:
    """The weight with the best NDCG@10 on a leave-last-out split of the *training* interactions."""
    inner = split_interactions(train, "leave-last-out")
    m = Matrix(inner, item_ids, cfg)
    scores = {
        w: evaluate_scorer("val", user_vector_scorer(inner, item_ids, item_matrix, cfg, w, m), m, inner)["ndcg@10"]
        for w in grid
    }
    return max(scores, key=scores.get), scores


COLLAB_GRID = (
    {"method": "als", "rank": 32, "reg": 10.0, "alpha": 10.0},
    {"method": "als", "rank": 64, "reg": 10.0, "alpha": 10.0},
    {"method": "als", "rank": 64, "reg": 30.0, "alpha": 5.0},
    {"method": "als", "rank": 128, "reg": 30.0, "alpha": 10.0},
    {"method": "svd", "rank": 20},
    {"method": "svd", "rank": 50},
)


CONTENT_WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)


#: Content weight of the items whose collab vector is predicted (chosen with the map's ridge).
COLD_WEIGHT_GRID = (0.0, 0.1, 0.2, 0.4)


MAP_REG_GRID = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)


def one_se_choice(per_user: dict, simpler: Callable) -> object:
    """The setting with the best mean validation score, unless it only adds a term to a simpler
    setting (``simpler(key) != key``, e.g. a content weight > 0 over 0) and its gain over that one is
    within one paired standard error across the validation users: then the best of the simpler
    settings. A validation gain smaller than its own noise does not earn the extra term."""
    means = {key: float(np.mean(values)) for key, values in per_user.items()}
    best = max(means, key=means.get)
    base = simpler(best)
    if base == best:
        return best
    diff = np.asarray(per_user[best], dtype=np.float64) - np.asarray(per_user[base], dtype=np.float64)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
    if diff.mean() > se:
        return best
    plain = {key: mean for key, mean in means.items() if simpler(key) == key}
    return max(plain, key=plain.get)


def tune_collab(
    train: Sequence[Interaction],
    item_ids: Sequence[str],
    item_content: np.ndarray,
    cfg: UserVectorConfig,
    grid: Sequence[dict] = COLLAB_GRID,
    weights: Sequence[float] = CONTENT_WEIGHT_GRID,
    map_regs: Sequence[float] = MAP_REG_GRID,
    seed: int = 0,
    echo: Callable[[str], None] = lambda line: None,
    cold_weights: Sequence[float] = COLD_WEIGHT_GRID,
):
    """Choose the collab model, the content weight, the content → collab ridge and the content weight
    of predicted items on splits carved from ``train`` only: NDCG@10 of leave-last-out of the training
    part for the first two, NDCG@20 within the cold items of a cold-item split of the training part
    for the last two. Content weights > 0 must pass :func:`one_se_choice`.
    Returns (CollabConfig, validation scores)."""
    from mmalign.plugin.recommend.collab import ContentMap, content_weights, fit_collab, item_collab_vectors
    from mmalign.schemas.recommend import CollabConfig

    inner = split_interactions(train, "leave-last-out")
    m = Matrix(inner, item_ids, cfg)
    scores: dict = {"model": {}, "content_weight": {}, "map_reg,cold_content_weight": {}}
    best = None
    for params in grid:
        ccfg = CollabConfig(seed=seed, **params)
        factors = fit_collab(inner.train, item_ids, ccfg, cfg)
        value = evaluate_scorer("val", collab_scorer(factors), m, inner)["ndcg@10"]
        label = ",".join(f"{k}={v}" for k, v in params.items())
        scores["model"][label] = value
        echo(f"  val collab {label}: NDCG@10 {value:.4f}")
        if best is None or value > best[0]:
            best = (value, ccfg, factors)
    _, ccfg, factors = best
    per_user: dict = {}
    for w in weights:
        scorer = hybrid_scorer(factors, factors.item_factors, inner.train, item_ids, item_content, cfg, w)
        rows: list = []
        scores["content_weight"][w] = evaluate_scorer("val", scorer, m, inner, per_user=rows)["ndcg@10"]
        per_user[w] = [r["ndcg@10"] for r in rows]
    weight = one_se_choice(per_user, lambda w: 0.0 if 0.0 in per_user else w)
    echo(f"  val content weight: {scores['content_weight']} -> {weight}")
    cold = cold_item_split(train, 0.1, cfg)
    cm = cold_matrix(cold, item_ids, cfg)
    cold_factors = fit_collab(cold.train, item_ids, ccfg, cfg)
    warm = np.asarray(cm.matrix.sum(0) > 0)
    per_user = {}
    for reg in map_regs:
        cmap = ContentMap(reg).fit(item_content[warm], cold_factors.item_factors[warm])
        items = item_collab_vectors(cold_factors, item_content, warm, cmap)
        for beta in cold_weights:
            per_item = content_weights(~warm, weight, beta)
            scorer = hybrid_scorer(cold_factors, items, cold.train, item_ids, item_content, cfg, per_item)
            values: list = []
            score = evaluate_cold("val", scorer, cm, cold, seed=seed, per_user=values)["cold_ndcg@20"]
            scores["map_reg,cold_content_weight"][f"{reg:g},{beta:g}"] = score
            per_user[(reg, beta)] = values
    map_reg, cold_weight = one_se_choice(per_user, lambda key: (key[0], 0.0) if (key[0], 0.0) in per_user else key)
    echo(f"  val map reg,cold weight (cold NDCG@20): {scores['map_reg,cold_content_weight']}")
    echo(f"    -> map reg {map_reg:g}, cold content weight {cold_weight:g}")
    chosen = {"content_weight": weight, "map_reg": map_reg, "cold_content_weight": cold_weight}
    return ccfg.model_copy(update=chosen), scores


# -- baselines tuned on the training part, and those of the `implicit` library when it is installed ----
def tune_baselines(
    train: Sequence[Interaction],
    item_ids: Sequence[str],
    cfg: UserVectorConfig,
    knn: Sequence[int] = (25, 50, 100, 200),
    svd: Sequence[int] = (10, 20, 50, 100),
    library: bool = True,
    echo: Callable[[str], None] = lambda line: None,
) -> dict:
    """Neighbours of item-kNN, rank of PureSVD and (with ``implicit``) the ALS/BPR settings with the
    best NDCG@10 on a leave-last-out split of ``train``."""
    inner = split_interactions(train, "leave-last-out")
    m = Matrix(inner, item_ids, cfg)
    out: dict = {}
    scores = {k: evaluate_scorer("val", item_knn_scorer(m, k), m, inner)["ndcg@10"] for k in knn}
    out["knn"] = max(scores, key=scores.get)
    scores = {r: evaluate_scorer("val", pure_svd_scorer(m, r), m, inner)["ndcg@10"] for r in svd}
    out["svd"] = max(scores, key=scores.get)
    if library and has_implicit():
        for kind, grid in LIBRARY_GRID.items():
            scores = {}
            for n, params in enumerate(grid):
                scores[n] = evaluate_scorer("val", implicit_scorer(m, kind, params, 0), m, inner)["ndcg@10"]
            out[kind] = grid[max(scores, key=scores.get)]
    echo(f"  val baselines: {out}")
    return out
