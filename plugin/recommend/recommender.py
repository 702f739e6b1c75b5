"""Recommendations from user vectors (stored in a ``users`` collection) or Qdrant's RecommendQuery.

Strategies: ``vector`` (the user vector, seen items excluded), ``best_score`` and
``average_vector`` (Qdrant RecommendQuery over the user's positive and negative item ids), and
``hybrid``: candidates from the ``collab`` and ``fused`` vectors (Qdrant prefetch + RRF), ranked by
collab score + w · content cosine (collab.py). ``None`` picks ``hybrid`` when the collection has
collab vectors and ``vector`` otherwise.
Cold start (no history): the query the app passes (text/image/audio), else popularity.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mmalign.connectors.errors import ConfigError
from mmalign.connectors.query import Fused, Nearest, Prefetch, Recommend
from mmalign.connectors.store import PointData, StoreError, VectorStore
from mmalign.plugin.index.collab import COLLAB, COLLAB_SOURCE, users_collection_name
from mmalign.plugin.index.collab import IngestCollab as IngestCollab
from mmalign.plugin.index.filters import build_filter
from mmalign.plugin.index.search import Hit, Searcher
from mmalign.plugin.index.versions import resolve_for_read
from mmalign.plugin.recommend.user_vectors import UserProfile, strength, update_profile
from mmalign.schemas import Interaction, StoreConfig, UserRebuildReport, UserVectorConfig
from mmalign.schemas.recommend import CollabConfig
from mmalign.schemas.vocabulary import RECOMMEND_STRATEGIES

log = logging.getLogger(__name__)
STRATEGIES = RECOMMEND_STRATEGIES
#: Candidates each vector (collab, fused) contributes before the hybrid formula ranks them.
HYBRID_CANDIDATES = 200
#: RecommendQuery examples per side: the most recent ones.
MAX_EXAMPLES = 50
#: Items whose popularity is kept with the users collection (cold start and the popularity prior).
MAX_STORED_POPULARITY = 10_000
#: Candidates fetched by the user vector before the popularity prior re-ranks them.
PRIOR_CANDIDATES = 200


def recommend_query(positive: Sequence[str], negative: Sequence[str] = (), strategy: str = "best_score") -> Recommend:
    """Qdrant's recommendation over item ids (``best_score``, ``average_vector`` or ``sum_scores``) on ``fused``."""
    return Recommend(tuple(positive), tuple(negative), strategy)  # type: ignore[arg-type]


class Recommender:
    def __init__(
        self,
        collection: str,
        *,
        store: VectorStore | StoreConfig | None = None,
        cfg: UserVectorConfig | None = None,
        users_collection: str | None = None,
        popularity_weight: float = 0.0,
    ):
        self._owns_store = not isinstance(store, VectorStore)
        self.store = store if isinstance(store, VectorStore) else VectorStore(store or StoreConfig())
        self.collection = collection
        try:
            self.record = resolve_for_read(self.store, collection)
        except BaseException:
            self.close()
            raise
        self.cfg = cfg or UserVectorConfig()
        self.users = users_collection or users_collection_name(collection)
        self.popularity_weight = popularity_weight
        self.popularity: Counter = self._stored_popularity()
        self.collab_state: dict | None = self._stored_collab()

    def has_collab_vector(self) -> bool:
        """Whether the items collection was created with the ``collab`` named vector."""
        return COLLAB in self.store.vector_sizes(self.record.name)

    def _stored_collab(self) -> dict | None:
        """What the last :meth:`rebuild_users` with collab factors kept: config, rank, gram, content map."""
        if not self.store.collection_exists(self.users):
            return None
        record = self.store.collection_record(self.users)
        state = record.collab.model_dump() if record and record.collab else None
        return state if state and self.has_collab_vector() else None

    def _stored_popularity(self) -> Counter:
        """Item popularity saved by the last :meth:`rebuild_users` (positive interactions per item)."""
        record = self.store.collection_record(self.users) if self.store.collection_exists(self.users) else None
        return Counter(record.popularity) if record else Counter()

    # -- item vectors ------------------------------------------------------------------------------
    def item_vectors(self, item_ids: Iterable[str]) -> dict[str, np.ndarray]:
        ids = sorted(set(item_ids))
        out = {}
        for start in range(0, len(ids), 512):
            for p in self.store.retrieve(self.collection, ids[start : start + 512], with_vectors=["fused"]):
                out[p.payload["item_id"]] = np.asarray(p.vector["fused"], dtype=np.float64)
        return out

    # -- user profiles -----------------------------------------------------------------------------
    def _ensure_users(self, collab: bool = False) -> None:
        if not self.store.collection_exists(self.users):
            self.store.create_collection(
                self.users,
                self.record.dim,
                bundle_id=self.record.bundle_id,
                extra={"items_collection": self.collection},
                extra_vectors=(COLLAB,) if collab else (),
            )

    def _check_users_bundle(self) -> None:
        """User vectors live in one bundle's space; after a re-embed they must be rebuilt."""
        record = self.store.collection_record(self.users)
        items = self.store.collection_record(self.collection)
        if record is not None and record.bundle_id != items.bundle_id:
            raise StoreError(
                f"user vectors in {self.users!r} were built for bundle {record.bundle_id!r}, but "
                f"{self.collection!r} now serves {items.bundle_id!r}: rebuild them "
                f"(Recommender.rebuild_users)"
            )

    def get_profile(self, user_id: str) -> UserProfile | None:
        if not self.store.collection_exists(self.users):
            return None
        self._check_users_bundle()
        with_collab = self.collab_state is not None
        points = self.store.retrieve(
            self.users, [user_id], with_vectors=["fused", COLLAB] if with_collab else ["fused"]
        )
        if not points:
            return None
        p = points[0]
        payload = p.payload
        vector = np.asarray(p.vector["fused"], dtype=np.float64) * float(payload["norm"])
        collab = None
        if with_collab and payload.get("collab") and COLLAB in (p.vector or {}):
            # cosine vectors are stored normalised: the payload keeps the factors' norm
            stored = np.asarray(p.vector[COLLAB], dtype=np.float64)[: int(self.collab_state["rank"])]
            collab = stored * float(payload.get("collab_norm", 1.0)) / max(float(np.linalg.norm(stored)), 1e-12)
        return UserProfile(
            user_id,
            vector,
            float(payload["ref_time"]),
            list(payload["seen"]),
            int(payload["n_positive"]),
            int(payload["n_negative"]),
            int(payload.get("unknown", 0)),
            list(payload.get("negatives", [])),
            collab,
        )

    def _save(self, profiles: Sequence[UserProfile]) -> None:
        from mmalign.plugin.recommend.collab import stored_user_vector

        self._ensure_users(collab=self.collab_state is not None)
        points = []
        for prof in profiles:
            vector = prof.vector
            if vector is None:  # nothing usable yet (or all feedback cancelled out)
                vector, norm = np.zeros(self.record.dim), 0.0
                vector[0] = 1.0
            else:
                norm = float(np.linalg.norm(prof.sum_vector))
            vectors = {"fused": vector}
            if self.collab_state is not None:
                vectors[COLLAB] = stored_user_vector(
                    prof.collab if prof.collab is not None else np.zeros(0), self.record.dim
                )
            points.append(
                PointData(
                    prof.user_id,
                    vectors,
                    {
                        "user_id": prof.user_id,
                        "norm": norm,
                        "ref_time": prof.ref_time,
                        "seen": prof.seen,
                        "n_positive": prof.n_positive,
                        "n_negative": prof.n_negative,
                        "unknown": prof.unknown,
                        "negatives": prof.negatives,
                        "collab": prof.collab is not None and bool(np.any(prof.collab)),
                        "collab_norm": float(np.linalg.norm(prof.collab)) if prof.collab is not None else 0.0,
                        "last_update": time.time(),
                    },
                )
            )
        self.store.upsert(self.users, points)

    def update_user(self, user_id: str, interactions: Sequence[Interaction], now: float | None = None) -> UserProfile:
        """Add new interactions to the stored profile (no recomputation from scratch)."""
        previous = self.get_profile(user_id)
        vectors = self.item_vectors(r.item_id for r in interactions)
        profile = update_profile(previous, user_id, interactions, vectors, self.cfg, self.record.dim, now)
        if self.collab_state is not None:
            profile.collab = self._fold_in(profile.positives)
        self._save([profile])
        self.popularity.update(
            r.item_id for r in interactions if r.item_id in vectors and strength(r.weight, self.cfg) > 0
        )
        self.store.update_record(self.users, popularity=dict(self.popularity.most_common(MAX_STORED_POPULARITY)))
        return profile

    def rebuild_users(
        self, interactions: Sequence[Interaction], collab: CollabConfig | None = None
    ) -> UserRebuildReport:
        """(Re)compute every user's profile from ``interactions``; returns counts (unknown ids included).

        When the items collection has a ``collab`` vector, collaborative factors are fitted too (with
        ``collab`` or the default :class:`CollabConfig`): every item with interactions gets its learned
        vector, every other item the content map's prediction from its ``fused`` vector, and every
        user its factors."""
        vectors = self.item_vectors(r.item_id for r in interactions)
        by_user: dict[str, list[Interaction]] = {}
        for row in interactions:
            by_user.setdefault(row.user_id, []).append(row)
        profiles = [update_profile(None, u, rows, vectors, self.cfg, self.record.dim) for u, rows in by_user.items()]
        if self.store.collection_exists(self.users):
            self.store.delete_collection(self.users)
        self.collab_state = None
        if self.has_collab_vector() and any(
            r.item_id in vectors and strength(r.weight, self.cfg) > 0 for r in interactions
        ):
            factors = self.fit_collab(interactions, collab or CollabConfig())
            for prof in profiles:
                prof.collab = factors.user_vector(prof.user_id)
        for start in range(0, len(profiles), 256):
            self._save(profiles[start : start + 256])
        self.popularity = Counter(
            r.item_id for r in interactions if r.item_id in vectors and strength(r.weight, self.cfg) > 0
        )
        self._ensure_users(collab=self.collab_state is not None)
        self.store.update_record(
            self.users,
            popularity=dict(self.popularity.most_common(MAX_STORED_POPULARITY)),
            collab=self.collab_state,
        )
        unknown = sum(p.unknown for p in profiles)
        return UserRebuildReport(
            users=len(profiles),
            interactions=len(interactions),
            unknown_item_rows=unknown,
            unknown_item_ids=len({r.item_id for r in interactions if r.item_id not in vectors}),
        )

    # -- collaborative factors ------------------------------------------------------------------------
    def fit_collab(self, interactions: Sequence[Interaction], cfg: CollabConfig):
        """Fit item/user factors on ``interactions`` and write every item's ``collab`` vector: learned
        where the item has positive interactions, predicted from its ``fused`` vector otherwise. Keeps
        what fold-in and later predictions need in :attr:`collab_state` (saved with the users)."""
        from mmalign.plugin.recommend.collab import (
            ContentMap,
            fit_collab,
            item_collab_vectors,
            pack,
            stored_item_vectors,
        )

        item_ids, vectors = [], []
        for p in self.store.scroll(self.record.name, with_payload=["item_id"], with_vectors=["fused"]):
            item_ids.append(p.payload["item_id"])
            vectors.append(p.vector["fused"])
        content = np.asarray(vectors, dtype=np.float64).reshape(len(item_ids), -1)
        cfg = cfg.model_copy(update={"rank": min(cfg.rank, self.record.dim - 1)})
        factors = fit_collab(interactions, item_ids, cfg, self.cfg)
        warm = np.zeros(len(item_ids), dtype=bool)
        warm[
            [
                factors.item_index[r.item_id]
                for r in interactions
                if r.item_id in factors.item_index and self.cfg.strength(r.weight) > 0
            ]
        ] = True
        cmap = ContentMap(cfg.map_reg).fit(content[warm], factors.item_factors[warm]) if warm.any() else None
        items = item_collab_vectors(factors, content, warm, cmap) if cmap is not None else factors.item_factors
        stored, top = stored_item_vectors(items, self.record.dim)
        self._write_item_collab(item_ids, stored, ["learned" if w else "predicted" for w in warm])
        self.collab_state = {
            "config": cfg.model_dump(),
            "rank": factors.rank,
            "max_norm": top,
            "gram": pack(factors.item_factors.T @ factors.item_factors),
            "warm_items": int(warm.sum()),
            "predicted_items": int((~warm).sum()),
            "content_map": cmap.to_dict() if cmap is not None else None,
        }
        return factors

    def _write_item_collab(self, item_ids: Sequence[str], stored: np.ndarray, sources: Sequence[str]) -> None:
        """Add the ``collab`` vector to each item point, keeping its other vectors and payload; the
        payload's ``collab_source`` says whether the vector was learned or predicted."""
        index = {item: n for n, item in enumerate(item_ids)}
        for start in range(0, len(item_ids), 256):
            points = self.store.retrieve(self.record.name, list(item_ids[start : start + 256]), with_vectors=True)
            updated = []
            for p in points:
                item = p.payload["item_id"]
                vectors = {k: v for k, v in (p.vector or {}).items() if k != COLLAB}
                vectors[COLLAB] = stored[index[item]]
                payload = {k: v for k, v in p.payload.items() if k != "item_id"}
                payload[COLLAB_SOURCE] = sources[index[item]]
                updated.append(PointData(item, vectors, payload))
            self.store.upsert(self.record.name, updated)

    def _fold_in(self, positives: Sequence[str]) -> np.ndarray | None:
        """The user's factors from the user's liked items, item factors fixed (milliseconds)."""
        from mmalign.plugin.recommend.collab import als_solve, unpack

        state = self.collab_state
        k = int(state["rank"])
        cfg = CollabConfig.model_validate(state["config"])
        got = self.store.retrieve(self.record.name, list(dict.fromkeys(positives)), with_vectors=[COLLAB])
        rows = [np.asarray(p.vector[COLLAB], dtype=np.float64)[:k] for p in got if COLLAB in (p.vector or {})]
        if not rows:
            return None
        y = np.asarray(rows) * float(state["max_norm"])  # stored normalised: every item vector had norm M
        if cfg.method == "svd":
            return y.sum(0)
        return als_solve(y, unpack(state["gram"]), np.arange(len(y)), cfg)

    # -- recommending ----------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        exclude_seen: bool = True,
        strategy: str | None = None,
        cold_start_query: Mapping | None = None,
        searcher: Searcher | None = None,
    ) -> list[Hit]:
        """``strategy`` None: ``hybrid`` when collab factors exist, else ``vector``; ``hybrid`` without
        them (a collection without a collab vector, or a user without factors) falls back to ``vector``."""
        if strategy is None:
            strategy = "hybrid" if self.collab_state is not None else "vector"
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy {strategy!r} is unknown; valid: {list(STRATEGIES)}")
        profile = self.get_profile(user_id)
        if profile is None or profile.vector is None or profile.n_positive == 0:
            # no history, or only dislikes: the negated sum would point at outliers, not at taste
            return self.cold_start(
                k=k, filters=filters, query=cold_start_query, searcher=searcher, exclude=profile.seen if profile else ()
            )
        query_filter = build_filter(filters, exclude_ids=profile.seen if exclude_seen else ())
        if strategy == "hybrid":
            if self.collab_state is not None and profile.collab is not None and np.any(profile.collab):
                return self._hybrid(profile, k, query_filter)
            strategy = "vector"
        if strategy == "vector":
            query: Any = Nearest(profile.vector, "fused")
        else:
            positive, negative = self._examples(profile)
            if not positive:
                return self.cold_start(
                    k=k, filters=filters, query=cold_start_query, searcher=searcher, exclude=profile.seen
                )
            query = recommend_query(positive, negative, strategy)
        use_prior = strategy == "vector" and self.popularity_weight > 0 and self.popularity
        limit = max(k, PRIOR_CANDIDATES) if use_prior else k
        points = self.store.query(self.collection, query, limit=limit, query_filter=query_filter)
        hits = [Hit.from_point(p) for p in points]
        if use_prior:
            top = np.log1p(max(self.popularity.values()))
            for hit in hits:
                hit.score += self.popularity_weight * float(np.log1p(self.popularity.get(hit.id, 0)) / top)
            hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def _hybrid(self, profile: UserProfile, k: int, query_filter) -> list[Hit]:
        """Candidates from both vectors in one Qdrant query (prefetch on collab and fused, RRF), then
        ranked by collab · û + w · cos(fused, content user vector) (:func:`collab.hybrid_scores`), with
        w = ``content_weight``, or ``cold_content_weight`` for an item whose collab vector is predicted."""
        from mmalign.plugin.recommend.collab import content_weights, hybrid_scores, stored_user_vector, unit

        state = self.collab_state
        rank = int(state["rank"])
        weight = float(state["config"].get("content_weight", 0.0))
        cold_weight = float(state["config"].get("cold_content_weight", 0.0))
        n = max(k, HYBRID_CANDIDATES)
        branches = (
            Prefetch(Nearest(stored_user_vector(unit(profile.collab), self.record.dim), COLLAB), n, query_filter),
            Prefetch(Nearest(profile.vector, "fused"), n, query_filter),
        )
        fused = self.store.query(
            self.collection, Fused(branches, "rrf"), limit=2 * n, query_filter=query_filter, with_payload=["item_id"]
        )
        ids = [p.payload["item_id"] for p in fused]
        points = self.store.retrieve(self.collection, ids, with_vectors=[COLLAB, "fused"])
        points = [p for p in points if COLLAB in (p.vector or {})]
        if not points:
            return []
        collab = np.asarray([p.vector[COLLAB] for p in points], dtype=np.float64)[:, :rank] * float(state["max_norm"])
        content = np.asarray([p.vector["fused"] for p in points], dtype=np.float64)
        predicted = [p.payload.get(COLLAB_SOURCE) == "predicted" for p in points]
        scores = hybrid_scores(
            profile.collab, collab, profile.vector, content, content_weights(predicted, weight, cold_weight)
        )
        order = np.argsort(-scores)[:k]
        return [Hit(id=points[i].payload["item_id"], score=float(scores[i]), payload=points[i].payload) for i in order]

    def _examples(self, profile: UserProfile) -> tuple[list[str], list[str]]:
        """Positive and negative example ids for RecommendQuery (the profile keeps the order seen)."""
        negatives = set(profile.negatives)
        positives = [i for i in profile.seen if i not in negatives]
        return positives[-MAX_EXAMPLES:], profile.negatives[-MAX_EXAMPLES:]

    def more_like(
        self,
        item_ids: Sequence[str],
        *,
        k: int = 10,
        negative: Sequence[str] = (),
        filters: Mapping[str, Any] | None = None,
        strategy: str = "average_vector",
        exclude_seen: bool = True,
    ) -> list[Hit]:
        """Anonymous sessions: items like these (and unlike ``negative``); ``exclude_seen``: the examples
        are left out (without it, only the disliked ones are)."""
        if not item_ids:
            raise ConfigError("more_like needs at least one item id")
        query = recommend_query(item_ids, negative, strategy)
        exclude = [*item_ids, *negative] if exclude_seen else list(negative)
        points = self.store.query(
            self.collection, query, limit=k, query_filter=build_filter(filters, exclude_ids=exclude)
        )
        return [Hit.from_point(p) for p in points]

    def cold_start(
        self,
        *,
        k: int,
        filters=None,
        query: Mapping | None = None,
        searcher: Searcher | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Hit]:
        if query:
            searcher = searcher or Searcher(self.collection, store=self.store)
            hits = searcher.search(k=k + len(exclude), filters=filters, **query)
            return [h for h in hits if h.id not in set(exclude)][:k]
        if not self.popularity:
            raise StoreError(
                "the user has no history and no popularity is known: pass interactions or a "
                "text/image/audio query for cold start"
            )
        ranked = [i for i, _ in self.popularity.most_common() if i not in set(exclude)]
        hits = []
        for start in range(0, len(ranked), 256):
            points = {
                p.payload["item_id"]: p for p in self.store.retrieve(self.collection, ranked[start : start + 256])
            }
            for item in ranked[start : start + 256]:
                p = points.get(item)
                if p is None or not _matches(p.payload, filters):
                    continue
                hits.append(Hit(id=item, score=float(self.popularity[item]), payload=p.payload))
                if len(hits) == k:
                    return hits
        return hits

    def close(self) -> None:
        """Close the store if this object opened it (a store passed in stays open)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _matches(payload: Mapping, filters: Mapping | None) -> bool:
    for key, value in (filters or {}).items():
        got = payload.get(key) if key in payload else (payload.get("metadata") or {}).get(key.removeprefix("metadata."))
        values = {str(v) for v in (value if isinstance(value, (list, tuple)) else [value])}
        have = {str(g) for g in got} if isinstance(got, (list, tuple)) else {str(got)}
        if not values & have:  # as Qdrant's MatchAny: any stored value matches any wanted one
            return False
    return True
