"""The words of the query API, in one place: the library, the CLI, the service's models and its OpenAPI
document all take their choices from here (they used to spell them out five times, and drifted)."""

from __future__ import annotations

from typing import Literal, get_args

from mmalign.schemas.catalog import VectorName

#: The named vectors a search may target (``using``).
SEARCH_TARGETS: tuple[str, ...] = tuple(v.value for v in VectorName)
#: How several query inputs of one search are combined: Qdrant prefetch + reciprocal rank fusion, or the
#: mean of their vectors (one nearest-neighbour query).
SearchFusion = Literal["rrf", "mean"]
SEARCH_FUSIONS: tuple[str, ...] = get_args(SearchFusion)
#: How the store combines the candidates of several prefetch branches.
StoreFusion = Literal["rrf", "dbsf"]
STORE_FUSIONS: tuple[str, ...] = get_args(StoreFusion)
#: Qdrant's recommendation strategies over positive/negative examples.
ExampleStrategy = Literal["average_vector", "best_score", "sum_scores"]
RECOMMEND_EXAMPLE_STRATEGIES: tuple[str, ...] = get_args(ExampleStrategy)
#: How a user is served: ``vector`` (the user vector), ``best_score``/``average_vector`` (Qdrant's
#: recommendation over the user's latest examples), ``hybrid`` (collab + content candidates, re-ranked).
RecommendStrategy = Literal["vector", "best_score", "average_vector", "hybrid"]
RECOMMEND_STRATEGIES: tuple[str, ...] = get_args(RecommendStrategy)
#: An anonymous session (liked/disliked items, no user) has no user vector and no collab factors.
ANONYMOUS_STRATEGIES: tuple[str, ...] = ("best_score", "average_vector")
#: The sparse named vector of BM25 term weights (with the IDF modifier) for lexical and hybrid search.
LEXICAL_VECTOR = "lexical"
#: How a search finds its candidates: the dense vectors, the ``lexical`` vector (BM25), or both
#: (``hybrid``: a prefetch of each, combined by RRF or DBSF).
SearchMode = Literal["dense", "lexical", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
