"""The ``collab`` vector as a collection stores it, and its prediction for items written at ingest.

- :func:`stored_item_vectors` / :func:`stored_user_vector`: collaborative factors as cosine-searchable
  vectors of size D (maximum inner product search as nearest neighbours).
- :class:`ContentMap`: the ridge map from an item's content (``fused``) vector to its collab factors,
  fitted by ``Recommender.rebuild_users`` (plugin/recommend) and kept in the users collection's record.
- :class:`IngestCollab`: ingest applies that map to the items it writes, so that an item without
  interactions has a predicted collab vector (payload ``collab_source: "predicted"``) until a
  rebuild learns one.

This is the index layer's part of recommendation (numpy only): ingest uses it, and
plugin/recommend/collab.py re-exports it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mmalign.connectors.errors import ConfigError
from mmalign.connectors.store import PointData, StoreError, VectorStore

log = logging.getLogger(__name__)

COLLAB = "collab"
#: Payload field of an item's collab vector: "learned" (fitted from its interactions) or "predicted"
#: (the content → collab map's prediction from its fused vector, for an item without interactions).
COLLAB_SOURCE = "collab_source"


def users_collection_name(collection: str) -> str:
    return f"{collection}_users"


class ContentMap:
    """Ridge regression from content vectors (n × D) to collab factors (n × k), fitted on warm items.

    The teacher is the collaborative model (its factors carry the co-occurrence signal); the map is
    the low-rank (D × k) student that reproduces it from content alone.
    """

    def __init__(self, reg: float = 1.0):
        self.reg = reg
        self.mean_x: np.ndarray | None = None
        self.mean_y: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def fit(self, content: np.ndarray, factors: np.ndarray, sample_weight: np.ndarray | None = None) -> ContentMap:
        content = np.asarray(content, dtype=np.float64)
        factors = np.asarray(factors, dtype=np.float64)
        w = np.ones(len(content)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        w = w / w.sum()
        self.mean_x = w @ content
        self.mean_y = w @ factors
        xc = (content - self.mean_x) * np.sqrt(w)[:, None]
        yc = (factors - self.mean_y) * np.sqrt(w)[:, None]
        # reg is relative to the mean eigenvalue of the (weighted) covariance, so it does not depend on scale
        cov = xc.T @ xc
        lam = self.reg * np.trace(cov) / cov.shape[0]
        self.weights = np.linalg.solve(cov + lam * np.eye(cov.shape[0]), xc.T @ yc)
        return self

    def predict(self, content: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise ConfigError("ContentMap.predict before fit")
        return (np.asarray(content, dtype=np.float64) - self.mean_x) @ self.weights + self.mean_y

    def to_dict(self) -> dict:
        """JSON-able, the arrays packed (:func:`pack`): the record is rewritten at every user update."""
        return {
            "reg": self.reg,
            "mean_x": pack(self.mean_x),
            "mean_y": pack(self.mean_y),
            "weights": pack(self.weights),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ContentMap:
        out = cls(float(data["reg"]))
        out.mean_x, out.mean_y, out.weights = unpack(data["mean_x"]), unpack(data["mean_y"]), unpack(data["weights"])
        return out


def pack(array: np.ndarray) -> dict:
    """An array as {"shape", "f64": base64 of its float64 bytes}: compact and fast in a JSON record."""
    import base64

    a = np.ascontiguousarray(array, dtype="<f8")
    return {"shape": list(a.shape), "f64": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack(data: dict) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(data["f64"]), dtype="<f8").reshape(data["shape"]).copy()


def stored_item_vectors(item_collab: np.ndarray, dim: int, top: float | None = None) -> tuple[np.ndarray, float]:
    """Item factors as cosine-searchable vectors of size ``dim``: v' = [v, sqrt(M² − |v|²), 0, …] with
    M the largest norm. Every v' has norm M, so for a query q' = [q, 0, …] cos(q', v') = q·v / (|q|·M):
    the cosine ranks items exactly as the dot product does (maximum inner product search as nearest
    neighbours). Qdrant stores cosine vectors normalised, i.e. divided by M: multiply what it returns
    by M to get v back. Returns (vectors, M).

    ``top``: the M of vectors already stored (items added later, e.g. a prediction at ingest); a v
    longer than M is shortened to norm M, so that every stored vector keeps the same M."""
    item_collab = np.asarray(item_collab, dtype=np.float64)
    n, k = item_collab.shape
    if k + 1 > dim:
        raise ConfigError(f"collab rank {k} does not fit vectors of size {dim}: use rank ≤ {dim - 1}")
    norms = np.linalg.norm(item_collab, axis=1)
    if top is None:
        top = float(norms.max()) if n else 0.0
        top = top if top > 1e-12 else 1.0
    elif np.any(norms > top):
        long = norms > top
        item_collab = item_collab.copy()
        item_collab[long] *= (top / norms[long])[:, None]
        norms = np.minimum(norms, top)
    out = np.zeros((n, dim))
    out[:, :k] = item_collab
    out[:, k] = np.sqrt(np.maximum(top**2 - norms**2, 0.0))
    return out, top


def stored_user_vector(user_collab: np.ndarray, dim: int) -> np.ndarray:
    """A user's factors padded to size ``dim`` (the query side of :func:`stored_item_vectors`)."""
    out = np.zeros(dim)
    out[: len(user_collab)] = user_collab
    if not np.any(out):
        out[0] = 1.0  # a point needs a non-zero vector; the user's payload says there is no factor
    return out


class IngestCollab:
    """Collab vectors for the points ingest writes into a collection that has a ``collab`` vector.

    An item without a learned collab vector (a new item, or one that had only a prediction) gets the
    content → collab map's prediction from its ``fused`` vector, with ``collab_source: "predicted"``
    in its payload. An item re-ingested after a change of its media keeps its learned vector (the
    factors come from who consumed it, not from its content). The next :meth:`Recommender.rebuild_users`
    replaces predictions with learned vectors for the items that have interactions by then.
    :meth:`open` returns None (nothing to add) when the collection has no ``collab`` vector, when no
    rebuild has stored a content map yet, or when that map belongs to another bundle's space."""

    def __init__(self, store: VectorStore, target: str, state: dict, dim: int):
        self.store, self.target, self.dim = store, target, dim
        self.rank = int(state["rank"])
        self.max_norm = float(state["max_norm"])
        self.content_map = ContentMap.from_dict(state["content_map"])

    @classmethod
    def open(cls, store: VectorStore, collection: str, target: str, bundle_id: str) -> IngestCollab | None:
        if COLLAB not in store.vector_sizes(target):
            return None
        users = users_collection_name(collection)
        record = store.collection_record(users) if store.collection_exists(users) else None
        state = record.collab.model_dump() if record is not None and record.collab else None
        if not state or not state.get("content_map"):
            return None
        if record.bundle_id != bundle_id:
            log.warning(
                "collab: the content → collab map in %r was fitted for bundle %r, not %r; new items get no "
                "collab vector until the next rebuild of the users",
                users,
                record.bundle_id,
                bundle_id,
            )
            return None
        return cls(store, target, state, store.collection_record(target).dim)

    def attach(self, points: Sequence[PointData]) -> int:
        """Add a collab vector and ``collab_source`` to each point in place; returns how many were predicted."""
        if not points:
            return 0
        old = {
            p.payload["item_id"]: p
            for p in self.store.retrieve(self.target, [p.item_id for p in points], with_vectors=[COLLAB])
        }
        todo = []
        for point in points:
            prev = old.get(point.item_id)
            learned = prev is not None and prev.payload.get(COLLAB_SOURCE, "learned") == "learned"
            if learned and COLLAB in (prev.vector or {}):
                point.vectors = {**point.vectors, COLLAB: np.asarray(prev.vector[COLLAB], dtype=np.float64)}
                point.payload[COLLAB_SOURCE] = "learned"
            else:
                todo.append(point)
        if todo:
            fused = np.asarray([np.asarray(_fused(p), dtype=np.float64) for p in todo])
            predicted = self.content_map.predict(fused)[:, : self.rank]
            stored, _ = stored_item_vectors(predicted, self.dim, top=self.max_norm)
            for point, vector in zip(todo, stored):
                point.vectors = {**point.vectors, COLLAB: vector}
                point.payload[COLLAB_SOURCE] = "predicted"
        return len(todo)


def _fused(point: PointData):
    for key, value in point.vectors.items():
        if str(getattr(key, "value", key)) == "fused":
            return value
    raise StoreError(f"item {point.item_id!r} has no 'fused' vector; got {sorted(map(str, point.vectors))}")
