"""The adaptive micro-batcher: a lone request is encoded at once; what arrives while the model is busy gathers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from mmalign.plugin.serve.batcher import MicroBatcher


class _GatedModel:
    """A model whose first batch blocks until released, recording every batch it runs."""

    def __init__(self):
        self.batches: list[tuple[str, list]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, key, values):
        self.batches.append((key, list(values)))
        if len(self.batches) == 1:
            self.started.set()
            self.release.wait(5)
        return [f"{key}:{v}" for v in values]


async def _started(model: _GatedModel) -> bool:
    return await asyncio.get_running_loop().run_in_executor(None, model.started.wait, 5)


def test_a_lone_request_is_encoded_at_once_and_later_ones_gather_while_the_model_is_busy():
    model = _GatedModel()

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(model, executor, max_batch=8)
            first = asyncio.ensure_future(batcher.submit("text", 0))
            # the first batch starts with nothing else queued: no window is waited for company
            assert await _started(model)
            rest = [asyncio.ensure_future(batcher.submit("text", i)) for i in range(1, 6)]
            await asyncio.sleep(0.01)
            model.release.set()
            out = await asyncio.gather(first, *rest)
            await batcher.close()
            return out

    assert asyncio.run(main()) == [f"text:{i}" for i in range(6)]
    assert model.batches == [("text", [0]), ("text", [1, 2, 3, 4, 5])]


def test_every_modality_that_gathered_while_the_model_was_busy_goes_when_it_frees():
    model = _GatedModel()

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(model, executor, max_batch={"text": 2, "image": 8})
            first = asyncio.ensure_future(batcher.submit("text", 0))
            assert await _started(model)
            later = [asyncio.ensure_future(batcher.submit(k, i)) for k in ("image", "text") for i in range(3)]
            await asyncio.sleep(0.01)
            model.release.set()
            await asyncio.gather(first, *later)
            await batcher.close()

    asyncio.run(main())
    assert model.batches[0] == ("text", [0])
    rest = sorted(model.batches[1:])
    # image gathered all three while busy; text is capped at 2 a batch, so its third value goes next
    assert rest == [("image", [0, 1, 2]), ("text", [0, 1]), ("text", [2])]


def test_a_fixed_window_still_groups_values_that_arrive_within_it():
    sizes = []

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(
                lambda k, vs: sizes.append(len(vs)) or list(vs), executor, max_batch=8, max_wait_s=0.2
            )
            first = asyncio.ensure_future(batcher.submit("t", 0))
            await asyncio.sleep(0.02)  # well inside the window
            out = await asyncio.gather(first, *(batcher.submit("t", i) for i in range(1, 4)))
            await batcher.close()
            return out

    assert asyncio.run(main()) == [0, 1, 2, 3] and sizes == [4]
