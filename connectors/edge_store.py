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

Only :class:`~mmalign.connectors.store.VectorStore` uses this module, through the
:class:`~mmalign.connectors.backend.StoreBackend` interface. Queries arrive as mmalign's typed queries
(:mod:`mmalign.connectors.query`) and are translated here to Edge's types; results come back as
:class:`~mmalign.connectors.query.Point` objects.
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
from mmalign.connectors.query import (
    Filter,
    HasItem,
    Match,
    Nearest,
    Point,
    Query,
    Recommend,
    SparseVector,
    as_vector,
    item_ids_in,
    point_id,
)
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
            "or use qdrant-client's local mode: StoreConfig(engine='local') (CLI: --engine local)"
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
                    f"the store at {path!r} was written by qdrant-client's local mode: open it with "
                    f"StoreConfig(engine='local') (CLI: --engine local), or copy its collections into an Edge "
                    f"store with push_collection (CLI: `mmalign store push --engine local --qdrant-path {path} "
                    f"--collection NAME --to-path NEW`)"
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
    def _edge_config(self, dim: int, vector_names: Sequence[str], on_disk: bool, sparse: Sequence[str] = ()):
        qe, cfg = self._qe, self.config
        threshold = cfg.full_scan_threshold_kb
        no_graph = qe.HnswIndexConfig(m=0, ef_construct=cfg.hnsw_ef_construct, full_scan_threshold=threshold)
        memory = qe.Memory.Cold if on_disk else None
        quantization = _edge_quantization(qe, cfg.quantization)
        vectors = {
            v: qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Cosine,
                memory=memory,
                hnsw_config=None if v in cfg.hnsw_vectors else no_graph,
                quantization_config=quantization,
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
            sparse_vectors={v: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for v in sparse} or None,
            hnsw_config=qe.HnswIndexConfig(
                m=cfg.hnsw_m, ef_construct=cfg.hnsw_ef_construct, full_scan_threshold=threshold
            ),
            optimizers=optimizers,
        )

    def create(
        self, name: str, dim: int, vector_names: Sequence[str], meta: dict, on_disk: bool, sparse: Sequence[str] = ()
    ) -> None:
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
                        str(folder / SHARD), self._edge_config(dim, vector_names, on_disk, sparse)
                    ),
                )
                record = {"meta": meta, "vectors": {v: dim for v in vector_names}, "created_with": edge_version()}
                if sparse:
                    record["sparse"] = list(sparse)
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

    def sparse_vectors(self, name: str) -> list[str]:
        return list(self._record(self._physical(name)).get("sparse", []))

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
            qe.Point(pid, {k: _edge_vector(qe, v) for k, v in vectors.items()}, payload)
            for pid, vectors, payload in points
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
        self, name: str, query: Query, *, limit: int, query_filter: Filter | None, with_payload, exact: bool = False
    ) -> list[Point]:
        qe = self._qe
        shard = self._shard(name)
        translate = _Translator(qe, lambda ids, vector: self._vectors_of(shard, name, ids, vector))
        params = self._search_params(exact, name)

        def build():
            return qe.QueryRequest(
                limit=limit,
                query=translate.query(query),
                prefetches=None,
                filter=translate.filter(query_filter, exclude_items=item_ids_in(query)),
                with_payload=_selector(with_payload),
                with_vector=False,
                params=params,
            )

        request = self._run(f"query {name!r}: the request", build)
        points = self._run(f"query {name!r}", lambda: shard.query(request))
        return [_scored(p) for p in points]

    def _search_params(self, exact: bool, name: str):
        if exact:
            return self._qe.SearchParams(exact=True)
        cfg = self.config
        rescoring = None
        meta = self._record(self._physical(name)).get("meta") or {}
        if cfg.quantization or (meta.get("extra") or {}).get("layout", {}).get("quantization"):
            # a quantized collection (as configured, or as created): candidates oversampled, rescored with the originals
            rescoring = self._qe.QuantizationSearchParams(rescore=True, oversampling=cfg.quantization_oversampling)
        if cfg.hnsw_ef is not None or rescoring is not None:
            return self._qe.SearchParams(hnsw_ef=cfg.hnsw_ef, quantization=rescoring)
        return None

    def _vectors_of(self, shard, name: str, item_ids: Sequence[str], vector: str) -> list[list[float]]:
        """The ``vector`` of each item (for queries that name items, as Qdrant resolves stored points)."""
        keys = [point_id(i) for i in item_ids]
        found = self._run(f"look up example points in {name!r}", lambda: shard.retrieve(keys, False, [vector]))
        by_id = {_pid(p.id): p.vector or {} for p in found}
        out = []
        for item_id, key in zip(item_ids, keys):
            vectors = by_id.get(key)
            if vectors is None:
                raise StoreError(f"item {item_id!r} is not in collection {name!r}")
            if vector not in vectors:
                raise StoreError(f"item {item_id!r} in collection {name!r} has no vector {vector!r}")
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

    def disk_bytes(self) -> int | None:
        """Bytes the store's files occupy on disk (allocated blocks: the WAL's files are sparse); None in memory."""
        if self.temporary:
            return None
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


def _vectors(vectors: Any) -> Any:
    """Named vectors as Edge returns them, with its sparse vectors as mmalign's :class:`SparseVector`."""
    if not isinstance(vectors, dict):
        return vectors
    return {k: SparseVector.of(v) if hasattr(v, "indices") else v for k, v in vectors.items()}


def _edge_vector(qe, value: Any) -> Any:
    if isinstance(value, SparseVector):
        return qe.SparseVector(list(value.indices), list(value.values))
    return value.tolist()


def _scored(p) -> Point:
    return Point(_pid(p.id), p.payload or {}, _vectors(p.vector), p.score)


def _record(p) -> Point:
    return Point(_pid(p.id), p.payload or {}, _vectors(p.vector))


def _selector(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise StoreError(f"with_payload {value!r} is not supported on the Edge store: give True, False or field names")


# -- mmalign's queries -> Edge ---------------------------------------------------------------------------
class _Translator:
    """Translates one request's typed query (:mod:`mmalign.connectors.query`) into Edge types.

    ``lookup(item_ids, vector)`` returns the named vector of each item: Qdrant accepts stored points as
    query vectors (a recommendation's examples, or a nearest query) and leaves those points out of the
    results; so does this translation.
    """

    def __init__(self, qe, lookup: Callable[[Sequence[str], str], list[list[float]]]):
        self.qe = qe
        self.lookup = lookup

    def query(self, query: Query) -> Any:
        """The Edge scoring query (a fused query's branches come one by one: VectorStore fuses them, fusion.py)."""
        qe = self.qe
        if isinstance(query, Nearest) and isinstance(query.target, SparseVector):
            return qe.Query.Nearest(_edge_vector(qe, query.target), using=query.using)
        if isinstance(query, Nearest):
            [vector] = self._examples([query.target], query.using)
            return qe.Query.Nearest(vector, using=query.using)
        if isinstance(query, Recommend):
            return self._recommend(query)
        raise StoreError(f"query {type(query).__name__} is not supported on the Edge store")

    def _recommend(self, rec: Recommend) -> Any:
        qe = self.qe
        positive = self._examples(rec.positive, rec.using)
        negative = self._examples(rec.negative, rec.using)
        if rec.strategy == "average_vector":
            # Qdrant's formula: avg_pos + avg_pos - avg_neg, then a plain nearest search
            mean_positive = np.mean(np.asarray(positive, dtype=np.float64), axis=0)
            vector = mean_positive
            if negative:
                vector = mean_positive + mean_positive - np.mean(np.asarray(negative, dtype=np.float64), axis=0)
            return qe.Query.Nearest(vector.astype(np.float32).tolist(), using=rec.using)
        examples = qe.RecommendQuery(positive, negative)
        if rec.strategy == "best_score":
            return qe.Query.RecommendBestScore(examples, using=rec.using)
        return qe.Query.RecommendSumScores(examples, using=rec.using)

    def _examples(self, examples: Sequence[Any], using: str) -> list[list[float]]:
        ids = [x for x in examples if isinstance(x, str)]
        looked_up = iter(self.lookup(ids, using)) if ids else iter(())
        return [next(looked_up) if isinstance(x, str) else as_vector(x).tolist() for x in examples]

    # filters
    def filter(self, f: Filter | None, exclude_items: Sequence[str] = ()) -> Any:
        f = (f or Filter()).excluding(list(exclude_items))
        if f.empty:
            return None
        return self.qe.Filter(
            must=[self.condition(c) for c in f.must] or None,
            should=[self.condition(c) for c in f.should] or None,
            must_not=[self.condition(c) for c in f.must_not] or None,
        )

    def condition(self, c: Any) -> Any:
        qe = self.qe
        if isinstance(c, Filter):
            return self.filter(c)
        if isinstance(c, HasItem):
            return qe.HasIdCondition({point_id(i) for i in c.item_ids})
        if isinstance(c, Match):
            if len(c.values) == 1 or any(isinstance(v, bool) for v in c.values):
                matches = [qe.FieldCondition(c.key, match=qe.MatchValue(v)) for v in c.values]
                return matches[0] if len(matches) == 1 else qe.Filter(should=matches)
            return qe.FieldCondition(c.key, match=qe.MatchAny(list(c.values)))
        raise StoreError(f"filter condition {type(c).__name__} is not supported on the Edge store")


def _edge_quantization(qe, kind: str | None):
    """Qdrant Edge's quantization config of StoreConfig.quantization (None, 'int8' or 'binary'); the quantized
    vectors stay in RAM, the originals where ``vectors_on_disk`` puts them (for rescoring)."""
    if kind == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
    if kind == "binary":
        return qe.BinaryQuantizationConfig(memory=qe.Memory.Pinned)
    return None
