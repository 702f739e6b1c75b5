"""The encode stage on a Ray cluster (Ray Data), for ``features --runner ray`` (:func:`on_ray`) and the Ray
runner of ingest (:func:`mmalign.plugin.index.ingest.run_on_ray`).

The driver plans per modality what the feature cache lacks (:func:`~.extract.plan_jobs`, as in-process); the
items left become one Ray Dataset mapped by an actor pool of :class:`EncodeActor` (``workers`` actors; each
loads the encoders once, decodes its batch on threads with the same limits and encodes it with the same
:func:`~.extract.encoded_rows` as in-process; ``num_gpus=1`` per actor when the cluster has a GPU for each).
Encoded batches stream back to the driver, which writes the rows to the cache and the failures to the dead
letter (:func:`take_batch`). Workers never touch the cache: a remote cluster needs only the media paths and
mmalign installed.

Ray is imported only here (``pip install 'mmalign[ray]'``).
"""

from __future__ import annotations

import functools
import json
import time
from contextlib import contextmanager
from typing import Any

import numpy as np

from mmalign.connectors.dead_letter import DeadLetterWriter
from mmalign.connectors.errors import ConfigError, ItemError
from mmalign.connectors.sources import Catalog
from mmalign.plugin.encoders.registry import encoder_id
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.features.extract import (
    CacheSink,
    EncodeJob,
    ExtractOptions,
    encoded_rows,
    failure_sink,
    plan_jobs,
)
from mmalign.schemas import CatalogItem, FeatureReport, Modality, ModalityCounts, StageTiming
from mmalign.schemas.encoders import EncoderSpec

#: Items per batch that an encoder actor receives.
ACTOR_BATCH = 64


def on_ray(address: str | None = None, workers: int = 1):
    """The encode step of :func:`~.extract.extract_features` on a Ray cluster (``address``; None: a local one)
    with ``workers`` encoder actors: ``extract_features(catalog, out, encode_step=on_ray(...))``."""
    return functools.partial(extract_on_ray, ray_address=address, ray_workers=workers)


def extract_on_ray(
    catalog: Catalog,
    items: list[CatalogItem],
    cache: FeatureCache,
    specs: dict[Modality, EncoderSpec],
    *,
    pool=None,
    letters: DeadLetterWriter,
    options: ExtractOptions,
    report: FeatureReport,
    ray_address: str | None = None,
    ray_workers: int = 1,
) -> None:
    """The encode step on Ray: plan on the driver, encode on the actors, write the cache on the driver. ``pool``
    (the in-process step's encoders) is not used: each actor builds its own."""
    counts = {m: ModalityCounts(encoder=s.name, encoder_id=encoder_id(s), dim=s.dim) for m, s in specs.items()}
    report.modalities.update(counts)
    started = time.perf_counter()
    rows = encode_rows(catalog, items, specs, cache, letters, None, counts)
    if rows:
        sinks = {m: CacheSink(cache, spec, options.shard_size) for m, spec in specs.items()}
        with connected(ray_address):
            for batch in encoded_on_ray(rows, specs, options, ray_workers, options.shard_size):
                take_batch(batch, sinks, letters, counts=counts)
    for c in counts.values():
        c.seconds = time.perf_counter() - started


def encode_rows(catalog, items, specs, cache, letters, known_hashes, counts=None) -> list[dict[str, Any]]:
    """One row per item to encode: the item and, per modality, the input the cache lacks (hash and path).
    ``counts`` (per modality) receive the plan's counts; failures of the plan go to the dead letter."""
    rows: dict[str, dict] = {}
    for m, spec in specs.items():
        tally = (counts or {}).get(m) or ModalityCounts(encoder=spec.name, encoder_id="", dim=spec.dim)
        for job in plan_jobs(catalog, items, spec, cache, tally, failure_sink(letters, tally), known_hashes or {}):
            row = rows.setdefault(job.item.id, {"item": job.item.model_dump_json()})
            row[f"{m.value}_hash"] = job.content_hash
            row[f"{m.value}_path"] = str(job.path) if job.path is not None else None
    columns = [f"{m.value}_{k}" for m in specs for k in ("hash", "path")]
    return [{c: row.get(c) for c in ("item", *columns)} for row in rows.values()]


@contextmanager
def connected(address: str | None):
    """Joined to the cluster at ``address``, or to a local one started here (and stopped after)."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "runner 'ray' needs Ray: pip install 'mmalign[ray]' (or runner 'local', the default)"
        ) from exc
    owned = not ray.is_initialized()
    if owned:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        if owned:
            ray.shutdown()


def encoded_on_ray(rows: list[dict], specs: dict, options: ExtractOptions, workers: int, batch_size: int):
    """The encode stage on the cluster: ``rows`` through a pool of ``workers`` :class:`EncodeActor` (each with
    the cluster's CPUs divided among them, or one GPU each when there are enough); encoded batches of
    ``batch_size`` rows, as pandas frames, as they finish."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = options.show_progress
    workers = max(1, workers)
    resources = ray.cluster_resources()
    gpus = 1.0 if resources.get("GPU", 0) >= workers else 0.0
    cpus = 1.0 if gpus else max(1.0, float(resources.get("CPU", 1)) // workers)
    dataset = ray.data.from_items(rows).map_batches(
        EncodeActor,
        fn_constructor_kwargs={"specs": specs, "options": options, "threads": int(cpus)},
        batch_size=ACTOR_BATCH,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus,
    )
    yield from dataset.iter_batches(batch_size=batch_size, batch_format="pandas")


def take_batch(batch, sinks: dict[Modality, CacheSink], letters: DeadLetterWriter, *, counts=None, stages=None):
    """An encoded batch into the feature cache (rows, flushed) and the dead letter (failures), counted per
    modality (``counts``) and timed per actor (``stages``: ``encode_<modality>``); returns its item ids."""
    ids = [json.loads(text)["id"] for text in batch["item"]]
    for text in batch["errors"]:
        for error in json.loads(text):
            stage = error.pop("stage")
            letters.write_error(ItemError(error.pop("item_id"), error.pop("reason"), **error), stage=stage)
            if counts is not None and error.get("modality"):
                counts[Modality(error["modality"])].failed += 1
    for m, sink in sinks.items():
        key = m.value
        for item_id, content_hash, row, note in zip(
            ids, batch[f"{key}_hash"], batch[f"{key}_row"], batch[f"{key}_note"]
        ):
            if row is not None and len(row):
                sink.add(item_id, content_hash, np.frombuffer(row, dtype=np.float32).copy(), json.loads(note))
                if counts is not None:
                    counts[m].encoded += 1
        sink.flush()  # ingest reads these rows back from the cache
        if stages is not None:
            timing = stages.setdefault(f"encode_{key}", StageTiming())
            timing.seconds += float(batch[f"{key}_seconds"].sum())
            timing.items += int(batch[f"{key}_hash"].notna().sum())
    return ids


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
