"""The generation a service answers with, and how it follows the collection's alias.

A :class:`Generation` is one loaded bundle with its searcher, recommender and query encoder. A
:class:`BundleFollower` holds the current one. When a re-embed moved the alias to another bundle, a
request waits while the new bundle is loaded (one reload at a time) and is answered with it; when
loading fails, requests are refused with 503 naming the bundle, never answered by the stale student.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from mmalign.connectors.errors import MmalignError
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.query_encoder import Encoded, QueryEncoder, Rejected
from mmalign.plugin.index.search import Searcher
from mmalign.plugin.serve.errors import ServiceError, public_message
from mmalign.plugin.serve.metrics import Metrics

log = logging.getLogger(__name__)
#: After a failed reload, requests are refused for this long before the next attempt.
RELOAD_RETRY_S = 5.0


class Stale(Exception):
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


class BundleFollower:
    """The current :class:`Generation` of one collection, reloaded when the alias serves another bundle."""

    def __init__(
        self,
        collection: str,
        store: VectorStore,
        build: Callable[[Any], Generation],
        *,
        metrics: Metrics,
        query_executor: Executor,
        reload_timeout_s: float,
        on_loaded: Callable[[], None] = lambda: None,
    ):
        self.collection = collection
        self.store = store
        self.build = build
        self.metrics = metrics
        self.query_executor = query_executor
        self.reload_timeout_s = reload_timeout_s
        self.on_loaded = on_loaded
        self.generation: Generation | None = None
        self._reload_task: asyncio.Task | None = None
        self._reload_failure: tuple[float, str, str | None] | None = None  # (when, message, bundle id)

    async def _in(self, executor: Executor | None, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def live_bundle(self) -> str | None:
        """The bundle id the collection's alias serves now."""
        record = self.store.collection_record(self.collection)
        if record is None:
            raise ServiceError(503, "collection_missing", f"collection {self.collection!r} does not exist (any more)")
        return record.bundle_id

    def cancel(self) -> None:
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_task.cancel()

    def reasons(self) -> list[str]:
        """Why the service is not ready, as far as the bundle is concerned."""
        return [self._reload_failure[1]] if self._reload_failure is not None else []

    def reload_soon(self) -> None:
        """Start a reload in the background (readiness saw another bundle), unless one is running."""
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.get_running_loop().create_task(self._do_reload())

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
            await asyncio.wait_for(asyncio.shield(task), self.reload_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(
                503,
                "reloading",
                f"collection {self.collection!r} was re-embedded; the new bundle is still loading",
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
            live = await self._in(None, self.live_bundle)
            if self.generation is not None and live == self.generation.bundle_id:
                self._reload_failure = None
                return
            log.warning(
                "collection %r now serves bundle %s (was %s): reloading",
                self.collection,
                live,
                self.generation.bundle_id if self.generation else None,
            )
            generation = await self._in(None, self.build, None)
            self.generation = generation
            self._reload_failure = None
            await self._in(None, self.on_loaded)
            self.metrics.reloads.inc("ok")
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; requests get a 503
            log.exception("reloading the bundle of %r failed", self.collection)
            self.metrics.reloads.inc("failed")
            if isinstance(exc, ServiceError):
                detail = exc.message
            elif isinstance(exc, MmalignError):
                detail = public_message(str(exc))
            else:
                detail = f"{type(exc).__name__}, see the service log"
            self._reload_failure = (
                time.monotonic(),
                f"collection {self.collection!r} now serves bundle {live!r}, which this service could not "
                f"load ({detail}); it refuses to answer with the previous bundle",
                live,
            )

    async def watch(self, interval_s: float) -> None:
        """Poll the alias every ``interval_s`` and reload as soon as it serves another bundle."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                generation = self.generation
                live = await self._in(self.query_executor, self.live_bundle)
                failure = self._reload_failure
                if failure is not None and time.monotonic() - failure[0] < RELOAD_RETRY_S:
                    continue
                if generation is not None and (live != generation.bundle_id or failure is not None):
                    await self.reload(generation)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - requests report it; keep watching
                log.debug("alias watch failed", exc_info=True)
