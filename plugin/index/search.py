"""Cross-modal search: text, image or audio queries (several at once) against any named vector.

Several query inputs are combined with Qdrant prefetch + reciprocal rank fusion (``rrf``) or
by averaging their vectors (``mean``). ``like`` takes item ids ("more like this").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.errors import ConfigError, DataError
from mmalign.connectors.store import StoreError, VectorStore, point_id
from mmalign.plugin.index.payload import RESERVED_PAYLOAD
from mmalign.plugin.index.spoken import LEXICAL_CANDIDATES, LEXICAL_MIN_SPEECH, rescore_by_transcript, with_spoken_text
from mmalign.plugin.index.versions import resolve_for_read
from mmalign.schemas import Modality, SearchHit, StoreConfig, VectorName

log = logging.getLogger(__name__)
FUSIONS = ("rrf", "mean")


class Hit(SearchHit):
    """A search or recommendation result, named by its catalog item id."""

    @classmethod
    def from_point(cls, point) -> Hit:
        """A Qdrant scored point as a hit."""
        payload = point.payload or {}
        return cls(id=payload.get("item_id", str(point.id)), score=float(point.score), payload=payload)


def build_filter(filters: Mapping[str, Any] | None, exclude_ids: Sequence[str] = ()):
    """key=value conditions (AND). Keys other than the reserved payload fields address ``metadata.<key>``;
    a list value matches any of its elements."""
    from qdrant_client import models

    must = []
    for key, value in (filters or {}).items():
        path = key if key in RESERVED_PAYLOAD or key.startswith("metadata.") else f"metadata.{key}"
        values = value if isinstance(value, (list, tuple)) else [value]
        # A CLI value "2" should match a stored 2 as well as "2": one condition per value type, OR-ed.
        by_type: dict[type, list] = {}
        for v in values:
            by_type.setdefault(type(v), []).append(v)
            if isinstance(v, str) and v.lstrip("-").isdigit():
                by_type.setdefault(int, []).append(int(v))
        conditions = [models.FieldCondition(key=path, match=models.MatchAny(any=vs)) for vs in by_type.values()]
        must.append(conditions[0] if len(conditions) == 1 else models.Filter(should=conditions))
    must_not = [models.HasIdCondition(has_id=[point_id(i) for i in exclude_ids])] if exclude_ids else []
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def parse_filters(values: Sequence[str]) -> dict[str, list[str]]:
    """``["category=animals", "category=food", "lang=en"]`` -> {"category": [...], "lang": [...]}."""
    out: dict[str, list[str]] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"filter {value!r} is not KEY=VALUE")
        out.setdefault(key.strip(), []).append(val.strip())
    return out


class Searcher:
    """Keeps the bundle and the query encoders loaded between queries."""

    def __init__(
        self,
        collection: str,
        *,
        store: VectorStore | StoreConfig | None = None,
        bundle=None,
        device: str = "auto",
        encoder_pool: dict | None = None,
    ):
        from mmalign.plugin.align.bundle import Bundle, load_bundle

        self._owns_store = not isinstance(store, VectorStore)
        self.store = store if isinstance(store, VectorStore) else VectorStore(store or StoreConfig())
        self.collection = collection
        try:
            self.record = resolve_for_read(self.store, collection)
        except BaseException:
            self.close()
            raise
        if bundle is None:
            path = self.record.extra.get("bundle_path")
            if not path or not Path(path).exists():
                raise StoreError(
                    f"collection {collection!r} was built with bundle {self.record.bundle_id!r}, whose "
                    f"folder {path!r} is not available here; pass --bundle"
                )
            bundle = path
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, with_teacher=False)
        VectorStore.check_compatible(self.record, dim=self.bundle.dim, bundle_id=self.bundle.bundle_id)
        self.device = device
        self._encoders = encoder_pool if encoder_pool is not None else {}

    def _check_live_bundle(self) -> None:
        """After a re-embed swapped the alias to another bundle, this searcher's student is stale."""
        live = self.store.collection_record(self.collection)
        if live is not None and live.bundle_id != self.bundle.bundle_id:
            raise StoreError(
                f"collection {self.collection!r} now serves bundle {live.bundle_id!r} (re-embedded); "
                f"this searcher holds {self.bundle.bundle_id!r}: create a new Searcher"
            )

    def _encoder(self, modality: Modality):
        from mmalign.plugin.encoders import build_encoder
        from mmalign.plugin.encoders.registry import encoder_id

        spec = self.bundle.encoder_spec(modality)
        key = encoder_id(spec)
        if key not in self._encoders:
            self._encoders[key] = build_encoder(spec, device=self.device)
        return self._encoders[key]

    def embed_query(self, modality: Modality | str, value: str | Path, *, heard: list | None = None) -> np.ndarray:
        """A text, or an image/audio file path -> unit vector in the shared space (D,).

        An audio encoder that transcribes also says what it heard: ``heard`` (a list) gets
        ``{"audio": path, "transcript": ..., "speech_probability": ...}`` (the transcript is "" for no speech).
        When speech was heard and the bundle's text encoder is the one that embeds the transcript, the
        transcript's text-tower vector is added to the audio vector: a spoken query lands where its words do,
        whatever audio the bundle was trained on (docs/audio.md)."""
        modality = Modality(modality)
        if modality not in self.bundle.modalities:
            raise ConfigError(
                f"bundle {self.bundle.bundle_id} has no {modality.value} projection; it has "
                f"{[m.value for m in self.bundle.modalities]}"
            )
        encoder = self._encoder(modality)
        if modality is Modality.TEXT:
            inputs = [str(value)]
        else:
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"{modality.value} query file {str(path)!r} does not exist")
            inputs = [encoder.load_input(path, item_id=f"query:{path.name}")]
        if not getattr(encoder, "annotates", False):
            return self.bundle.embed(modality, encoder.encode(inputs, batch_size=1))[0]
        features, notes = encoder.encode_with_annotations(inputs, batch_size=1)
        if heard is not None:
            heard.append({"audio": str(value), **notes[0]})
        vector = self.bundle.embed(modality, features)[0]
        return with_spoken_text(self.bundle, encoder, vector, notes[0].get("transcript"))

    def _rerank_spoken(self, path: str | Path, hits: list[Hit], k: int) -> list[Hit]:
        """Hits ordered by how likely Whisper finds each hit's text as what was said in ``path`` (mean
        log-probability per token; hits without text keep their order, after the others)."""
        transcriber = getattr(self._encoder(Modality.AUDIO), "transcriber", None)
        texts = [h.payload.get("text") or "" for h in hits]
        if transcriber is None or not any(texts):
            return hits[:k]
        wave = transcriber.load_input(Path(path), item_id=f"query:{Path(path).name}")
        scores = transcriber.text_log_likelihoods(wave, texts)
        order = sorted(range(len(hits)), key=lambda i: (not texts[i], -float(scores[i]), i))
        return [hits[i] for i in order[:k]]

    def item_vector(self, item_id: str, using: str) -> np.ndarray:
        [point] = self.store.retrieve(self.collection, [item_id], with_vectors=True) or [None]
        if point is None:
            raise DataError(f"item {item_id!r} is not in collection {self.collection!r}")
        vectors = point.vector or {}
        vector = vectors.get(using) or vectors.get(VectorName.FUSED.value)
        return np.asarray(vector, dtype=np.float32)

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
        with_payload: bool = True,
        heard: list | None = None,
        rerank_spoken: int = 0,
        match_heard: bool = True,
    ) -> list[Hit]:
        """Hits of the query inputs; pass a list as ``heard`` to get what was heard in each audio query
        (see :meth:`embed_query`). ``rerank_spoken`` = N > 0: when the only query input is an audio file in
        which speech was heard, the top ``max(N, k)`` hits are re-ordered by how likely Whisper finds their
        text as what was said (``text_log_likelihoods`` of the transcribing encoder). ``match_heard``: when the
        only query input is an audio file in which speech was heard, the first hits are re-scored by how well
        the transcript matches their text (:func:`~mmalign.plugin.index.spoken.rescore_by_transcript`)."""
        from qdrant_client import models

        valid = [v.value for v in VectorName]
        if using not in valid:
            raise ConfigError(f"--using {using!r} is not a vector name; valid: {valid}")
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion {fusion!r} is unknown; valid: {list(FUSIONS)}")
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if rerank_spoken < 0:
            raise ConfigError(f"rerank_spoken must be >= 0, got {rerank_spoken}")
        self._check_live_bundle()
        notes: list[dict] = []
        vectors = [self.embed_query(Modality.TEXT, t) for t in text]
        vectors += [self.embed_query(Modality.IMAGE, p) for p in image]
        vectors += [self.embed_query(Modality.AUDIO, p, heard=notes) for p in audio]
        if heard is not None:
            heard.extend(notes)
        vectors += [self.item_vector(i, using) for i in like]
        if not vectors:
            raise ConfigError("give at least one query: text, image, audio or like")
        spoken = len(vectors) == 1 and len(audio) == 1 and bool(notes and notes[0].get("transcript")) and with_payload
        sure = spoken and float(notes[0].get("speech_probability", 1.0)) >= LEXICAL_MIN_SPEECH
        rerank, lexical = spoken and rerank_spoken > 0, sure and match_heard
        wanted = max(k, rerank_spoken) if rerank else k
        query_filter = build_filter(filters, exclude_ids=like)
        if len(vectors) == 1 or fusion == "mean":
            query = np.mean(vectors, axis=0)
            query = query / max(np.linalg.norm(query), 1e-12)
            points = self.store.query(
                self.collection,
                query,
                using=using,
                limit=max(wanted, LEXICAL_CANDIDATES) if lexical else wanted,
                query_filter=query_filter,
                with_payload=with_payload,
            )
        else:
            prefetch = [
                models.Prefetch(query=v.tolist(), using=using, limit=max(k * 4, 50), filter=query_filter)
                for v in vectors
            ]
            points = self.store.query(
                self.collection,
                models.FusionQuery(fusion=models.Fusion.RRF),
                prefetch=prefetch,
                limit=k,
                with_payload=with_payload,
            )
        hits = [Hit.from_point(p) for p in points]
        if lexical:
            hits = rescore_by_transcript(hits, notes[0]["transcript"], wanted)
        return self._rerank_spoken(audio[0], hits, k) if rerank else hits

    def close(self) -> None:
        """Close the store if this object opened it (a store passed in stays open)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
