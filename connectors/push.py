"""Moving a collection to another store (e.g. up to a server): a workflow over two stores.

Like qdrant-client's ``migrate`` (a free function over two clients), not a method of the store facade.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from mmalign.connectors.errors import StoreError
from mmalign.connectors.store import IndexReport, PointData, VectorStore
from mmalign.schemas.store import PushProgress


@dataclass
class PushReport:
    """What :func:`push_collection` copied."""

    source: str
    collection: str
    target: str
    alias: str | None
    points: int = 0
    resumed_from: str | None = None
    seconds: float = 0.0
    index: IndexReport | None = None


def push_collection(
    source: VectorStore,
    name: str,
    target: VectorStore,
    *,
    alias: str | None = None,
    batch_size: int = 512,
    on_batch: Callable[[int], None] | None = None,
) -> PushReport:
    """Copy collection ``name`` of ``source`` (an alias is followed to its version) into ``target`` under the
    same collection name: the record, then the points (vectors and payloads) in batches, then the payload
    indexes; finally point ``alias`` at it there. Resumable: a rerun continues after the last batch the
    target recorded (points are upserted by id, so a batch written twice is written once).
    """
    started = time.perf_counter()
    physical = source.resolve_alias(name) or name
    record = source.collection_record(physical)
    if record is None:
        raise StoreError(f"collection {name!r} does not exist; collections: {source.list_collections()}")
    origin = f"{source.engine}:{source.target}:{physical}"
    report = PushReport(source=origin, collection=physical, target=target.target, alias=alias)
    existing = target.collection_record(physical)
    offset = None
    if existing is None:
        extra = {**record.carried(), "state": "pushing", "push": PushProgress(source=origin)}
        sparse = source.sparse_vectors(physical)  # the lexical vector travels too (a version from before has none)
        target.create_collection(physical, record.dim, bundle_id=record.bundle_id, extra=extra, sparse_vectors=sparse)
    else:
        target.check_compatible(existing, dim=record.dim, bundle_id=record.bundle_id)
        progress = existing.push or PushProgress(source=origin)
        if progress.source == origin and not progress.done and progress.next_offset:
            offset = progress.next_offset
            report.resumed_from = str(offset)
            report.points = progress.points
        resumed = progress.model_copy(update={"source": origin, "done": False})
        target.update_record(physical, state="pushing", push=resumed)
    streams = target.config.write_streams  # a server: parallel upsert streams, about one per shard
    for number, (page, next_offset) in enumerate(
        source.pages(physical, with_vectors=True, with_sparse=True, page_size=batch_size * streams, offset=offset)
    ):
        points = []
        for p in page:
            payload = dict(p.payload or {})
            item_id = payload.pop("item_id", None)
            if item_id is None:
                raise StoreError(f"point {p.id} of {physical!r} has no item_id in its payload: not mmalign's")
            points.append(PointData(item_id, dict(p.vector or {}), payload))
        upsert_parallel(target, physical, points, batch_size, streams)  # the page is written before it is recorded
        report.points += len(points)
        resume = str(next_offset) if next_offset is not None else None
        target.update_record(physical, push=PushProgress(source=origin, next_offset=resume, points=report.points))
        if on_batch is not None:
            on_batch(number)
    expected, copied = source.count(physical), target.count(physical)
    if copied != expected:
        raise StoreError(
            f"push of {physical!r} copied {copied} points but the source has {expected}: it changed "
            f"meanwhile; run the push again"
        )
    report.index = target.build_index(physical)
    done = PushProgress(source=origin, done=True, points=copied, at=_utc_now())
    target.update_record(physical, state=record.state, push=done)
    if alias is not None:
        target.set_alias(alias, physical)
    report.seconds = time.perf_counter() - started
    return report


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def upsert_parallel(target: VectorStore, name: str, points: list[PointData], batch_size: int, streams: int) -> None:
    """Upsert ``points`` in batches of ``batch_size`` on ``streams`` threads (one: in this thread)."""
    batches = [points[i : i + batch_size] for i in range(0, len(points), batch_size)]
    if streams <= 1 or len(batches) <= 1:
        for batch in batches:
            target.upsert(name, batch, batch_size=batch_size)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="mmalign-push") as pool:
        for done in [pool.submit(target.upsert, name, batch, batch_size=batch_size) for batch in batches]:
            done.result()  # the first failure is raised
