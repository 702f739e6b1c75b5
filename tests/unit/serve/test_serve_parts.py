"""The service's parts without HTTP: the micro-batcher, upload sniffing, path-free messages, metrics text."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mmalign.plugin.serve.batcher import BatcherClosed, MicroBatcher
from mmalign.plugin.serve.errors import ServiceError, public_message
from mmalign.plugin.serve.metrics import Metrics
from mmalign.plugin.serve.uploads import Upload, check_kind, decode_base64, sniff


def _run(coro):
    return asyncio.run(coro)


def test_batcher_groups_concurrent_submits_and_answers_each():
    batches = []

    def run(key, values):
        batches.append((key, list(values)))
        return [f"{key}:{v * 2}" for v in values]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch=4, max_wait_s=0.05)
            results = await asyncio.gather(*(batcher.submit("text", i) for i in range(10)), batcher.submit("image", 7))
            await batcher.close()
            return results

    results = _run(main())
    assert results == [f"text:{i * 2}" for i in range(10)] + ["image:14"]
    sizes = [len(values) for key, values in batches if key == "text"]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) == 3  # 4 + 4 + 2
    assert all(len(set(type(v) for v in values)) == 1 for _, values in batches)


def test_batcher_off_runs_one_at_a_time():
    sizes = []

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(lambda k, vs: sizes.append(len(vs)) or list(vs), executor, max_batch=1)
            out = await asyncio.gather(*(batcher.submit("t", i) for i in range(5)))
            await batcher.close()
            return out

    assert _run(main()) == [0, 1, 2, 3, 4] and sizes == [1] * 5


def test_batch_size_per_modality():
    sizes: dict[str, list[int]] = {}

    def run(key, values):
        sizes.setdefault(key, []).append(len(values))
        return list(values)

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch={"text": 3, "image": 2}, max_wait_s=0.05)
            jobs = [batcher.submit(m, i) for m in ("text", "image", "audio") for i in range(6)]
            await asyncio.gather(*jobs)
            await batcher.close()

    _run(main())
    assert sizes == {"text": [3, 3], "image": [2, 2, 2], "audio": [1] * 6}  # a modality not named: 1


def test_serve_config_max_batch():
    from mmalign.plugin.serve.config import CPU_MAX_BATCH, ServeConfig, resolve_max_batch

    assert resolve_max_batch(ServeConfig(collection="c", device="cpu")) == CPU_MAX_BATCH
    assert resolve_max_batch(ServeConfig(collection="c", device="cpu", max_batch=4)) == {
        "text": 4,
        "image": 4,
        "audio": 4,
    }
    assert resolve_max_batch(ServeConfig(collection="c", device="cpu", max_batch={"image": 2})) == {
        **CPU_MAX_BATCH,
        "image": 2,
    }
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        ServeConfig(collection="c", max_batch={"video": 2})
    with pytest.raises(ValueError, match=">= 1"):
        ServeConfig(collection="c", max_batch={"text": 0})


def test_a_failing_value_fails_only_its_own_request():
    calls, retried = [], []

    def run(key, values):
        calls.append(list(values))
        if "bad" in values:
            raise RuntimeError("encoder exploded")
        return [v.upper() if v != "nan" else ServiceError(422, "bad_media", "non-finite") for v in values]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch=8, max_wait_s=0.05, on_retry=retried.append)
            out = await asyncio.gather(
                *(batcher.submit("text", v) for v in ["a", "bad", "b", "nan", "c"]), return_exceptions=True
            )
            await batcher.close()
            return out

    a, bad, b, nan, c = _run(main())
    assert (a, b, c) == ("A", "B", "C")
    assert isinstance(bad, RuntimeError) and isinstance(nan, ServiceError) and nan.status == 422
    assert calls[0] == ["a", "bad", "b", "nan", "c"] and retried == ["text"]  # one batch, then one by one


def test_closed_batcher_refuses_and_fails_waiting_requests():
    release = threading.Event()

    def slow(key, values):
        release.wait(5)
        return list(values)

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(slow, executor, max_batch=1)
            first = asyncio.ensure_future(batcher.submit("t", 1))
            queued = asyncio.ensure_future(batcher.submit("t", 2))
            await asyncio.sleep(0.05)
            await batcher.close()
            release.set()
            with pytest.raises(BatcherClosed):
                await batcher.submit("t", 3)
            return await asyncio.gather(first, queued, return_exceptions=True)

    results = _run(main())
    assert any(isinstance(r, BatcherClosed) for r in results)


@pytest.mark.parametrize(
    "data,suffix",
    [
        (b"\x89PNG\r\n\x1a\n....", ".png"),
        (b"\xff\xd8\xff\xe0....", ".jpg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ".webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", ".wav"),
        (b"OggS\x00\x02", ".ogg"),
        (b"fLaC\x00\x00", ".flac"),
        (b"ID3\x04\x00", ".mp3"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', ".svg"),
        (b"\xef\xbb\xbf  <svg width='2'></svg>", ".svg"),
        (b"<html><body>no</body></html>", None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff_reads_the_content_not_the_name(data, suffix):
    assert sniff(data) == suffix


def test_check_kind_and_base64():
    assert check_kind(Upload("image", b"\x89PNG\r\n\x1a\nxxxx", "a.wav")) == ".png"
    with pytest.raises(ServiceError) as wrong:
        check_kind(Upload("audio", b"\x89PNG\r\n\x1a\nxxxx", "a.wav"))
    assert wrong.value.status == 415 and "is an image (PNG)" in wrong.value.message
    with pytest.raises(ServiceError) as empty:
        check_kind(Upload("image", b"", "x"))
    assert empty.value.status == 415
    assert decode_base64("data:image/png;base64,aGVsbG8=", "image", 0).data == b"hello"
    assert decode_base64("aGVs\nbG8=", "image", 0).data == b"hello"
    with pytest.raises(ServiceError):
        decode_base64("***", "image", 0)


def test_public_message_drops_paths():
    message = "cannot decode image: cannot identify image file '/tmp/mmalign-query-x1.png' (looked at /var/lib/x/y.png)"
    clean = public_message(message, ["/tmp/mmalign-query-x1.png"])
    assert "/tmp" not in clean and "/var" not in clean and "'<upload>'" in clean
    assert public_message("bundle folder 'C:\\data\\b' is gone") == "bundle folder '<path>' is gone"
    kept = "item 'animals/birds/owl' has no image; valid: text/image, http://x/y"
    assert public_message(kept) == kept


def test_metrics_render_prometheus_text():
    metrics = Metrics()
    metrics.requests.inc("/v1/search", "POST", "200")
    metrics.batch_size.observe(3, "text")
    metrics.batch_size.observe(5, "text")
    metrics.bundle.replace("items", "abc", value=1)
    metrics.bundle.replace("items", "def", value=1)
    text = metrics.render()
    assert 'mmalign_http_requests_total{route="/v1/search",method="POST",status="200"} 1' in text
    assert 'mmalign_batch_size_bucket{modality="text",le="4"} 1' in text
    assert 'mmalign_batch_size_bucket{modality="text",le="+Inf"} 2' in text
    assert metrics.mean_batch_size("text") == 4.0
    assert 'bundle_id="def"' in text and 'bundle_id="abc"' not in text


def test_the_service_socket_sends_small_writes_at_once():
    """TCP_NODELAY on the listening socket, and a proto that says TCP (asyncio sets TCP_NODELAY only on such
    sockets): without it a response written as headers, then body, waited for the client's delayed ACK, 40 ms
    on every request (benchmarks/serve.py's overhead table)."""
    import socket

    from mmalign.plugin.serve.server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()
