"""The query service without HTTP: validation, micro-batched encodes, search, recommend, items, media.

A :class:`Generation` is one loaded bundle with its searcher, recommender and query encoders. The
service answers with the current generation and checks, before and after each store query, that the
alias still serves that bundle. When a re-embed moved the alias to another bundle, the request waits
while the new bundle is loaded (one reload at a time) and is answered with it; when loading fails,
requests are refused with 503 naming the bundle, never answered by the stale student.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmalign.connectors.errors import MediaError, MmalignError, StoreError
from mmalign.connectors.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from mmalign.connectors.paths import resolve_media_path
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.payload import RESERVED_PAYLOAD
from mmalign.plugin.index.query_encoder import Encoded, QueryEncoder, Rejected
from mmalign.plugin.index.search import Searcher, search_query
from mmalign.plugin.serve.batcher import MicroBatcher
from mmalign.plugin.serve.config import ServeConfig, resolve_max_batch
from mmalign.plugin.serve.errors import ServiceError, bad_request, public_message
from mmalign.plugin.serve.metrics import Metrics
from mmalign.plugin.serve.uploads import Upload, remove_upload, save_upload
from mmalign.plugin.serve.worker import ModelProcessError
from mmalign.schemas.vocabulary import ANONYMOUS_STRATEGIES, RECOMMEND_STRATEGIES, SEARCH_FUSIONS, SEARCH_TARGETS

log = logging.getLogger(__name__)

#: Payload fields a filter may name directly (``metadata`` itself is a container, not a value).
FILTER_FIELDS = tuple(f for f in RESERVED_PAYLOAD if f != "metadata")
#: Points sampled for the metadata keys that filters may use (and their values, for the page).
FILTER_SAMPLE = 4096
#: A metadata key with at most this many distinct values is offered as a choice on the page.
FILTER_CHOICES = 60
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
#: After a failed reload, requests are refused for this long before the next attempt.
RELOAD_RETRY_S = 5.0


@dataclass
class SearchQuery:
    """One search request as the HTTP layer parsed it from JSON or multipart (uploads not yet saved); it
    becomes the library's :class:`~mmalign.schemas.query.SearchQuery` once its uploads are files."""

    text: list[str] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    like: list[str] = field(default_factory=list)
    using: str = "fused"
    k: int = 10
    filters: dict[str, Any] = field(default_factory=dict)
    fusion: str = "rrf"


@dataclass
class RecommendQuery:
    user_id: str | None = None
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    k: int = 10
    filters: dict[str, Any] = field(default_factory=dict)
    include_seen: bool = False
    strategy: str | None = None


class _Stale(Exception):
    """The alias now serves another bundle than the generation that answered."""

    def __init__(self, live_bundle: str | None):
        super().__init__(live_bundle)
        self.live_bundle = live_bundle


class Generation:
    """One loaded bundle: its searcher and recommender (HTTP process) and its query encoder, either here
    (``encoder``) or in the model process (``model``)."""

    def __init__(
        self,
        number: int,
        searcher: Searcher,
        recommender,
        *,
        encoder: QueryEncoder | None = None,
        model=None,
        decode: Executor | None = None,
    ):
        self.number = number
        self.searcher = searcher
        self.recommender = recommender
        self.bundle = searcher.bundle
        self.encoder = encoder
        self.model = model
        self.decode = decode
        self.loaded_at = time.time()

    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id

    @property
    def modalities(self) -> list[str]:
        return [m.value for m in self.bundle.modalities]

    def embed(self, modality: str, values: Sequence[Any]) -> list[Encoded | Rejected]:
        """Texts or media file paths -> one result each; raises if the whole batch fails."""
        if self.model is not None:
            return self.model.embed(self.bundle_id, modality, list(values))
        return self.encoder.embed_batch(modality, values, self.decode)


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
        self.generation: Generation | None = None
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
        self._reload_task: asyncio.Task | None = None
        self._reload_failure: tuple[float, str, str | None] | None = None  # (when, message, bundle id)
        self._filter_values: dict[str, list] = {}
        self._filter_keys: set[str] = set()
        self._filters_scanned_at = 0.0
        self._filters_lock = threading.Lock()
        self.media_root = Path(config.media_root).resolve() if config.media_root else None

    # -- lifecycle ------------------------------------------------------------------------------------
    def load(self) -> Generation:
        """Load the bundle and encoders (blocking); raises an MmalignError the CLI prints as one line."""
        if self.config.model_process:
            from mmalign.plugin.serve.worker import ModelProcess

            self.model = ModelProcess(self.config.device, self.config.threads)
        elif self.config.threads is not None:
            import torch

            torch.set_num_threads(self.config.threads)
            os.environ.setdefault("MMALIGN_CT2_THREADS", str(self.config.threads))
        try:
            self.generation = self._build_generation(self.config.bundle)
        except BaseException:
            self.close()
            raise
        self._scan_filters()
        if self.media_root is None:
            recorded = self.generation.searcher.record.extra.get("media_root")
            if recorded and Path(recorded).is_dir():
                self.media_root = Path(recorded).resolve()
        return self.generation

    def _build_generation(self, bundle: str | Path | None) -> Generation:
        from mmalign.plugin.recommend.recommender import Recommender

        searcher = Searcher(
            self.config.collection,
            store=self.store,
            bundle=bundle,
            device=self.config.device,
            encoder_pool=self.encoder_pool,
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

    async def aclose(self) -> None:
        await self.batcher.close()
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_task.cancel()
        self.close()

    def close(self) -> None:
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
        record = self.store.collection_record(self.config.collection)
        if record is None:
            raise ServiceError(
                503, "collection_missing", f"collection {self.config.collection!r} does not exist (any more)"
            )
        return record.bundle_id

    # -- the bundle follows the alias -------------------------------------------------------------------
    async def current(self) -> Generation:
        """The generation to answer with; waits for a reload in progress."""
        task = self._reload_task
        if task is not None and not task.done():
            await self._await_reload(task)
        if self._reload_failure is not None:
            when, message, bundle_id = self._reload_failure
            if time.monotonic() - when < RELOAD_RETRY_S:
                raise ServiceError(503, "stale_bundle", message, headers={"Retry-After": str(int(RELOAD_RETRY_S))})
            await self.reload(self.generation)
        if self.generation is None:
            raise ServiceError(503, "not_ready", "the models are not loaded yet", headers={"Retry-After": "5"})
        return self.generation

    async def _await_reload(self, task: asyncio.Task) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(task), self.config.reload_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(
                503,
                "reloading",
                f"collection {self.config.collection!r} was re-embedded; the new bundle is still loading",
                headers={"Retry-After": "5"},
            ) from None

    async def reload(self, seen: Generation | None) -> None:
        """Load the bundle the alias now serves (one reload at a time); raises 503 if that fails."""
        if self.generation is not seen and self._reload_failure is None:
            return  # another request reloaded already
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.get_running_loop().create_task(self._do_reload())
        await self._await_reload(self._reload_task)
        if self._reload_failure is not None:
            raise ServiceError(
                503, "stale_bundle", self._reload_failure[1], headers={"Retry-After": str(int(RELOAD_RETRY_S))}
            )

    async def _do_reload(self) -> None:
        live = None
        try:
            live = await self._in(None, self._live_bundle)
            if self.generation is not None and live == self.generation.bundle_id:
                self._reload_failure = None
                return
            log.warning(
                "collection %r now serves bundle %s (was %s): reloading",
                self.config.collection,
                live,
                self.generation.bundle_id if self.generation else None,
            )
            generation = await self._in(None, self._build_generation, None)
            self.generation = generation
            self._reload_failure = None
            await self._in(None, self._scan_filters)
            self.metrics.reloads.inc("ok")
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; requests get a 503
            log.exception("reloading the bundle of %r failed", self.config.collection)
            self.metrics.reloads.inc("failed")
            if isinstance(exc, ServiceError):
                detail = exc.message
            elif isinstance(exc, MmalignError):
                detail = public_message(str(exc))
            else:
                detail = f"{type(exc).__name__}, see the service log"
            self._reload_failure = (
                time.monotonic(),
                f"collection {self.config.collection!r} now serves bundle {live!r}, which this service could not "
                f"load ({detail}); it refuses to answer with the previous bundle",
                live,
            )

    async def watch(self, interval_s: float) -> None:
        """Poll the alias every ``interval_s`` and reload as soon as it serves another bundle."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                generation = self.generation
                live = await self._in(self._query_executor, self._live_bundle)
                failure = self._reload_failure
                if failure is not None and time.monotonic() - failure[0] < RELOAD_RETRY_S:
                    continue
                if generation is not None and (live != generation.bundle_id or failure is not None):
                    await self.reload(generation)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - requests report it; keep watching
                log.debug("alias watch failed", exc_info=True)

    # -- filters ------------------------------------------------------------------------------------------
    def _scan_filters(self) -> None:
        """Metadata keys (and the values of keys with few of them) in a sample of the points."""
        values: dict[str, set] = {}
        seen = 0
        for page in self.store.scroll_pages(self.config.collection, with_payload=["metadata"], page_size=1024):
            for point in page:
                metadata = (point.payload or {}).get("metadata") or {}
                if isinstance(metadata, dict):
                    for key, value in metadata.items():
                        bucket = values.setdefault(key, set())
                        if len(bucket) <= FILTER_CHOICES:
                            for v in value if isinstance(value, list) else [value]:
                                if isinstance(v, (str, int, bool)):
                                    bucket.add(v)
            seen += len(page)
            if seen >= FILTER_SAMPLE:
                break
        with self._filters_lock:
            self._filter_keys = set(values)
            self._filter_values = {k: sorted(vs, key=str) for k, vs in values.items() if 0 < len(vs) <= FILTER_CHOICES}
            self._filters_scanned_at = time.monotonic()

    def filter_choices(self) -> dict[str, list]:
        with self._filters_lock:
            return {k: list(v) for k, v in sorted(self._filter_values.items())}

    def check_filters(self, filters: Any) -> dict[str, Any]:
        if filters is None:
            return {}
        if not isinstance(filters, Mapping):
            raise bad_request('filters must be an object {"key": value or [values]}')
        out = {}
        for key, value in filters.items():
            if not isinstance(key, str) or not key:
                raise bad_request("filter keys must be non-empty strings")
            bare = key.removeprefix("metadata.")
            with self._filters_lock:
                known = key in FILTER_FIELDS or bare in self._filter_keys
                stale = time.monotonic() - self._filters_scanned_at > 30
            if not known and stale:
                self._scan_filters()
                with self._filters_lock:
                    known = bare in self._filter_keys
            if not known:
                with self._filters_lock:
                    valid = sorted(self._filter_keys)[:40]
                raise bad_request(
                    f"unknown filter key {key!r}; metadata keys of {self.config.collection!r}: {valid} "
                    f"(or a payload field: {list(FILTER_FIELDS)})",
                    "unknown_filter",
                )
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, (str, int, bool)) and not isinstance(v, float) for v in values):
                raise bad_request(f"filter {key!r} takes a string, integer or boolean, or a non-empty list of them")
            out[key] = values
        return out

    # -- validation -----------------------------------------------------------------------------------------
    def check_k(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.k_max:
            raise bad_request(f"k must be a whole number from 1 to {self.config.k_max}, got {k!r}", "bad_k")
        return k

    def check_search(self, query: SearchQuery) -> None:
        if query.using not in SEARCH_TARGETS:
            raise bad_request(f"using {query.using!r} is not a vector name; valid: {list(SEARCH_TARGETS)}", "bad_using")
        if query.fusion not in SEARCH_FUSIONS:
            raise bad_request(f"fusion {query.fusion!r} is unknown; valid: {list(SEARCH_FUSIONS)}", "bad_fusion")
        self.check_k(query.k)
        inputs = len(query.text) + len(query.uploads) + len(query.like)
        if inputs == 0:
            raise bad_request("give at least one query: text, image, audio or like", "no_query")
        if inputs > self.config.max_inputs:
            raise bad_request(f"at most {self.config.max_inputs} query inputs per request, got {inputs}")
        for i, text in enumerate(query.text):
            if not isinstance(text, str) or not text.strip():
                raise bad_request(f"text[{i}] is empty")
            if len(text) > self.config.max_text_chars:
                raise bad_request(f"text[{i}] has {len(text)} characters; the limit is {self.config.max_text_chars}")
        for i, item in enumerate(query.like):
            if not isinstance(item, str) or not item:
                raise bad_request(f"like[{i}] must be a non-empty item id")
        query.filters = self.check_filters(query.filters)

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
        self.check_search(query)
        for _ in range(3):
            generation = await self.current()
            vectors = await self._encode(generation, query)
            try:
                return await self._in(self._query_executor, self._search_sync, generation, query, vectors)
            except _Stale:
                await self.reload(generation)
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
        )
        try:
            hits = generation.searcher.run(request, encoded).hits
        except StoreError:
            live = self._live_bundle()
            if live != generation.bundle_id:
                raise _Stale(live) from None
            raise
        live = self._live_bundle()  # the alias may have moved while the query ran
        if live != generation.bundle_id:
            raise _Stale(live)
        self.metrics.stage_seconds.observe(time.perf_counter() - started, "query", "")
        return [hit.model_dump(mode="json") for hit in hits]

    # -- recommend --------------------------------------------------------------------------------------------
    def check_recommend(self, query: RecommendQuery) -> None:
        self.check_k(query.k)
        if query.strategy is not None and query.strategy not in RECOMMEND_STRATEGIES:
            raise bad_request(
                f"strategy {query.strategy!r} is unknown; valid: {list(RECOMMEND_STRATEGIES)}", "bad_strategy"
            )
        if query.user_id is not None and (query.liked or query.disliked):
            raise bad_request("give either user_id, or liked/disliked item ids (an anonymous session), not both")
        if query.user_id is None and not query.liked:
            raise bad_request("give a user_id, or at least one liked item id", "no_query")
        if query.user_id is not None and not query.user_id.strip():
            raise bad_request("user_id is empty")
        if len(query.liked) + len(query.disliked) > 1000:
            raise bad_request("at most 1000 liked + disliked item ids")
        query.filters = self.check_filters(query.filters)

    async def recommend(self, query: RecommendQuery) -> list[dict]:
        self.check_recommend(query)
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
                "filters": self.filter_choices(),
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
            if self._reload_task is None or self._reload_task.done():
                self._reload_task = asyncio.get_running_loop().create_task(self._do_reload())
        if self._reload_failure is not None:
            reasons.append(self._reload_failure[1])
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
