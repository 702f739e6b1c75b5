"""What the service checks in a request before any work: its fields, its limits and its filter keys.

Every refusal is a 400 with a code and a message that names the bad value and what would be valid.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.payload import RESERVED_PAYLOAD
from mmalign.plugin.serve.config import ServeConfig
from mmalign.plugin.serve.errors import bad_request
from mmalign.plugin.serve.uploads import Upload
from mmalign.schemas.vocabulary import RECOMMEND_STRATEGIES, SEARCH_FUSIONS, SEARCH_TARGETS

#: Payload fields a filter may name directly (``metadata`` itself is a container, not a value).
FILTER_FIELDS = tuple(f for f in RESERVED_PAYLOAD if f != "metadata")
#: Points sampled for the metadata keys that filters may use (and their values, for the page).
FILTER_SAMPLE = 4096
#: A metadata key with at most this many distinct values is offered as a choice on the page.
FILTER_CHOICES = 60


@dataclass
class SearchQuery:
    """One search request as the HTTP layer parsed it from JSON or multipart (uploads not yet saved); it
    becomes the library's :class:`~mmalign.schemas.query.SearchQuery` once its uploads are files."""

    text: list[str] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    like: list[str] = field(default_factory=list)
    using: str = "fused"
    k: int = 10
    filters: dict[str, Any] = field(default_factory=dict)
    fusion: str = "rrf"
    mode: str | None = None


@dataclass
class RecommendQuery:
    user_id: str | None = None
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    k: int = 10
    filters: dict[str, Any] = field(default_factory=dict)
    include_seen: bool = False
    strategy: str | None = None


class FilterKeys:
    """The metadata keys (and the values of keys with few of them) of a sample of the collection's points;
    rescanned when a request names a key not seen for 30 s (items may have been added)."""

    def __init__(self, store: VectorStore, collection: str):
        self.store = store
        self.collection = collection
        self._keys: set[str] = set()
        self._values: dict[str, list] = {}
        self._scanned_at = 0.0
        self._lock = threading.Lock()

    def scan(self) -> None:
        """Metadata keys (and the values of keys with few of them) in a sample of the points."""
        values: dict[str, set] = {}
        seen = 0
        for page in self.store.scroll_pages(self.collection, with_payload=["metadata"], page_size=1024):
            for point in page:
                metadata = (point.payload or {}).get("metadata") or {}
                if isinstance(metadata, dict):
                    for key, value in metadata.items():
                        bucket = values.setdefault(key, set())
                        if len(bucket) <= FILTER_CHOICES:
                            for v in value if isinstance(value, list) else [value]:
                                if isinstance(v, (str, int, bool)):
                                    bucket.add(v)
            seen += len(page)
            if seen >= FILTER_SAMPLE:
                break
        with self._lock:
            self._keys = set(values)
            self._values = {k: sorted(vs, key=str) for k, vs in values.items() if 0 < len(vs) <= FILTER_CHOICES}
            self._scanned_at = time.monotonic()

    def choices(self) -> dict[str, list]:
        """Keys with few values, and their values (the page offers them as choices)."""
        with self._lock:
            return {k: list(v) for k, v in sorted(self._values.items())}

    def check(self, filters: Any) -> dict[str, Any]:
        """``filters`` as the store takes them, or a 400 naming the unknown key or the bad value."""
        if filters is None:
            return {}
        if not isinstance(filters, Mapping):
            raise bad_request('filters must be an object {"key": value or [values]}')
        out = {}
        for key, value in filters.items():
            if not isinstance(key, str) or not key:
                raise bad_request("filter keys must be non-empty strings")
            bare = key.removeprefix("metadata.")
            with self._lock:
                known = key in FILTER_FIELDS or bare in self._keys
                stale = time.monotonic() - self._scanned_at > 30
            if not known and stale:
                self.scan()
                with self._lock:
                    known = bare in self._keys
            if not known:
                with self._lock:
                    valid = sorted(self._keys)[:40]
                raise bad_request(
                    f"unknown filter key {key!r}; metadata keys of {self.collection!r}: {valid} "
                    f"(or a payload field: {list(FILTER_FIELDS)})",
                    "unknown_filter",
                )
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, (str, int, bool)) and not isinstance(v, float) for v in values):
                raise bad_request(f"filter {key!r} takes a string, integer or boolean, or a non-empty list of them")
            out[key] = values
        return out


class RequestChecks:
    """The service's limits (k, inputs, text length) and vocabulary, applied to one request."""

    def __init__(self, config: ServeConfig, filter_keys: FilterKeys):
        self.config = config
        self.filter_keys = filter_keys

    def check_k(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.k_max:
            raise bad_request(f"k must be a whole number from 1 to {self.config.k_max}, got {k!r}", "bad_k")
        return k

    def check_search(self, query: SearchQuery) -> None:
        if query.using not in SEARCH_TARGETS:
            raise bad_request(f"using {query.using!r} is not a vector name; valid: {list(SEARCH_TARGETS)}", "bad_using")
        if query.fusion not in SEARCH_FUSIONS:
            raise bad_request(f"fusion {query.fusion!r} is unknown; valid: {list(SEARCH_FUSIONS)}", "bad_fusion")
        self.check_k(query.k)
        inputs = len(query.text) + len(query.uploads) + len(query.like)
        if inputs == 0:
            raise bad_request("give at least one query: text, image, audio or like", "no_query")
        if inputs > self.config.max_inputs:
            raise bad_request(f"at most {self.config.max_inputs} query inputs per request, got {inputs}")
        for i, text in enumerate(query.text):
            if not isinstance(text, str) or not text.strip():
                raise bad_request(f"text[{i}] is empty")
            if len(text) > self.config.max_text_chars:
                raise bad_request(f"text[{i}] has {len(text)} characters; the limit is {self.config.max_text_chars}")
        for i, item in enumerate(query.like):
            if not isinstance(item, str) or not item:
                raise bad_request(f"like[{i}] must be a non-empty item id")
        query.filters = self.filter_keys.check(query.filters)

    def check_recommend(self, query: RecommendQuery) -> None:
        self.check_k(query.k)
        if query.strategy is not None and query.strategy not in RECOMMEND_STRATEGIES:
            raise bad_request(
                f"strategy {query.strategy!r} is unknown; valid: {list(RECOMMEND_STRATEGIES)}", "bad_strategy"
            )
        if query.user_id is not None and (query.liked or query.disliked):
            raise bad_request("give either user_id, or liked/disliked item ids (an anonymous session), not both")
        if query.user_id is None and not query.liked:
            raise bad_request("give a user_id, or at least one liked item id", "no_query")
        if query.user_id is not None and not query.user_id.strip():
            raise bad_request("user_id is empty")
        if len(query.liked) + len(query.disliked) > 1000:
            raise bad_request("at most 1000 liked + disliked item ids")
        query.filters = self.filter_keys.check(query.filters)
