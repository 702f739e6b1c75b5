"""``mmalign ingest``: catalog -> features (cached) -> student projection -> fusion -> Qdrant.

The catalog is processed in chunks. Per chunk: skip items whose content hash and bundle are
already stored, encode the rest through the feature cache (decode threads + batched encoder),
project and fuse, and hand the points to a background upsert thread, so the next chunk is
encoded while this one is written. Point ids are uuid5(item id) and unchanged items are
skipped, so a rerun after a crash finishes the job without duplicates or loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmalign.connectors.dead_letter import DeadLetterWriter
from mmalign.connectors.errors import BundleError, ItemError
from mmalign.connectors.faults import crash_point
from mmalign.connectors.media import file_sha256
from mmalign.connectors.sources import Catalog, open_catalog
from mmalign.connectors.store import PointData, VectorStore
from mmalign.plugin.features.annotations import AnnotationTable
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.features.extract import extract_features, text_hash
from mmalign.plugin.index.checks import seal_written, stored_payloads
from mmalign.plugin.index.payload import DEFAULT_MAX_PAYLOAD_TEXT, build_payload
from mmalign.plugin.index.versions import resolve_for_write
from mmalign.schemas import CatalogItem, IngestReport, Modality, StageTiming, StoreConfig, VectorName

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 256


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


class _Upserter:
    """Background writer: a bounded queue of point batches; the first failure is re-raised on close."""

    def __init__(self, store: VectorStore, collection: str, timing: StageTiming, max_pending: int = 2):
        self.store, self.collection, self.timing = store, collection, timing
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="mmalign-upsert", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            if self.error is not None:
                continue
            t0 = time.perf_counter()
            try:
                self.store.upsert(self.collection, batch)
                self.timing.items += len(batch)
            except BaseException as exc:  # reported by close()
                self.error = exc
            self.timing.seconds += time.perf_counter() - t0

    def put(self, batch: list[PointData]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(batch)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def ingest(
    catalog: Catalog | str | Path,
    *,
    bundle,
    collection: str,
    store: VectorStore | StoreConfig | None = None,
    features_dir: str | Path = "mmalign-data/features",
    chunk_size: int = DEFAULT_CHUNK,
    dead_letter: str | Path | None = None,
    device: str = "auto",
    show_progress: bool = False,
    pipelined: bool = True,
    encoder_pool: dict | None = None,
    on_chunk: Callable[[int], None] | None = None,
    max_payload_text: int = DEFAULT_MAX_PAYLOAD_TEXT,
    collab: bool = False,
) -> IngestReport:
    """Ingest a catalog into ``collection`` (an alias to a versioned collection, created on first use).

    ``bundle`` is a loaded :class:`~mmalign.plugin.align.bundle.Bundle` or a bundle path.
    ``max_payload_text`` caps the characters of text stored in each payload (``text_truncated``
    marks a cut text; the text vector always encodes the full text).
    ``collab``: create the collection with the ``collab`` named vector too (recommendation: collab
    factors written by ``Recommender.rebuild_users``; new items get a prediction from content).
    """
    from mmalign.plugin.align.bundle import Bundle, load_bundle

    started = time.perf_counter()
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle, with_teacher=False)  # a directory, or "base" (the shipped base bundle)
    bundle_path = str(bundle.path.resolve())
    if bundle.config.fusion.strategy != "weighted":
        raise BundleError(
            f"bundle {bundle.bundle_id} uses {bundle.config.fusion.strategy!r} fusion, whose "
            f"fused vector is not of size D; ingest needs 'weighted' fusion"
        )
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    own_store = not isinstance(store, VectorStore)
    vs = store if isinstance(store, VectorStore) else VectorStore(store or StoreConfig())
    specs = {m: bundle.encoder_spec(m) for m in bundle.modalities}
    letters = DeadLetterWriter(dead_letter or Path(features_dir) / "ingest_dead_letter.jsonl")
    record = resolve_for_write(
        vs,
        collection,
        bundle.dim,
        bundle.bundle_id,
        extra={
            "bundle_path": bundle_path,
            "encoders": {m.value: s.name for m, s in specs.items()},
            "media_root": str(catalog.media_root),
        },
        extra_vectors=("collab",) if collab else (),
    )
    target = record.name
    if "media_root" not in record.extra:  # a collection made before media roots were recorded
        vs.update_record(target, media_root=str(catalog.media_root))
    report = IngestReport(
        collection=collection, physical_collection=target, bundle_id=bundle.bundle_id, dead_letter=str(letters.path)
    )
    stages = {name: StageTiming() for name in ("read", "skip_check", "encode", "project", "upsert")}
    report.stages = stages
    cache = FeatureCache(features_dir)
    pool = encoder_pool if encoder_pool is not None else {}
    collab = _ingest_collab(vs, collection, target, bundle.bundle_id)

    t0 = time.perf_counter()
    items: list[CatalogItem] = []
    for rec in catalog.records():
        if rec.item is None:
            report.failed += 1
            letters.write_error(rec.error, stage="parse", source=rec.source)
        else:
            items.append(rec.item)
    stages["read"] = StageTiming(seconds=time.perf_counter() - t0, items=len(items))

    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=len(items), desc=f"ingest {collection}", unit="item")
    upserter = _Upserter(vs, target, stages["upsert"]) if pipelined else None
    written: list[str] = []  # item ids upserted by this run, read back and checked at the end
    try:
        for number, start in enumerate(range(0, len(items), chunk_size)):
            chunk = items[start : start + chunk_size]
            points = _process_chunk(
                chunk,
                catalog=catalog,
                bundle=bundle,
                specs=specs,
                vs=vs,
                target=target,
                cache=cache,
                features_dir=features_dir,
                letters=letters,
                device=device,
                pool=pool,
                report=report,
                stages=stages,
                max_text=max_payload_text,
            )
            if points and collab is not None:  # collab vectors: learned ones kept, predicted for the rest
                collab.attach(points)
            written.extend(p.item_id for p in points)
            if points:
                if upserter is not None:
                    upserter.put(points)
                else:
                    t0 = time.perf_counter()
                    vs.upsert(target, points)
                    stages["upsert"].seconds += time.perf_counter() - t0
                    stages["upsert"].items += len(points)
            if progress is not None:
                progress.update(len(chunk))
            crash_point("ingest.chunk_queued")
            if on_chunk is not None:
                on_chunk(number)
        if upserter is not None:
            pending, upserter = upserter, None
            pending.close()
        if report.ok or report.payload_updated:  # HNSW + payload indexes (Edge), so that queries at scale are fast
            t0 = time.perf_counter()
            vs.build_index(target)
            stages["index"] = StageTiming(seconds=time.perf_counter() - t0, items=vs.count(target))
        # what was written is read back and checked before success is reported (plugin/index/checks.py)
        seal_written(vs, target, written, before=record.extra.get("points"), catalog=str(catalog.path.resolve()))
    finally:
        if upserter is not None:
            upserter.close()
        if progress is not None:
            progress.close()
        if own_store:
            vs.close()
    report.seconds = time.perf_counter() - started
    return report


def _ingest_collab(vs, collection: str, target: str, bundle_id: str):
    """Predicts collab vectors for new items when the collection has them (index/collab.py)."""
    from mmalign.plugin.index.collab import IngestCollab

    return IngestCollab.open(vs, collection, target, bundle_id)


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


def _transcripts(cache, specs, features, hashes) -> dict[str, str]:
    """item id -> what the audio encoder heard (for encoders that transcribe; see features/annotations.py)."""
    spec = specs.get(Modality.AUDIO)
    if spec is None or not features.get(Modality.AUDIO):
        return {}
    wanted = {item_id: hashes[item_id][Modality.AUDIO] for item_id in features[Modality.AUDIO]}
    notes = AnnotationTable(cache).read(Modality.AUDIO, spec, wanted)
    return {i: str(n["transcript"]) for i, n in notes.items() if "transcript" in n}


def _process_chunk(
    chunk, *, catalog, bundle, specs, vs, target, cache, features_dir, letters, device, pool, report, stages, max_text
) -> list[PointData]:
    t0 = time.perf_counter()
    hashes = {item.id: modality_hashes(catalog, item) for item in chunk}
    content = {item.id: item_content_hash(item, hashes[item.id]) for item in chunk}
    stored = stored_payloads(vs, target, [i.id for i in chunk], bundle.dim)  # points failing checks: not trusted
    media = {item.id: media_hash(hashes[item.id]) for item in chunk}
    todo, payload_only = [], []
    for item in chunk:
        payload = stored.get(item.id)
        same_bundle = payload is not None and payload.get("bundle_id") == bundle.bundle_id
        wanted = {m.value for m in item.modalities if m in specs}
        complete = payload is not None and wanted <= set(payload.get("modalities", []))
        if same_bundle and complete and payload.get("content_hash") == content[item.id]:
            report.unchanged += 1
        elif same_bundle and payload.get("media_hash") == media[item.id] and None not in hashes[item.id].values():
            payload_only.append((item, payload))  # metadata edit: vectors stay valid
        else:
            todo.append(item)
    if payload_only:
        for item, old in payload_only:
            present = [Modality(m) for m in old.get("modalities", [])]
            new_payload = build_payload(
                item,
                present,
                content[item.id],
                bundle.bundle_id,
                media[item.id],
                max_text_chars=max_text,
                heard=old.get("heard"),
            )
            if "collab_source" in old:  # the collab vector stays, and so does what it is
                new_payload["collab_source"] = old["collab_source"]
            vs.overwrite_payload(target, item.id, new_payload)
        report.payload_updated += len(payload_only)
    stages["skip_check"].seconds += time.perf_counter() - t0
    stages["skip_check"].items += len(chunk)
    if not todo:
        return []

    t0 = time.perf_counter()
    extract_features(
        catalog,
        features_dir,
        specs=specs,
        items=todo,
        encoder_pool=pool,
        letters=letters,
        known_hashes=hashes,
        device=device,
    )
    features: dict[Modality, dict[str, np.ndarray]] = {}
    for m, spec in specs.items():
        wanted = [i.id for i in todo if hashes[i.id].get(m) is not None]
        table = cache.load(m, spec, wanted)
        for item_id, reason in table.rejected:  # damaged cache rows: skipped, named
            letters.write_error(ItemError(item_id, reason, modality=m.value), stage="load")
        # Only features of the current content count: a stale cache row of a file that now fails is not used.
        features[m] = {
            item_id: row
            for item_id, h, row in zip(table.item_ids, table.content_hashes, table.features)
            if h == hashes[item_id][m]
        }
    heard = _transcripts(cache, specs, features, hashes)
    stages["encode"].seconds += time.perf_counter() - t0
    stages["encode"].items += len(todo)

    t0 = time.perf_counter()
    usable = [i for i in todo if any(i.id in features[m] for m in specs)]
    for item in todo:
        if item not in usable:
            report.failed += 1
            if not any(m in specs for m in item.modalities):
                letters.write_error(
                    ItemError(
                        item.id,
                        f"item has only {[m.value for m in item.modalities]}; the "
                        f"bundle projects {[m.value for m in specs]}",
                    ),
                    stage="project",
                )
    points = []
    if usable:
        vectors = project_items(bundle, [i.id for i in usable], features)
        for item, named in zip(usable, vectors):
            present = [Modality(v.value) for v in named if v is not VectorName.FUSED]
            if len(present) < len([m for m in item.modalities if m in specs]):
                report.degraded += 1
            points.append(
                PointData(
                    item.id,
                    named,
                    build_payload(
                        item,
                        present,
                        content[item.id],
                        bundle.bundle_id,
                        media[item.id],
                        max_text_chars=max_text,
                        heard=heard.get(item.id) if Modality.AUDIO in present else None,
                    ),
                )
            )
        report.ok += len(points)
    stages["project"].seconds += time.perf_counter() - t0
    stages["project"].items += len(usable)
    return points
