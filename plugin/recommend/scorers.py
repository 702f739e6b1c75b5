"""Scorers for offline evaluation: a user id -> a score per item. Baselines (popularity, item-kNN on the
binarised user–item matrix, PureSVD, and the `implicit` library's ALS/BPR when installed) and ours (user
vectors over item vectors, collab factors, the collab + content hybrid)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mmalign.plugin.recommend.splits import Matrix, RecSplit
from mmalign.schemas import Interaction, UserVectorConfig


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


def has_implicit() -> bool:
    import importlib.util

    return importlib.util.find_spec("implicit") is not None


def implicit_scorer(m: Matrix, kind: str, params: dict, seed: int) -> Callable[[str], np.ndarray]:
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
            out[label] = implicit_scorer(m, kind, tuned[kind], seed)
    return out
