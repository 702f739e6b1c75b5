"""Micro-batching: concurrent requests' encodes, grouped per key (bundle generation, modality).

Each key has a queue and a collector task on the event loop; the batches run on the model executor (one
thread: one copy of each model, off the event loop). Batching is adaptive: a value that arrives while the
model is idle is encoded at once, alone (a lone request never waits for company); values that arrive while
the model is busy (with any key's batch) gather in their queue, up to ``max_batch``, and go as one batch the
moment the model is free. So the batch size follows the load, and no time is spent waiting for a window.
``max_wait_s > 0`` restores the fixed window of before (a batch waits that long for more values while it is
not full), for comparison. Each request gets its own result; when a whole batch fails, its items are
retried one at a time, so one request's bad input never fails its batch-mates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: ``run(key, values)`` -> one result per value; an ``Exception`` instance fails only that value's request.
RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass
class _Job:
    value: Any
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class BatcherClosed(RuntimeError):
    """The batcher was stopped while the request waited."""


class MicroBatcher:
    def __init__(
        self,
        run: RunBatch,
        executor: Executor,
        *,
        max_batch: int | Mapping[Hashable, int] = 32,
        max_wait_s: float = 0.0,
        on_batch: Callable[[Hashable, int, float, Sequence[float]], None] | None = None,
        on_retry: Callable[[Hashable], None] | None = None,
    ):
        """``max_wait_s``: 0 batches adaptively (module docstring); above 0, a fixed window.
        ``on_batch(key, size, run_seconds, queue_seconds_per_item)`` is called after each batch,
        ``on_retry(key)`` when a batch failed as a whole and is retried one value at a time."""
        sizes = max_batch.values() if isinstance(max_batch, Mapping) else [max_batch]
        if any(size < 1 for size in sizes):
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run = run
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self.on_batch = on_batch
        self.on_retry = on_retry
        self._queues: dict[Hashable, deque[_Job]] = {}
        self._wakeups: dict[Hashable, asyncio.Event] = {}
        self._tasks: dict[Hashable, asyncio.Task] = {}
        self._closed = False
        self._busy = 0  # batches on the model executor now (of every key)
        self._frees = 0  # how often the model went from busy to free

    def limit(self, key: Hashable) -> int:
        """Most values of ``key`` in one batch (a key missing from a mapping: 1)."""
        if isinstance(self.max_batch, Mapping):
            return int(self.max_batch.get(key, 1))
        return int(self.max_batch)

    async def submit(self, key: Hashable, value: Any) -> Any:
        """Queue ``value`` under ``key`` and wait for its own result (or its own exception)."""
        if self._closed:
            raise BatcherClosed("the service is shutting down")
        loop = asyncio.get_running_loop()
        if key not in self._tasks:
            self._queues[key] = deque()
            self._wakeups[key] = asyncio.Event()
            self._tasks[key] = loop.create_task(self._collect(key), name=f"batcher:{key}")
        job = _Job(value, loop.create_future())
        self._queues[key].append(job)
        self._wakeups[key].set()
        return await job.future

    async def _wait(self, key: Hashable, timeout: float | None) -> bool:
        event = self._wakeups[key]
        event.clear()
        try:
            if timeout is None:
                await event.wait()
            else:
                await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _collect(self, key: Hashable) -> None:
        queue = self._queues[key]
        loop = asyncio.get_running_loop()
        limit = self.limit(key)
        while True:
            while not queue:
                await self._wait(key, None)
            if limit > 1 and self.max_wait_s > 0:  # the fixed window
                deadline = loop.time() + self.max_wait_s
                while len(queue) < limit:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or not await self._wait(key, remaining):
                        break
            elif limit > 1:  # adaptive: gather only while the model is busy, until it frees once (no key starves)
                freed = self._frees
                while self._busy and len(queue) < limit and self._frees == freed:
                    await self._wait(key, None)
            batch = [queue.popleft() for _ in range(min(len(queue), limit))]
            batch = [job for job in batch if not job.future.done()]  # the client went away
            if batch:
                await self._run(key, batch)

    async def _run(self, key: Hashable, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        waits = [started - job.queued_at for job in batch]
        self._busy += 1
        try:
            results = await loop.run_in_executor(self.executor, self._run_isolated, key, [j.value for j in batch])
        except asyncio.CancelledError:  # closing: the batch's requests are told so
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(BatcherClosed("the service is shutting down"))
            raise
        except Exception as exc:  # the executor itself failed (shut down): every request gets it
            results = [exc] * len(batch)
        finally:
            self._busy -= 1
            if not self._busy:  # the model is free: every queue that gathered meanwhile goes now
                self._frees += 1
                for wakeup in self._wakeups.values():
                    wakeup.set()
            if self.on_batch is not None:
                self.on_batch(key, len(batch), time.perf_counter() - started, waits)
        for job, result in zip(batch, results):
            if job.future.done():
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _run_isolated(self, key: Hashable, values: list[Any]) -> list[Any]:
        """The batch as a whole; if it raises, each value alone, so only the failing ones fail."""
        try:
            results = list(self.run(key, values))
            if len(results) != len(values):
                raise RuntimeError(f"batch of {len(values)} returned {len(results)} results")
            return results
        except Exception as exc:
            if len(values) == 1:
                return [exc]
            log.info(
                "a batch of %d (%s) failed (%s: %s); retrying one at a time", len(values), key, type(exc).__name__, exc
            )
            if self.on_retry is not None:
                self.on_retry(key)
            out = []
            for value in values:
                try:
                    [result] = self.run(key, [value])
                except Exception as single:  # noqa: BLE001 - this request's own failure
                    result = single
                out.append(result)
            return out

    async def close(self) -> None:
        """Stop the collectors; queued requests fail with :class:`BatcherClosed`."""
        self._closed = True
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for queue in self._queues.values():
            while queue:
                job = queue.popleft()
                if not job.future.done():
                    job.future.set_exception(BatcherClosed("the service is shutting down"))
        self._tasks.clear()
