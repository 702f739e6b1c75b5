"""Cross-modal search: text, image or audio queries (several at once) against any named vector.

The query boundary has two pieces: a :class:`~mmalign.plugin.index.query_encoder.QueryEncoder` turns the
inputs into vectors (and says what was heard in a spoken query), and a typed store query
(:mod:`mmalign.connectors.query`) runs on the store. Several inputs are combined with Qdrant prefetch +
reciprocal rank fusion (``rrf``) or by averaging their vectors (``mean``); ``like`` takes item ids
("more like this").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from mmalign.connectors.errors import ConfigError, DataError
from mmalign.connectors.query import Fused, Nearest, Point, Prefetch
from mmalign.connectors.store import StoreError, VectorStore
from mmalign.plugin.index.filters import build_filter, parse_filters
from mmalign.plugin.index.query_encoder import Encoded, Heard, QueryEncoder
from mmalign.plugin.index.spoken import LEXICAL_CANDIDATES, LEXICAL_MIN_SPEECH, rescore_by_transcript
from mmalign.plugin.index.versions import resolve_for_read
from mmalign.schemas import Modality, SearchHit, StoreConfig, VectorName
from mmalign.schemas.query import SearchQuery
from mmalign.schemas.vocabulary import SEARCH_FUSIONS

log = logging.getLogger(__name__)
FUSIONS = SEARCH_FUSIONS
__all__ = ["FUSIONS", "Hit", "SearchQuery", "SearchResult", "Searcher", "build_filter", "parse_filters"]


class Hit(SearchHit):
    """A search or recommendation result, named by its catalog item id."""

    @classmethod
    def from_point(cls, point: Point) -> Hit:
        """A scored point of the store as a hit."""
        return cls(id=point.item_id, score=float(point.score or 0.0), payload=point.payload)


@dataclass
class SearchResult:
    """The hits of one search, and what was heard in its audio inputs (in their order)."""

    hits: list[Hit]
    heard: list[Heard] = field(default_factory=list)


def search_query(**values: Any) -> SearchQuery:
    """A :class:`SearchQuery`, with a validation failure as one ConfigError naming the parameter."""
    try:
        return SearchQuery(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ConfigError(f"invalid search: {problems}") from None


class Searcher:
    """Searches one collection: keeps its bundle and query encoders loaded between queries.

    ``match_heard`` and ``rerank_spoken`` are the defaults of :meth:`search` for spoken queries (see
    :class:`~mmalign.schemas.query.SearchQuery`); :meth:`run` takes a whole query.
    """

    def __init__(
        self,
        collection: str,
        *,
        store: VectorStore | StoreConfig | None = None,
        bundle=None,
        device: str = "auto",
        encoder_pool: dict | None = None,
        match_heard: bool = True,
        rerank_spoken: int = 0,
    ):
        from mmalign.plugin.align.bundle import Bundle, load_bundle

        self._owns_store = not isinstance(store, VectorStore)
        self.store = store if isinstance(store, VectorStore) else VectorStore(store or StoreConfig())
        self.collection = collection
        try:
            self.record = resolve_for_read(self.store, collection)
            if bundle is None:
                bundle = self.recorded_bundle()
            self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, with_teacher=False)
            VectorStore.check_compatible(self.record, dim=self.bundle.dim, bundle_id=self.bundle.bundle_id)
        except BaseException:
            self.close()
            raise
        self.device = device
        self.encoder = QueryEncoder(self.bundle, device=device, encoder_pool=encoder_pool)
        self.defaults = {"match_heard": match_heard, "rerank_spoken": rerank_spoken}

    def recorded_bundle(self) -> Path:
        """The bundle folder the collection's record names, checked to exist (its id is checked on load)."""
        path = self.record.extra.get("bundle_path")
        if not path or not Path(path).exists():
            raise StoreError(
                f"collection {self.collection!r} was built with bundle {self.record.bundle_id!r}, whose "
                f"folder {path!r} is not available here; give the bundle (bundle=PATH)"
            )
        return Path(path)

    def check_live_bundle(self) -> None:
        """After a re-embed swapped the alias to another bundle, this searcher's student is stale."""
        live = self.store.collection_record(self.collection)
        if live is not None and live.bundle_id != self.bundle.bundle_id:
            raise StoreError(
                f"collection {self.collection!r} now serves bundle {live.bundle_id!r} (re-embedded); "
                f"this searcher holds {self.bundle.bundle_id!r}: create a new Searcher"
            )

    def item_vector(self, item_id: str, using: str) -> np.ndarray:
        """The stored vector ``using`` of an item (its fused vector when it has no such modality)."""
        [point] = self.store.retrieve(self.collection, [item_id], with_vectors=True) or [None]
        if point is None:
            raise DataError(f"item {item_id!r} is not in collection {self.collection!r}")
        vectors = point.vector or {}
        vector = vectors.get(using) or vectors.get(VectorName.FUSED.value)
        return np.asarray(vector, dtype=np.float32)

    def encode(self, query: SearchQuery) -> list[Encoded]:
        """The query's text, image and audio inputs as vectors, in that order."""
        encoded = [self.encoder.embed(Modality.TEXT, t) for t in query.text]
        encoded += [self.encoder.embed(Modality.IMAGE, p) for p in query.image]
        return encoded + [self.encoder.embed(Modality.AUDIO, p) for p in query.audio]

    def search(
        self,
        *,
        text: Sequence[str] = (),
        image: Sequence[str | Path] = (),
        audio: Sequence[str | Path] = (),
        like: Sequence[str] = (),
        using: str = "fused",
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        fusion: str = "rrf",
    ) -> list[Hit]:
        """The hits of these query inputs (see :class:`~mmalign.schemas.query.SearchQuery`)."""
        query = search_query(
            text=text,
            image=image,
            audio=audio,
            like=like,
            using=using,
            k=k,
            filters=dict(filters or {}),
            fusion=fusion,
            **self.defaults,
        )
        return self.run(query).hits

    def run(self, query: SearchQuery, encoded: Sequence[Encoded] | None = None) -> SearchResult:
        """Answer ``query``. ``encoded``: its text, image and audio inputs already encoded (in that order,
        e.g. by the service's micro-batches); otherwise they are encoded here."""
        if not query.inputs:
            raise ConfigError("give at least one query: text, image, audio or like")
        self.check_live_bundle()
        if encoded is None:
            encoded = self.encode(query)
        elif len(encoded) != len(query.text) + len(query.image) + len(query.audio):
            raise ConfigError(f"{len(encoded)} encoded inputs for a query with {query.inputs - len(query.like)}")
        heard = [e.heard for e in encoded if e.heard is not None]
        using = query.using.value
        vectors = [e.vector for e in encoded] + [self.item_vector(i, using) for i in query.like]
        spoken = len(vectors) == 1 and len(query.audio) == 1 and bool(heard and heard[0].transcript)
        sure = spoken and heard[0].speech_probability >= LEXICAL_MIN_SPEECH
        rerank, lexical = spoken and query.rerank_spoken > 0, sure and query.match_heard
        wanted = max(query.k, query.rerank_spoken) if rerank else query.k
        query_filter = build_filter(query.filters, exclude_ids=query.like)
        if len(vectors) == 1 or query.fusion == "mean":
            mean = np.mean(vectors, axis=0)
            points = self.store.query(
                self.collection,
                Nearest(mean / max(np.linalg.norm(mean), 1e-12), using),
                limit=max(wanted, LEXICAL_CANDIDATES) if lexical else wanted,
                query_filter=query_filter,
            )
        else:
            branches = tuple(
                Prefetch(Nearest(v, using), limit=max(query.k * 4, 50), filter=query_filter) for v in vectors
            )
            points = self.store.query(self.collection, Fused(branches, "rrf"), limit=query.k)
        hits = [Hit.from_point(p) for p in points]
        if lexical:
            hits = rescore_by_transcript(hits, heard[0].transcript, wanted)
        if rerank:
            hits = self._rerank_spoken(query.audio[0], hits, query.k)
        return SearchResult(hits, heard)

    def _rerank_spoken(self, path: str | Path, hits: list[Hit], k: int) -> list[Hit]:
        """Hits ordered by how likely Whisper finds each hit's text as what was said in ``path`` (mean
        log-probability per token; hits without text keep their order, after the others)."""
        transcriber = getattr(self.encoder.encoder(Modality.AUDIO), "transcriber", None)
        texts = [h.payload.get("text") or "" for h in hits]
        if transcriber is None or not any(texts):
            return hits[:k]
        wave = transcriber.load_input(Path(path), item_id=f"query:{Path(path).name}")
        scores = transcriber.text_log_likelihoods(wave, texts)
        order = sorted(range(len(hits)), key=lambda i: (not texts[i], -float(scores[i]), i))
        return [hits[i] for i in order[:k]]

    def close(self) -> None:
        """Close the store if this object opened it (a store passed in stays open)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
