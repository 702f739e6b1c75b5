"""``mmalign features``: encode a catalog's media into the feature cache.

Named steps, each a function that the in-process runner and the Ray runner (plugin/features/ray_encode.py)
both call: **read** the catalog (:func:`read_items`), **plan** per modality what the cache lacks
(:func:`plan_jobs`: resolve and hash every input, skip rows cached with the same hash), **decode**
(:func:`decode_job`, on worker threads here, on Ray tasks there), **encode** a decoded batch
(:func:`encode_batch`: NaN rows and bad inputs isolated and named) and **write** the rows to the
cache shard by shard (:class:`CacheSink`: a killed run keeps what it flushed). Bad items go to the
dead-letter file with the reason; the run goes on. Built encoders live in an :class:`EncoderPool`
(one per encoder id), so ingest, which calls :func:`encode_items` chunk by chunk, loads each once.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.dead_letter import DeadLetterWriter
from mmalign.connectors.errors import BatchError, ConfigError, ItemError
from mmalign.connectors.media import file_sha256, media_limits
from mmalign.connectors.sources import Catalog, open_catalog
from mmalign.plugin.encoders.registry import DEFAULT_PRESET, encoder_id, get_encoder_spec, get_preset, with_weights
from mmalign.plugin.features.annotations import AnnotationTable
from mmalign.plugin.features.cache import FeatureCache
from mmalign.schemas import CatalogItem, FeatureReport, Modality, ModalityCounts
from mmalign.schemas.encoders import EncoderSpec

log = logging.getLogger(__name__)

#: Rows per cache shard: what a killed run can lose at most.
DEFAULT_SHARD_SIZE = 256

#: Where a failure is reported: ``fail(error, stage)`` (the dead letter and the counts, or a list that a
#: Ray worker hands back to the driver).
Fail = Callable[[ItemError, str], None]


@dataclass(frozen=True)
class ExtractOptions:
    """How features are computed (not which): the device, batch size, decode threads, shard size."""

    device: str = "auto"
    runtime: str | None = None  # torch, onnx or auto (None: $MMALIGN_RUNTIME, else auto): plugin/encoders/runtime.py
    batch_size: int | None = None  # None: the encoder's default (larger on a GPU)
    workers: int = 4  # decode threads
    shard_size: int = DEFAULT_SHARD_SIZE
    show_progress: bool = False

    def updated(self, **settings: Any) -> ExtractOptions:
        """These options with ``settings`` (field names) replaced; ``None`` values are ignored."""
        return replace(self, **checked_settings(type(self), settings))


def checked_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` without None values, refusing names that are not fields of the options class ``cls``."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown} for {cls.__name__}; valid: {sorted(valid)}")
    return {k: v for k, v in settings.items() if v is not None}


class EncoderPool:
    """Built encoders, one per encoder id, kept between calls (ingest chunk by chunk, a Ray actor).

    ``build(spec, device=...)`` makes a missing one (default: :func:`mmalign.plugin.encoders.build_encoder`);
    ``encoders`` (encoder id -> encoder) seeds the pool with encoders built elsewhere. A plain dict is
    accepted wherever a pool is (:meth:`of`) and is shared, not copied.
    """

    def __init__(self, encoders: dict | None = None, *, build: Callable | None = None):
        self.encoders: dict = encoders if encoders is not None else {}
        self._build = build

    @classmethod
    def of(cls, pool: EncoderPool | dict | None, *, build: Callable | None = None) -> EncoderPool:
        if isinstance(pool, EncoderPool):
            return pool
        return cls(pool, build=build)

    def get(self, spec: EncoderSpec, device: str = "auto"):
        """The encoder of ``spec``, built on first use."""
        key = encoder_id(spec)
        if key not in self.encoders:
            build = self._build
            if build is None:
                from mmalign.plugin.encoders import build_encoder as build
            self.encoders[key] = build(spec, device=device)
        return self.encoders[key]

    def __contains__(self, spec: EncoderSpec) -> bool:
        return encoder_id(spec) in self.encoders


@dataclass(frozen=True)
class EncodeJob:
    """One input to encode: the item, the hash of its content and its file (None for text)."""

    item: CatalogItem
    content_hash: str
    path: Path | None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def preset_specs(
    preset: str,
    weights: Mapping[str, str] | None = None,
    modalities: Sequence[Modality | str] | None = None,
    runtime: str | None = None,
    device: str = "auto",
) -> dict[Modality, EncoderSpec]:
    """The encoder spec per modality of a preset, with weight overrides (encoder name -> weights), on the
    ``runtime`` it runs on (:func:`~mmalign.plugin.encoders.runtime.with_runtime`)."""
    from mmalign.plugin.encoders.runtime import with_runtime

    chosen = get_preset(preset)
    wanted = {Modality(m) for m in modalities} if modalities else set(Modality)
    weights = dict(weights or {})
    specs: dict[Modality, EncoderSpec] = {}
    for modality in Modality:
        name = chosen.encoder_for(modality)
        if name is None or modality not in wanted:
            continue
        spec = get_encoder_spec(name)
        if name in weights:
            spec = with_weights(spec, weights.pop(name))
        specs[modality] = with_runtime(spec, runtime, device)
    if weights:
        raise ConfigError(
            f"weights (CLI: --weights) names encoders not used by preset {preset!r}: {sorted(weights)}; "
            f"it uses {[s.name for s in specs.values()]}"
        )
    return specs


def extract_features(
    catalog: Catalog | str | Path,
    out_dir: str | Path,
    *,
    preset: str = DEFAULT_PRESET,
    modalities: Sequence[Modality | str] | None = None,
    weights: Mapping[str, str] | None = None,
    specs: Mapping[Modality, EncoderSpec] | None = None,
    items: Sequence[CatalogItem] | None = None,
    dead_letter: str | Path | None = None,
    options: ExtractOptions | None = None,
    encoder_pool: EncoderPool | dict | None = None,
    build_encoder: Callable | None = None,
    encode_step: Callable | None = None,
    **settings: Any,
) -> FeatureReport:
    """Encode every item's modalities into ``out_dir``; returns the per-modality counts.

    ``specs`` (modality -> encoder spec) overrides the preset, e.g. with the specs a bundle recorded;
    ``items`` encodes only these (already parsed) items of the catalog. ``options`` (or its fields as
    keywords: ``device``, ``runtime``, ``batch_size``, ``workers``, ``shard_size``, ``show_progress``) say how;
    ``build_encoder(spec, device=...)`` replaces the encoder factory, ``encoder_pool`` keeps encoders
    between calls. ONNX exports are cached in ``out_dir/onnx``. ``encode_step`` replaces the in-process
    encode step (:func:`encode_items`), e.g. with :func:`mmalign.plugin.features.ray_encode.on_ray`.
    """
    started = time.perf_counter()
    options = (options or ExtractOptions()).updated(**settings)
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    if specs is None:
        specs = preset_specs(preset, weights, modalities, options.runtime, options.device)
    out_dir = Path(out_dir)
    letters = DeadLetterWriter(dead_letter or out_dir / "dead_letter.jsonl")
    report = FeatureReport(
        catalog=str(catalog.path), preset=preset, out_dir=str(out_dir), dead_letter=str(letters.path)
    )
    if items is None:
        items, report.records_invalid = read_items(catalog, letters)
    items = list(items)
    report.records_ok = len(items)
    pool = EncoderPool.of(encoder_pool, build=build_encoder or default_builder(out_dir))
    cache = FeatureCache(out_dir)
    encode = encode_step or encode_items  # e.g. ray_encode.on_ray(address, workers): the same step on Ray
    encode(catalog, items, cache, specs, pool=pool, letters=letters, options=options, report=report)
    report.seconds = time.perf_counter() - started
    return report


def default_builder(features_dir: str | Path) -> Callable:
    """:func:`~mmalign.plugin.encoders.build_encoder`, with ONNX exports cached under ``features_dir/onnx``."""
    from functools import partial

    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.onnx_runtime import export_dir

    return partial(build_encoder, export_dir=export_dir(features_dir))


def read_items(catalog: Catalog, letters: DeadLetterWriter) -> tuple[list[CatalogItem], int]:
    """The read step: the catalog's valid items, and how many records were invalid (dead-lettered)."""
    items, invalid = [], 0
    for record in catalog.records():
        if record.item is None:
            invalid += 1
            letters.write_error(record.error, stage="parse", source=record.source)
        else:
            items.append(record.item)
    return items, invalid


def encode_items(
    catalog: Catalog,
    items: Sequence[CatalogItem],
    cache: FeatureCache,
    specs: Mapping[Modality, EncoderSpec],
    *,
    pool: EncoderPool,
    letters: DeadLetterWriter,
    options: ExtractOptions,
    known_hashes: Mapping[str, Mapping[Modality, str | None]] | None = None,
    report: FeatureReport | None = None,
) -> dict[Modality, ModalityCounts]:
    """The encode step in this process: per modality, plan what the cache lacks, decode on threads,
    encode in batches, write to the cache. ``known_hashes`` (item id -> modality -> content hash) saves
    reading media files a second time. Returns (and records in ``report``) the counts per modality."""
    out: dict[Modality, ModalityCounts] = {}
    for modality, spec in specs.items():
        counts = ModalityCounts(encoder=spec.name, encoder_id=encoder_id(spec), dim=spec.dim)
        out[modality] = counts
        if report is not None:
            report.modalities[modality] = counts
        fail = failure_sink(letters, counts)
        todo = plan_jobs(catalog, items, spec, cache, counts, fail, known_hashes or {})
        if not todo:
            continue
        t0 = time.perf_counter()
        encoder = pool.get(spec, options.device)
        counts.load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        sink = CacheSink(cache, spec, options.shard_size)
        todo = derive_from_backbone(encoder, todo, cache, sink, counts)
        _encode_jobs(encoder, todo, sink, counts, fail, options)
        counts.seconds = time.perf_counter() - t0
    return out


def derive_from_backbone(
    encoder, jobs: list[EncodeJob], cache: FeatureCache, sink: CacheSink, counts: ModalityCounts
) -> list[EncodeJob]:
    """For an encoder built on a backbone whose features are cached (a labelled image encoder): its features
    from the backbone's cached rows of the same content, without decoding or encoding anything again (they are
    counted as encoded). Returns the jobs that are left to encode."""
    if not jobs or not hasattr(encoder, "from_pooled"):
        return jobs
    backbone = encoder.backbone.spec
    table = cache.load(backbone.modality, backbone, [job.item.id for job in jobs])
    found = {item: (h, row) for item, h, row in zip(table.item_ids, table.content_hashes, table.features)}
    usable = [job for job in jobs if found.get(job.item.id, (None,))[0] == job.content_hash]
    if usable:
        rows = encoder.from_pooled(np.stack([found[job.item.id][1] for job in usable]))
        for job, row in zip(usable, rows):
            sink.add(job.item.id, job.content_hash, row, {})
        counts.encoded += len(usable)
        log.info("%s: %d items from %s's cached features", sink.spec.name, len(usable), backbone.name)
    derived = {job.item.id for job in usable}
    return [job for job in jobs if job.item.id not in derived]


def failure_sink(letters: DeadLetterWriter, counts: ModalityCounts) -> Fail:
    """Failures of one modality: written to the dead letter and counted."""

    def fail(error: ItemError, stage: str) -> None:
        letters.write_error(error, stage=stage)
        counts.failed += 1

    return fail


def plan_jobs(
    catalog: Catalog,
    items: Sequence[CatalogItem],
    spec: EncoderSpec,
    cache: FeatureCache,
    counts: ModalityCounts,
    fail: Fail,
    known_hashes: Mapping[str, Mapping[Modality, str | None]],
) -> list[EncodeJob]:
    """The plan step: the items whose modality of ``spec`` the cache lacks (or holds for other content)."""
    modality = spec.modality
    present = [i.id for i in items if getattr(i, modality.value) is not None]
    index, _ = cache.verified_index(modality, spec, present)  # damaged cache entries: encoded again
    todo = []
    for item in items:
        value = getattr(item, modality.value)
        if value is None:
            continue
        counts.present += 1
        try:
            if modality is Modality.TEXT:
                path, content_hash = None, text_hash(value)
            else:
                path = catalog.resolve(item, modality)
                content_hash = known_hashes.get(item.id, {}).get(modality) or file_sha256(path)
        except ItemError as err:
            fail(err, "load")
            continue
        except OSError as exc:
            fail(ItemError(item.id, f"cannot read file: {exc}", path=value, modality=modality.value), "load")
            continue
        cached = index.get(item.id)
        if cached is not None and cached.content_hash == content_hash:
            counts.cached += 1
        else:
            todo.append(EncodeJob(item, content_hash, path))
    return todo


class _DecodeTimeout(Exception):
    pass


def _call_with_deadline(fn, timeout: float | None):
    """``fn()`` on a daemon thread; past ``timeout`` seconds the thread is abandoned (it cannot be
    stopped: it finishes or dies with the process) and :class:`_DecodeTimeout` is raised."""
    if not timeout:
        return fn()
    box: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="mmalign-decode", daemon=True).start()
    if not done.wait(timeout):
        raise _DecodeTimeout
    if "error" in box:
        raise box["error"]
    return box["value"]


def input_nbytes(value) -> int:
    """Approximate memory of one decoded input: a PIL image, an array or tensor, or a string."""
    size = getattr(value, "size", None)
    if hasattr(value, "getbands") and isinstance(size, tuple):  # PIL image
        return int(size[0]) * int(size[1]) * len(value.getbands())
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "element_size") and hasattr(value, "numel"):  # torch tensor
        return int(value.element_size() * value.numel())
    if isinstance(value, str):
        return len(value)
    return sys.getsizeof(value)


def decode_job(decoder, job: EncodeJob, timeout: float | None) -> tuple[EncodeJob, object, ItemError | None, int]:
    """The decode step of one input: (job, input, None, bytes), or (job, None, the reason, 0); never raises.
    ``decoder`` is the encoder (its ``load_input``); past ``timeout`` seconds the item fails."""
    if job.path is None:
        return job, job.item.text, None, len(job.item.text)
    modality = decoder.modality.value
    try:
        value = _call_with_deadline(lambda: decoder.load_input(job.path, job.item.id), timeout)
    except _DecodeTimeout:
        log.warning("decoding %s took longer than %g s: abandoned (item %r)", job.path, timeout, job.item.id)
        reason = f"decoding took longer than {timeout:g} s (MMALIGN_DECODE_TIMEOUT_S); abandoned"
        return job, None, ItemError(job.item.id, reason, path=str(job.path), modality=modality), 0
    except ItemError as err:
        err.item_id = err.item_id or job.item.id
        return job, None, err, 0
    except Exception as exc:  # a decoder bug must not end the run
        reason = f"cannot decode: {type(exc).__name__}: {exc}"
        return job, None, ItemError(job.item.id, reason, path=str(job.path), modality=modality), 0
    return job, value, None, input_nbytes(value)


def _decoded_batches(
    encoder, jobs: list[EncodeJob], batch_size: int, workers: int, fail: Fail
) -> Iterator[tuple[int, list[EncodeJob], list]]:
    """Decode on a thread pool ahead of the encoder; yields (jobs consumed, decoded jobs, their inputs).

    Memory: a batch goes to the encoder once it has ``batch_size`` inputs or ``max_batch_bytes`` of
    them; decoding ahead (up to ``workers + 1`` batches) pauses while the decoded inputs waiting for
    the encoder, plus the expected size of those being decoded, exceed ``max_inflight_bytes``.
    Time: each file gets ``decode_timeout_s``; past it, the item is dead-lettered and its decode
    abandoned. Failures go to ``fail``.
    """
    limits = media_limits()
    ahead = _DecodeAhead(encoder, jobs, workers, batch_size, limits)
    consumed, ok_jobs, inputs, batch_bytes = 0, [], [], 0
    try:
        ahead.top_up()
        while ahead.pending:
            job, value, error, nbytes = ahead.pending.popleft().result()
            consumed += 1
            if error is not None:
                fail(error, "load")
            else:
                ok_jobs.append(job)
                inputs.append(value)
                batch_bytes += nbytes
            if len(ok_jobs) >= batch_size or batch_bytes >= limits.max_batch_bytes:
                ahead.top_up()
                yield consumed, ok_jobs, inputs
                ahead.release(batch_bytes)
                consumed, ok_jobs, inputs, batch_bytes = 0, [], [], 0
            ahead.top_up()
        if consumed:
            yield consumed, ok_jobs, inputs
    finally:
        ahead.close()


class _DecodeAhead:
    """The decode threads of :func:`_decoded_batches` and the bytes they hold (decoded, not yet encoded)."""

    def __init__(self, encoder, jobs: list[EncodeJob], workers: int, batch_size: int, limits):
        self.encoder, self.jobs, self.limits = encoder, jobs, limits
        self.workers = max(1, workers)
        self.window = batch_size * (self.workers + 1)
        self.timeout = limits.decode_timeout_s or None
        self.lock = threading.Lock()
        self.held = {"bytes": 0, "items": 0, "total": 0}  # items/total: running mean of an input's size
        self.pending: deque[Future] = deque()
        self.position = 0
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mmalign-decode")

    def _decode(self, job: EncodeJob):
        result = decode_job(self.encoder, job, self.timeout)
        with self.lock:
            self.held["bytes"] += result[3]
            self.held["items"] += 1
            self.held["total"] += result[3]
        return result

    def top_up(self) -> None:
        while self.position < len(self.jobs) and len(self.pending) < self.window:
            running = sum(not f.done() for f in self.pending)
            with self.lock:
                if not self.held["items"] and running >= self.workers:
                    return  # no size known yet: one item per thread until one is decoded
                mean = self.held["total"] / self.held["items"] if self.held["items"] else 0.0
                expected = self.held["bytes"] + mean * running
            if self.pending and expected >= self.limits.max_inflight_bytes:
                return
            self.pending.append(self.pool.submit(self._decode, self.jobs[self.position]))
            self.position += 1

    def release(self, nbytes: int) -> None:
        with self.lock:
            self.held["bytes"] -= nbytes

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


class CacheSink:
    """The write step: encoded rows (and annotations, e.g. transcripts) buffered and appended to the
    feature cache one shard of ``shard_size`` rows at a time; :meth:`flush` writes what is left."""

    def __init__(self, cache: FeatureCache, spec: EncoderSpec, shard_size: int = DEFAULT_SHARD_SIZE):
        self.cache, self.spec, self.shard_size = cache, spec, shard_size
        self.ids: list[str] = []
        self.hashes: list[str] = []
        self.rows: list[np.ndarray] = []
        self.notes: list[dict] = []

    def add(self, item_id: str, content_hash: str, row: np.ndarray, note: dict) -> None:
        self.ids.append(item_id)
        self.hashes.append(content_hash)
        self.rows.append(row)
        self.notes.append(note)
        if len(self.ids) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.ids:
            return
        modality = self.spec.modality
        if any(self.notes):
            AnnotationTable(self.cache).write(modality, self.spec, self.ids, self.hashes, self.notes)
        self.cache.write(modality, self.spec, list(self.ids), list(self.hashes), np.stack(self.rows))
        self.ids, self.hashes, self.rows, self.notes = [], [], [], []


def _encode_jobs(
    encoder, jobs: list[EncodeJob], sink: CacheSink, counts: ModalityCounts, fail: Fail, options: ExtractOptions
) -> None:
    """Decode threads ahead of batched encoding, in this process; rows go to ``sink``."""
    spec = sink.spec
    progress = None
    if options.show_progress:
        from mmalign.connectors.progress import Progress

        progress = Progress(len(jobs), f"features {spec.modality.value} ({spec.name})")
    try:
        for n_batch, rows in encoded_rows(encoder, jobs, options, fail):
            for job, row, note in rows:
                sink.add(job.item.id, job.content_hash, row, note)
                counts.encoded += 1
            if progress is not None:
                progress.update(n_batch)
    finally:
        sink.flush()
        if progress is not None:
            progress.close()


def encoded_rows(
    encoder, jobs: list[EncodeJob], options: ExtractOptions, fail: Fail
) -> Iterator[tuple[int, list[tuple[EncodeJob, np.ndarray, dict]]]]:
    """Decode (``options.workers`` threads) and encode ``jobs`` batch by batch: yields (jobs consumed, their
    (job, feature row, annotations) that encoded); failures go to ``fail``. The in-process runner and the
    Ray runner's encoder actors both run this."""
    from mmalign.plugin.encoders.base import DEFAULT_BATCH_SIZE

    # the encoder's own default is larger on a GPU than on a CPU
    modality = encoder.modality
    size = options.batch_size or getattr(encoder, "default_batch_size", None) or DEFAULT_BATCH_SIZE[modality]
    for n_batch, ok_jobs, inputs in _decoded_batches(encoder, jobs, size, options.workers, fail):
        yield n_batch, encode_batch(encoder, ok_jobs, inputs, fail)


def encode_batch(encoder, jobs: list[EncodeJob], inputs: list, fail: Fail) -> list[tuple[EncodeJob, np.ndarray, dict]]:
    """The encode step of one decoded batch: (job, feature row, annotations) of each input that encoded
    to finite features; the others go to ``fail``. A failed batch is retried item by item."""
    if not jobs:
        return []
    try:
        features, notes = _encode(encoder, inputs)
    except Exception as exc:
        # One bad input can sink a batch: retry one at a time to isolate it.
        log.warning("batch of %d failed in %s (%s); retrying item by item", len(inputs), encoder.spec.name, exc)
        features, notes = _encode_one_by_one(encoder, jobs, inputs, fail)
    out = []
    for job, row, note in zip(jobs, features, notes):
        if row is None:
            continue
        if not np.all(np.isfinite(row)):
            path = str(job.path) if job.path else None
            error = ItemError(
                job.item.id, "encoder produced NaN or infinite features", path=path, modality=encoder.modality.value
            )
            fail(error, "encode")
            continue
        out.append((job, row, note))
    return out


def _encode(encoder, inputs: list) -> tuple[np.ndarray, list[dict]]:
    """Features and annotations (empty dicts unless the encoder annotates) of one batch."""
    if getattr(encoder, "annotates", False):
        return encoder.encode_with_annotations(inputs, batch_size=len(inputs))
    return encoder.encode(inputs, batch_size=len(inputs)), [{} for _ in inputs]


def _encode_one_by_one(
    encoder, jobs: list[EncodeJob], inputs: list, fail: Fail
) -> tuple[list[np.ndarray | None], list[dict]]:
    """Isolate the bad inputs of a failed batch. When every item fails the same way, the fault is the
    encoder's (wrong checkpoint, out of memory), not the items': stop instead of dead-lettering them all."""
    rows: list[np.ndarray | None] = []
    notes: list[dict] = []
    errors: list[BaseException | None] = []
    for value in inputs:
        try:
            features, note = _encode(encoder, [value])
            rows.append(features[0])
            notes.append(note[0])
            errors.append(None)
        except Exception as exc:
            rows.append(None)
            notes.append({})
            errors.append(exc)
    kinds = {type(e) for e in errors}
    if len(inputs) >= 2 and None not in kinds and len(kinds) == 1:
        first = errors[0]
        raise BatchError(
            f"encoder {encoder.spec.name!r} failed on every item of a batch of {len(inputs)} "
            f"(first: {jobs[0].item.id!r}) with {type(first).__name__}: {first}; stopping: this is "
            f"not a bad item (check the weights, the device and its memory, or batch_size; CLI: --batch-size)"
        ) from first
    for job, exc in zip(jobs, errors):
        if exc is not None:
            path = str(job.path) if job.path else None
            reason = f"encoder failed: {type(exc).__name__}: {exc}"
            fail(ItemError(job.item.id, reason, path=path, modality=encoder.modality.value), "encode")
    return rows, notes
