"""Offline evaluation of recommenders: temporal leave-last-out, Recall@K and NDCG@K.

Baselines on the same split: popularity, item-kNN (cosine on the binarised user–item matrix)
and PureSVD (truncated SVD of that matrix). Ours: scores = item vectors · user vector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmalign.connectors.errors import ConfigError
from mmalign.schemas import Interaction, RecEvalReport, RecRow, UserVectorConfig
from mmalign.schemas.reports import ColdRow

KS = (10, 20)
SPLITS = ("leave-last-out", "temporal")


@dataclass
class RecSplit:
    """Per user: the training history (time order) and one held-out item."""

    train: list[Interaction]
    test: dict[str, str]
    name: str


def _order_key(row: Interaction):
    return (row.timestamp.timestamp() if row.timestamp else 0.0, row.item_id)


def split_interactions(
    interactions: Sequence[Interaction], how: str = "leave-last-out", test_fraction: float = 0.1
) -> RecSplit:
    """``leave-last-out``: each user's latest interaction (ties broken by item id) is held out, for
    users with at least two. ``temporal``: a global time cut; the first interaction of each user
    after the cut is held out and everything after the cut is dropped from training."""
    if how not in SPLITS:
        raise ConfigError(f"split {how!r} is unknown; valid: {list(SPLITS)}")
    by_user: dict[str, list[Interaction]] = {}
    for row in interactions:
        by_user.setdefault(row.user_id, []).append(row)
    train: list[Interaction] = []
    test: dict[str, str] = {}
    if how == "leave-last-out":
        for user, rows in by_user.items():
            rows.sort(key=_order_key)
            if len(rows) < 2:
                train.extend(rows)
                continue
            train.extend(rows[:-1])
            test[user] = rows[-1].item_id
        return RecSplit(train, test, "temporal leave-last-out (each user's latest interaction held out)")
    times = sorted(_order_key(r)[0] for r in interactions)
    cut = times[int(len(times) * (1 - test_fraction))]
    for user, rows in by_user.items():
        rows.sort(key=_order_key)
        before = [r for r in rows if _order_key(r)[0] < cut]
        after = [r for r in rows if _order_key(r)[0] >= cut]
        train.extend(before)
        if before and after:
            test[user] = after[0].item_id
    return RecSplit(train, test, f"global temporal cut at the {100 * (1 - test_fraction):.0f}th percentile of time")


def ranking_metrics(scores: np.ndarray, target: int, exclude: np.ndarray, ks=KS) -> dict[str, float]:
    scores = scores.astype(np.float64).copy()
    scores[exclude] = -np.inf
    rank = int((scores > scores[target]).sum())
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(rank < k)
        out[f"ndcg@{k}"] = float(1.0 / np.log2(rank + 2)) if rank < k else 0.0
    return out


class Matrix:
    """Binarised user–item matrix of the training part (positives only)."""

    def __init__(self, split: RecSplit, item_ids: Sequence[str], cfg: UserVectorConfig):
        from mmalign.plugin.recommend.user_vectors import strength

        self.item_index = {item: n for n, item in enumerate(item_ids)}
        self.users = sorted({r.user_id for r in split.train} | set(split.test))
        self.user_index = {u: n for n, u in enumerate(self.users)}
        self.seen: dict[str, set[int]] = {u: set() for u in self.users}
        self.matrix = np.zeros((len(self.users), len(item_ids)), dtype=np.float32)
        for row in split.train:
            i = self.item_index.get(row.item_id)
            if i is None:
                continue
            self.seen[row.user_id].add(i)
            if strength(row.weight, cfg) > 0:
                self.matrix[self.user_index[row.user_id], i] = 1.0


def popularity_scorer(m: Matrix) -> Callable[[str], np.ndarray]:
    counts = m.matrix.sum(0)
    return lambda user: counts


def item_knn_scorer(m: Matrix, neighbours: int = 100) -> Callable[[str], np.ndarray]:
    x = m.matrix
    norms = np.linalg.norm(x, axis=0) + 1e-9
    sim = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(sim, 0)
    if neighbours < sim.shape[0]:
        cutoff = -np.partition(-sim, neighbours, axis=1)[:, neighbours][:, None]
        sim = np.where(sim >= cutoff, sim, 0)
    return lambda user: x[m.user_index[user]] @ sim


def pure_svd_scorer(m: Matrix, rank: int = 50) -> Callable[[str], np.ndarray]:
    _, _, vt = np.linalg.svd(m.matrix, full_matrices=False)
    v = vt[:rank].T
    return lambda user: (m.matrix[m.user_index[user]] @ v) @ v.T


def popularity_prior(counts: np.ndarray) -> np.ndarray:
    """log(1 + count) scaled to [0, 1]: the prior added to cosine scores (see :class:`Recommender`)."""
    logs = np.log1p(np.asarray(counts, dtype=np.float64))
    return logs / logs.max() if logs.max() > 0 else logs


def user_vector_scorer(
    split: RecSplit,
    item_ids: Sequence[str],
    item_matrix: np.ndarray,
    cfg: UserVectorConfig,
    popularity_weight: float = 0.0,
    matrix: Matrix | None = None,
) -> Callable[[str], np.ndarray]:
    """cos(user vector, item) [+ popularity_weight · prior(training popularity)]."""
    from mmalign.plugin.recommend.user_vectors import build_profiles

    vectors = {item: item_matrix[n] for n, item in enumerate(item_ids)}
    profiles = build_profiles(split.train, vectors, cfg, item_matrix.shape[1])
    prior = 0.0
    if popularity_weight:
        matrix = matrix or Matrix(split, item_ids, cfg)
        prior = popularity_weight * popularity_prior(matrix.matrix.sum(0))

    def score(user: str) -> np.ndarray:
        profile = profiles.get(user)
        vector = profile.vector if profile is not None else None
        return (item_matrix @ vector if vector is not None else np.zeros(len(item_ids))) + prior

    return score


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


def evaluate_scorer(
    name: str, scorer: Callable[[str], np.ndarray], m: Matrix, split: RecSplit, ks=KS, per_user: list | None = None
) -> dict:
    """Mean metrics over the test users; ``per_user`` (a list) also gets each user's metrics, in order."""
    totals: dict[str, float] = {}
    n = 0
    for user, item in split.test.items():
        target = m.item_index.get(item)
        if target is None:
            continue
        exclude = np.fromiter(m.seen.get(user, ()), dtype=np.int64)
        metrics = ranking_metrics(np.asarray(scorer(user)), target, exclude, ks)
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value
        if per_user is not None:
            per_user.append(metrics)
        n += 1
    return {"model": name, **{k: v / max(n, 1) for k, v in totals.items()}, "n_users": n}


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
    for row in sorted(split.train, key=_order_key):
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


# -- cold items: items whose interactions all come after a cut time -------------------------------
@dataclass
class ColdItemSplit:
    """Training without any interaction of the cold items; per user, the cold items the user liked later."""

    train: list[Interaction]
    cold_items: list[str]
    targets: dict[str, list[str]]
    cut: float
    name: str
    users_without_history: int = 0


def cold_item_split(
    interactions: Sequence[Interaction], cold_fraction: float = 0.1, cfg: UserVectorConfig | None = None
) -> ColdItemSplit:
    """The ``cold_fraction`` of items that appeared last (by their first interaction, ties by id)
    become cold: all their interactions are removed from training, so the cut time is the first
    interaction of the earliest of them. Targets: each user's positive interactions with cold items,
    for users who keep some training history (the others are cold users, counted apart)."""
    cfg = cfg or UserVectorConfig()
    first: dict[str, tuple[float, str]] = {}
    for row in interactions:
        key = _order_key(row)
        if row.item_id not in first or key < first[row.item_id]:
            first[row.item_id] = key
    ordered = sorted(first, key=lambda i: first[i])
    n_cold = max(1, int(round(len(ordered) * cold_fraction)))
    cold = ordered[-n_cold:]
    cold_set = set(cold)
    train = [r for r in interactions if r.item_id not in cold_set]
    history = {r.user_id for r in train}
    targets: dict[str, list[str]] = {}
    orphans = set()
    for row in sorted(interactions, key=_order_key):
        if row.item_id in cold_set and cfg.strength(row.weight) > 0:
            if row.user_id not in history:
                orphans.add(row.user_id)
                continue
            items = targets.setdefault(row.user_id, [])
            if row.item_id not in items:
                items.append(row.item_id)
    cut = first[cold[0]][0]
    return ColdItemSplit(
        train,
        cold,
        targets,
        cut,
        f"cold items: the {len(cold)} items ({100 * cold_fraction:g}%) first rated last, all their "
        f"interactions removed from training",
        len(orphans),
    )


def _top_metrics(scores: np.ndarray, candidates: np.ndarray, targets: np.ndarray, k: int, rng) -> tuple[float, float]:
    """Recall@k and NDCG@k of the targets among the candidate indices; ties broken at random."""
    s = scores[candidates]
    order = np.lexsort((rng.random(len(candidates)), -s))
    top = candidates[order[:k]]
    hits = np.isin(top, targets).astype(np.float64)
    n_rel = min(len(targets), k)
    dcg = float((hits / np.log2(np.arange(2, len(top) + 2))).sum())
    idcg = float((1.0 / np.log2(np.arange(2, n_rel + 2))).sum())
    return float(hits.sum() / n_rel), dcg / idcg


def evaluate_cold(
    name: str,
    scorer: Callable[[str], np.ndarray],
    m: Matrix,
    split: ColdItemSplit,
    k: int = 20,
    seed: int = 0,
    per_user: list | None = None,
) -> dict:
    """Recall@k and NDCG@k of each user's cold targets, (a) ranked within the cold items, (b) in the
    full ranking of every item the user has not seen in training. Ties are broken at random (a method
    that gives all cold items the same score ranks them by chance, not first). ``per_user`` (a list)
    also gets each user's NDCG@k within the cold items."""
    rng = np.random.default_rng(seed)
    cold = np.asarray(sorted(m.item_index[i] for i in split.cold_items if i in m.item_index), dtype=np.int64)
    totals = dict.fromkeys(("cold_recall", "cold_ndcg", "full_recall", "full_ndcg"), 0.0)
    n = 0
    everything = np.arange(len(m.item_index))
    for user, items in split.targets.items():
        targets = np.asarray([m.item_index[i] for i in items if i in m.item_index], dtype=np.int64)
        if len(targets) == 0 or user not in m.user_index:
            continue
        scores = np.asarray(scorer(user), dtype=np.float64)
        seen = np.fromiter(m.seen.get(user, ()), dtype=np.int64)
        r, g = _top_metrics(scores, cold, targets, k, rng)
        totals["cold_recall"] += r
        totals["cold_ndcg"] += g
        if per_user is not None:
            per_user.append(g)
        r, g = _top_metrics(scores, np.setdiff1d(everything, seen), targets, k, rng)
        totals["full_recall"] += r
        totals["full_ndcg"] += g
        n += 1
    return {"model": name, **{f"{key}@{k}": v / max(n, 1) for key, v in totals.items()}, "n_users": n}


def cold_matrix(split: ColdItemSplit, item_ids: Sequence[str], cfg: UserVectorConfig) -> Matrix:
    return Matrix(RecSplit(split.train, {}, split.name), item_ids, cfg)


# -- collaborative factors and the hybrid -----------------------------------------------------------
def collab_scorer(factors, item_collab: np.ndarray | None = None) -> Callable[[str], np.ndarray]:
    """Collab score: item collab vectors · the user's normalised factors (learned or folded in)."""
    from mmalign.plugin.recommend.collab import unit

    items = factors.item_factors if item_collab is None else item_collab

    def score(user: str) -> np.ndarray:
        u = unit(factors.user_vector(user))
        return items @ u if u is not None else np.zeros(len(items))

    return score


def hybrid_scorer(
    factors,
    item_collab: np.ndarray,
    content_train: Sequence[Interaction],
    item_ids: Sequence[str],
    item_content: np.ndarray,
    cfg: UserVectorConfig,
    content_weight: float | np.ndarray,
) -> Callable[[str], np.ndarray]:
    """:func:`collab.hybrid_scores` with content user vectors built from ``content_train``
    (``content_weight``: one w, or one per item as :func:`collab.content_weights` gives)."""
    from mmalign.plugin.recommend.collab import hybrid_scores
    from mmalign.plugin.recommend.user_vectors import build_profiles

    vectors = {item: item_content[n] for n, item in enumerate(item_ids)}
    profiles = build_profiles(content_train, vectors, cfg, item_content.shape[1]) if np.any(content_weight) else {}

    def score(user: str) -> np.ndarray:
        profile = profiles.get(user)
        return hybrid_scores(
            factors.user_vector(user),
            item_collab,
            profile.vector if profile is not None else None,
            item_content,
            content_weight,
        )

    return score


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
    if library and _has_implicit():
        for kind, grid in LIBRARY_GRID.items():
            scores = {}
            for n, params in enumerate(grid):
                scores[n] = evaluate_scorer("val", _implicit_scorer(m, kind, params, 0), m, inner)["ndcg@10"]
            out[kind] = grid[max(scores, key=scores.get)]
    echo(f"  val baselines: {out}")
    return out


LIBRARY_GRID = {
    "als": (
        {"factors": 64, "regularization": 0.1, "alpha": 1.0},
        {"factors": 64, "regularization": 1.0, "alpha": 10.0},
        {"factors": 128, "regularization": 10.0, "alpha": 10.0},
        {"factors": 32, "regularization": 10.0, "alpha": 10.0},
    ),
    "bpr": (
        {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
        {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100},
        {"factors": 128, "learning_rate": 0.05, "regularization": 0.001, "iterations": 200},
    ),
}


def _has_implicit() -> bool:
    import importlib.util

    return importlib.util.find_spec("implicit") is not None


def _implicit_scorer(m: Matrix, kind: str, params: dict, seed: int) -> Callable[[str], np.ndarray]:
    from scipy import sparse

    if kind == "als":
        from implicit.cpu.als import AlternatingLeastSquares as Model
    else:
        from implicit.cpu.bpr import BayesianPersonalizedRanking as Model
    from threadpoolctl import threadpool_limits  # a dependency of implicit

    with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, not OpenBLAS's
        model = Model(random_state=seed, **params)
        model.fit(sparse.csr_matrix(m.matrix), show_progress=False)
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda user: items @ users[m.user_index[user]]


def library_scorers(m: Matrix, tuned: dict, seed: int) -> dict[str, Callable[[str], np.ndarray]]:
    """The ``implicit`` ALS and BPR baselines with the settings :func:`tune_baselines` chose (none
    when ``implicit`` is not installed)."""
    out = {}
    for kind in ("als", "bpr"):
        if kind in tuned:
            label = f"implicit {kind.upper()} ({', '.join(f'{k}={v}' for k, v in tuned[kind].items())})"
            out[label] = _implicit_scorer(m, kind, tuned[kind], seed)
    return out


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
