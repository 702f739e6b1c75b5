"""``mmalign features``: encode a catalog's media into the feature cache.

Per modality: resolve and hash every item's input, skip what the cache holds with the same
hash, decode the rest on worker threads while the encoder runs on batches, and append the
results to the cache shard by shard (a killed run keeps what it flushed). Bad items go to
the dead-letter file with the reason; the run goes on.
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
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class _Job:
    item: CatalogItem
    content_hash: str
    path: Path | None  # None for text


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def preset_specs(
    preset: str, weights: Mapping[str, str] | None = None, modalities: Sequence[Modality | str] | None = None
) -> dict[Modality, EncoderSpec]:
    """The encoder spec per modality of a preset, with weight overrides (encoder name -> weights)."""
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
        specs[modality] = spec
    if weights:
        raise ConfigError(
            f"--weights names encoders not used by preset {preset!r}: {sorted(weights)}; "
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
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 4,
    dead_letter: str | Path | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    show_progress: bool = False,
    build_encoder: Callable | None = None,
    specs: Mapping[Modality, EncoderSpec] | None = None,
    items: Sequence[CatalogItem] | None = None,
    encoder_pool: dict | None = None,
    letters: DeadLetterWriter | None = None,
    known_hashes: Mapping[str, Mapping[Modality, str | None]] | None = None,
) -> FeatureReport:
    """Encode every item's modalities into ``out_dir``; returns the per-modality counts.

    ``specs`` (modality -> encoder spec) overrides the preset, e.g. with the specs a bundle recorded.
    ``items`` encodes only these (already parsed) items of the catalog, and ``encoder_pool`` keeps
    built encoders between calls: ingest calls this chunk by chunk. ``known_hashes`` (item id ->
    modality -> content hash) saves reading media files a second time to hash them.
    """
    started = time.perf_counter()
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    if specs is None:
        specs = preset_specs(preset, weights, modalities)
    out_dir = Path(out_dir)
    cache = FeatureCache(out_dir)
    letters = letters or DeadLetterWriter(dead_letter or out_dir / "dead_letter.jsonl")
    if build_encoder is None:
        from mmalign.plugin.encoders import build_encoder
    pool = encoder_pool if encoder_pool is not None else {}

    report = FeatureReport(
        catalog=str(catalog.path), preset=preset, out_dir=str(out_dir), dead_letter=str(letters.path)
    )
    if items is not None:
        items = list(items)
        report.records_ok = len(items)
    else:
        items = []
        for record in catalog.records():
            if record.item is None:
                report.records_invalid += 1
                letters.write_error(record.error, stage="parse", source=record.source)
            else:
                report.records_ok += 1
                items.append(record.item)

    for modality, spec in specs.items():
        counts = ModalityCounts(encoder=spec.name, encoder_id=encoder_id(spec), dim=spec.dim)
        report.modalities[modality] = counts
        present = [i.id for i in items if getattr(i, modality.value) is not None]
        index, _ = cache.verified_index(modality, spec, present)  # damaged cache entries: encoded again
        todo = _plan(catalog, items, modality, index, counts, letters, known_hashes or {})
        if not todo:
            continue
        t0 = time.perf_counter()
        key = encoder_id(spec)
        if key not in pool:
            pool[key] = build_encoder(spec, device=device)
        encoder = pool[key]
        counts.load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        _encode_jobs(
            encoder,
            todo,
            cache,
            spec,
            counts,
            letters,
            batch_size=batch_size,
            workers=workers,
            shard_size=shard_size,
            show_progress=show_progress,
        )
        counts.seconds = time.perf_counter() - t0
    report.seconds = time.perf_counter() - started
    return report


def _plan(
    catalog: Catalog,
    items: list[CatalogItem],
    modality: Modality,
    index,
    counts: ModalityCounts,
    letters: DeadLetterWriter,
    known_hashes: Mapping[str, Mapping[Modality, str | None]],
) -> list[_Job]:
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
            counts.failed += 1
            letters.write_error(err, stage="load")
            continue
        except OSError as exc:
            counts.failed += 1
            letters.write_error(ItemError(item.id, f"cannot read file: {exc}", path=value, modality=modality.value))
            continue
        cached = index.get(item.id)
        if cached is not None and cached.content_hash == content_hash:
            counts.cached += 1
        else:
            todo.append(_Job(item, content_hash, path))
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


def _decode(encoder, job: _Job, timeout: float | None) -> tuple[_Job, object, ItemError | None, int]:
    """(job, input, None, bytes), or (job, None, the reason, 0); never raises."""
    if job.path is None:
        return job, job.item.text, None, len(job.item.text)
    modality = encoder.modality.value
    try:
        value = _call_with_deadline(lambda: encoder.load_input(job.path, job.item.id), timeout)
    except _DecodeTimeout:
        log.warning("decoding %s took longer than %g s: abandoned (item %r)", job.path, timeout, job.item.id)
        return (
            job,
            None,
            ItemError(
                job.item.id,
                f"decoding took longer than {timeout:g} s (MMALIGN_DECODE_TIMEOUT_S); abandoned",
                path=str(job.path),
                modality=modality,
            ),
            0,
        )
    except ItemError as err:
        err.item_id = err.item_id or job.item.id
        return job, None, err, 0
    except Exception as exc:  # a decoder bug must not end the run
        reason = f"cannot decode: {type(exc).__name__}: {exc}"
        return job, None, ItemError(job.item.id, reason, path=str(job.path), modality=modality), 0
    return job, value, None, input_nbytes(value)


def _decoded_batches(
    encoder, jobs: list[_Job], batch_size: int, workers: int, letters: DeadLetterWriter, counts: ModalityCounts
) -> Iterator[tuple[int, list[_Job], list]]:
    """Decode on a thread pool ahead of the encoder; yields (jobs consumed, decoded jobs, their inputs).

    Memory: a batch goes to the encoder once it has ``batch_size`` inputs or ``max_batch_bytes`` of
    them; decoding ahead (up to ``workers + 1`` batches) pauses while the decoded inputs waiting for
    the encoder, plus the expected size of those being decoded, exceed ``max_inflight_bytes``.
    Time: each file gets ``decode_timeout_s``; past it, the item is dead-lettered and its decode
    abandoned. Failures go to the dead letter.
    """
    limits = media_limits()
    timeout = limits.decode_timeout_s or None
    window = batch_size * (max(1, workers) + 1)
    lock = threading.Lock()
    held = {"bytes": 0, "items": 0, "total": 0}  # decoded, not yet released; items/total: running mean

    def decode(job: _Job):
        result = _decode(encoder, job, timeout)
        with lock:
            held["bytes"] += result[3]
            held["items"] += 1
            held["total"] += result[3]
        return result

    pending: deque[Future] = deque()
    position = 0
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mmalign-decode")

    def top_up() -> None:
        nonlocal position
        while position < len(jobs) and len(pending) < window:
            running = sum(not f.done() for f in pending)
            with lock:
                if not held["items"] and running >= max(1, workers):
                    return  # no size known yet: one item per thread until one is decoded
                mean = held["total"] / held["items"] if held["items"] else 0.0
                expected = held["bytes"] + mean * running
            if pending and expected >= limits.max_inflight_bytes:
                return
            pending.append(pool.submit(decode, jobs[position]))
            position += 1

    consumed, ok_jobs, inputs, batch_bytes = 0, [], [], 0
    try:
        top_up()
        while pending:
            job, value, error, nbytes = pending.popleft().result()
            consumed += 1
            if error is not None:
                letters.write_error(error, stage="load")
                counts.failed += 1
            else:
                ok_jobs.append(job)
                inputs.append(value)
                batch_bytes += nbytes
            if len(ok_jobs) >= batch_size or batch_bytes >= limits.max_batch_bytes:
                top_up()
                yield consumed, ok_jobs, inputs
                with lock:
                    held["bytes"] -= batch_bytes
                consumed, ok_jobs, inputs, batch_bytes = 0, [], [], 0
            top_up()
        if consumed:
            yield consumed, ok_jobs, inputs
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _encode_jobs(
    encoder,
    jobs: list[_Job],
    cache: FeatureCache,
    spec: EncoderSpec,
    counts: ModalityCounts,
    letters: DeadLetterWriter,
    *,
    batch_size: int | None,
    workers: int,
    shard_size: int,
    show_progress: bool,
) -> None:
    from mmalign.plugin.encoders.base import DEFAULT_BATCH_SIZE

    # the encoder's own default is larger on a GPU than on a CPU
    size = batch_size or getattr(encoder, "default_batch_size", None) or DEFAULT_BATCH_SIZE[spec.modality]
    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=len(jobs), desc=f"{spec.modality.value} ({spec.name})", unit="item")
    buffer_ids: list[str] = []
    buffer_hashes: list[str] = []
    buffer_rows: list[np.ndarray] = []
    buffer_notes: list[dict] = []  # annotations (e.g. transcripts) of encoders that make them

    def flush() -> None:
        if buffer_ids:
            if any(buffer_notes):
                AnnotationTable(cache).write(spec.modality, spec, buffer_ids, buffer_hashes, buffer_notes)
            cache.write(spec.modality, spec, list(buffer_ids), list(buffer_hashes), np.stack(buffer_rows))
            buffer_ids.clear(), buffer_hashes.clear(), buffer_rows.clear(), buffer_notes.clear()

    try:
        for n_batch, ok_jobs, inputs in _decoded_batches(encoder, jobs, size, workers, letters, counts):
            if ok_jobs:
                try:
                    features, notes = _encode(encoder, inputs)
                except Exception as exc:
                    # One bad input can sink a batch: retry one at a time to isolate it.
                    log.warning("batch of %d failed in %s (%s); retrying item by item", len(inputs), spec.name, exc)
                    features, notes = _encode_one_by_one(encoder, ok_jobs, inputs, letters, counts)
                for job, row, note in zip(ok_jobs, features, notes):
                    if row is None:
                        continue
                    if not np.all(np.isfinite(row)):
                        letters.write_error(
                            ItemError(
                                job.item.id,
                                "encoder produced NaN or infinite features",
                                path=str(job.path) if job.path else None,
                                modality=spec.modality.value,
                            ),
                            stage="encode",
                        )
                        counts.failed += 1
                        continue
                    buffer_ids.append(job.item.id)
                    buffer_hashes.append(job.content_hash)
                    buffer_rows.append(row)
                    buffer_notes.append(note)
                    counts.encoded += 1
                if len(buffer_ids) >= shard_size:
                    flush()
            if progress is not None:
                progress.update(n_batch)
    finally:
        flush()
        if progress is not None:
            progress.close()


def _encode(encoder, inputs: list) -> tuple[np.ndarray, list[dict]]:
    """Features and annotations (empty dicts unless the encoder annotates) of one batch."""
    if getattr(encoder, "annotates", False):
        return encoder.encode_with_annotations(inputs, batch_size=len(inputs))
    return encoder.encode(inputs, batch_size=len(inputs)), [{} for _ in inputs]


def _encode_one_by_one(
    encoder, jobs: list[_Job], inputs: list, letters: DeadLetterWriter, counts: ModalityCounts
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
            f"not a bad item (check the weights, the device and its memory, or --batch-size)"
        ) from first
    for job, exc in zip(jobs, errors):
        if exc is not None:
            letters.write_error(
                ItemError(
                    job.item.id,
                    f"encoder failed: {type(exc).__name__}: {exc}",
                    path=str(job.path) if job.path else None,
                    modality=encoder.modality.value,
                ),
                stage="encode",
            )
            counts.failed += 1
    return rows, notes
