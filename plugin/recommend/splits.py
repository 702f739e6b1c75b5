"""How interactions are split for offline evaluation (temporal leave-last-out, cold items), the
user–item matrix of a split, and the ranking metrics (Recall@K, NDCG@K) of a scorer on it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mmalign.connectors.errors import ConfigError
from mmalign.schemas import Interaction, UserVectorConfig

KS = (10, 20)


SPLITS = ("leave-last-out", "temporal")


@dataclass
class RecSplit:
    """Per user: the training history (time order) and one held-out item."""

    train: list[Interaction]
    test: dict[str, str]
    name: str


def order_key(row: Interaction):
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
            rows.sort(key=order_key)
            if len(rows) < 2:
                train.extend(rows)
                continue
            train.extend(rows[:-1])
            test[user] = rows[-1].item_id
        return RecSplit(train, test, "temporal leave-last-out (each user's latest interaction held out)")
    times = sorted(order_key(r)[0] for r in interactions)
    cut = times[int(len(times) * (1 - test_fraction))]
    for user, rows in by_user.items():
        rows.sort(key=order_key)
        before = [r for r in rows if order_key(r)[0] < cut]
        after = [r for r in rows if order_key(r)[0] >= cut]
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
        key = order_key(row)
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
    for row in sorted(interactions, key=order_key):
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


def top_metrics(scores: np.ndarray, candidates: np.ndarray, targets: np.ndarray, k: int, rng) -> tuple[float, float]:
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
        r, g = top_metrics(scores, cold, targets, k, rng)
        totals["cold_recall"] += r
        totals["cold_ndcg"] += g
        if per_user is not None:
            per_user.append(g)
        r, g = top_metrics(scores, np.setdiff1d(everything, seen), targets, k, rng)
        totals["full_recall"] += r
        totals["full_ndcg"] += g
        n += 1
    return {"model": name, **{f"{key}@{k}": v / max(n, 1) for key, v in totals.items()}, "n_users": n}


def cold_matrix(split: ColdItemSplit, item_ids: Sequence[str], cfg: UserVectorConfig) -> Matrix:
    return Matrix(RecSplit(split.train, {}, split.name), item_ids, cfg)
