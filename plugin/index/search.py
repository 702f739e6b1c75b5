"""Cross-modal search: text, image or audio queries (several at once) against any named vector.

The query boundary has two pieces: a :class:`~mmalign.plugin.index.query_encoder.QueryEncoder` turns the
inputs into vectors (and says what was heard in a spoken query), and a typed store query
(:mod:`mmalign.connectors.query`) runs on the store. Several inputs are combined with Qdrant prefetch +
reciprocal rank fusion (``rrf``) or by averaging their vectors (``mean``); ``like`` takes item ids
("more like this").

Modes (docs/search.md): ``dense`` searches the vectors; ``lexical`` the sparse ``lexical`` vector (BM25 over
the items' words and the speech heard in their sounds: plugin/index/lexical.py) with the words typed or heard;
``hybrid`` prefetches both and fuses them (RRF, weighted, or DBSF). Filters apply to every branch.
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
from mmalign.connectors.query import Filter, Fused, Nearest, Point, Prefetch, Query, SparseVector
from mmalign.connectors.store import StoreError, VectorStore
from mmalign.plugin.index.filters import build_filter, parse_filters
from mmalign.plugin.index.lexical import query_vector
from mmalign.plugin.index.query_encoder import Encoded, Heard, QueryEncoder
from mmalign.plugin.index.spoken import LEXICAL_CANDIDATES, LEXICAL_MIN_SPEECH, rescore_by_transcript, spoken_terms
from mmalign.plugin.index.versions import resolve_for_read
from mmalign.schemas import Modality, SearchHit, StoreConfig, VectorName
from mmalign.schemas.query import SearchQuery
from mmalign.schemas.vocabulary import LEXICAL_VECTOR, SEARCH_FUSIONS

log = logging.getLogger(__name__)
FUSIONS = SEARCH_FUSIONS
__all__ = [
    "FUSIONS",
    "Hit",
    "SearchQuery",
    "SearchResult",
    "Searcher",
    "build_filter",
    "answer",
    "choose_mode",
    "lexical_query",
    "parse_filters",
    "store_query",
]
#: The mode of a search that names none: ``hybrid`` when words were typed or speech was heard (and the
#: collection has the ``lexical`` vector), else ``dense``; chosen by benchmarks/search_modes.py.
DEFAULT_WORDS_MODE = "hybrid"
#: Hybrid fusion and lexical weight when the query names none: for typed words, and for a spoken query (its
#: lexical branch holds n-best transcripts and phonetic terms); chosen on validation (docs/search.md).
TEXT_HYBRID = ("rrf", 1.0)
SPOKEN_HYBRID = ("rrf", 1.0)


def hybrid_fusion(query: SearchQuery) -> tuple[str, float]:
    """(fusion, lexical weight) of a hybrid query: its own, else the default for its kind of input."""
    fusion, weight = SPOKEN_HYBRID if query.audio else TEXT_HYBRID
    return query.hybrid_fusion or fusion, query.lexical_weight or weight


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
    mode: str = "dense"


def search_query(**values: Any) -> SearchQuery:
    """A :class:`SearchQuery`, with a validation failure as one ConfigError naming the parameter."""
    try:
        return SearchQuery(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ConfigError(f"invalid search: {problems}") from None


def lexical_query(texts: Sequence[str], heard: Sequence[Heard] = ()) -> SparseVector | None:
    """The lexical query of typed ``texts`` and of what was ``heard`` in spoken inputs (speech only: see
    :func:`~mmalign.plugin.index.spoken.spoken_terms`); None when there is no word to match."""
    weights: dict[int, float] = {}
    for part in [query_vector(t) for t in texts] + [spoken_terms(h) for h in heard]:
        for index, weight in (part.as_dict() if part is not None else {}).items():
            weights[index] = weights.get(index, 0.0) + weight
    return SparseVector.from_weights(weights) if weights else None


def store_query(
    query: SearchQuery,
    vectors: Sequence[np.ndarray],
    lexical: SparseVector | None,
    mode: str,
    limit: int,
    query_filter: Filter | None,
) -> tuple[Query, Filter | None]:
    """The store query of a search in ``mode``, and the filter of the request (None where the filter is in
    each branch): ``dense``, one vector (or the mean of several: ``fusion="mean"``) or a prefetch per vector
    fused by RRF; ``lexical``, the BM25 query alone; ``hybrid``, the dense branches and the lexical one,
    fused by ``hybrid_fusion`` with the lexical branch weighted ``lexical_weight`` (RRF)."""
    using = query.using.value
    if mode == "lexical":
        return Nearest(lexical, LEXICAL_VECTOR), query_filter
    if len(vectors) == 1 or query.fusion == "mean":
        mean = np.mean(vectors, axis=0)
        dense = [Nearest(mean / max(float(np.linalg.norm(mean)), 1e-12), using)]
    else:
        dense = [Nearest(v, using) for v in vectors]
    if mode == "dense" and len(dense) == 1:
        return dense[0], query_filter
    candidates = max(limit * 4, 50)
    branches = [Prefetch(q, limit=candidates, filter=query_filter) for q in dense]
    if mode == "dense":
        return Fused(tuple(branches), "rrf"), None
    branches.append(Prefetch(Nearest(lexical, LEXICAL_VECTOR), limit=candidates, filter=query_filter))
    fusion, weight = hybrid_fusion(query)
    if fusion == "dbsf":
        return Fused(tuple(branches), "dbsf"), None
    weights = (1.0,) * len(dense) + (weight,)
    return Fused(tuple(branches), "rrf", weights if weight != 1.0 else None), None


def choose_mode(query: SearchQuery, lexical: SparseVector | None, has_lexical: bool, collection: str) -> str:
    """The mode a query runs in: its own, or ``hybrid`` when it has words (typed or heard) and the collection
    the ``lexical`` vector, else ``dense``. Hybrid without words to match is dense."""
    if query.mode is None:
        return DEFAULT_WORDS_MODE if lexical is not None and has_lexical else "dense"
    if query.mode != "dense" and not has_lexical:
        raise StoreError(
            f"collection {collection!r} has no {LEXICAL_VECTOR!r} vector for {query.mode} search (it was made "
            f"before lexical search): reembed({collection!r}, bundle=BUNDLE) (CLI: `mmalign reembed --collection "
            f"{collection} --bundle BUNDLE`), with the bundle it was built with, adds it without re-encoding media; "
            f"or search with mode 'dense'"
        )
    if query.mode == "hybrid" and lexical is None:
        return "dense"
    return query.mode


def answer(
    store: VectorStore,
    collection: str,
    query: SearchQuery,
    vectors: Sequence[np.ndarray],
    heard: Sequence[Heard] = (),
    *,
    has_lexical: bool,
    k: int | None = None,
    lexical: SparseVector | None = None,
) -> SearchResult:
    """The first ``k`` (default ``query.k``) hits of a query whose inputs are encoded (``vectors``: its
    inputs', then its ``like`` items'; ``heard``: what was heard in its clips). ``lexical`` replaces the
    lexical query made from the typed and heard words (benchmarks compare variants with it)."""
    k = k or query.k
    lexical = lexical if lexical is not None else lexical_query(query.text, heard)
    mode = choose_mode(query, lexical, has_lexical, collection)
    if mode == "lexical" and lexical is None:  # nothing typed or heard to match: no hit
        return SearchResult([], list(heard), mode)
    spoken = len(vectors) == 1 and len(query.audio) == 1 and bool(heard and heard[0].transcript)
    match = mode != "lexical" and spoken and heard[0].speech_probability >= LEXICAL_MIN_SPEECH and query.match_heard
    limit = max(k, LEXICAL_CANDIDATES) if match else k
    request, request_filter = store_query(
        query, vectors, lexical, mode, limit, build_filter(query.filters, exclude_ids=query.like)
    )
    hits = [Hit.from_point(p) for p in store.query(collection, request, limit=limit, query_filter=request_filter)]
    if match:
        hits = rescore_by_transcript(hits, heard[0].transcript, k)
    return SearchResult(hits, list(heard), mode)


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
        runtime: str | None = None,
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
        self.encoder = QueryEncoder(self.bundle, device=device, encoder_pool=encoder_pool, runtime=runtime)
        self.defaults = {"match_heard": match_heard, "rerank_spoken": rerank_spoken}
        self._has_lexical: bool | None = None

    def recorded_bundle(self) -> Path:
        """The bundle folder the collection's record names, checked to exist (its id is checked on load)."""
        path = self.record.bundle_path
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
    ) -> list[Hit]:
        """The hits of these query inputs, searched on the stored vector ``using``, in the default mode (see
        :class:`~mmalign.schemas.query.SearchQuery`). How the query is answered (``mode``, ``fusion`` of several
        inputs, ``hybrid_fusion``, ``lexical_weight``) is chosen with :meth:`run`:
        ``searcher.run(search_query(text=[...], mode="lexical")).hits``."""
        inputs = {"text": text, "image": image, "audio": audio, "like": like}
        query = search_query(**inputs, using=using, k=k, filters=dict(filters or {}), **self.defaults)
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
        vectors = [e.vector for e in encoded] + [self.item_vector(i, query.using.value) for i in query.like]
        spoken = len(vectors) == 1 and len(query.audio) == 1 and bool(heard and heard[0].transcript)
        rerank = spoken and query.rerank_spoken > 0
        wanted = max(query.k, query.rerank_spoken) if rerank else query.k
        result = answer(self.store, self.collection, query, vectors, heard, has_lexical=self.has_lexical, k=wanted)
        if rerank:
            result.hits = self._rerank_spoken(query.audio[0], result.hits, query.k)
        return result

    @property
    def has_lexical(self) -> bool:
        """Whether the collection has the ``lexical`` vector (collections made before it get it by reembed)."""
        if self._has_lexical is None:
            self._has_lexical = LEXICAL_VECTOR in self.store.sparse_vectors(self.collection)
        return self._has_lexical

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
