"""Retrieval metrics: queries and a corpus, one relevant corpus entry per query (the same item)."""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def ranks_of_targets(queries: np.ndarray, corpus: np.ndarray, target_index: np.ndarray) -> np.ndarray:
    """0-based rank of each query's relevant corpus row under cosine similarity (ties count against)."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    c = corpus / np.maximum(np.linalg.norm(corpus, axis=1, keepdims=True), 1e-12)
    scores = q @ c.T
    target_scores = scores[np.arange(len(q)), target_index]
    # rank = how many corpus rows score strictly higher, plus ties other than the target itself
    higher = (scores > target_scores[:, None]).sum(axis=1)
    ties = (scores == target_scores[:, None]).sum(axis=1) - 1
    return higher + ties


def retrieval_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0, "n_queries": 0}
    out: dict[str, float] = {f"recall@{k}": float((ranks < k).mean()) for k in ks}
    out["mrr"] = float((1.0 / (ranks + 1)).mean())
    out["n_queries"] = int(ranks.size)
    return out
