"""``mmalign ingest``: catalog -> features (cached) -> student projection -> fusion -> Qdrant.

Named stages, each a function on an :class:`IngestRun` (the state one run shares), called by both
runners so that both write the same points:

- **read** (:func:`read_stage`): the catalog's records; invalid ones go to the dead letter;
- **plan** (:func:`plan_chunk`): hash each item's content, skip items whose content hash and bundle are
  already stored, rewrite the payload of items whose metadata alone changed;
- **encode** (:func:`encode_stage`): the items left, through the feature cache (decode threads + batched
  encoders, in this process; on Ray actors with ``runner="ray"``: :func:`run_on_ray`);
- **project** (:func:`make_points`): cached features -> student projection -> fusion -> points, the one
  place where a point's vectors and payload are built (:func:`build_points`);
- **write** (:class:`PointWriter`): a background upsert thread, so the next chunk is encoded while this
  one is written; then the indexes are built and what was written is read back and checked.

Point ids are uuid5(item id) and unchanged items are skipped, so a rerun after a crash finishes the job
without duplicates or loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmalign.connectors.dead_letter import DeadLetterWriter
from mmalign.connectors.disk import ensure_store_space
from mmalign.connectors.errors import BundleError, ConfigError, ItemError
from mmalign.connectors.faults import crash_point
from mmalign.connectors.media import file_sha256
from mmalign.connectors.sources import Catalog, open_catalog
from mmalign.connectors.store import PointData, VectorStore
from mmalign.plugin.features.annotations import AnnotationTable
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.features.extract import (
    CacheSink,
    EncoderPool,
    ExtractOptions,
    checked_settings,
    encode_items,
    read_items,
    text_hash,
)
from mmalign.plugin.index.checks import seal_written, stored_payloads
from mmalign.plugin.index.lexical import lexical_vectors
from mmalign.plugin.index.payload import DEFAULT_MAX_PAYLOAD_TEXT, build_payload
from mmalign.plugin.index.spoken import speech_heard
from mmalign.plugin.index.versions import resolve_for_write
from mmalign.schemas import CatalogItem, IngestReport, Modality, StageTiming, StoreConfig, VectorName
from mmalign.schemas.encoders import EncoderSpec
from mmalign.schemas.vocabulary import LEXICAL_VECTOR

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 256
STAGES = ("read", "skip_check", "encode", "project", "upsert")


@dataclass(frozen=True)
class IngestOptions:
    """How an ingest runs (the catalog, bundle and store are arguments of :func:`ingest`).

    ``max_payload_text`` caps the characters of text stored in each payload (``text_truncated`` marks a
    cut text; the text vector always encodes the full text). ``collab``: create the collection with the
    ``collab`` named vector too. ``runner``: ``local`` (this process) or ``ray`` (a Ray Data pipeline on
    the cluster at ``ray_address``, or a local one; ``ray_workers`` encoder actors per modality).
    """

    chunk_size: int = DEFAULT_CHUNK
    device: str = "auto"
    runtime: str | None = None  # torch, onnx or auto (None: $MMALIGN_RUNTIME, else auto): plugin/encoders/runtime.py
    show_progress: bool = False
    pipelined: bool = True
    max_payload_text: int = DEFAULT_MAX_PAYLOAD_TEXT
    collab: bool = False
    runner: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_workers: int = 1
    write_streams: int | None = None  # parallel upsert streams; None: the store config's write_streams

    def __post_init__(self) -> None:
        if self.runner not in ("local", "ray"):
            raise ConfigError(f"runner {self.runner!r} is not one of 'local', 'ray'")
        for name in ("chunk_size", "ray_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")

    def updated(self, **settings: Any) -> IngestOptions:
        from dataclasses import replace

        return replace(self, **checked_settings(type(self), settings))


@dataclass
class IngestRun:
    """What the stages of one ingest share: inputs, the target version, outputs and timings."""

    catalog: Catalog
    bundle: Any  # a loaded Bundle
    specs: dict[Modality, EncoderSpec]
    store: VectorStore
    target: str
    points_before: int | None  # the count recorded before this run (a rerun never loses points)
    cache: FeatureCache
    letters: DeadLetterWriter
    report: IngestReport
    options: IngestOptions
    pool: EncoderPool
    collab: Any = None  # IngestCollab, when the collection has collab vectors
    written: list[str] = field(default_factory=list)  # item ids upserted by this run, checked at the end

    @property
    def stages(self) -> dict[str, StageTiming]:
        return self.report.stages

    def timed(self, stage: str, items: int, since: float) -> None:
        self.stages[stage].seconds += time.perf_counter() - since
        self.stages[stage].items += items


@dataclass
class ChunkPlan:
    """The plan stage's answer for some items: content hashes, and which items need encoding."""

    hashes: dict[str, dict[Modality, str | None]]  # item id -> modality -> file/text hash (None: unreadable)
    content: dict[str, str]  # item id -> hash of everything stored (metadata included)
    media: dict[str, str]  # item id -> hash of what the vectors depend on
    todo: list[CatalogItem]

    def hashes_content_media(self) -> tuple[dict, dict, dict]:
        return self.hashes, self.content, self.media

    def subset(self, items: Sequence[CatalogItem]) -> ChunkPlan:
        ids = [i.id for i in items]
        pick = lambda d: {i: d[i] for i in ids}  # noqa: E731
        return ChunkPlan(pick(self.hashes), pick(self.content), pick(self.media), list(items))


def modality_hashes(catalog: Catalog, item: CatalogItem) -> dict[Modality, str | None]:
    """Content hash per modality (None where the file cannot be read: the encoder step reports why)."""
    hashes: dict[Modality, str | None] = {}
    for m in item.modalities:
        if m is Modality.TEXT:
            hashes[m] = text_hash(item.text)
            continue
        try:
            hashes[m] = file_sha256(catalog.resolve(item, m))
        except (ItemError, OSError):
            hashes[m] = None
    return hashes


def item_content_hash(item: CatalogItem, hashes: dict[Modality, str | None]) -> str:
    body = {
        "modalities": {m.value: h for m, h in hashes.items()},
        "metadata": item.metadata,
        "refs": {"image": item.image, "audio": item.audio},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def media_hash(hashes: dict[Modality, str | None]) -> str:
    """What the vectors depend on: the media/text content only (metadata and paths excluded)."""
    body = {m.value: h for m, h in hashes.items()}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class PointWriter:
    """The write stage: upserts point batches on ``streams`` background threads (``pipelined``: a bounded
    queue, the first failure re-raised by the next :meth:`put` or by :meth:`close`) or inline. Point ids are
    idempotent, so batches may land in any order. Streams: ``StoreConfig.write_streams`` unless given (1 into an
    embedded store; for a server, Qdrant's bulk-upload advice: 2 to 4 parallel streams, about one per shard)."""

    def __init__(self, run: IngestRun, *, pipelined: bool = True, streams: int | None = None):
        self.run = run
        self.error: BaseException | None = None
        self.streams = streams or run.store.config.write_streams
        self.queue: queue.Queue = queue.Queue(maxsize=2 * self.streams)
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        if pipelined:
            for n in range(self.streams):
                thread = threading.Thread(target=self._loop, name=f"mmalign-upsert-{n}", daemon=True)
                thread.start()
                self.threads.append(thread)

    def _write(self, batch: list[PointData]) -> None:
        t0 = time.perf_counter()
        self.run.store.upsert(self.run.target, batch)
        with self.lock:  # worker-seconds, summed over the streams
            self.run.timed("upsert", len(batch), t0)

    def _loop(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            if self.error is not None:
                continue
            try:
                self._write(batch)
            except BaseException as exc:  # reported by put() or close()
                self.error = exc

    def put(self, points: list[PointData]) -> None:
        if self.error is not None:
            raise self.error
        if points and self.run.collab is not None:  # collab vectors: learned ones kept, predicted for the rest
            self.run.collab.attach(points)
        self.run.written.extend(p.item_id for p in points)
        if not points:
            return
        ensure_store_space(self.run.store, len(points), self.run.bundle.dim, f"ingest into {self.run.target!r}")
        if not self.threads:
            self._write(points)
        else:
            self.queue.put(points)

    def close(self) -> None:
        """Wait for the queued batches; raise the first failure."""
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []
        if self.error is not None:
            raise self.error


def ingest(
    catalog: Catalog | str | Path,
    *,
    bundle,
    collection: str,
    store: VectorStore | StoreConfig | None = None,
    features_dir: str | Path = "mmalign-data/features",
    dead_letter: str | Path | None = None,
    options: IngestOptions | None = None,
    encoder_pool: EncoderPool | dict | None = None,
    on_chunk: Callable[[int], None] | None = None,
    **settings: Any,
) -> IngestReport:
    """Ingest a catalog into ``collection`` (an alias to a versioned collection, created on first use).

    ``bundle`` is a loaded :class:`~mmalign.plugin.align.bundle.Bundle` or a bundle path. ``options``
    (or its fields as keywords: ``chunk_size``, ``device``, ``show_progress``, ``pipelined``,
    ``max_payload_text``, ``collab``, ``runner``, ``ray_address``, ``ray_workers``; see
    :class:`IngestOptions`) say how. ``encoder_pool`` keeps built encoders between calls; ``on_chunk(n)``
    is called after each chunk is queued for writing.
    """
    started = time.perf_counter()
    options = (options or IngestOptions()).updated(**settings)
    bundle = _loaded_bundle(bundle)
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    own_store = not isinstance(store, VectorStore)
    vs = store if isinstance(store, VectorStore) else VectorStore(store or StoreConfig())
    try:
        run = start_run(catalog, bundle, collection, vs, Path(features_dir), dead_letter, options, encoder_pool)
        items = read_stage(run)
        if options.runner == "ray":
            run_on_ray(run, items, on_chunk)
        else:
            run_in_process(run, items, on_chunk)
        finish_run(run)
    finally:
        if own_store:
            vs.close()
    run.report.seconds = time.perf_counter() - started
    return run.report


def _loaded_bundle(bundle):
    from mmalign.plugin.align.bundle import Bundle, load_bundle

    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle, with_teacher=False)  # a directory, or "base" (the shipped base bundle)
    if bundle.config.fusion.strategy != "weighted":
        raise BundleError(
            f"bundle {bundle.bundle_id} uses {bundle.config.fusion.strategy!r} fusion, whose "
            f"fused vector is not of size D; ingest needs 'weighted' fusion"
        )
    return bundle


def start_run(
    catalog: Catalog,
    bundle,
    collection: str,
    vs: VectorStore,
    features_dir: Path,
    dead_letter: str | Path | None,
    options: IngestOptions,
    encoder_pool: EncoderPool | dict | None = None,
) -> IngestRun:
    """The version to write (created, with its alias, on first use) and the run's shared state. The bundle's
    encoders run on ``options.runtime`` (features of another runtime stand for the bundle's where they agree:
    :func:`~mmalign.plugin.encoders.runtime.interchangeable`)."""
    from mmalign.plugin.encoders.runtime import with_runtime
    from mmalign.plugin.features.extract import default_builder

    specs = {m: with_runtime(bundle.encoder_spec(m), options.runtime, options.device) for m in bundle.modalities}
    letters = DeadLetterWriter(dead_letter or features_dir / "ingest_dead_letter.jsonl")
    ensure_store_space(vs, 0, bundle.dim, f"a new collection {collection!r}", collection=collection)
    record = resolve_for_write(
        vs,
        collection,
        bundle.dim,
        bundle.bundle_id,
        extra={
            "bundle_path": str(bundle.path.resolve()),
            "encoders": {m.value: s.name for m, s in specs.items()},
            "media_root": str(catalog.media_root),
        },
        extra_vectors=("collab",) if options.collab else (),
    )
    target = record.name
    if record.media_root is None:  # a collection made before media roots were recorded
        vs.update_record(target, media_root=str(catalog.media_root))
    report = IngestReport(
        collection=collection, physical_collection=target, bundle_id=bundle.bundle_id, dead_letter=str(letters.path)
    )
    report.stages = {name: StageTiming() for name in STAGES}
    from mmalign.plugin.index.collab import IngestCollab  # predicts collab vectors of new items

    return IngestRun(
        catalog=catalog,
        bundle=bundle,
        specs=specs,
        store=vs,
        target=target,
        points_before=record.points,
        cache=FeatureCache(features_dir),
        letters=letters,
        report=report,
        options=options,
        pool=EncoderPool.of(encoder_pool, build=default_builder(features_dir)),
        collab=IngestCollab.open(vs, collection, target, bundle.bundle_id),
    )


def read_stage(run: IngestRun) -> list[CatalogItem]:
    t0 = time.perf_counter()
    items, invalid = read_items(run.catalog, run.letters)
    run.report.failed += invalid
    new = len(items) - run.store.count(run.target)  # refused before writing when the disk cannot hold it
    ensure_store_space(run.store, new, run.bundle.dim, f"ingest of {len(items):,} items into {run.target!r}")
    run.stages["read"] = StageTiming(seconds=time.perf_counter() - t0, items=len(items))
    return items


def run_in_process(run: IngestRun, items: list[CatalogItem], on_chunk: Callable[[int], None] | None) -> None:
    """The in-process runner: chunk by chunk, plan -> encode -> project, written while the next is encoded."""
    options = run.options
    progress = None
    if options.show_progress:
        from mmalign.connectors.progress import Progress

        progress = Progress(len(items), f"ingest {run.report.collection}")
    writer = PointWriter(run, pipelined=options.pipelined, streams=options.write_streams)
    try:
        for number, start in enumerate(range(0, len(items), options.chunk_size)):
            chunk = items[start : start + options.chunk_size]
            plan = plan_chunk(run, chunk)
            if plan.todo:
                encode_stage(run, plan)
                writer.put(make_points(run, plan))
            if progress is not None:
                progress.update(len(chunk))
            crash_point("ingest.chunk_queued")
            if on_chunk is not None:
                on_chunk(number)
    finally:
        try:
            writer.close()
        finally:
            if progress is not None:
                progress.close()


def run_on_ray(run: IngestRun, items: list[CatalogItem], on_chunk: Callable[[int], None] | None) -> None:
    """The Ray runner: every chunk planned here as in-process, the items left encoded on a Ray cluster
    (:mod:`mmalign.plugin.features.ray_encode`: an actor pool, the encoders loaded once per actor), and each
    encoded batch, as it streams back, written to the feature cache and the dead letter here, then projected and
    written with the same functions as in-process. Same ids, payloads, vectors and dead letters; a rerun after a
    killed driver skips what was written and what was cached."""
    from mmalign.plugin.features.ray_encode import encode_rows

    plan = ChunkPlan({}, {}, {}, [])
    for start in range(0, len(items), run.options.chunk_size):
        chunk_plan = plan_chunk(run, items[start : start + run.options.chunk_size])
        for mine, theirs in zip((plan.hashes, plan.content, plan.media), chunk_plan.hashes_content_media()):
            mine.update(theirs)
        plan.todo.extend(chunk_plan.todo)
    rows = encode_rows(run.catalog, plan.todo, run.specs, run.cache, run.letters, plan.hashes)
    to_encode = {json.loads(row["item"])["id"] for row in rows}
    by_id = {item.id: item for item in plan.todo}
    sinks = {m: CacheSink(run.cache, spec, run.options.chunk_size) for m, spec in run.specs.items()}
    extract = ExtractOptions(device=run.options.device, show_progress=run.options.show_progress)
    writer = PointWriter(run, pipelined=run.options.pipelined, streams=run.options.write_streams)
    try:
        cached = [item for item in plan.todo if item.id not in to_encode]  # all features cached, not stored
        for start in range(0, len(cached), run.options.chunk_size):
            writer.put(make_points(run, plan.subset(cached[start : start + run.options.chunk_size])))
        if rows:
            _stream_from_ray(run, plan, rows, by_id, sinks, extract, writer, on_chunk)
    finally:
        writer.close()


def _stream_from_ray(run: IngestRun, plan: ChunkPlan, rows, by_id, sinks, extract, writer, on_chunk) -> None:
    """The Ray pipeline over ``rows``; each encoded batch, as it comes back, cached, projected and written."""
    from mmalign.plugin.features.ray_encode import connected, encoded_on_ray, take_batch

    with connected(run.options.ray_address):
        waited = time.perf_counter()
        batches = encoded_on_ray(rows, run.specs, extract, run.options.ray_workers, run.options.chunk_size)
        for number, batch in enumerate(batches):
            run.stages["encode"].seconds += time.perf_counter() - waited  # waiting for the pipeline
            chunk = [by_id[i] for i in take_batch(batch, sinks, run.letters, stages=run.stages)]
            writer.put(make_points(run, plan.subset(chunk)))
            crash_point("ingest.chunk_queued")
            if on_chunk is not None:
                on_chunk(number)
            waited = time.perf_counter()


def finish_run(run: IngestRun) -> None:
    """Indexes (HNSW + payload indexes on Edge) when anything was written; then what was written is read
    back and checked before success is reported (plugin/index/checks.py)."""
    report = run.report
    if report.ok or report.payload_updated:
        t0 = time.perf_counter()
        run.store.build_index(run.target)
        report.stages["index"] = StageTiming(seconds=time.perf_counter() - t0, items=run.store.count(run.target))
    seal_written(run.store, run.target, run.written, before=run.points_before, catalog=str(run.catalog.path.resolve()))


def plan_chunk(run: IngestRun, chunk: Sequence[CatalogItem]) -> ChunkPlan:
    """The plan stage: skip items stored with the same content and bundle; rewrite the payload of items whose
    metadata alone changed (their vectors stay valid); the rest is to encode."""
    t0 = time.perf_counter()
    hashes = {item.id: modality_hashes(run.catalog, item) for item in chunk}
    plan = ChunkPlan(
        hashes=hashes,
        content={item.id: item_content_hash(item, hashes[item.id]) for item in chunk},
        media={item.id: media_hash(hashes[item.id]) for item in chunk},
        todo=[],
    )
    bundle_id = run.bundle.bundle_id
    stored = stored_payloads(run.store, run.target, [i.id for i in chunk], run.bundle.dim)  # failing: not trusted
    for item in chunk:
        payload = stored.get(item.id)
        same_bundle = payload is not None and payload.get("bundle_id") == bundle_id
        wanted = {m.value for m in item.modalities if m in run.specs}
        complete = payload is not None and wanted <= set(payload.get("modalities", []))
        if same_bundle and complete and payload.get("content_hash") == plan.content[item.id]:
            run.report.unchanged += 1
        elif same_bundle and payload.get("media_hash") == plan.media[item.id] and None not in hashes[item.id].values():
            _rewrite_payload(run, plan, item, payload)  # metadata edit: vectors stay valid
        else:
            plan.todo.append(item)
    run.timed("skip_check", len(chunk), t0)
    return plan


def _rewrite_payload(run: IngestRun, plan: ChunkPlan, item: CatalogItem, old: dict) -> None:
    present = [Modality(m) for m in old.get("modalities", [])]
    new_payload = item_payload(run, plan, item, present, heard=old.get("heard"))
    if "collab_source" in old:  # the collab vector stays, and so does what it is
        new_payload["collab_source"] = old["collab_source"]
    run.store.overwrite_payload(run.target, item.id, new_payload)
    run.report.payload_updated += 1


def encode_stage(run: IngestRun, plan: ChunkPlan) -> None:
    """The encode stage in this process: the plan's items into the feature cache."""
    t0 = time.perf_counter()
    extract = ExtractOptions(device=run.options.device)
    encode_items(
        run.catalog,
        plan.todo,
        run.cache,
        run.specs,
        pool=run.pool,
        letters=run.letters,
        options=extract,
        known_hashes=plan.hashes,
    )
    run.timed("encode", 0, t0)  # items counted when their features are loaded (make_points)


def make_points(run: IngestRun, plan: ChunkPlan) -> list[PointData]:
    """The plan's items from the feature cache to points: features of the current content -> projection."""
    t0 = time.perf_counter()
    features, heard = load_features(run, plan)
    run.timed("encode", len(plan.todo), t0)
    t0 = time.perf_counter()
    points = build_points(run, plan, features, heard)
    run.timed("project", sum(1 for i in plan.todo if any(i.id in features[m] for m in run.specs)), t0)
    return points


def load_features(run: IngestRun, plan: ChunkPlan) -> tuple[dict[Modality, dict[str, np.ndarray]], dict[str, str]]:
    """Cached raw features of the plan's items (only rows of their current content), and transcripts."""
    features: dict[Modality, dict[str, np.ndarray]] = {}
    for m, spec in run.specs.items():
        wanted = [i.id for i in plan.todo if plan.hashes[i.id].get(m) is not None]
        table = run.cache.load(m, spec, wanted)
        for item_id, reason in table.rejected:  # damaged cache rows: skipped, named
            run.letters.write_error(ItemError(item_id, reason, modality=m.value), stage="load")
        # Only features of the current content count: a stale cache row of a file that now fails is not used.
        features[m] = {
            item_id: row
            for item_id, h, row in zip(table.item_ids, table.content_hashes, table.features)
            if h == plan.hashes[item_id][m]
        }
    return features, _transcripts(run, features, plan.hashes)


def _transcripts(run: IngestRun, features, hashes) -> dict[str, str]:
    """item id -> what the audio encoder heard (for encoders that transcribe; see features/annotations.py)."""
    spec = run.specs.get(Modality.AUDIO)
    if spec is None or not features.get(Modality.AUDIO):
        return {}
    wanted = {item_id: hashes[item_id][Modality.AUDIO] for item_id in features[Modality.AUDIO]}
    notes = AnnotationTable(run.cache).read(Modality.AUDIO, spec, wanted)
    return {i: speech_heard(n) for i, n in notes.items() if "transcript" in n}  # speech only (index/spoken.py)


def project_items(
    bundle, item_ids: list[str], features: dict[Modality, dict[str, np.ndarray]]
) -> list[dict[VectorName, np.ndarray]]:
    """Student projection of each item's raw features (a modality is absent where it has none) and the
    fused vector; one batch per modality."""
    import torch

    n = len(item_ids)
    embeddings, masks = {}, {}
    for m in bundle.student.modalities:
        rows = features.get(m, {})
        mask = np.array([i in rows for i in item_ids], dtype=bool)
        matrix = np.zeros((n, bundle.dim), dtype=np.float32)
        if mask.any():
            matrix[mask] = bundle.embed(m, np.stack([rows[i] for i, keep in zip(item_ids, mask) if keep]))
        embeddings[m], masks[m] = matrix, mask
    with torch.no_grad():
        fused = bundle.student.fusion(
            {m: torch.from_numpy(e) for m, e in embeddings.items()}, {m: torch.from_numpy(k) for m, k in masks.items()}
        ).numpy()
    out = []
    for row in range(n):
        named = {VectorName(m.value): embeddings[m][row] for m in bundle.student.modalities if masks[m][row]}
        named[VectorName.FUSED] = fused[row]
        out.append(named)
    return out


def build_points(
    run: IngestRun, plan: ChunkPlan, features: dict[Modality, dict[str, np.ndarray]], heard: dict[str, str]
) -> list[PointData]:
    """The project stage: the one place where a point's vectors and payload are built. Items with no usable
    feature fail (named in the dead letter when they have no modality the bundle projects)."""
    specs, report = run.specs, run.report
    usable = [i for i in plan.todo if any(i.id in features[m] for m in specs)]
    usable_ids = {i.id for i in usable}  # by id: comparing pydantic items is slow (quadratic in the chunk)
    for item in plan.todo:
        if item.id in usable_ids:
            continue
        report.failed += 1
        if not any(m in specs for m in item.modalities):
            reason = (
                f"item has only {[m.value for m in item.modalities]}; the bundle projects {[m.value for m in specs]}"
            )
            run.letters.write_error(ItemError(item.id, reason), stage="project")
    if not usable:
        return []
    points = []
    lexical = LEXICAL_VECTOR in run.store.sparse_vectors(run.target)  # BM25 terms of text + speech (index/lexical.py)
    for item, named in zip(usable, project_items(run.bundle, [i.id for i in usable], features)):
        present = [Modality(v.value) for v in named if v is not VectorName.FUSED]
        if len(present) < len([m for m in item.modalities if m in specs]):
            report.degraded += 1
        said = heard.get(item.id) if Modality.AUDIO in present else None
        vectors = {**named, **lexical_vectors(item.text, said, enabled=lexical)}
        points.append(PointData(item.id, vectors, item_payload(run, plan, item, present, heard=said)))
    report.ok += len(points)
    return points


def item_payload(
    run: IngestRun, plan: ChunkPlan, item: CatalogItem, present: list[Modality], *, heard: str | None
) -> dict:
    """A point's payload (see plugin/index/payload.py)."""
    return build_payload(
        item,
        present,
        plan.content[item.id],
        run.bundle.bundle_id,
        plan.media[item.id],
        max_text_chars=run.options.max_payload_text,
        heard=heard,
    )
