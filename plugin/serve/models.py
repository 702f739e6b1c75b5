"""Request and response bodies of the HTTP API (pydantic; they also make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmalign.schemas.vocabulary import SearchMode

FilterValue = str | int | bool | list[str | int | bool]


class SearchRequest(BaseModel):
    """``POST /v1/search`` as JSON. Several inputs are combined (``fusion``); media travel as base64."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "a red fire truck", "using": "image", "k": 5},
                {"image": "<base64 PNG/JPEG/WebP/SVG>", "using": "text", "k": 5, "filters": {"category": "animals"}},
                {"like": ["animals/amphibians/frog"], "k": 5},
            ]
        },
    )

    text: str | list[str] | None = Field(default=None, description="Text query (or several).")
    image: str | list[str] | None = Field(
        default=None, description="Image(s) as base64, or data URLs: PNG, JPEG, WebP or SVG."
    )
    audio: str | list[str] | None = Field(
        default=None, description="Sound(s) as base64, or data URLs: WAV, Ogg, FLAC or MP3."
    )
    like: str | list[str] | None = Field(default=None, description="Item id(s): more like these.")
    using: Literal["fused", "image", "text", "audio"] = Field(default="fused", description="Stored vector searched.")
    k: int = Field(
        default=10,
        strict=True,
        description="Number of results (1 to the service's k limit, 100 by default); a JSON number, not a string.",
    )
    filters: dict[str, FilterValue] | None = Field(
        default=None,
        description="Payload filter: metadata key (or payload field) -> value or list of values (AND across "
        "keys, OR within a list).",
    )
    fusion: Literal["rrf", "mean"] = Field(default="rrf", description="How several inputs are combined.")
    mode: SearchMode | None = Field(
        default=None,
        description="dense (vectors), lexical (BM25 over item words and heard speech) or hybrid (both, fused); "
        "default: hybrid when words are typed or speech is heard, else dense.",
    )


class RecommendRequest(BaseModel):
    """``POST /v1/recommend``: a known user, or an anonymous session's liked/disliked items."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"user_id": "u42", "k": 10}, {"liked": ["animals/amphibians/frog"], "disliked": [], "k": 5}]
        },
    )

    user_id: str | None = Field(default=None, description="A user with stored interactions.")
    liked: list[str] = Field(default_factory=list, description="Anonymous session: items liked.")
    disliked: list[str] = Field(default_factory=list, description="Anonymous session: items disliked.")
    k: int = Field(default=10, strict=True, description="Number of results; a JSON number, not a string.")
    filters: dict[str, FilterValue] | None = None
    include_seen: bool = Field(
        default=False, strict=True, description="Also return items the user (or session) has seen (true or false)."
    )
    strategy: Literal["vector", "best_score", "average_vector"] | None = Field(
        default=None, description="Default: vector for a user, average_vector for a session."
    )


class Hit(BaseModel):
    """One result: the same contract as ``mmalign search --json``."""

    id: str
    score: float
    payload: dict[str, Any] = Field(default_factory=dict)


class Item(BaseModel):
    id: str
    payload: dict[str, Any]


class Error(BaseModel):
    """Every error: a message (never a file system path or a traceback) and a short code."""

    detail: str
    code: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(extra="allow")

    ready: bool
    collection: str
    bundle_id: str | None
    reasons: list[str] = Field(default_factory=list)


class CollectionInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    alias_of: str | None = Field(description="The version the alias points at (None: a plain collection).")
    bundle_id: str | None = Field(description="The bundle the live version was built with.")
    served_bundle_id: str | None = Field(description="The bundle this service answers with.")
    dim: int
    points: int
    modalities: list[str]
    versions: list[dict[str, Any]]
    users: dict[str, Any] | None
    filters: dict[str, list[Any]] = Field(description="Metadata keys with few values, and those values.")
