"""The store's typed query language: what mmalign asks of every engine, with no engine's types in it.

A query is one of :class:`Nearest` (a vector, or an item's own stored vector), :class:`Recommend`
(positive and negative examples) or :class:`Fused` (several :class:`Prefetch` branches combined by
RRF or DBSF). A :class:`Filter` holds payload conditions and item exclusions. Items are named by their
catalog ids; the backends turn them into point ids and their own request types (qdrant-client models
for local mode and servers, Edge types for the embedded engine). Results are :class:`Point` objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmalign.connectors.errors import StoreError
from mmalign.schemas.vocabulary import RECOMMEND_EXAMPLE_STRATEGIES, STORE_FUSIONS

#: Namespace of point ids: uuid5(POINT_NAMESPACE, item_id).
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://mmalign/item")


def point_id(item_id: str) -> str:
    """Deterministic Qdrant point id of a catalog item id (idempotent upserts: re-ingest never duplicates)."""
    return str(uuid.uuid5(POINT_NAMESPACE, item_id))


#: An example or a query target: a vector, or the catalog id of an item whose stored vector is meant.
Example = np.ndarray | Sequence[float] | str


def as_vector(value: np.ndarray | Sequence[float]) -> np.ndarray:
    """A 1-d float32 vector (a copy only when needed)."""
    vector = np.asarray(value, dtype=np.float32).ravel()
    if not vector.size:
        raise StoreError("a query vector is empty")
    return vector


@dataclass(frozen=True)
class Match:
    """The payload field ``key`` holds any of ``values`` (for a list field: any of its elements does)."""

    key: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise StoreError(f"a match on {self.key!r} needs at least one value")


@dataclass(frozen=True)
class HasItem:
    """The point is one of these catalog items."""

    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class Filter:
    """All of ``must``, at least one of ``should`` (when given), none of ``must_not``."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.must or self.should or self.must_not)

    def excluding(self, item_ids: Sequence[str]) -> Filter:
        """This filter, and not these items."""
        if not item_ids:
            return self
        return Filter(self.must, self.should, (*self.must_not, HasItem(tuple(item_ids))))


Condition = Match | HasItem | Filter


@dataclass(frozen=True)
class Nearest:
    """The points nearest to ``target`` by the named vector ``using``. An item id as the target means
    that item's stored vector; the item itself is then left out of the results (as Qdrant does)."""

    target: Example
    using: str = "fused"


@dataclass(frozen=True)
class Recommend:
    """Qdrant's recommendation query: ``average_vector`` (2·mean(positive) − mean(negative), then nearest),
    ``best_score`` or ``sum_scores`` over the examples. Examples named by item id are left out of the results."""

    positive: tuple[Example, ...]
    negative: tuple[Example, ...] = ()
    strategy: Literal["average_vector", "best_score", "sum_scores"] = "best_score"
    using: str = "fused"

    def __post_init__(self) -> None:
        if self.strategy not in RECOMMEND_EXAMPLE_STRATEGIES:
            raise StoreError(
                f"recommend strategy {self.strategy!r} is unknown; valid: {list(RECOMMEND_EXAMPLE_STRATEGIES)}"
            )
        if not self.positive and (self.strategy == "average_vector" or not self.negative):
            raise StoreError(f"a recommendation with the {self.strategy} strategy needs a positive example")


@dataclass(frozen=True)
class Prefetch:
    """One branch of a fused query: the first ``limit`` points of ``query`` that pass ``filter``."""

    query: Nearest | Recommend
    limit: int = 50
    filter: Filter | None = None


@dataclass(frozen=True)
class Fused:
    """The branches' candidates combined by reciprocal rank fusion (``rrf``) or distribution-based score
    fusion (``dbsf``)."""

    prefetch: tuple[Prefetch, ...]
    fusion: Literal["rrf", "dbsf"] = "rrf"

    def __post_init__(self) -> None:
        if self.fusion not in STORE_FUSIONS:
            raise StoreError(f"fusion {self.fusion!r} is unknown; valid: {list(STORE_FUSIONS)}")
        if not self.prefetch:
            raise StoreError("a fused query needs at least one prefetch")


Query = Nearest | Recommend | Fused


@dataclass(slots=True)
class Point:
    """A point as every engine returns it: id, payload, the vectors asked for, and a score for query hits."""

    id: str
    payload: dict[str, Any] = field(default_factory=dict)
    vector: Mapping[str, Any] | None = None
    score: float | None = None

    @property
    def item_id(self) -> str:
        return str(self.payload.get("item_id", self.id))


def item_ids_in(query: Query) -> list[str]:
    """Item ids that ``query`` names as targets or examples (Qdrant leaves them out of the results)."""
    if isinstance(query, Nearest):
        return [query.target] if isinstance(query.target, str) else []
    if isinstance(query, Recommend):
        return [x for x in (*query.positive, *query.negative) if isinstance(x, str)]
    return []


def walk_examples(query: Query) -> list[tuple[str, str]]:
    """(item id, vector name) of every example named by id, in the branches of a fused query too."""
    if isinstance(query, Fused):
        return [pair for p in query.prefetch for pair in walk_examples(p.query)]
    return [(item, query.using) for item in item_ids_in(query)]
