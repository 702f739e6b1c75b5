"""`mmalign serve` under load: throughput and latency per query modality, micro-batching on and off.

    python -m benchmarks.serve [--data-dir mmalign-data] [--clients 8,32] [--requests 320] [--seconds 25]

Needs the quickstart collection (``mmalign quickstart --data-dir mmalign-data``) and the serve extra.

1. Starts ``mmalign serve`` on the quickstart collection (a subprocess, 127.0.0.1 only), first with
   micro-batching on, then with ``--no-batching`` (each query encoded alone on the same single model
   thread). For each query modality (text, image, audio) and each client count, N concurrent clients
   send at most ``--requests`` queries (``k=10``) or for at most ``--seconds``, whichever ends first.
   Queries are the catalog's own texts, PNG stamps (uploaded as multipart files) and sounds.
   Reported: requests/s, p50/p99 latency, errors, and the mean batch size read from ``/metrics``.
2. The service's overhead over the in-process ``Searcher`` for the same queries, one at a time: the
   service runs in this process on the same store and the same loaded encoders, and each query goes
   to ``Searcher.search`` and then over HTTP (one client, batching on, so the batch wait counts);
   reported: both p50 and the difference.

The load generator (httpx, asyncio) runs on the same machine and takes CPU from the service, in
both modes alike. Numbers hold for the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODALITIES = ("text", "image", "audio")
K = 10


@dataclass
class Cell:
    modality: str
    clients: int
    batching: bool
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_batch: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def load_queries(data_dir: Path, per_modality: int = 64) -> dict[str, list]:
    """Texts, PNG files and sounds of the quickstart catalog (spread over the catalog)."""
    from mmalign.connectors.datasets.tuxpaint import find_stamps_dir

    catalog = data_dir / "quickstart" / "tuxpaint.jsonl"
    if not catalog.is_file():
        raise SystemExit(f"{catalog} is missing: run `mmalign quickstart --data-dir {data_dir}` first")
    root = find_stamps_dir()
    items = [json.loads(line) for line in catalog.read_text().splitlines() if line.strip()]
    texts = [i["text"] for i in items if i.get("text")]
    images = [root / i["image"] for i in items if str(i.get("image", "")).endswith(".png")]
    sounds = [root / i["audio"] for i in items if i.get("audio")]

    def spread(values):
        step = max(1, len(values) // per_modality)
        return values[::step][:per_modality]

    return {"text": spread(texts), "image": spread(images), "audio": spread(sounds)}


def request_for(modality: str, value, blobs: dict) -> dict:
    if modality == "text":
        return {"json": {"text": value, "k": K}}
    data = blobs[value]
    return {"files": {modality: (Path(value).name, data)}, "data": {"k": str(K)}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    def __init__(self, data_dir: Path, collection: str, batching: bool, max_batch: int, max_wait_ms: float):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "mmalign.plugin",
            "serve",
            "--collection",
            collection,
            "--qdrant-path",
            str(data_dir / "qdrant"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--watch-interval",
            "0",
            "--max-batch",
            str(max_batch),
            "--max-wait-ms",
            str(max_wait_ms),
            "--batching" if batching else "--no-batching",
        ]
        self.log = open(data_dir / f"bench-serve-{'on' if batching else 'off'}.log", "w")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the service exited ({self.proc.returncode}); see {self.log.name}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"the service was not ready after {timeout_s:.0f}s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def batch_totals(url: str, modality: str) -> tuple[float, float]:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    out = []
    for suffix in ("sum", "count"):
        match = re.search(rf'^mmalign_batch_size_{suffix}{{modality="{modality}"}} (\S+)$', text, re.M)
        out.append(float(match.group(1)) if match else 0.0)
    return out[0], out[1]


async def drive(url: str, modality: str, values: list, blobs: dict, clients: int, total: int, seconds: float):
    """``clients`` concurrent clients share ``total`` requests (cycling through ``values``) or ``seconds``."""
    import httpx

    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker():
            nonlocal issued, errors
            while issued < total and time.perf_counter() < deadline:
                value = values[issued % len(values)]
                issued += 1
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/search", **request_for(modality, value, blobs))
                    ok = response.status_code == 200 and len(response.json()) == K
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def measure(url, modality, values, blobs, clients, batching, total, seconds) -> Cell:
    before = batch_totals(url, modality)
    latencies, errors, elapsed = asyncio.run(drive(url, modality, values, blobs, clients, total, seconds))
    after = batch_totals(url, modality)
    batches = after[1] - before[1]
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    return Cell(
        modality,
        clients,
        batching,
        len(latencies),
        errors,
        elapsed,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        (after[0] - before[0]) / batches if batches else float("nan"),
    )


def overhead_p50(args, queries: dict, blobs: dict, modalities) -> dict[str, tuple[float, float]]:
    """p50 of the in-process Searcher and of the service (one client, batching on), query by query in
    turn, in one process: the same store, the same loaded encoders, the same moment."""
    import httpx

    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.search import Searcher
    from mmalign.plugin.serve.app import BackgroundServer, create_app
    from mmalign.plugin.serve.config import ServeConfig
    from mmalign.plugin.serve.service import Service
    from mmalign.schemas import StoreConfig

    out = {}
    pool: dict = {}
    config = StoreConfig(path=str(args.data_dir / "qdrant"))
    with VectorStore(config) as store:
        settings = ServeConfig(
            collection=args.collection, store=config, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms
        )
        service = Service(settings, store=store, encoder_pool=pool)
        service.load()
        with (
            BackgroundServer(create_app(service, watch_interval_s=0)) as server,
            httpx.Client(base_url=server.url, timeout=60) as client,
            Searcher(args.collection, store=store, encoder_pool=pool) as searcher,
        ):
            for modality in modalities:
                values = queries[modality]
                inproc, served = [], []
                for i in range(args.overhead_queries + 2):
                    value = values[i % len(values)]
                    started = time.perf_counter()
                    searcher.search(**{modality: [value]}, k=K)
                    middle = time.perf_counter()
                    response = client.post("/v1/search", **request_for(modality, value, blobs))
                    response.raise_for_status()
                    if i >= 2:  # the first two warm up
                        inproc.append(middle - started)
                        served.append(time.perf_counter() - middle)
                out[modality] = (float(np.median(inproc) * 1000), float(np.median(served) * 1000))
    return out


def print_tables(cells: list[Cell], overhead: dict[str, tuple[float, float]]) -> None:
    print("\n| modality | clients | batching | req/s | p50 ms | p99 ms | errors | mean batch |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for c in cells:
        print(
            f"| {c.modality} | {c.clients} | {'on' if c.batching else 'off'} | {c.rps:.1f} | {c.p50_ms:.0f} | "
            f"{c.p99_ms:.0f} | {c.errors} | {c.mean_batch:.1f} |"
        )
    print("\n| modality | clients | req/s batching on | req/s off | ratio |")
    print("|---|---:|---:|---:|---:|")
    by_key = {(c.modality, c.clients, c.batching): c for c in cells}
    for (modality, clients, batching), on in by_key.items():
        off = by_key.get((modality, clients, False))
        if batching and off is not None and clients > 1:
            ratio = on.rps / off.rps if off.rps else float("nan")
            print(f"| {modality} | {clients} | {on.rps:.1f} | {off.rps:.1f} | {ratio:.2f}× |")
    if overhead:
        print("\n| modality | in-process Searcher p50 ms | service p50 ms (1 client) | overhead ms |")
        print("|---|---:|---:|---:|")
        for modality, (inproc, service) in overhead.items():
            print(f"| {modality} | {inproc:.1f} | {service:.1f} | {service - inproc:+.1f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("mmalign-data"))
    parser.add_argument("--collection", default="stamps")
    parser.add_argument("--clients", default="8,32", help="Concurrent client counts (comma-separated).")
    parser.add_argument("--modalities", default=",".join(MODALITIES))
    parser.add_argument("--requests", type=int, default=320, help="Most requests per cell (audio: a quarter).")
    parser.add_argument("--seconds", type=float, default=25.0, help="Most seconds per cell.")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=4.0)
    parser.add_argument("--overhead-queries", type=int, default=30, help="Sequential queries for the overhead.")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    modalities = [m for m in args.modalities.split(",") if m]
    if max(clients) > 256 or args.requests > 5000 or args.seconds > 120:
        raise SystemExit("bounded load only: at most 256 clients, 5000 requests and 120 s per cell")
    queries = load_queries(args.data_dir)
    blobs = {p: Path(p).read_bytes() for m in ("image", "audio") for p in queries[m]}
    print(f"queries: {', '.join(f'{len(queries[m])} {m}' for m in modalities)}; k={K}; cpu cores: {os.cpu_count()}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    cells: list[Cell] = []
    for batching in (True, False):
        service = ServiceProcess(args.data_dir, args.collection, batching, args.max_batch, args.max_wait_ms)
        try:
            started = time.perf_counter()
            service.wait_ready()
            print(f"service with batching {'on' if batching else 'off'} ready in {time.perf_counter() - started:.1f}s")
            for modality in modalities:
                values = queries[modality]
                total = args.requests if modality != "audio" else max(8, args.requests // 4)
                measure(service.url, modality, values, blobs, 4, batching, 8, 30)  # warm up
                for n in clients:
                    cell = measure(service.url, modality, values, blobs, n, batching, total, args.seconds)
                    cells.append(cell)
                    print(
                        f"  {modality:5s} clients {n:3d} batching {'on ' if batching else 'off'}: "
                        f"{cell.rps:7.1f} req/s  p50 {cell.p50_ms:6.0f} ms  p99 {cell.p99_ms:6.0f} ms  "
                        f"errors {cell.errors}  mean batch {cell.mean_batch:.1f}",
                        flush=True,
                    )
        finally:
            service.stop()
    overhead = overhead_p50(args, queries, blobs, modalities)
    cells.sort(key=lambda c: (modalities.index(c.modality), c.clients, not c.batching))
    print_tables(cells, overhead)
    print(
        "\nload average after: {:.2f} {:.2f} {:.2f} (other work on the machine skews the numbers)".format(
            *os.getloadavg()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
