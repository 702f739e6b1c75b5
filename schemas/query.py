"""A search request as the library, the CLI and the service all state it (one validation, one vocabulary)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmalign.schemas.catalog import VectorName
from mmalign.schemas.vocabulary import SearchFusion, SearchMode, StoreFusion


class SearchQuery(BaseModel):
    """The inputs of one search (several are combined by ``fusion``) and how to answer it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: list[str] = Field(default_factory=list, description="Query texts.")
    image: list[str] = Field(default_factory=list, description="Paths of query images.")
    audio: list[str] = Field(default_factory=list, description="Paths of query sounds (speech or effects).")
    like: list[str] = Field(default_factory=list, description="Item ids: 'more like these' (left out of the hits).")
    using: VectorName = Field(default=VectorName.FUSED, description="The stored vector searched.")
    k: int = Field(default=10, ge=1, description="How many hits.")
    filters: dict[str, Any] = Field(
        default_factory=dict, description="Payload conditions, key -> value or [values] (AND over keys, OR in a list)."
    )
    fusion: SearchFusion = Field(default="rrf", description="How several inputs are combined.")
    mode: SearchMode | None = Field(
        default=None,
        description="dense (vectors), lexical (BM25 over the items' words and heard speech) or hybrid (both, "
        "fused); default: hybrid for text and speech, dense for images and 'like' (docs/search.md).",
    )
    hybrid_fusion: StoreFusion | None = Field(
        default=None,
        description="How hybrid mode combines its dense and lexical candidates (rrf or dbsf); default: chosen "
        "by benchmarks/search_modes.py for typed and for spoken queries (docs/search.md).",
    )
    lexical_weight: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Hybrid mode with rrf: the lexical branch's weight (dense: 1); default: as hybrid_fusion.",
    )
    match_heard: bool = Field(
        default=True,
        description="One spoken query: re-score the first hits by how well what was heard matches their text.",
    )
    rerank_spoken: int = Field(
        default=0,
        ge=0,
        description="One spoken query: re-order the top max(N, k) hits by how likely Whisper finds their text.",
    )

    @field_validator("text", "image", "audio", "like", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, (str, os.PathLike)):
            return [str(value)]
        return [str(v) if isinstance(v, os.PathLike) else v for v in value]

    @property
    def inputs(self) -> int:
        return len(self.text) + len(self.image) + len(self.audio) + len(self.like)
