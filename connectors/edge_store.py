"""The embedded store on Qdrant Edge (``qdrant-edge-py``): Qdrant's own engine, in-process.

Edge has one shard and no collections, aliases or collection metadata; this module keeps them, crash-safe:

    <store>/mmalign-store.json                  which engine wrote the folder (edge) and its format
    <store>/.mmalign.lock                       the ownership lock (see store_files), naming its holder
    <store>/aliases.json                        every alias -> collection, replaced atomically
    <store>/collections/<name>/shard/           one EdgeShard per collection (version)
    <store>/collections/<name>/record.json      mmalign's record and the vector sizes, replaced atomically

A collection exists once its ``record.json`` exists: it is written last when creating and removed first
when deleting, so a kill at any moment leaves either no collection or a whole one (a folder without a
record is a leftover, removed at the next open). An alias is one entry of ``aliases.json``; swapping it
replaces the whole file by rename, so a kill leaves the old alias or the new one.

Only :class:`~mmalign.connectors.store.VectorStore` uses this module. Queries arrive as qdrant-client
models (``Filter``, ``Prefetch``, ``RecommendQuery``, ``FusionQuery``...) and are translated here to
Edge's types; results come back as :class:`EdgePoint` objects with the attributes of qdrant-client's
``ScoredPoint``/``Record`` (what callers read: ``id``, ``score``, ``payload``, ``vector``).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mmalign.connectors.errors import StoreError
from mmalign.connectors.store_files import (
    StoreLock,
    fsync_dir,
    read_json,
    remove_temporaries,
    write_json_atomic,
)
from mmalign.schemas import StoreConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKER = "mmalign-store.json"
ALIASES = "aliases.json"
COLLECTIONS = "collections"
RECORD = "record.json"
SHARD = "shard"
FORMAT = 1
#: Qdrant server's collection-name rules (plus: no leading dot, which marks our temporary files).
_BAD_NAME = re.compile(r'[<>:"/\\|?*\x00]')
#: Reciprocal rank fusion constant of Qdrant (server and qdrant-client's local mode).
RRF_K = 2
#: Payload index kinds mmalign creates, by name.
INDEX_KINDS = ("keyword", "integer", "bool")


def edge_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qdrant-edge-py")
    except PackageNotFoundError:  # pragma: no cover - the dependency is pinned
        return "unknown"


def check_name(name: str, what: str = "collection") -> None:
    if not name or len(name) > 255 or name.startswith(".") or _BAD_NAME.search(name):
        raise StoreError(
            f"{what} name {name!r} is not valid: 1-255 characters, no leading '.', none of <>:\"/\\|?* or NUL"
        )


def _edge():
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise StoreError(
            "the embedded Edge engine needs the package qdrant-edge-py (pip install qdrant-edge-py); "
            "or use --engine local"
        ) from exc
    return qdrant_edge


def is_local_mode_folder(root: Path) -> bool:
    """A folder qdrant-client's local mode wrote (it keeps ``meta.json`` and ``collection/`` there)."""
    return (root / "meta.json").is_file() or (root / "collection").is_dir()


def read_marker(root: Path) -> dict | None:
    path = root / MARKER
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise StoreError(f"the store at {str(root)!r} has an unreadable {MARKER}: {exc}") from exc


class EdgeBackend:
    """Collections, aliases and records over one EdgeShard per collection folder."""

    engine = "edge"

    def __init__(self, config: StoreConfig):
        qe = _edge()
        self.config = config
        self._qe = qe
        self._mutex = threading.RLock()
        self._shards: dict[str, Any] = {}
        self._records: dict[str, dict] = {}
        self._lock: StoreLock | None = None
        path = config.resolved_path
        self.temporary = path == ":memory:"
        if self.temporary:  # an in-process store: a real Edge store in a temporary folder, removed on close
            self.root = Path(tempfile.mkdtemp(prefix="mmalign-edge-"))
        else:
            self.root = Path(path)
            self.root.mkdir(parents=True, exist_ok=True)
            marker = read_marker(self.root)
            if marker is None and is_local_mode_folder(self.root):
                raise StoreError(
                    f"the store at {path!r} was written by qdrant-client's local mode: open it with --engine "
                    f"local (StoreConfig(engine='local')), or copy its collections into an Edge store with "
                    f"`mmalign store push --engine local --qdrant-path {path} --collection NAME --to-path NEW`"
                )
            if marker is not None and marker.get("engine") != "edge":
                raise StoreError(f"the store at {path!r} is a {marker.get('engine')!r} store, not an Edge store")
            if marker is not None and int(marker.get("format", 0)) > FORMAT:
                raise StoreError(
                    f"the store at {path!r} has format {marker['format']}; this mmalign reads format {FORMAT}"
                )
            self._lock = StoreLock.acquire(self.root)
        try:
            self.collections_dir = self.root / COLLECTIONS
            self.collections_dir.mkdir(exist_ok=True)
            if read_marker(self.root) is None:
                write_json_atomic(
                    self.root / MARKER, {"engine": "edge", "format": FORMAT, "qdrant_edge_py": edge_version()}
                )
            remove_temporaries(self.root)
            self._names = self._scan()
            self._aliases = self._load_aliases()
        except BaseException:
            self.close()
            raise

    @property
    def target(self) -> str:
        return ":memory:" if self.temporary else str(self.root)

    # -- folder state -----------------------------------------------------------------------------------
    def _scan(self) -> set[str]:
        """Collections whose record exists; folders without one are leftovers of a killed create/delete."""
        names = set()
        for folder in self.collections_dir.iterdir():
            if not folder.is_dir():
                continue
            remove_temporaries(folder)
            if (folder / RECORD).is_file():
                names.add(folder.name)
            else:
                log.warning("removing %s: a collection folder without a record (an interrupted create/delete)", folder)
                shutil.rmtree(folder, ignore_errors=True)
        return names

    def _load_aliases(self) -> dict[str, str]:
        path = self.root / ALIASES
        if not path.is_file():
            return {}
        try:
            return dict(read_json(path)["aliases"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the alias record {str(path)!r} is unreadable: {exc}") from exc

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        write_json_atomic(self.root / ALIASES, {"format": FORMAT, "aliases": dict(sorted(aliases.items()))})

    def _folder(self, name: str) -> Path:
        return self.collections_dir / name

    def _physical(self, name: str) -> str:
        """The collection ``name`` names (an alias is followed); a clear error when there is none."""
        with self._mutex:
            target = self._aliases.get(name, name)
            if target not in self._names:
                if name in self._aliases:
                    raise StoreError(f"alias {name!r} points at {target!r}, which does not exist")
                raise StoreError(f"collection {name!r} does not exist")
            return target

    def _shard(self, name: str):
        physical = self._physical(name)
        with self._mutex:
            shard = self._shards.get(physical)
            if shard is None:
                shard = self._run(
                    f"open collection {physical!r}",
                    lambda: self._qe.EdgeShard.load(str(self._folder(physical) / SHARD)),
                )
                self._shards[physical] = shard
            return shard

    def _run(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:  # Edge raises plain Exception with the engine's message
            raise StoreError(f"{what} failed on the Edge store {self.target!r}: {exc}") from exc

    # -- collections -------------------------------------------------------------------------------------
    def _edge_config(self, dim: int, vector_names: Sequence[str], on_disk: bool):
        qe, cfg = self._qe, self.config
        threshold = cfg.full_scan_threshold_kb
        no_graph = qe.HnswIndexConfig(m=0, ef_construct=cfg.hnsw_ef_construct, full_scan_threshold=threshold)
        memory = qe.Memory.Cold if on_disk else None
        vectors = {
            v: qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Cosine,
                memory=memory,
                hnsw_config=None if v in cfg.hnsw_vectors else no_graph,
            )
            for v in vector_names
        }
        optimizers = (
            qe.EdgeOptimizersConfig(indexing_threshold=cfg.indexing_threshold_kb)
            if cfg.indexing_threshold_kb is not None
            else None
        )
        return qe.EdgeConfig(
            vectors=vectors,
            hnsw_config=qe.HnswIndexConfig(
                m=cfg.hnsw_m, ef_construct=cfg.hnsw_ef_construct, full_scan_threshold=threshold
            ),
            optimizers=optimizers,
        )

    def create(self, name: str, dim: int, vector_names: Sequence[str], meta: dict, on_disk: bool) -> None:
        check_name(name)
        with self._mutex:
            if name in self._names:
                raise StoreError(f"collection {name!r} already exists")
            if name in self._aliases:
                raise StoreError(
                    f"{name!r} is an alias (of {self._aliases[name]!r}); a collection cannot take its name"
                )
            folder = self._folder(name)
            if folder.exists():  # a leftover without a record
                shutil.rmtree(folder)
            folder.mkdir()
            try:
                shard = self._run(
                    f"create collection {name!r}",
                    lambda: self._qe.EdgeShard.create(
                        str(folder / SHARD), self._edge_config(dim, vector_names, on_disk)
                    ),
                )
                record = {"meta": meta, "vectors": {v: dim for v in vector_names}, "created_with": edge_version()}
                write_json_atomic(folder / RECORD, record)  # the commit point: now the collection exists
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._shards[name] = shard
            self._records[name] = record
            self._names.add(name)

    def _record(self, physical: str) -> dict:
        with self._mutex:
            record = self._records.get(physical)
            if record is None:
                try:
                    record = read_json(self._folder(physical) / RECORD)
                except (OSError, ValueError) as exc:
                    raise StoreError(f"the record of collection {physical!r} is unreadable: {exc}") from exc
                self._records[physical] = record
            return record

    def exists(self, name: str) -> bool:
        with self._mutex:
            return self._aliases.get(name, name) in self._names

    def read(self, name: str) -> tuple[dict | None, dict[str, int]] | None:
        """(mmalign's record, vector sizes) of ``name``, or None when there is no such collection."""
        if not self.exists(name):
            return None
        record = self._record(self._physical(name))
        return record.get("meta"), dict(record["vectors"])

    def write_meta(self, name: str, meta: dict) -> None:
        physical = self._physical(name)
        with self._mutex:
            record = {**self._record(physical), "meta": meta}
            write_json_atomic(self._folder(physical) / RECORD, record)
            self._records[physical] = record

    def list_collections(self) -> list[str]:
        with self._mutex:
            return sorted(self._names)

    def delete(self, name: str) -> None:
        with self._mutex:
            if name not in self._names:
                return  # as the server: deleting what is not there changes nothing
            remaining = {a: c for a, c in self._aliases.items() if c != name}
            if remaining != self._aliases:  # aliases go with their collection, first
                self._write_aliases(remaining)
                self._aliases = remaining
            shard = self._shards.pop(name, None)
            if shard is not None:
                self._run(f"close collection {name!r}", shard.close)
            folder = self._folder(name)
            (folder / RECORD).unlink()  # the commit point: the collection is gone
            fsync_dir(folder)
            self._names.discard(name)
            self._records.pop(name, None)
            shutil.rmtree(folder, ignore_errors=True)

    def count(self, name: str) -> int:
        shard = self._shard(name)
        return self._run(f"count {name!r}", lambda: shard.count(self._qe.CountRequest(exact=True)))

    # -- aliases -----------------------------------------------------------------------------------------
    def aliases(self) -> dict[str, str]:
        with self._mutex:
            return dict(self._aliases)

    def set_alias(self, alias: str, collection: str) -> None:
        check_name(alias, "alias")
        with self._mutex:
            if alias in self._names:
                raise StoreError(f"cannot create alias {alias!r}: a collection has that name")
            if collection not in self._names:
                raise StoreError(f"cannot point alias {alias!r} at missing collection {collection!r}")
            updated = {**self._aliases, alias: collection}
            self._write_aliases(updated)
            self._aliases = updated

    # -- points ------------------------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[tuple[str, Mapping[str, np.ndarray], dict]]) -> None:
        qe = self._qe
        shard = self._shard(name)
        batch = [
            qe.Point(pid, {k: v.tolist() for k, v in vectors.items()}, payload) for pid, vectors, payload in points
        ]
        self._run(
            f"upsert {len(batch)} points into {name!r}", lambda: shard.update(qe.UpdateOperation.upsert_points(batch))
        )

    def retrieve(self, name: str, ids: Sequence[str], with_payload, with_vectors) -> list:
        shard = self._shard(name)
        found = self._run(f"retrieve from {name!r}", lambda: shard.retrieve(list(ids), with_payload, with_vectors))
        return [_record(p) for p in found]

    def overwrite_payload(self, name: str, pid: str, payload: dict) -> None:
        qe = self._qe
        shard = self._shard(name)
        self._run(
            f"set payload in {name!r}", lambda: shard.update(qe.UpdateOperation.overwrite_payload([pid], payload))
        )

    def scroll(self, name: str, offset, limit: int, with_payload, with_vectors) -> tuple[list, Any]:
        qe = self._qe
        shard = self._shard(name)
        request = qe.ScrollRequest(offset=offset, limit=limit, with_payload=with_payload, with_vector=with_vectors)
        points, next_offset = self._run(f"scroll {name!r}", lambda: shard.scroll(request))
        return [_record(p) for p in points], next_offset

    def query(
        self,
        name: str,
        query: Any,
        *,
        using: str | None,
        limit: int,
        query_filter: Any,
        prefetch: Any,
        with_payload,
        exact: bool = False,
    ) -> list:
        qe = self._qe
        shard = self._shard(name)
        translate = _Translator(qe, lambda ids, vector: self._vectors_of(shard, name, ids, vector))
        params = self._search_params(exact)

        def build():
            edge_query, mentioned = translate.query(query, using)
            prefetches = [translate.prefetch(p, params) for p in _as_list(prefetch)] or None
            return qe.QueryRequest(
                limit=limit,
                query=edge_query,
                prefetches=prefetches,
                filter=translate.filter(query_filter, exclude_ids=mentioned),
                with_payload=_selector(with_payload),
                with_vector=False,
                params=params,
            )

        request = self._run(f"query {name!r}: the request", build)
        points = self._run(f"query {name!r}", lambda: shard.query(request))
        return [_scored(p) for p in points]

    def _search_params(self, exact: bool):
        if exact:
            return self._qe.SearchParams(exact=True)
        if self.config.hnsw_ef is not None:
            return self._qe.SearchParams(hnsw_ef=self.config.hnsw_ef)
        return None

    def _vectors_of(self, shard, name: str, ids: Sequence[Any], vector: str) -> list[list[float]]:
        """The ``vector`` of each point id (for queries that name points, as Qdrant resolves them)."""
        keys = [str(i) if isinstance(i, uuid.UUID) else i for i in ids]
        found = self._run(f"look up example points in {name!r}", lambda: shard.retrieve(keys, False, [vector]))
        by_id = {_pid(p.id): p.vector or {} for p in found}
        out = []
        for key in keys:
            vectors = by_id.get(key if not isinstance(key, str) else key.lower())
            if vectors is None:
                raise StoreError(f"point {key} is not in collection {name!r}")
            if vector not in vectors:
                raise StoreError(f"point {key} in collection {name!r} has no vector {vector!r}")
            out.append(vectors[vector])
        return out

    # -- indexing ----------------------------------------------------------------------------------------
    def build_index(self, name: str, fields: Mapping[str, str]) -> dict:
        """Payload indexes for ``fields`` (before the graph, so filtered search can use them), then
        ``optimize()``: segments over the indexing threshold get their HNSW graphs."""
        qe = self._qe
        shard = self._shard(name)
        kinds = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.PayloadSchemaType.Integer,
            "bool": qe.PayloadSchemaType.Bool,
        }
        existing = set(self._run(f"read {name!r}", lambda: shard.info().payload_schema))
        created = []
        for field, kind in fields.items():
            if field in existing:
                continue
            op = qe.UpdateOperation.create_field_index(field, kinds[kind])
            self._run(f"index payload field {field!r} of {name!r}", lambda op=op: shard.update(op))
            created.append(field)
        started = time.perf_counter()
        optimized = self._run(f"build the index of {name!r}", shard.optimize)
        seconds = time.perf_counter() - started
        if created or optimized:
            self._run(f"flush {name!r}", shard.flush)
        info = self._run(f"read {name!r}", shard.info)
        return {
            "optimize_seconds": seconds,
            "optimized": bool(optimized),
            "segments": info.segments_count,
            "points": info.points_count,
            "payload_indexes": sorted(info.payload_schema),
            "created_payload_indexes": created,
        }

    def disk_bytes(self) -> int:
        """Bytes the store's files occupy on disk (allocated blocks: the WAL's files are sparse)."""
        total = 0
        for path in self.root.rglob("*"):
            try:
                if path.is_file():
                    total += path.stat().st_blocks * 512
            except OSError:  # pragma: no cover - a file removed meanwhile
                pass
        return total

    def close(self) -> None:
        with self._mutex:
            shards, self._shards = self._shards, {}
            errors = []
            for name, shard in shards.items():
                try:
                    shard.close()
                except Exception as exc:  # pragma: no cover - reported below
                    errors.append(f"{name}: {exc}")
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            if self.temporary:
                shutil.rmtree(self.root, ignore_errors=True)
            if errors:
                raise StoreError(f"closing the Edge store {self.target!r} failed: {'; '.join(errors)}")


# -- results -----------------------------------------------------------------------------------------------
def _pid(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


class EdgePoint:
    """A point as the Edge store returns it: the attributes of qdrant-client's ``ScoredPoint``/``Record``
    (``id`` as a string, ``score`` for query results, ``payload``, ``vector``), built without pydantic's
    cost (about 5 µs a point, which would double the time of a fast query)."""

    __slots__ = ("id", "version", "score", "payload", "vector", "shard_key", "order_value")

    def __init__(self, id: Any, payload: dict | None, vector: Any, score: float | None = None, version: int = 0):
        self.id, self.payload, self.vector, self.score, self.version = id, payload, vector, score, version
        self.shard_key = self.order_value = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EdgePoint) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        score = f", score={self.score}" if self.score is not None else ""
        return f"EdgePoint(id={self.id!r}{score}, payload={self.payload!r}, vector={self.vector!r})"


def _scored(p) -> EdgePoint:
    return EdgePoint(_pid(p.id), p.payload, p.vector, p.score, p.version)


def _record(p) -> EdgePoint:
    return EdgePoint(_pid(p.id), p.payload, p.vector)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _selector(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise StoreError(f"with_payload {value!r} is not supported on the Edge store: give True, False or field names")


# -- qdrant-client models -> Edge ---------------------------------------------------------------------------
class _Translator:
    """Translates one request's qdrant-client models into Edge types.

    ``lookup(ids, vector)`` returns the named vector of each point id: Qdrant accepts point ids as query
    vectors (a RecommendQuery's examples, or a NearestQuery) and leaves the points it was given out of the
    results; so does this translation.
    """

    def __init__(self, qe, lookup: Callable[[Sequence[Any], str], list[list[float]]]):
        self.qe = qe
        self.lookup = lookup

    # queries
    def query(self, query: Any, using: str | None) -> tuple[Any, list]:
        """(Edge scoring query or fusion, ids of points named as examples)."""
        from qdrant_client import models

        qe = self.qe
        if query is None:
            return None, []
        if isinstance(query, models.FusionQuery):
            if query.fusion == models.Fusion.RRF:
                return qe.Fusion.Rrf(k=RRF_K), []
            if query.fusion == models.Fusion.DBSF:
                return qe.Fusion.Dbsf(), []
            raise StoreError(f"fusion {query.fusion!r} is not supported on the Edge store")
        if isinstance(query, models.RrfQuery):
            rrf = query.rrf
            return qe.Fusion.Rrf(k=rrf.k if rrf.k is not None else RRF_K, weights=rrf.weights), []
        vector_name = using
        if isinstance(query, models.NearestQuery):
            if query.mmr is not None:
                raise StoreError("MMR queries are not supported on the Edge store by mmalign")
            query = query.nearest
        if isinstance(query, models.RecommendQuery):
            return self._recommend(query.recommend, vector_name)
        if _is_point_id(query):
            [vector] = self.lookup([query], self._using(vector_name))
            return qe.Query.Nearest(vector, using=vector_name), [query]
        if isinstance(query, np.ndarray) and query.ndim == 1 and query.size:
            return qe.Query.Nearest(query.astype(np.float32, copy=False).tolist(), using=self._using(vector_name)), []
        if isinstance(query, list) and query and type(query[0]) in (float, int):
            return qe.Query.Nearest(query, using=self._using(vector_name)), []  # Edge checks the rest
        if isinstance(query, (np.ndarray, list, tuple)):
            vector = np.asarray(query, dtype=np.float32)
            if vector.ndim == 1 and vector.size:
                return qe.Query.Nearest(vector.tolist(), using=self._using(vector_name)), []
        raise StoreError(f"query {type(query).__name__} is not supported on the Edge store")

    @staticmethod
    def _using(vector_name: str | None) -> str:
        if vector_name is None:
            raise StoreError("a vector query needs a vector name (using)")
        return vector_name

    def _recommend(self, rec, vector_name: str | None) -> tuple[Any, list]:
        from qdrant_client import models

        qe = self.qe
        using = self._using(vector_name)
        positive, negative = list(rec.positive or []), list(rec.negative or [])
        mentioned = [x for x in positive + negative if _is_point_id(x)]
        positive_vectors = self._examples(positive, using)
        negative_vectors = self._examples(negative, using)
        strategy = rec.strategy or models.RecommendStrategy.AVERAGE_VECTOR
        if strategy == models.RecommendStrategy.AVERAGE_VECTOR:
            if not positive_vectors:
                raise StoreError("a recommendation with the average_vector strategy needs a positive example")
            # Qdrant's formula: avg_pos + avg_pos - avg_neg, then a plain nearest search
            mean_positive = np.mean(np.asarray(positive_vectors, dtype=np.float64), axis=0)
            vector = mean_positive
            if negative_vectors:
                vector = mean_positive + mean_positive - np.mean(np.asarray(negative_vectors, dtype=np.float64), axis=0)
            return qe.Query.Nearest(vector.astype(np.float32).tolist(), using=using), mentioned
        if not positive_vectors and not negative_vectors:
            raise StoreError(f"a recommendation with the {strategy.value} strategy needs an example")
        examples = qe.RecommendQuery(positive_vectors, negative_vectors)
        if strategy == models.RecommendStrategy.BEST_SCORE:
            return qe.Query.RecommendBestScore(examples, using=using), mentioned
        if strategy == models.RecommendStrategy.SUM_SCORES:
            return qe.Query.RecommendSumScores(examples, using=using), mentioned
        raise StoreError(f"recommend strategy {strategy!r} is not supported on the Edge store")

    def _examples(self, examples: list, using: str) -> list[list[float]]:
        ids = [x for x in examples if _is_point_id(x)]
        looked_up = iter(self.lookup(ids, using)) if ids else iter(())
        out = []
        for x in examples:
            if _is_point_id(x):
                out.append(next(looked_up))
            elif isinstance(x, np.ndarray):
                out.append(x.astype(np.float32).ravel().tolist())
            elif isinstance(x, (list, tuple)):
                out.append([float(v) for v in x])
            else:
                raise StoreError(f"recommendation example {type(x).__name__} is not supported on the Edge store")
        return out

    def prefetch(self, p, params) -> Any:
        from qdrant_client import models

        if not isinstance(p, models.Prefetch):
            raise StoreError(f"prefetch {type(p).__name__} is not a qdrant_client Prefetch")
        if p.lookup_from is not None:
            raise StoreError("prefetch lookup_from (another collection) is not supported on the Edge store")
        query, mentioned = self.query(p.query, p.using)
        nested = [self.prefetch(inner, params) for inner in _as_list(p.prefetch)] or None
        return self.qe.Prefetch(
            limit=p.limit if p.limit is not None else 10,
            query=query,
            prefetches=nested,
            params=self._params(p.params) or params,
            filter=self.filter(p.filter, exclude_ids=mentioned),
            score_threshold=p.score_threshold,
        )

    def _params(self, params) -> Any:
        if params is None:
            return None
        return self.qe.SearchParams(
            hnsw_ef=params.hnsw_ef, exact=bool(params.exact), indexed_only=bool(params.indexed_only)
        )

    # filters
    def filter(self, f: Any, exclude_ids: Sequence[Any] = ()) -> Any:
        from qdrant_client import models

        qe = self.qe
        exclude = [qe.HasIdCondition({_edge_id(i) for i in exclude_ids})] if exclude_ids else []
        if f is None:
            return qe.Filter(must_not=exclude) if exclude else None
        if not isinstance(f, models.Filter):
            raise StoreError(f"filter {type(f).__name__} is not a qdrant_client Filter")
        min_should = None
        if f.min_should is not None:
            min_should = qe.MinShould(
                [self.condition(c) for c in _as_list(f.min_should.conditions)], f.min_should.min_count
            )
        must = [self.condition(c) for c in _as_list(f.must)] or None
        should = [self.condition(c) for c in _as_list(f.should)] or None
        must_not = [self.condition(c) for c in _as_list(f.must_not)] + exclude or None
        return qe.Filter(must=must, should=should, must_not=must_not, min_should=min_should)

    def condition(self, c: Any) -> Any:
        from qdrant_client import models

        qe = self.qe
        if isinstance(c, models.Filter):
            return self.filter(c)
        if isinstance(c, models.FieldCondition):
            return self._field(c)
        if isinstance(c, models.HasIdCondition):
            return qe.HasIdCondition({_edge_id(i) for i in c.has_id})
        if isinstance(c, models.IsEmptyCondition):
            return qe.IsEmptyCondition(c.is_empty.key)
        if isinstance(c, models.IsNullCondition):
            return qe.IsNullCondition(c.is_null.key)
        if isinstance(c, models.HasVectorCondition):
            return qe.HasVectorCondition(c.has_vector)
        if isinstance(c, models.NestedCondition):
            return qe.NestedCondition(c.nested.key, self.filter(c.nested.filter))
        raise StoreError(f"filter condition {type(c).__name__} is not supported on the Edge store")

    def _field(self, c) -> Any:
        from qdrant_client import models

        qe = self.qe
        kw: dict[str, Any] = {}
        m = c.match
        if m is not None:
            if isinstance(m, models.MatchValue):
                kw["match"] = qe.MatchValue(m.value)
            elif isinstance(m, models.MatchAny):
                kw["match"] = qe.MatchAny(list(m.any))
            elif isinstance(m, models.MatchExcept):
                kw["match"] = qe.MatchExcept(list(m.except_))
            elif isinstance(m, models.MatchText):
                kw["match"] = qe.MatchText(m.text)
            elif isinstance(m, models.MatchTextAny):
                kw["match"] = qe.MatchTextAny(m.text_any)
            elif isinstance(m, models.MatchPhrase):
                kw["match"] = qe.MatchPhrase(m.phrase)
            else:
                raise StoreError(f"match {type(m).__name__} is not supported on the Edge store")
        r = c.range
        if r is not None:
            if isinstance(r, models.DatetimeRange):
                kw["range"] = qe.RangeDateTime(**{k: _iso(getattr(r, k)) for k in ("gte", "gt", "lte", "lt")})
            else:
                kw["range"] = qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)
        if c.values_count is not None:
            v = c.values_count
            kw["values_count"] = qe.ValuesCount(lt=v.lt, gt=v.gt, lte=v.lte, gte=v.gte)
        if c.geo_bounding_box is not None:
            box = c.geo_bounding_box
            kw["geo_bounding_box"] = qe.GeoBoundingBox(_geo(qe, box.top_left), _geo(qe, box.bottom_right))
        if c.geo_radius is not None:
            kw["geo_radius"] = qe.GeoRadius(_geo(qe, c.geo_radius.center), c.geo_radius.radius)
        if c.geo_polygon is not None:
            poly = c.geo_polygon
            interiors = [[_geo(qe, p) for p in ring.points] for ring in poly.interiors] if poly.interiors else None
            kw["geo_polygon"] = qe.GeoPolygon([_geo(qe, p) for p in poly.exterior.points], interiors)
        if c.is_empty is not None:
            kw["is_empty"] = c.is_empty
        if c.is_null is not None:
            kw["is_null"] = c.is_null
        return qe.FieldCondition(c.key, **kw)


def _geo(qe, point) -> Any:
    return qe.GeoPoint(lon=point.lon, lat=point.lat)


def _iso(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def _is_point_id(value: Any) -> bool:
    if isinstance(value, uuid.UUID):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True
    return False


def _edge_id(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value
