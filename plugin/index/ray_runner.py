"""The Ray runner of ingest: the encode stage as a Ray Data pipeline, the other stages as in-process.

The driver reads the catalog and plans every chunk exactly as the in-process runner does
(:func:`~mmalign.plugin.index.ingest.plan_chunk`: content hashes, skip-check against the store, payload-only
rewrites), and plans per modality what the feature cache lacks (:func:`~mmalign.plugin.features.extract.plan_jobs`).
What is left to encode becomes one Ray Dataset of items, mapped by an actor pool of :class:`EncodeActor`
(``ray_workers`` actors; each loads the bundle's encoders once, decodes its batch on threads with the same
limits, and encodes it with the same code as in-process; ``num_gpus=1`` per actor when the cluster has GPUs).
The driver streams the encoded batches back, writes their rows to the feature cache and their failures to
the dead letter, then projects and writes them with the same functions as in-process
(:func:`~mmalign.plugin.index.ingest.make_points`, :class:`~mmalign.plugin.index.ingest.PointWriter`).
So both runners give the same point ids, payloads and vectors, and a rerun after a killed driver skips what
was written and what was cached. Workers never touch the cache or the store: a remote cluster needs only
the media paths and mmalign installed.

Ray is imported here only (``pip install 'mmalign[ray]'``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mmalign.connectors.errors import ConfigError, ItemError
from mmalign.connectors.faults import crash_point
from mmalign.plugin.features.extract import CacheSink, EncodeJob, ExtractOptions, encoded_rows, plan_jobs
from mmalign.plugin.index.ingest import ChunkPlan, IngestRun, PointWriter, make_points, plan_chunk
from mmalign.schemas import CatalogItem, Modality, ModalityCounts, StageTiming

log = logging.getLogger(__name__)

#: Items per batch that an encoder actor receives.
ACTOR_BATCH = 64
PROGRESS_EVERY_S = 10.0


def run_on_ray(run: IngestRun, items: list[CatalogItem], on_chunk: Callable[[int], None] | None) -> None:
    """Plan on the driver, encode on Ray, project and write on the driver (see the module doc)."""
    plan = _plan_all(run, items)
    rows = _encode_rows(run, plan)
    if not rows:
        return
    owned = _connect(run.options.ray_address)
    try:
        _stream(run, plan, rows, on_chunk)
    finally:
        if owned:
            import ray

            ray.shutdown()


def _plan_all(run: IngestRun, items: list[CatalogItem]) -> ChunkPlan:
    """The plan stage over every chunk (as in-process), merged into one plan."""
    merged = ChunkPlan({}, {}, {}, [])
    size = run.options.chunk_size
    for start in range(0, len(items), size):
        plan = plan_chunk(run, items[start : start + size])
        merged.hashes.update(plan.hashes)
        merged.content.update(plan.content)
        merged.media.update(plan.media)
        merged.todo.extend(plan.todo)
    return merged


def _encode_rows(run: IngestRun, plan: ChunkPlan) -> list[dict[str, Any]]:
    """One row per item to encode: the item and, per modality, the input the cache lacks (hash and path)."""
    from mmalign.plugin.features.extract import failure_sink

    rows = {item.id: {"item": item.model_dump_json()} for item in plan.todo}
    for m, spec in run.specs.items():
        counts = ModalityCounts(encoder=spec.name, encoder_id="", dim=spec.dim)
        for job in plan_jobs(
            run.catalog, plan.todo, spec, run.cache, counts, failure_sink(run.letters, counts), plan.hashes
        ):
            rows[job.item.id][f"{m.value}_hash"] = job.content_hash
            rows[job.item.id][f"{m.value}_path"] = str(job.path) if job.path is not None else None
    columns = [f"{m.value}_{k}" for m in run.specs for k in ("hash", "path")]
    return [{c: row.get(c) for c in ("item", *columns)} for row in rows.values()]


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local one; True when this call started Ray."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "runner 'ray' needs Ray: pip install 'mmalign[ray]' (or runner 'local', the default)"
        ) from exc
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return True


def _stream(run: IngestRun, plan: ChunkPlan, rows: list[dict], on_chunk) -> None:
    """Run the pipeline and write each encoded batch as it comes back."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = run.options.show_progress
    workers = max(1, run.options.ray_workers)
    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= workers else 0.0
    cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)) // workers) if not gpus else 1.0
    extract = ExtractOptions(device=run.options.device)
    dataset = ray.data.from_items(rows).map_batches(
        EncodeActor,
        fn_constructor_kwargs={"specs": run.specs, "options": extract, "threads": int(cpus)},
        batch_size=ACTOR_BATCH,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus,
    )
    by_id = {item.id: item for item in plan.todo}
    sinks = {m: CacheSink(run.cache, spec, run.options.chunk_size) for m, spec in run.specs.items()}
    writer = PointWriter(run, pipelined=run.options.pipelined)
    started = last_note = time.perf_counter()
    done = 0
    try:
        for number, batch in enumerate(dataset.iter_batches(batch_size=run.options.chunk_size, batch_format="pandas")):
            t0 = time.perf_counter()
            run.stages["encode"].seconds += t0 - started  # waiting for the pipeline
            _take(run, batch, sinks)
            chunk = [by_id[json.loads(i)["id"]] for i in batch["item"]]
            writer.put(make_points(run, plan.subset(chunk)))
            done += len(chunk)
            if time.perf_counter() - last_note >= PROGRESS_EVERY_S:
                log.info("ray ingest: %d of %d items written", done, len(plan.todo))
                last_note = time.perf_counter()
            crash_point("ingest.chunk_queued")
            if on_chunk is not None:
                on_chunk(number)
            started = time.perf_counter()
    finally:
        writer.close()


def _take(run: IngestRun, batch, sinks: dict[Modality, CacheSink]) -> None:
    """An encoded batch into the feature cache (rows) and the dead letter (failures); per-actor timings."""
    for text in batch["errors"]:
        for error in json.loads(text):
            stage = error.pop("stage")
            run.letters.write_error(ItemError(error.pop("item_id"), error.pop("reason"), **error), stage=stage)
    for m, sink in sinks.items():
        key = m.value
        if f"{key}_row" not in batch:
            continue
        for item_json, content_hash, row, note in zip(
            batch["item"], batch[f"{key}_hash"], batch[f"{key}_row"], batch[f"{key}_note"]
        ):
            if row is not None and len(row):
                item_id = json.loads(item_json)["id"]
                sink.add(item_id, content_hash, np.frombuffer(row, dtype=np.float32).copy(), json.loads(note))
        sink.flush()  # make_points reads these rows back from the cache
        timing = run.stages.setdefault(f"encode_{key}", StageTiming())
        timing.seconds += float(batch[f"{key}_seconds"].sum())
        timing.items += int(batch[f"{key}_hash"].notna().sum())


class EncodeActor:
    """A Ray actor of the encode stage: the bundle's encoders, loaded once; per batch and modality, the same
    decode threads and batched encoding as in-process (:func:`~mmalign.plugin.features.extract.encoded_rows`).
    Adds ``<modality>_row`` (float32 bytes, empty when it failed), ``_note`` (JSON annotations) and
    ``_seconds`` columns, and the failures as JSON in ``errors``."""

    def __init__(self, specs: dict, options: ExtractOptions, threads: int = 1):
        import torch

        from mmalign.plugin.features.extract import EncoderPool

        torch.set_num_threads(max(1, threads))
        self.specs, self.options = specs, options
        self.pool = EncoderPool()
        for spec in specs.values():
            self.pool.get(spec, options.device)

    def __call__(self, batch):
        errors: list[list[dict]] = [[] for _ in range(len(batch))]
        items = [CatalogItem.model_validate_json(text) for text in batch["item"]]
        position = {item.id: n for n, item in enumerate(items)}

        def fail(error: ItemError, stage: str) -> None:
            where = position.get(error.item_id, 0)
            errors[where].append(
                {
                    "item_id": error.item_id,
                    "reason": error.reason,
                    "path": error.path,
                    "modality": error.modality,
                    "stage": stage,
                }
            )

        for m, spec in self.specs.items():
            self._encode_modality(batch, items, m, spec, fail)
        batch["errors"] = [json.dumps(e) for e in errors]
        return batch

    def _encode_modality(self, batch, items: list[CatalogItem], m: Modality, spec, fail) -> None:
        from pathlib import Path

        key = m.value
        hashes = batch.get(f"{key}_hash")
        paths = batch.get(f"{key}_path")
        out_rows: list[bytes] = [b""] * len(items)
        notes = ["{}"] * len(items)
        t0 = time.perf_counter()
        jobs = [
            EncodeJob(item, h, Path(p) if isinstance(p, str) else None)
            for item, h, p in zip(items, hashes if hashes is not None else [], paths if paths is not None else [])
            if isinstance(h, str)
        ]
        if jobs:
            where = {item.id: n for n, item in enumerate(items)}
            encoder = self.pool.get(spec, self.options.device)
            for _, encoded in encoded_rows(encoder, jobs, self.options, fail):
                for job, row, note in encoded:
                    out_rows[where[job.item.id]] = np.asarray(row, dtype=np.float32).tobytes()
                    notes[where[job.item.id]] = json.dumps(note)
        seconds = (time.perf_counter() - t0) / max(1, len(items))
        batch[f"{key}_row"], batch[f"{key}_note"], batch[f"{key}_seconds"] = out_rows, notes, [seconds] * len(items)
