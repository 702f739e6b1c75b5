"""The query service without HTTP: micro-batched encodes, search, recommend, items, media, readiness.

It answers with the current :class:`~mmalign.plugin.serve.generations.Generation` (one loaded bundle),
which a :class:`~mmalign.plugin.serve.generations.BundleFollower` keeps in step with the collection's
alias, and checks before and after each store query that the alias still serves that bundle. Requests
are checked first (:mod:`.validation`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mmalign.connectors.errors import MediaError, StoreError
from mmalign.connectors.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from mmalign.connectors.paths import resolve_media_path
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.query_encoder import Encoded, Rejected
from mmalign.plugin.index.search import Searcher, search_query
from mmalign.plugin.serve.batcher import MicroBatcher
from mmalign.plugin.serve.config import ServeConfig, resolve_max_batch
from mmalign.plugin.serve.errors import ServiceError, bad_request, public_message
from mmalign.plugin.serve.generations import BundleFollower, Generation, Stale
from mmalign.plugin.serve.jobs import JobQueue
from mmalign.plugin.serve.metrics import Metrics
from mmalign.plugin.serve.uploads import remove_upload, save_upload
from mmalign.plugin.serve.validation import FilterKeys, RecommendQuery, RequestChecks, SearchQuery
from mmalign.plugin.serve.worker import ModelProcessError
from mmalign.schemas.vocabulary import ANONYMOUS_STRATEGIES

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
}


class Service:
    """Everything the HTTP layer calls. ``load()`` (blocking) before serving; ``close()`` at the end."""

    def __init__(
        self, config: ServeConfig, *, store: VectorStore | None = None, encoder_pool: dict | None = None
    ) -> None:
        self.config = config
        self._owns_store = store is None
        self.store = store if store is not None else VectorStore(config.store)
        self.metrics = Metrics()
        self.encoder_pool: dict = encoder_pool if encoder_pool is not None else {}
        self.model = None  # the ModelProcess, with config.model_process
        self._numbers = 0
        self._model_executor = ThreadPoolExecutor(1, thread_name_prefix="mmalign-model")
        self._decode_executor = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="mmalign-decode")
        self._query_executor = ThreadPoolExecutor(8, thread_name_prefix="mmalign-query")
        self.batcher = MicroBatcher(
            self._run_batch,
            self._model_executor,
            max_batch=resolve_max_batch(config) if config.batching else 1,
            max_wait_s=config.max_wait_ms / 1000 if config.batching else 0.0,
            on_batch=self._on_batch,
            on_retry=lambda key: self.metrics.batch_failures.inc(str(key)),
        )
        self.filter_keys = FilterKeys(self.store, config.collection)
        self.checks = RequestChecks(config, self.filter_keys)
        self.follower = BundleFollower(
            config.collection,
            self.store,
            self._build_generation,
            metrics=self.metrics,
            query_executor=self._query_executor,
            reload_timeout_s=config.reload_timeout_s,
            on_loaded=self.filter_keys.scan,
        )
        self.media_root = Path(config.media_root).resolve() if config.media_root else None
        self.jobs = JobQueue(
            self.store, config.jobs, read_roots=lambda: [self.media_root], model_process=config.model_process
        )

    # -- lifecycle ------------------------------------------------------------------------------------
    def load(self) -> Generation:
        """Load the bundle and encoders (blocking); raises an MmalignError the CLI prints as one line."""
        if self.config.model_process:
            from mmalign.plugin.serve.worker import ModelProcess

            self.model = ModelProcess(self.config.device, self.config.threads, self.config.runtime)
        elif self.config.threads is not None:
            import torch

            torch.set_num_threads(self.config.threads)
            os.environ.setdefault("MMALIGN_CT2_THREADS", str(self.config.threads))
            os.environ.setdefault("MMALIGN_ONNX_THREADS", str(self.config.threads))
        try:
            self.follower.generation = self._build_generation(self.config.bundle)
        except BaseException:
            self.close()
            raise
        self.filter_keys.scan()
        if self.media_root is None:
            recorded = self.generation.searcher.record.media_root
            if recorded and Path(recorded).is_dir():
                self.media_root = Path(recorded).resolve()
        self.jobs.start()  # resumes what a killed service left running
        return self.generation

    def _build_generation(self, bundle: str | Path | None) -> Generation:
        from mmalign.plugin.recommend.recommender import Recommender

        searcher = Searcher(
            self.config.collection,
            store=self.store,
            bundle=bundle,
            device=self.config.device,
            encoder_pool=self.encoder_pool,
            runtime=self.config.runtime,
        )
        recommender = Recommender(self.config.collection, store=self.store)
        self._numbers += 1
        if self.model is not None:
            self.model.load(str(searcher.bundle.path), searcher.bundle.bundle_id)
            generation = Generation(self._numbers, searcher, recommender, model=self.model)
        else:
            encoder = searcher.encoder
            encoder.load()
            if self.config.warm_up:
                encoder.warm_up()
            generation = Generation(self._numbers, searcher, recommender, encoder=encoder, decode=self._decode_executor)
        self.metrics.bundle.replace(self.config.collection, generation.bundle_id, value=1)
        log.info("serving %r with bundle %s", self.config.collection, generation.bundle_id)
        return generation

    async def watch(self, interval_s: float) -> None:
        """Poll the alias every ``interval_s`` and reload as soon as it serves another bundle."""
        await self.follower.watch(interval_s)

    async def aclose(self) -> None:
        await self.batcher.close()
        self.follower.cancel()
        self.close()

    def close(self) -> None:
        self.jobs.close()  # a running job stops after its chunk (it resumes at the next start)
        for executor in (self._model_executor, self._decode_executor, self._query_executor):
            executor.shutdown(wait=False, cancel_futures=True)
        if self.model is not None:
            self.model.close()
        if self._owns_store:
            self.store.close()

    # -- helpers ----------------------------------------------------------------------------------------
    async def _in(self, executor: Executor, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def _on_batch(self, key, size: int, seconds: float, waits: Sequence[float]) -> None:
        modality = str(key)
        self.metrics.batch_size.observe(size, modality)
        self.metrics.stage_seconds.observe(seconds, "encode", modality)
        for wait in waits:
            self.metrics.stage_seconds.observe(wait, "queue", modality)

    def _run_batch(self, key: str, values: Sequence[tuple[Generation, Any]]) -> list[Any]:
        """The model thread: values of one modality, grouped by the generation that asked (a reload
        between two requests can put two in one batch)."""
        results: list[Any] = [None] * len(values)
        groups: dict[int, list[int]] = {}
        for index, (generation, _) in enumerate(values):
            groups.setdefault(id(generation), []).append(index)
        for indices in groups.values():
            generation = values[indices[0]][0]
            out = generation.embed(key, [values[i][1] for i in indices])
            for i, result in zip(indices, out):
                results[i] = result
        return results

    def _live_bundle(self) -> str | None:
        return self.follower.live_bundle()

    async def current(self) -> Generation:
        return await self.follower.current()

    @property
    def generation(self) -> Generation | None:
        return self.follower.generation

    # -- search -----------------------------------------------------------------------------------------------
    def _check_items(self, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        found = {p.payload.get("item_id") for p in self.store.retrieve(self.config.collection, list(item_ids))}
        missing = [i for i in item_ids if i not in found]
        if missing:
            raise ServiceError(
                404, "unknown_item", f"item(s) {missing[:10]} are not in collection {self.config.collection!r}"
            )

    # -- search -----------------------------------------------------------------------------------------------
    async def search(self, query: SearchQuery) -> list[dict]:
        self.checks.check_search(query)
        for _ in range(3):
            generation = await self.current()
            vectors = await self._encode(generation, query)
            try:
                return await self._in(self._query_executor, self._search_sync, generation, query, vectors)
            except Stale:
                await self.follower.reload(generation)
        raise ServiceError(503, "reloading", "the collection changed during this request; retry it")

    async def _encode(self, generation: Generation, query: SearchQuery) -> list[Encoded]:
        """The query's texts and uploads encoded by the micro-batches, in the order text, image, audio."""
        wanted = {"text"} if query.text else set()
        wanted |= {u.modality for u in query.uploads}
        missing = sorted(wanted - set(generation.modalities))
        if missing:
            raise bad_request(
                f"the bundle of {self.config.collection!r} has no {missing[0]} encoder; it takes "
                f"{generation.modalities} (and like)",
                "unsupported_modality",
            )
        uploads = sorted(query.uploads, key=lambda u: u.modality != "image")  # images, then sounds
        paths: list[str] = []
        try:
            for upload in uploads:
                paths.append(await self._in(self._decode_executor, save_upload, upload))
            jobs = [("text", t, f"text[{i}]") for i, t in enumerate(query.text)]
            jobs += [(u.modality, p, f"{u.modality} {u.name!r}") for u, p in zip(uploads, paths)]
            results = await asyncio.gather(
                *(self.batcher.submit(m, (generation, v)) for m, v, _ in jobs), return_exceptions=True
            )
        finally:
            for path in paths:
                remove_upload(path)
        out: list[Encoded] = []
        for (_, value, name), result in zip(jobs, results):
            if isinstance(result, Rejected):
                detail = public_message(result.reason, [value, os.path.basename(str(value))])
                raise ServiceError(422, "bad_media", f"{name} {detail}")
            if isinstance(result, ModelProcessError):
                raise ServiceError(
                    503, "model_unavailable", "the model process failed; retry", headers={"Retry-After": "2"}
                ) from result
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out

    def _search_sync(self, generation: Generation, query: SearchQuery, encoded: list[Encoded]):
        started = time.perf_counter()
        self._check_items(query.like)
        modality = {"text": [], "image": [], "audio": []}
        for upload in query.uploads:
            modality[upload.modality].append(upload.name)
        request = search_query(
            text=query.text,
            image=modality["image"],
            audio=modality["audio"],
            like=query.like,
            using=query.using,
            k=query.k,
            filters=query.filters,
            fusion=query.fusion,
            mode=query.mode,
        )
        try:
            hits = generation.searcher.run(request, encoded).hits
        except StoreError:
            live = self._live_bundle()
            if live != generation.bundle_id:
                raise Stale(live) from None
            raise
        live = self._live_bundle()  # the alias may have moved while the query ran
        if live != generation.bundle_id:
            raise Stale(live)
        self.metrics.stage_seconds.observe(time.perf_counter() - started, "query", "")
        return [hit.model_dump(mode="json") for hit in hits]

    # -- recommend --------------------------------------------------------------------------------------------
    async def recommend(self, query: RecommendQuery) -> list[dict]:
        self.checks.check_recommend(query)
        generation = await self.current()
        return await self._in(self._query_executor, self._recommend_sync, generation, query)

    def _recommend_sync(self, generation: Generation, query: RecommendQuery) -> list[dict]:
        started = time.perf_counter()
        recommender = generation.recommender
        if query.user_id is not None:
            live = self._live_bundle()
            users = (
                self.store.collection_record(recommender.users)
                if self.store.collection_exists(recommender.users)
                else None
            )
            if users is not None and users.bundle_id != live:
                raise ServiceError(
                    409,
                    "stale_user_vectors",
                    f"the user vectors were built for bundle {users.bundle_id!r}, but {self.config.collection!r} "
                    f"now serves {live!r}: rebuild them (mmalign recommend --interactions FILE)",
                )
            profile = recommender.get_profile(query.user_id)
            if (profile is None or profile.n_positive == 0) and not recommender.popularity:
                raise ServiceError(
                    404,
                    "unknown_user",
                    f"user {query.user_id!r} has no history, and no popularity is known for a cold start",
                )
            hits = recommender.recommend(
                query.user_id,
                k=query.k,
                filters=query.filters,
                exclude_seen=not query.include_seen,
                strategy=query.strategy or "vector",
            )
        else:
            self._check_items([*query.liked, *query.disliked])
            strategy = query.strategy if query.strategy in ANONYMOUS_STRATEGIES else "average_vector"
            hits = recommender.more_like(
                query.liked,
                k=query.k,
                negative=query.disliked,
                filters=query.filters,
                strategy=strategy,
                exclude_seen=not query.include_seen,
            )
        self.metrics.stage_seconds.observe(time.perf_counter() - started, "query", "")
        return [hit.model_dump(mode="json") for hit in hits]

    # -- items, media, collections ------------------------------------------------------------------------------
    async def item(self, item_id: str) -> dict:
        return await self._in(self._query_executor, self._item_sync, item_id)

    def _item_sync(self, item_id: str) -> dict:
        points = self.store.retrieve(self.config.collection, [item_id])
        if not points:
            raise ServiceError(404, "unknown_item", f"item {item_id!r} is not in collection {self.config.collection!r}")
        return {"id": item_id, "payload": points[0].payload or {}}

    async def media(self, modality: str, item_id: str) -> tuple[Path, str]:
        return await self._in(self._query_executor, self._media_sync, modality, item_id)

    def _media_sync(self, modality: str, item_id: str) -> tuple[Path, str]:
        if modality not in ("image", "audio"):
            raise ServiceError(404, "not_found", f"no media kind {modality!r}; kinds: ['image', 'audio']")
        if self.media_root is None:
            raise ServiceError(404, "media_off", "media is not served: start the service with --media-root")
        payload = self._item_sync(item_id)["payload"]
        ref = payload.get(modality)
        if not ref:
            raise ServiceError(404, "no_media", f"item {item_id!r} has no {modality}")
        try:
            path = resolve_media_path(ref, self.media_root, item_id=item_id, modality=modality)
        except MediaError as exc:
            log.warning("refused media of %r: %s", item_id, exc)
            raise ServiceError(404, "no_media", f"the {modality} of item {item_id!r} is not available") from None
        suffix = path.suffix.lower()
        allowed = IMAGE_SUFFIXES if modality == "image" else AUDIO_SUFFIXES
        if suffix not in allowed or suffix not in MEDIA_TYPES:
            raise ServiceError(404, "no_media", f"the {modality} of item {item_id!r} is not available")
        return path, MEDIA_TYPES[suffix]

    async def collections(self) -> list[dict]:
        return await self._in(self._query_executor, self._collections_sync)

    def _collections_sync(self) -> list[dict]:
        from mmalign.plugin.index.versions import version_table
        from mmalign.plugin.recommend.recommender import users_collection_name

        name = self.config.collection
        record = self.store.collection_record(name)
        if record is None:
            raise ServiceError(503, "collection_missing", f"collection {name!r} does not exist (any more)")
        target = self.store.resolve_alias(name)
        generation = self.generation
        users_name = users_collection_name(name)
        users = None
        if self.store.collection_exists(users_name):
            users_record = self.store.collection_record(users_name)
            users = {"name": users_name, "points": self.store.count(users_name), "bundle_id": users_record.bundle_id}
        return [
            {
                "name": name,
                "alias_of": target,
                "bundle_id": record.bundle_id,
                "served_bundle_id": generation.bundle_id if generation else None,
                "dim": record.dim,
                "points": self.store.count(name),
                "modalities": generation.modalities if generation else [],
                "versions": [v.model_dump(mode="json") for v in version_table(self.store, name)] if target else [],
                "users": users,
                "filters": self.filter_keys.choices(),
                "media": self.media_root is not None,
                "k_max": self.config.k_max,
                "engine": self.store.engine,
            }
        ]

    # -- readiness ------------------------------------------------------------------------------------------------
    async def readiness(self) -> tuple[bool, dict]:
        reasons = []
        generation = self.generation
        live = None
        if generation is None:
            reasons.append("the models are not loaded")
        try:
            live = await asyncio.wait_for(self._in(self._query_executor, self._live_bundle), 5.0)
        except ServiceError as exc:
            reasons.append(exc.message)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            reasons.append(f"the store is not reachable ({type(exc).__name__})")
        if generation is not None and live is not None and live != generation.bundle_id:
            reasons.append(f"the collection now serves bundle {live!r}; loading it")
            self.follower.reload_soon()
        reasons += self.follower.reasons()
        body = {
            "ready": not reasons,
            "collection": self.config.collection,
            "bundle_id": generation.bundle_id if generation else None,
            "modalities": generation.modalities if generation else [],
            "batching": {
                "on": self.config.batching,
                "max_batch": self.batcher.max_batch,
                "max_wait_ms": self.batcher.max_wait_s * 1000,
            },
            "pid": os.getpid(),
        }
        if reasons:
            body["reasons"] = reasons
        return not reasons, body
