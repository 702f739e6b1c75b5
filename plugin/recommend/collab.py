"""Collaborative item and user factors, their fold-in, and the map from content vectors to them.

Interactions are one more modality of an item: its *collab* vector, learned from who consumed it.

- :func:`fit_collab` learns item and user factors from the binarised user–item matrix, by
  implicit-feedback ALS (Hu, Koren & Volinsky 2008; confidence 1 + alpha on positives) or by
  PureSVD (truncated SVD; an item's factor is its row of V).
- :func:`fold_in` computes one user's factors from the user's items against fixed item factors:
  for ALS it is exactly the user step of ALS (what ``implicit``'s ``recalculate_user`` does); for
  PureSVD it is ``x_u · V``. A new interaction updates a user without refitting anything.
- :class:`ContentMap` predicts an item's collab vector from its content vector (the ``fused``
  vector of the shared space) by ridge regression onto the factors of the items with history; an
  item without interactions gets this prediction at ingest, and the learned factor replaces it once
  the item has history.
- :func:`hybrid_scores`: collab score of the normalised user factor plus ``w`` times the cosine of
  the content user vector, the formula served by ``Recommender(strategy="hybrid")``.

numpy and scipy only (no ``implicit``, no torch): small catalogs fit in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmalign.connectors.errors import ConfigError
from mmalign.plugin.index.collab import ContentMap as ContentMap
from mmalign.plugin.index.collab import pack as pack
from mmalign.plugin.index.collab import stored_item_vectors as stored_item_vectors
from mmalign.plugin.index.collab import stored_user_vector as stored_user_vector
from mmalign.plugin.index.collab import unpack as unpack
from mmalign.schemas import Interaction, UserVectorConfig
from mmalign.schemas.recommend import CollabConfig

METHODS = ("als", "svd")


@dataclass
class CollabFactors:
    """Item factors (n_items × k), user factors (n_users × k) and the config that made them."""

    item_ids: list[str]
    item_factors: np.ndarray
    user_ids: list[str]
    user_factors: np.ndarray
    cfg: CollabConfig

    def __post_init__(self) -> None:
        self.item_index = {item: n for n, item in enumerate(self.item_ids)}
        self.user_index = {user: n for n, user in enumerate(self.user_ids)}

    @property
    def rank(self) -> int:
        return int(self.item_factors.shape[1])

    def user_vector(self, user_id: str) -> np.ndarray | None:
        n = self.user_index.get(user_id)
        return None if n is None else self.user_factors[n]

    def fold_in(self, item_ids: Sequence[str]) -> np.ndarray:
        """A user's factors from the user's positive items (unknown ids are ignored)."""
        rows = [self.item_index[i] for i in dict.fromkeys(item_ids) if i in self.item_index]
        return fold_in(self.item_factors, rows, self.cfg)


def positive_matrix(
    interactions: Sequence[Interaction],
    item_ids: Sequence[str],
    user_cfg: UserVectorConfig | None = None,
    users: Sequence[str] | None = None,
):
    """Binarised user × item CSR matrix of the positive interactions (s_j > 0), and the user ids.

    Rows of unknown items are skipped; a user with only negative feedback has an empty row.
    """
    from scipy import sparse

    user_cfg = user_cfg or UserVectorConfig()
    item_index = {item: n for n, item in enumerate(item_ids)}
    users = list(users) if users is not None else sorted({r.user_id for r in interactions})
    user_index = {u: n for n, u in enumerate(users)}
    pairs = {
        (user_index[r.user_id], item_index[r.item_id])
        for r in interactions
        if r.item_id in item_index and r.user_id in user_index and user_cfg.strength(r.weight) > 0
    }
    rows = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
    cols = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
    x = sparse.csr_matrix((np.ones(len(pairs), dtype=np.float64), (rows, cols)), shape=(len(users), len(item_ids)))
    return x, users


def als_solve(fixed: np.ndarray, gram: np.ndarray, rows: np.ndarray, cfg: CollabConfig) -> np.ndarray:
    """argmin_x Σ_j c_j (p_j − x·y_j)² + reg·|x|², with c = 1 + alpha on ``rows`` (p = 1), else 1 (p = 0)."""
    k = fixed.shape[1]
    if len(rows) == 0:
        return np.zeros(k)
    y = fixed[rows]
    a = gram + cfg.alpha * (y.T @ y) + cfg.reg * np.eye(k)
    b = (1.0 + cfg.alpha) * y.sum(0)
    return np.linalg.solve(a, b)


def _als_sweep(x, fixed: np.ndarray, cfg: CollabConfig) -> np.ndarray:
    gram = fixed.T @ fixed
    out = np.zeros((x.shape[0], fixed.shape[1]))
    for n in range(x.shape[0]):
        out[n] = als_solve(fixed, gram, x.indices[x.indptr[n] : x.indptr[n + 1]], cfg)
    return out


def fold_in(item_factors: np.ndarray, rows: Sequence[int], cfg: CollabConfig) -> np.ndarray:
    """One user's factors from the indices of the user's positive items, item factors fixed."""
    rows = np.asarray(sorted(set(rows)), dtype=np.int64)
    if cfg.method == "svd":
        return item_factors[rows].sum(0) if len(rows) else np.zeros(item_factors.shape[1])
    return als_solve(item_factors, item_factors.T @ item_factors, rows, cfg)


def fit_collab(
    interactions: Sequence[Interaction],
    item_ids: Sequence[str],
    cfg: CollabConfig | None = None,
    user_cfg: UserVectorConfig | None = None,
) -> CollabFactors:
    """Item and user factors from the positive interactions (see the module docstring)."""
    cfg = cfg or CollabConfig()
    if cfg.method not in METHODS:
        raise ConfigError(f"collab method {cfg.method!r} is unknown; valid: {list(METHODS)}")
    x, users = positive_matrix(interactions, item_ids, user_cfg)
    k = max(1, min(cfg.rank, min(x.shape) - 1))
    if cfg.method == "svd":
        from scipy.sparse.linalg import svds

        rng = np.random.default_rng(cfg.seed)
        _, s, vt = svds(x, k=k, v0=rng.standard_normal(min(x.shape)))
        order = np.argsort(-s)
        items = vt[order].T.copy()
        users_f = np.asarray(x @ items)
    else:
        rng = np.random.default_rng(cfg.seed)
        items = rng.normal(scale=0.01, size=(x.shape[1], k))
        xt = x.T.tocsr()
        users_f = np.zeros((x.shape[0], k))
        for _ in range(cfg.iterations):
            users_f = _als_sweep(x, items, cfg)
            items = _als_sweep(xt, users_f, cfg)
        users_f = _als_sweep(x, items, cfg)  # users consistent with the final items (= fold-in)
    return CollabFactors(list(item_ids), items, users, users_f, cfg)


def item_collab_vectors(
    factors: CollabFactors,
    content: np.ndarray,
    warm: np.ndarray,
    content_map: ContentMap,
) -> np.ndarray:
    """Collab vectors of every item: the learned factor where the item has history (``warm``), else
    the content map's prediction."""
    out = factors.item_factors.copy()
    cold = ~np.asarray(warm, dtype=bool)
    if cold.any():
        out[cold] = content_map.predict(content[cold])
    return out


def unit(vector: np.ndarray | None) -> np.ndarray | None:
    if vector is None:
        return None
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-12 else None


def hybrid_scores(
    user_collab: np.ndarray | None,
    item_collab: np.ndarray,
    user_content: np.ndarray | None,
    item_content: np.ndarray,
    content_weight: float | np.ndarray,
) -> np.ndarray:
    """(u_collab / |u_collab|) · collab_i + w_i · cos(u_content, fused_i); either term may be missing.
    ``content_weight``: one w for every item, or one per item (:func:`content_weights`)."""
    scores = np.zeros(len(item_collab))
    u = unit(user_collab)
    if u is not None:
        scores += item_collab @ u
    c = unit(user_content)
    if c is not None and np.any(content_weight):
        scores += content_weight * (item_content @ c)
    return scores


def content_weights(predicted: np.ndarray, weight: float, cold_weight: float) -> np.ndarray:
    """The hybrid's content weight per item: ``cold_weight`` where the collab vector is a prediction
    from content (no interactions), ``weight`` where it was learned."""
    return np.where(np.asarray(predicted, dtype=bool), cold_weight, weight)
