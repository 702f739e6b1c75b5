"""qdrant-client as a store backend: a Qdrant server by URL (retried), or qdrant-client's local mode.

The only module besides the Edge backend that knows qdrant-client's types: mmalign's typed queries
(:mod:`.query`) are translated into ``qdrant_client.models`` here, and its points back into
:class:`~mmalign.connectors.query.Point`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mmalign.connectors.errors import StoreError
from mmalign.connectors.query import (
    Filter,
    Fused,
    HasItem,
    Match,
    Nearest,
    Point,
    Query,
    Recommend,
    SparseVector,
    point_id,
)
from mmalign.schemas import StoreConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Name of mmalign's record in a collection's Qdrant metadata.
METADATA_KEY = "mmalign"


class ClientBackend:
    """qdrant-client: a server by URL (retried), or its local mode in a folder or in memory."""

    def __init__(self, config: StoreConfig, client: Any = None, engine: str | None = None):
        self.config = config
        self._client = client
        self._lock = None
        self.engine = engine or config.backend

    @property
    def target(self) -> str:
        return self.config.url or self.config.resolved_path

    def _open(self):
        """The qdrant-client instance, opened on first use."""
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
                    from mmalign.connectors.edge_store import read_marker
                    from mmalign.connectors.store_files import StoreLock

                    folder = Path(cfg.resolved_path)
                    folder.mkdir(parents=True, exist_ok=True)
                    marker = read_marker(folder)
                    if marker is not None and marker.get("engine") != "local":
                        raise StoreError(
                            f"the store at {cfg.resolved_path!r} is a Qdrant {marker.get('engine')!r} store: open "
                            f"it with StoreConfig(engine={marker.get('engine')!r}) "
                            f"(CLI: --engine {marker.get('engine')})"
                        )
                    self._lock = StoreLock.acquire(folder)
                    try:
                        self._client = QdrantClient(path=cfg.resolved_path)
                    except BaseException:
                        self._lock.release()
                        self._lock = None
                        raise
            except StoreError:
                raise
            except Exception as exc:  # e.g. the path is held by another process
                raise StoreError(f"cannot open the store at {self.target!r}: {exc}") from exc
        return self._client

    def close(self) -> None:
        try:
            if self._client is not None:
                self._client.close()
                self._client = None
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

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
                    raise StoreError(f"{what} failed on {self.target!r} after {attempt} attempt(s): {exc}") from exc
                log.warning("%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts - 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # collections
    def create(
        self, name: str, dim: int, vector_names: Sequence[str], meta: dict, on_disk: bool, sparse: Sequence[str] = ()
    ) -> None:
        from qdrant_client import models

        quantization = _quantization(self.config.quantization)
        vectors = {
            v: models.VectorParams(
                size=dim, distance=models.Distance.COSINE, on_disk=on_disk, quantization_config=quantization
            )
            for v in vector_names
        }
        self._call(
            f"create collection {name!r}",
            lambda c: c.create_collection(
                collection_name=name,
                vectors_config=vectors,
                sparse_vectors_config={v: models.SparseVectorParams(modifier=models.Modifier.IDF) for v in sparse}
                or None,
                shard_number=self.config.shard_number,
                replication_factor=self.config.replication_factor,
                write_consistency_factor=self.config.write_consistency_factor,
                metadata={METADATA_KEY: meta},
            ),
        )

    def exists(self, name: str) -> bool:
        return self._call(f"check collection {name!r}", lambda c: c.collection_exists(name))

    def read(self, name: str) -> tuple[dict | None, dict[str, int]] | None:
        if not self.exists(name):
            return None
        info = self._call(f"read collection {name!r}", lambda c: c.get_collection(name))
        params = info.config.params.vectors
        sizes = {key: value.size for key, value in params.items()} if isinstance(params, dict) else {}
        return (info.config.metadata or {}).get(METADATA_KEY), sizes

    def sparse_vectors(self, name: str) -> list[str]:
        info = self._call(f"read collection {name!r}", lambda c: c.get_collection(name))
        return sorted(info.config.params.sparse_vectors or {})

    def write_meta(self, name: str, meta: dict) -> None:
        self._call(
            f"update collection {name!r}",
            lambda c: c.update_collection(collection_name=name, metadata={METADATA_KEY: meta}),
        )

    def list_collections(self) -> list[str]:
        response = self._call("list collections", lambda c: c.get_collections())
        return sorted(c.name for c in response.collections)

    def delete(self, name: str) -> None:
        self._call(f"delete collection {name!r}", lambda c: c.delete_collection(name))

    def count(self, name: str) -> int:
        return self._call(f"count {name!r}", lambda c: c.count(name, exact=True).count)

    # aliases
    def aliases(self) -> dict[str, str]:
        response = self._call("list aliases", lambda c: c.get_aliases())
        return {entry.alias_name: entry.collection_name for entry in response.aliases}

    def set_alias(self, alias: str, collection: str) -> None:
        """Delete + create in one request: the server applies both or neither."""
        from qdrant_client import models

        ops: list[Any] = []
        if alias in self.aliases():
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self._call(f"set alias {alias!r}", lambda c: c.update_collection_aliases(change_aliases_operations=ops))

    # points
    def upsert(self, name: str, points: Sequence[tuple[str, Mapping[str, np.ndarray], dict]]) -> None:
        from qdrant_client import models

        batch = [
            models.PointStruct(id=pid, vector={k: _vector(v) for k, v in vectors.items()}, payload=payload)
            for pid, vectors, payload in points
        ]
        self._call(
            f"upsert {len(batch)} points into {name!r}",
            lambda c: c.upsert(collection_name=name, points=batch, wait=True),
        )

    def retrieve(self, name: str, ids: Sequence[str], with_payload, with_vectors) -> list[Point]:
        found = self._call(
            f"retrieve from {name!r}",
            lambda c: c.retrieve(collection_name=name, ids=ids, with_payload=with_payload, with_vectors=with_vectors),
        )
        return [_point(p) for p in found]

    def overwrite_payload(self, name: str, pid: str, payload: dict) -> None:
        self._call(
            f"set payload in {name!r}",
            lambda c: c.overwrite_payload(collection_name=name, payload=payload, points=[pid]),
        )

    def scroll(self, name: str, offset, limit: int, with_payload, with_vectors) -> tuple[list[Point], Any]:
        points, next_offset = self._call(
            f"scroll {name!r}",
            lambda c: c.scroll(name, limit=limit, offset=offset, with_payload=with_payload, with_vectors=with_vectors),
        )
        return [_point(p) for p in points], next_offset

    def query(
        self, name: str, query: Query, *, limit: int, query_filter: Filter | None, with_payload, exact: bool = False
    ) -> list[Point]:
        from qdrant_client import models

        params = models.SearchParams(exact=True) if exact and self.engine == "server" else None  # local: always exact
        if params is None and self.config.quantization is not None and self.engine == "server":
            oversampling = self.config.quantization_oversampling  # quantized candidates, rescored with the originals
            params = models.SearchParams(
                quantization=models.QuantizationSearchParams(rescore=True, oversampling=oversampling)
            )
        if isinstance(query, Fused):  # VectorStore runs a fused query's branches and fuses them (fusion.py)
            raise StoreError("a fused query reaches the engine branch by branch: call VectorStore.query")
        request, using, prefetch = _query(query), query.using, None
        response = self._call(
            f"query {name!r}",
            lambda c: c.query_points(
                name,
                query=request,
                using=using,
                prefetch=prefetch,
                limit=limit,
                query_filter=_filter(query_filter),
                with_payload=with_payload,
                search_params=params,
            ),
        )
        return [_point(p) for p in response.points]

    def disk_bytes(self) -> int | None:
        if self.config.is_server or self.config.resolved_path == ":memory:":
            return None
        return sum(p.stat().st_blocks * 512 for p in Path(self.target).rglob("*") if p.is_file())

    def build_index(self, name: str, fields: Mapping[str, str]) -> dict:
        from qdrant_client import models

        kinds = {
            "keyword": models.PayloadSchemaType.KEYWORD,
            "integer": models.PayloadSchemaType.INTEGER,
            "bool": models.PayloadSchemaType.BOOL,
        }
        for key, kind in fields.items():
            self._call(
                f"index payload field {key!r} of {name!r}",
                lambda c, key=key, kind=kind: c.create_payload_index(name, key, kinds[kind], wait=True),
            )
        return {"payload_indexes": sorted(fields)}


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


# -- mmalign's queries -> qdrant-client models ----------------------------------------------------------
def _point(p: Any) -> Point:
    vectors = p.vector
    if isinstance(vectors, dict):
        vectors = {k: SparseVector.of(v) if hasattr(v, "indices") else v for k, v in vectors.items()}
    return Point(str(p.id), dict(p.payload or {}), vectors, getattr(p, "score", None))


def _vector(value: Any) -> Any:
    """A dense vector as a list of floats; a :class:`SparseVector` as qdrant-client's."""
    from qdrant_client import models

    if isinstance(value, SparseVector):
        return models.SparseVector(indices=list(value.indices), values=list(value.values))
    return value.tolist()


def _example(value: Any) -> Any:
    """An item id as its point id (Qdrant then uses the point's stored vector), else a list of floats."""
    if isinstance(value, str):
        return point_id(value)
    return np.asarray(value, dtype=np.float32).ravel().tolist()


def _query(query: Nearest | Recommend) -> Any:
    from qdrant_client import models

    if isinstance(query, Nearest) and isinstance(query.target, SparseVector):
        return _vector(query.target)
    if isinstance(query, Nearest):
        return _example(query.target)
    if isinstance(query, Recommend):
        return models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[_example(x) for x in query.positive],
                negative=[_example(x) for x in query.negative] or None,
                strategy=models.RecommendStrategy(query.strategy),
            )
        )
    raise StoreError(f"query {type(query).__name__} cannot be a prefetch branch; give Nearest or Recommend")


def _filter(f: Filter | None, exclude_items: Sequence[str] = ()) -> Any:
    from qdrant_client import models

    if f is None and not exclude_items:
        return None
    f = (f or Filter()).excluding(list(exclude_items))
    if f.empty:
        return None
    return models.Filter(
        must=[_condition(c) for c in f.must] or None,
        should=[_condition(c) for c in f.should] or None,
        must_not=[_condition(c) for c in f.must_not] or None,
    )


def _condition(c: Any) -> Any:
    from qdrant_client import models

    if isinstance(c, Filter):
        return _filter(c)
    if isinstance(c, HasItem):
        return models.HasIdCondition(has_id=[point_id(i) for i in c.item_ids])
    if isinstance(c, Match):
        if len(c.values) == 1 or any(isinstance(v, bool) for v in c.values):
            matches = [models.FieldCondition(key=c.key, match=models.MatchValue(value=v)) for v in c.values]
            return matches[0] if len(matches) == 1 else models.Filter(should=matches)
        return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.values)))
    raise StoreError(f"filter condition {type(c).__name__} is unknown; give Match, HasItem or Filter")


def _quantization(kind: str | None):
    """qdrant-client's quantization config of StoreConfig.quantization (None, 'int8' or 'binary')."""
    from qdrant_client import models

    if kind == "int8":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
        )
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    return None
