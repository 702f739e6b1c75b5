"""The store's typed query language: what mmalign asks of every engine, with no engine's types in it.

A query is one of :class:`Nearest` (a vector, an item's own stored vector, or a :class:`SparseVector` on
the sparse ``lexical`` vector: BM25 with the IDF modifier), :class:`Recommend` (positive and negative
examples) or :class:`Fused` (several :class:`Prefetch` branches combined by RRF, weighted or not, or DBSF;
hybrid search is a dense and a lexical branch). A :class:`Filter` holds payload conditions and item
exclusions. Items are named by their catalog ids; the backends turn them into point ids and their own
request types (qdrant-client models for local mode and servers, Edge types for the embedded engine).
Results are :class:`Point` objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmalign.connectors.errors import StoreError
from mmalign.schemas.vocabulary import LEXICAL_VECTOR, RECOMMEND_EXAMPLE_STRATEGIES, STORE_FUSIONS

#: Namespace of point ids: uuid5(POINT_NAMESPACE, item_id).
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://mmalign/item")


def point_id(item_id: str) -> str:
    """Deterministic Qdrant point id of a catalog item id (idempotent upserts: re-ingest never duplicates)."""
    return str(uuid.uuid5(POINT_NAMESPACE, item_id))


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: distinct non-negative 32-bit ``indices`` (sorted) and their finite ``values``.

    The ``lexical`` named vector holds one per item (BM25 term weights; the engine multiplies by each
    term's IDF at query time), and a lexical query is one (a weight per query term)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise StoreError(f"a sparse vector has {len(self.indices)} indices but {len(self.values)} values")
        if any(not 0 <= i < 2**32 for i in self.indices) or len(set(self.indices)) != len(self.indices):
            raise StoreError("a sparse vector's indices must be distinct integers in [0, 2**32)")
        if not all(np.isfinite(self.values)):
            raise StoreError("a sparse vector has NaN or infinite values")

    @classmethod
    def from_weights(cls, weights: Mapping[int, float]) -> SparseVector:
        """The vector of ``{index: weight}`` (sorted by index; zero weights left out; values rounded to float32,
        as the engines store them)."""
        items = sorted((int(i), float(np.float32(w))) for i, w in weights.items() if w)
        return cls(tuple(i for i, _ in items), tuple(w for _, w in items))

    @classmethod
    def of(cls, value: Any) -> SparseVector:
        """An engine's sparse vector (anything with ``indices`` and ``values``) as this type."""
        if isinstance(value, SparseVector):
            return value
        return cls.from_weights(dict(zip(value.indices, value.values)))

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.indices, self.values))

    def __len__(self) -> int:
        return len(self.indices)


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
    that item's stored vector; the item itself is then left out of the results (as Qdrant does). A
    :class:`SparseVector` target searches the sparse ``lexical`` vector (dot product, IDF-weighted): only
    points that share a term with it are found."""

    target: Example | SparseVector
    using: str = "fused"

    def __post_init__(self) -> None:
        sparse = isinstance(self.target, SparseVector)
        if sparse != (self.using == LEXICAL_VECTOR):
            raise StoreError(
                f"the {LEXICAL_VECTOR!r} vector is searched with a sparse vector, and only it: got a "
                f"{'sparse' if sparse else 'dense'} target for {self.using!r}"
            )
        if sparse and not self.target:
            raise StoreError("a lexical query has no terms")


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
    fusion (``dbsf``). ``weights`` (RRF only, one per branch): Qdrant's weighted RRF, where a point at
    0-based rank r of a branch of weight w scores ``1 / ((r + 1) / w + k - 1)`` (k = 2)."""

    prefetch: tuple[Prefetch, ...]
    fusion: Literal["rrf", "dbsf"] = "rrf"
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.fusion not in STORE_FUSIONS:
            raise StoreError(f"fusion {self.fusion!r} is unknown; valid: {list(STORE_FUSIONS)}")
        if not self.prefetch:
            raise StoreError("a fused query needs at least one prefetch")
        if self.weights is not None:
            if self.fusion != "rrf":
                raise StoreError(f"branch weights apply to rrf fusion only, not {self.fusion!r}")
            if len(self.weights) != len(self.prefetch) or not all(w > 0 and np.isfinite(w) for w in self.weights):
                raise StoreError(
                    f"give one positive weight per branch: {len(self.prefetch)} branches, weights {self.weights}"
                )


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
