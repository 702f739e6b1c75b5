"""The Qdrant store: one API over the embedded engine (path or ``:memory:``) and a server by URL.

Collections have named vectors ``image``, ``text``, ``audio`` and ``fused`` (size D, cosine).
A point carries only the vectors its item has. Point ids are uuid5 of the item id, so
re-upserting an item replaces it. Each collection records (in Qdrant collection metadata)
the bundle and D it was built with; writing or querying with another bundle is refused.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mmalign.connectors.errors import StoreError
from mmalign.schemas import StoreConfig, VectorName

log = logging.getLogger(__name__)

#: Namespace of point ids: uuid5(POINT_NAMESPACE, item_id).
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://mmalign/item")
METADATA_KEY = "mmalign"
STORE_SCHEMA_VERSION = 1

T = TypeVar("T")


def point_id(item_id: str) -> str:
    """Deterministic Qdrant point id of a catalog item id."""
    return str(uuid.uuid5(POINT_NAMESPACE, item_id))


@dataclass(frozen=True)
class CollectionRecord:
    """What mmalign recorded about a collection when it created it."""

    name: str
    dim: int
    bundle_id: str | None
    schema_version: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PointData:
    """One item ready to upsert; ``vectors`` holds only the modalities it has (plus fused)."""

    item_id: str
    vectors: Mapping[VectorName | str, Sequence[float] | np.ndarray]
    payload: dict[str, Any] = field(default_factory=dict)


class VectorStore:
    """Thin, retrying wrapper over ``qdrant_client.QdrantClient``. Use as a context manager."""

    def __init__(self, config: StoreConfig | None = None, *, client: Any = None):
        self.config = config or StoreConfig()
        self._client = client

    # -- connection -------------------------------------------------------------------
    def _open(self):
        """The qdrant-client instance, opened on first use. Only this class touches it."""
        if self._client is None:
            from qdrant_client import QdrantClient

            cfg = self.config
            try:
                if cfg.is_server:
                    self._client = QdrantClient(
                        url=cfg.url, api_key=cfg.api_key, prefer_grpc=cfg.prefer_grpc, timeout=int(cfg.timeout_s)
                    )
                elif cfg.resolved_path == ":memory:":
                    self._client = QdrantClient(location=":memory:")
                else:
                    Path(cfg.resolved_path).mkdir(parents=True, exist_ok=True)
                    self._client = QdrantClient(path=cfg.resolved_path)
            except Exception as exc:  # e.g. the path is held by another process
                raise StoreError(f"cannot open the store at {self._target()!r}: {exc}") from exc
        return self._client

    def _target(self) -> str:
        return self.config.url or self.config.resolved_path

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)``; on a server, retry transient failures with exponential backoff."""
        attempts = self.config.max_retries + 1 if self.config.is_server else 1
        delay = 0.5
        for attempt in range(1, attempts + 1):
            try:
                return fn(self._open())
            except StoreError:
                raise
            except Exception as exc:
                if attempt == attempts or not is_transient(exc):
                    raise StoreError(f"{what} failed on {self._target()!r} after {attempt} attempt(s): {exc}") from exc
                log.warning("%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts - 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # -- collections --------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        dim: int,
        *,
        bundle_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_disk: bool = False,
    ) -> CollectionRecord:
        """Create ``name`` with the four named vectors of size ``dim``; fails if it exists."""
        from qdrant_client import models

        if self.collection_exists(name):
            raise StoreError(f"collection {name!r} already exists")
        record = CollectionRecord(
            name=name, dim=dim, bundle_id=bundle_id, schema_version=STORE_SCHEMA_VERSION, extra=dict(extra or {})
        )
        vectors = {
            v.value: models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=on_disk) for v in VectorName
        }
        self._call(
            f"create collection {name!r}",
            lambda c: c.create_collection(
                collection_name=name,
                vectors_config=vectors,
                shard_number=self.config.shard_number,
                replication_factor=self.config.replication_factor,
                metadata={METADATA_KEY: _record_to_json(record)},
            ),
        )
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
        return self._call(f"check collection {name!r}", lambda c: c.collection_exists(name))

    def collection_record(self, name: str) -> CollectionRecord | None:
        """mmalign's record of ``name`` (an alias is followed); None when the collection is absent."""
        if not self.collection_exists(name):
            return None
        info = self._call(f"read collection {name!r}", lambda c: c.get_collection(name))
        meta = (info.config.metadata or {}).get(METADATA_KEY)
        if meta is None:
            params = info.config.params.vectors
            if not isinstance(params, dict) or VectorName.FUSED.value not in params:
                raise StoreError(f"collection {name!r} was not created by mmalign (no named vector 'fused')")
            return CollectionRecord(
                name=name, dim=params[VectorName.FUSED.value].size, bundle_id=None, schema_version=0
            )
        return CollectionRecord(
            name=name,
            dim=int(meta["dim"]),
            bundle_id=meta.get("bundle_id"),
            schema_version=int(meta.get("schema_version", 0)),
            extra=dict(meta.get("extra", {})),
        )

    def update_record(self, name: str, **extra: Any) -> CollectionRecord:
        record = self.collection_record(name)
        if record is None:
            raise StoreError(f"collection {name!r} does not exist")
        merged = CollectionRecord(
            record.name, record.dim, record.bundle_id, record.schema_version, {**record.extra, **extra}
        )
        self._call(
            f"update collection {name!r}",
            lambda c: c.update_collection(collection_name=name, metadata={METADATA_KEY: _record_to_json(merged)}),
        )
        return merged

    def vector_sizes(self, name: str) -> dict[str, int]:
        """Named vectors of ``name`` and their sizes."""
        info = self._call(f"read collection {name!r}", lambda c: c.get_collection(name))
        params = info.config.params.vectors
        return {key: value.size for key, value in params.items()} if isinstance(params, dict) else {}

    def list_collections(self) -> list[str]:
        response = self._call("list collections", lambda c: c.get_collections())
        return sorted(c.name for c in response.collections)

    def delete_collection(self, name: str) -> None:
        self._call(f"delete collection {name!r}", lambda c: c.delete_collection(name))

    def count(self, name: str) -> int:
        return self._call(f"count {name!r}", lambda c: c.count(name, exact=True).count)

    # -- aliases --------------------------------------------------------------------------
    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points at."""
        response = self._call("list aliases", lambda c: c.get_aliases())
        return {entry.alias_name: entry.collection_name for entry in response.aliases}

    def resolve_alias(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic operation (delete + create together)."""
        from qdrant_client import models

        if not self.collection_exists(collection):
            raise StoreError(f"cannot point alias {alias!r} at missing collection {collection!r}")
        ops: list[Any] = []
        if self.resolve_alias(alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self._call(f"set alias {alias!r}", lambda c: c.update_collection_aliases(change_aliases_operations=ops))

    # -- points ------------------------------------------------------------------------------
    def upsert(self, name: str, points: Iterable[PointData], *, batch_size: int | None = None) -> int:
        """Upsert in batches (waiting for each); returns how many points were written."""
        from qdrant_client import models

        size = batch_size or self.config.upsert_batch_size
        written = 0
        batch: list[Any] = []

        def flush() -> None:
            nonlocal written, batch
            if batch:
                current = batch
                self._call(
                    f"upsert {len(current)} points into {name!r}",
                    lambda c: c.upsert(collection_name=name, points=current, wait=True),
                )
                written += len(current)
                batch = []

        for point in points:
            vectors = {}
            for key, value in point.vectors.items():
                vec = np.asarray(value, dtype=np.float32).ravel()
                if not np.all(np.isfinite(vec)):
                    raise StoreError(f"item {point.item_id!r}: vector {_name(key)!r} has NaN or infinite values")
                vectors[_name(key)] = vec.tolist()
            if VectorName.FUSED.value not in vectors:
                raise StoreError(f"item {point.item_id!r}: every point needs a 'fused' vector; got {sorted(vectors)}")
            payload = {"item_id": point.item_id, **point.payload}
            batch.append(models.PointStruct(id=point_id(point.item_id), vector=vectors, payload=payload))
            if len(batch) >= size:
                flush()
        flush()
        return written

    def retrieve(self, name: str, item_ids: Sequence[str], *, with_vectors: bool | Sequence[str] = False):
        ids = [point_id(i) for i in item_ids]
        return self._call(
            f"retrieve from {name!r}",
            lambda c: c.retrieve(
                collection_name=name,
                ids=ids,
                with_payload=True,
                with_vectors=list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors,
            ),
        )

    def overwrite_payload(self, name: str, item_id: str, payload: Mapping[str, Any]) -> None:
        """Replace one item's payload, leaving its vectors as they are."""
        full = {"item_id": item_id, **payload}
        self._call(
            f"set payload of {item_id!r} in {name!r}",
            lambda c: c.overwrite_payload(collection_name=name, payload=full, points=[point_id(item_id)]),
        )

    def scroll_pages(
        self,
        name: str,
        *,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        page_size: int = 1024,
    ) -> Iterator[list[Any]]:
        """The points of ``name`` in pages of ``page_size`` (each page is one retried call)."""
        offset = None
        payload = list(with_payload) if not isinstance(with_payload, bool) else with_payload
        vectors = list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors
        while True:
            points, offset = self._call(
                f"scroll {name!r}",
                lambda c, start=offset: c.scroll(
                    name, limit=page_size, offset=start, with_payload=payload, with_vectors=vectors
                ),
            )
            if points:
                yield list(points)
            if offset is None or not points:
                return

    def scroll(self, name: str, **options: Any) -> Iterator[Any]:
        """Every point of ``name`` (options as :meth:`scroll_pages`)."""
        for page in self.scroll_pages(name, **options):
            yield from page

    def query(
        self,
        name: str,
        query: Any = None,
        *,
        using: VectorName | str = VectorName.FUSED,
        limit: int = 10,
        query_filter: Any = None,
        prefetch: Any = None,
        with_payload: bool | Sequence[str] = True,
    ) -> list[Any]:
        """Qdrant's query API on ``name``: ``query`` is a vector, a RecommendQuery or a FusionQuery over
        ``prefetch``; returns the scored points, best first."""
        vector_name = _name(using)
        if isinstance(query, np.ndarray):
            query = query.astype(np.float32).tolist()
        payload = list(with_payload) if not isinstance(with_payload, bool) else with_payload
        response = self._call(
            f"query {name!r}",
            lambda c: c.query_points(
                name,
                query=query,
                using=None if prefetch is not None else vector_name,
                prefetch=prefetch,
                limit=limit,
                query_filter=query_filter,
                with_payload=payload,
            ),
        )
        return list(response.points)


def _name(key: VectorName | str) -> str:
    value = key.value if isinstance(key, VectorName) else str(key)
    valid = [v.value for v in VectorName]
    if value not in valid:
        raise StoreError(f"unknown vector name {value!r}; valid: {valid}")
    return value


def _record_to_json(record: CollectionRecord) -> dict[str, Any]:
    return {
        "dim": record.dim,
        "bundle_id": record.bundle_id,
        "schema_version": record.schema_version,
        "extra": record.extra,
    }


def is_transient(exc: BaseException) -> bool:
    """Worth a retry: connection failures, timeouts, HTTP 5xx/429 and gRPC UNAVAILABLE-like codes.

    Decided by exception type and status code (REST and gRPC raise different types), never by text.
    """
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)
    if isinstance(exc, ResponseHandlingException):
        return is_transient(exc.source)
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover - httpx ships with qdrant-client
        pass
    try:
        import grpc

        if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
            return exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.ABORTED,
            )
    except ImportError:  # pragma: no cover - grpcio ships with qdrant-client
        pass
    return False
