"""The Qdrant store: one API over the embedded engines (a folder or ``:memory:``) and a server by URL.

Engines: ``edge`` (default for a folder: Qdrant Edge, Qdrant's own engine in-process, see
:mod:`mmalign.connectors.edge_store`), ``local`` (qdrant-client's local mode) and a server by URL.
Collections have named vectors ``image``, ``text``, ``audio`` and ``fused`` (size D, cosine).
A point carries only the vectors its item has. Point ids are uuid5 of the item id, so
re-upserting an item replaces it. Each collection records (in Qdrant collection metadata, or in
the Edge store's record file) the bundle and D it was built with; writing or querying with another
bundle is refused. An embedded store in a folder is owned by one process at a time (a lock that
names its holder).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.backend import StoreBackend
from mmalign.connectors.errors import StoreError
from mmalign.connectors.fusion import TIE_MARGIN, best_first, cut, fuse
from mmalign.connectors.query import (
    POINT_NAMESPACE,
    Fused,
    Nearest,
    Point,
    Prefetch,
    Query,
    Recommend,
    SparseVector,
    as_vector,
    point_id,
)
from mmalign.connectors.query import Filter as Filter
from mmalign.connectors.store_client import METADATA_KEY, ClientBackend, is_transient
from mmalign.schemas import StoreConfig, VectorName
from mmalign.schemas.store import CollectionRecord
from mmalign.schemas.vocabulary import LEXICAL_VECTOR

log = logging.getLogger(__name__)

VECTOR_NAMES = tuple(v.value for v in VectorName)
#: Named vectors a collection may have besides the four content ones (``create_collection(extra_vectors=)``):
#: ``collab``, an item's (or user's) collaborative factors, of the same size D (see plugin/recommend/collab.py).
EXTRA_VECTOR_NAMES = ("collab",)
#: Sparse named vectors (IDF modifier) a collection has by default: ``lexical``, BM25 term weights of the
#: item's text and of the speech heard in its sound (plugin/index/lexical.py), for lexical and hybrid search.
SPARSE_VECTOR_NAMES = (LEXICAL_VECTOR,)
_VALID_VECTORS = frozenset(VECTOR_NAMES + EXTRA_VECTOR_NAMES + SPARSE_VECTOR_NAMES)
#: Payload fields always indexed by :meth:`VectorStore.build_index`; metadata fields are found by sampling.
BASE_INDEX_FIELDS = {"item_id": "keyword", "modalities": "keyword"}
#: At most this many metadata fields get a payload index (the most frequent ones).
MAX_METADATA_INDEXES = 32
#: Below this many points a full scan is as fast as an index: build_index creates no payload indexes.
PAYLOAD_INDEX_MIN_POINTS = 1000
_FIELD_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = [
    "POINT_NAMESPACE",
    "METADATA_KEY",
    "CollectionRecord",
    "IndexReport",
    "Point",
    "PointData",
    "SparseVector",
    "StoreError",
    "VectorStore",
    "is_transient",
    "point_id",
]


@dataclass
class PointData:
    """One item ready to upsert; ``vectors`` holds only the modalities it has (plus fused)."""

    item_id: str
    vectors: Mapping[VectorName | str, Sequence[float] | np.ndarray]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class IndexReport:
    """What :meth:`VectorStore.build_index` did on one collection."""

    collection: str
    engine: str
    payload_fields: dict[str, str]
    seconds: float
    hnsw_vectors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""


class VectorStore:
    """mmalign's one door to Qdrant: an engine chosen by :class:`StoreConfig`. Use as a context manager.

    The engine is opened on first use (``client`` injects a ready qdrant-client instance instead).
    """

    def __init__(self, config: StoreConfig | None = None, *, client: Any = None):
        self.config = config or StoreConfig()
        self._client = client
        self._backend: StoreBackend | None = None
        self._engine: str | None = None
        self._opening = threading.Lock()

    # -- connection -------------------------------------------------------------------------------------
    def _open(self) -> StoreBackend:
        """The engine backend, opened on first use. Only this class touches it."""
        if self._backend is None:
            with self._opening:
                if self._backend is None:
                    engine = self.engine
                    if engine == "edge" and self._client is None:
                        from mmalign.connectors.edge_store import EdgeBackend

                        self._backend = EdgeBackend(self.config)
                    else:
                        self._backend = ClientBackend(self.config, self._client, engine)
        return self._backend

    @property
    def engine(self) -> str:
        """``edge``, ``local`` or ``server``. Without an explicit ``engine``, a folder is opened with Edge,
        except a folder that qdrant-client's local mode wrote (mmalign before Edge), which stays local."""
        if self._engine is None:
            cfg = self.config
            engine = cfg.backend
            if cfg.engine is None and not cfg.is_server and cfg.resolved_path != ":memory:":
                from mmalign.connectors.edge_store import is_local_mode_folder, read_marker

                folder = Path(cfg.resolved_path)
                if folder.is_dir() and read_marker(folder) is None and is_local_mode_folder(folder):
                    log.warning(
                        "%s was written by qdrant-client's local mode: opening it in local mode (exhaustive "
                        "search); `mmalign store push --to-path NEW` copies a collection into an Edge store",
                        folder,
                    )
                    engine = "local"
            self._engine = engine
        return self._engine

    @property
    def target(self) -> str:
        """Where the store is: a URL, a folder or ``:memory:``."""
        return self.config.url or self.config.resolved_path

    def describe(self) -> dict[str, Any]:
        """The engine, where it stores, and the engine package's version."""
        from importlib.metadata import PackageNotFoundError, version

        package = "qdrant-edge-py" if self.engine == "edge" else "qdrant-client"
        try:
            engine_version = version(package)
        except PackageNotFoundError:  # pragma: no cover - both are dependencies
            engine_version = "unknown"
        return {"engine": self.engine, "target": self.target, "package": package, "version": engine_version}

    def close(self) -> None:
        if self._backend is not None:
            backend, self._backend = self._backend, None
            backend.close()
        self._client = None
        self._engine = None

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- collections --------------------------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        dim: int,
        *,
        bundle_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_disk: bool = False,
        extra_vectors: Sequence[str] = (),
        sparse_vectors: Sequence[str] = SPARSE_VECTOR_NAMES,
    ) -> CollectionRecord:
        """Create ``name`` with the four named vectors of size ``dim`` (and ``extra_vectors``, from
        :data:`EXTRA_VECTOR_NAMES`, of the same size) and the sparse ``sparse_vectors`` (default: ``lexical``,
        with the IDF modifier); fails if it exists."""
        unknown = sorted(set(extra_vectors) - set(EXTRA_VECTOR_NAMES))
        if unknown:
            raise StoreError(f"unknown extra vector(s) {unknown}; valid: {list(EXTRA_VECTOR_NAMES)}")
        unknown = sorted(set(sparse_vectors) - set(SPARSE_VECTOR_NAMES))
        if unknown:
            raise StoreError(f"unknown sparse vector(s) {unknown}; valid: {list(SPARSE_VECTOR_NAMES)}")
        if self.collection_exists(name):
            raise StoreError(f"collection {name!r} already exists")
        layout = {"layout": self.config.layout} if self.config.layout else {}  # quantization, shards: the backend's
        record = CollectionRecord(name=name, dim=dim, bundle_id=bundle_id, **layout, **dict(extra or {}))
        names = (*VECTOR_NAMES, *dict.fromkeys(extra_vectors))
        on_disk = on_disk or self.config.vectors_on_disk
        self._open().create(name, dim, names, record.stored(), on_disk, tuple(dict.fromkeys(sparse_vectors)))
        return record

    def ensure_collection(
        self, name: str, dim: int, *, bundle_id: str | None = None, extra: Mapping[str, Any] | None = None
    ) -> CollectionRecord:
        """Return the collection's record, creating it when absent; refuse a different bundle or D."""
        record = self.collection_record(name)
        if record is None:
            return self.create_collection(name, dim, bundle_id=bundle_id, extra=extra)
        self.check_compatible(record, dim=dim, bundle_id=bundle_id)
        return record

    @staticmethod
    def check_compatible(record: CollectionRecord, *, dim: int | None = None, bundle_id: str | None = None) -> None:
        if dim is not None and record.dim != dim:
            raise StoreError(f"collection {record.name!r} has vectors of size {record.dim}, not {dim}")
        if bundle_id is not None and record.bundle_id is not None and record.bundle_id != bundle_id:
            raise StoreError(
                f"collection {record.name!r} was built with bundle {record.bundle_id!r}, not {bundle_id!r}; "
                f"use that bundle, or re-embed the collection with the new one"
            )

    def collection_exists(self, name: str) -> bool:
        return self._open().exists(name)

    def collection_record(self, name: str) -> CollectionRecord | None:
        """mmalign's record of ``name`` (an alias is followed); None when the collection is absent."""
        found = self._open().read(name)
        if found is None:
            return None
        meta, sizes = found
        if meta is None:
            if VectorName.FUSED.value not in sizes:
                raise StoreError(f"collection {name!r} was not created by mmalign (no named vector 'fused')")
            return CollectionRecord(name=name, dim=sizes[VectorName.FUSED.value], bundle_id=None, schema_version=0)
        return CollectionRecord.from_stored(name, meta)

    def update_record(self, name: str, **changes: Any) -> CollectionRecord:
        """Change recorded fields of ``name`` (see :class:`~mmalign.schemas.store.CollectionRecord`)."""
        record = self.collection_record(name)
        if record is None:
            raise StoreError(f"collection {name!r} does not exist")
        merged = record.updated(**changes)
        self._open().write_meta(name, merged.stored())
        return merged

    def vector_sizes(self, name: str) -> dict[str, int]:
        """Named vectors of ``name`` and their sizes."""
        found = self._open().read(name)
        if found is None:
            raise StoreError(f"collection {name!r} does not exist")
        return dict(found[1])

    def sparse_vectors(self, name: str) -> list[str]:
        """Sparse named vectors of ``name`` (``lexical`` unless it was created before them)."""
        if not self.collection_exists(name):
            raise StoreError(f"collection {name!r} does not exist")
        return self._open().sparse_vectors(name)

    def list_collections(self) -> list[str]:
        return self._open().list_collections()

    def delete_collection(self, name: str) -> None:
        self._open().delete(name)

    def count(self, name: str) -> int:
        return self._open().count(name)

    # -- aliases --------------------------------------------------------------------------------------------
    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points at."""
        return self._open().aliases()

    def resolve_alias(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic operation (a kill leaves the old or the new one)."""
        if not self.collection_exists(collection):
            raise StoreError(f"cannot point alias {alias!r} at missing collection {collection!r}")
        self._open().set_alias(alias, collection)

    # -- points -----------------------------------------------------------------------------------------------
    def upsert(self, name: str, points: Iterable[PointData], *, batch_size: int | None = None) -> int:
        """Upsert in batches (waiting for each); returns how many points were written."""
        backend = self._open()
        size = batch_size or self.config.upsert_batch_size
        written = 0
        batch: list[tuple[str, dict[str, np.ndarray], dict[str, Any]]] = []
        for point in points:
            vectors: dict[str, Any] = {}
            for key, value in point.vectors.items():
                if isinstance(value, SparseVector):  # validated when it was built
                    if _name(key) not in SPARSE_VECTOR_NAMES:
                        raise StoreError(f"item {point.item_id!r}: vector {_name(key)!r} is dense, got a sparse one")
                    vectors[_name(key)] = value
                    continue
                if _name(key) in SPARSE_VECTOR_NAMES:
                    raise StoreError(f"item {point.item_id!r}: vector {_name(key)!r} is sparse: give a SparseVector")
                vec = np.asarray(value, dtype=np.float32).ravel()
                if not np.isfinite(vec).all():
                    raise StoreError(f"item {point.item_id!r}: vector {_name(key)!r} has NaN or infinite values")
                vectors[_name(key)] = vec
            if VectorName.FUSED.value not in vectors:
                raise StoreError(f"item {point.item_id!r}: every point needs a 'fused' vector; got {sorted(vectors)}")
            batch.append((point_id(point.item_id), vectors, {"item_id": point.item_id, **point.payload}))
            if len(batch) >= size:
                backend.upsert(name, batch)
                written += len(batch)
                batch = []
        if batch:
            backend.upsert(name, batch)
            written += len(batch)
        return written

    def retrieve(
        self,
        name: str,
        item_ids: Sequence[str],
        *,
        with_vectors: bool | Sequence[str] = False,
        with_sparse: bool = False,
    ):
        """The points of these items (absent ones left out). ``with_vectors=True`` returns the dense vectors;
        the sparse ones too with ``with_sparse`` (or when named in ``with_vectors``)."""
        ids = [point_id(i) for i in item_ids]
        if not ids:
            return []
        return _dense_only(self._open().retrieve(name, ids, True, _selection(with_vectors)), with_vectors, with_sparse)

    def overwrite_payload(self, name: str, item_id: str, payload: Mapping[str, Any]) -> None:
        """Replace one item's payload, leaving its vectors as they are."""
        self._open().overwrite_payload(name, point_id(item_id), {"item_id": item_id, **payload})

    def pages(
        self,
        name: str,
        *,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        page_size: int = 1024,
        offset: Any = None,
        with_sparse: bool = False,
    ) -> Iterator[tuple[list[Any], Any]]:
        """(page, offset of the next page) until the end; ``offset`` (one this engine returned) resumes a scroll.
        Vectors as :meth:`retrieve` returns them."""
        backend = self._open()
        payload, vectors = _selection(with_payload), _selection(with_vectors)
        while True:
            points, offset = backend.scroll(name, offset, page_size, payload, vectors)
            if points:
                yield _dense_only(list(points), with_vectors, with_sparse), offset
            if offset is None or not points:
                return

    def scroll_pages(
        self,
        name: str,
        *,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        page_size: int = 1024,
        with_sparse: bool = False,
    ) -> Iterator[list[Any]]:
        """The points of ``name`` in pages of ``page_size`` (each page is one retried call)."""
        for page, _ in self.pages(
            name, with_payload=with_payload, with_vectors=with_vectors, page_size=page_size, with_sparse=with_sparse
        ):
            yield page

    def scroll(self, name: str, **options: Any) -> Iterator[Any]:
        """Every point of ``name`` (options as :meth:`scroll_pages`)."""
        for page in self.scroll_pages(name, **options):
            yield from page

    def query(
        self,
        name: str,
        query: Query | np.ndarray | Sequence[float],
        *,
        using: VectorName | str = VectorName.FUSED,
        limit: int = 10,
        query_filter: Filter | None = None,
        with_payload: bool | Sequence[str] = True,
        exact: bool = False,
    ) -> list[Point]:
        """The scored points of ``query`` on ``name``, best first: a typed query (:mod:`.query`), or a vector
        (nearest by the named vector ``using``). ``exact`` searches without the HNSW index."""
        if isinstance(query, (np.ndarray, list, tuple)):
            query = Nearest(as_vector(query), _name(using))
        if not isinstance(query, (Nearest, Recommend, Fused)):
            raise StoreError(
                f"query {type(query).__name__} is not a store query; give a vector, Nearest, Recommend or Fused"
            )
        for branch in query.prefetch if isinstance(query, Fused) else (query,):
            _name(branch.query.using if isinstance(branch, Prefetch) else branch.using)
        if isinstance(query, Fused):
            return self._fused(name, query, limit, query_filter, with_payload, exact)
        return self._ranked(name, query, limit, query_filter, _selection(with_payload), exact)[:limit]

    def _ranked(
        self, name: str, query: Query, limit: int, query_filter: Filter | None, with_payload, exact: bool
    ) -> list[Point]:
        """The first ``limit`` points of a plain query, best first, with the whole group of equal scores at the
        cut: engines return equal scores in an order of their own (:mod:`.fusion`), so one more is asked for,
        and twice as many while the group goes on past what was asked (up to 8x)."""
        asked = limit + TIE_MARGIN
        while True:
            points = best_first(
                self._open().query(
                    name, query, limit=asked, query_filter=query_filter, with_payload=with_payload, exact=exact
                )
            )
            kept = cut(points, limit)
            if len(kept) < len(points) or len(points) < asked or asked >= 8 * limit + TIE_MARGIN:
                return kept
            asked *= 2

    def _fused(
        self,
        name: str,
        query: Fused,
        limit: int,
        query_filter: Filter | None,
        with_payload: bool | Sequence[str],
        exact: bool,
    ) -> list[Point]:
        """A fused query, its branches run by the engine and fused here (why: :mod:`.fusion`)."""
        branches = []
        for branch in query.prefetch:
            parts = tuple(f for f in (branch.filter, query_filter) if f is not None and not f.empty)
            branch_filter = parts[0] if len(parts) == 1 else Filter(must=parts) if parts else None
            branches.append(self._ranked(name, branch.query, branch.limit, branch_filter, False, exact))
        winners = fuse(branches, query.fusion, query.weights, limit)
        if not winners:
            return []
        if with_payload is False:
            return [Point(pid, score=score) for pid, score in winners]
        ids = [pid for pid, _ in winners]
        found = {p.id: p for p in self._open().retrieve(name, ids, _selection(with_payload), False)}
        return [Point(pid, found[pid].payload, score=score) for pid, score in winners if pid in found]

    # -- indexes -----------------------------------------------------------------------------------------------
    def filter_fields(self, name: str, *, sample: int = 2048) -> dict[str, str]:
        """Payload fields worth an index: item id, modalities, and the metadata fields of a sample of points
        whose values are all strings (keyword), all integers (integer) or all booleans (bool)."""
        fields = dict(BASE_INDEX_FIELDS)
        kinds: dict[str, set[str | None]] = {}
        seen: dict[str, int] = {}
        pages = self.scroll_pages(name, with_payload=["metadata"], page_size=sample)
        for p in next(pages, []):
            metadata = (p.payload or {}).get("metadata") or {}
            if not isinstance(metadata, dict):
                continue
            for key, value in metadata.items():
                values = value if isinstance(value, list) else [value]
                kinds.setdefault(key, set()).update(_kind(v) for v in values)
                seen[key] = seen.get(key, 0) + 1
        usable = [k for k, ks in kinds.items() if len(ks) == 1 and None not in ks and _FIELD_KEY.match(k)]
        for key in sorted(usable, key=lambda k: (-seen[k], k))[:MAX_METADATA_INDEXES]:
            fields[f"metadata.{key}"] = next(iter(kinds[key]))
        return fields

    def build_index(self, name: str, *, fields: Mapping[str, str] | None = None) -> IndexReport:
        """Build what makes queries on ``name`` fast, after a bulk write (ingest, re-embed, push).

        Edge: payload indexes on ``fields`` (default: :meth:`filter_fields` once the collection has
        ``PAYLOAD_INDEX_MIN_POINTS``), then the HNSW graphs of the
        vectors in ``StoreConfig.hnsw_vectors`` on segments above the indexing threshold (small
        collections stay exact). Until then queries answer by brute force. Server: the payload indexes
        (the server builds HNSW by itself). Local mode: nothing (it has no indexes).
        """
        started = time.perf_counter()
        target = self.resolve_alias(name) or name
        if not self.collection_exists(target):
            raise StoreError(f"collection {name!r} does not exist")
        if self.engine == "local":
            return IndexReport(
                target, "local", {}, 0.0, note="qdrant-client's local mode has no indexes: it searches exhaustively"
            )
        if fields is not None:
            wanted = dict(fields)
        elif self.count(target) >= PAYLOAD_INDEX_MIN_POINTS:
            wanted = self.filter_fields(target)
        else:
            wanted = {}
        from mmalign.connectors.edge_store import INDEX_KINDS

        bad = {k: v for k, v in wanted.items() if v not in INDEX_KINDS}
        if bad:
            raise StoreError(f"payload index kinds {bad} are not supported; valid: {list(INDEX_KINDS)}")
        details = self._open().build_index(target, wanted)
        report = IndexReport(
            target,
            self.engine,
            wanted,
            time.perf_counter() - started,
            hnsw_vectors=list(self.config.hnsw_vectors) if self.engine == "edge" else list(VECTOR_NAMES),
            details=details,
            note="" if self.engine == "edge" else "the server builds its HNSW graphs in the background",
        )
        log.info("index of %s built in %.1fs: %s", target, report.seconds, details)
        return report

    def disk_bytes(self) -> int | None:
        """Bytes the store's files occupy (embedded stores in a folder), else None."""
        return self._open().disk_bytes()


def _selection(value: bool | Sequence[str]) -> bool | list[str]:
    return value if isinstance(value, bool) else list(value)


def _dense_only(points: list[Point], with_vectors: bool | Sequence[str], with_sparse: bool) -> list[Point]:
    """``with_vectors=True`` means the dense vectors (what readers that check sizes and norms expect); the
    sparse ones stay when asked for (``with_sparse``) or named."""
    if with_vectors is not True or with_sparse:
        return points
    for p in points:
        if isinstance(p.vector, dict) and any(isinstance(v, SparseVector) for v in p.vector.values()):
            p.vector = {k: v for k, v in p.vector.items() if not isinstance(v, SparseVector)}
    return points


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "keyword"
    return None


def _name(key: VectorName | str) -> str:
    value = key.value if isinstance(key, VectorName) else str(key)
    if value not in _VALID_VECTORS:
        raise StoreError(
            f"unknown vector name {value!r}; valid: {list(VECTOR_NAMES + EXTRA_VECTOR_NAMES + SPARSE_VECTOR_NAMES)}"
        )
    return value
