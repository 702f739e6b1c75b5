"""Retrieval metrics: queries and a corpus, one relevant corpus entry per query (the same item)."""

from __future__ import annotations

import numpy as np

from mmalign.connectors.errors import DataError

KS = (1, 5, 10)


def ranks_of_targets(
    queries: np.ndarray, corpus: np.ndarray, target_index: np.ndarray, corpus_penalty: np.ndarray | None = None
) -> np.ndarray:
    """0-based rank of each query's relevant corpus row under cosine similarity (ties count against);
    ``corpus_penalty`` (one value per corpus row) is subtracted from every score of that row (CSLS).

    NaN or infinite embeddings are refused (:class:`DataError`): they would rank nothing and turn
    the metrics into inf or nonsense."""
    for name, array in (("query", queries), ("corpus", corpus)):
        finite = np.isfinite(array).all(axis=1) if np.ndim(array) == 2 else np.isfinite(array)
        if not np.all(finite):
            raise DataError(
                f"{int(np.size(finite) - np.count_nonzero(finite))} {name} embedding(s) of "
                f"{np.shape(array)[0]} are NaN or infinite (rows {np.flatnonzero(~finite)[:5].tolist()}); "
                f"metrics need finite vectors: check the features and the model"
            )
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    c = corpus / np.maximum(np.linalg.norm(corpus, axis=1, keepdims=True), 1e-12)
    scores = q @ c.T
    if corpus_penalty is not None:
        scores = scores - np.asarray(corpus_penalty, dtype=scores.dtype)[None, :]
    target_scores = scores[np.arange(len(q)), target_index]
    # rank = how many corpus rows score strictly higher, plus ties other than the target itself
    higher = (scores > target_scores[:, None]).sum(axis=1)
    ties = (scores == target_scores[:, None]).sum(axis=1) - 1
    return higher + ties


def retrieval_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0, "n_queries": 0}
    if not np.issubdtype(ranks.dtype, np.number) or not np.all(np.isfinite(ranks)) or ranks.min() < 0:
        raise DataError(f"ranks must be finite and >= 0, got {ranks[:5].tolist()}…; the embeddings are broken")
    out: dict[str, float] = {f"recall@{k}": float((ranks < k).mean()) for k in ks}
    out["mrr"] = float((1.0 / (ranks + 1)).mean())
    out["n_queries"] = int(ranks.size)
    if not all(np.isfinite(v) for v in out.values()):
        raise DataError(f"retrieval metrics are not finite: {out}")
    return out
