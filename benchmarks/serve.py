"""`mmalign serve` under load: throughput and latency per query modality, micro-batching on and off.

    python -m benchmarks.serve [--data-dir mmalign-data] [--clients 8,32] [--rounds 3] [--seconds 15]

Needs the quickstart collection (``mmalign quickstart --data-dir mmalign-data``) and the serve extra.

1. Starts two ``mmalign serve`` processes on the quickstart collection (127.0.0.1 only), one with
   micro-batching on and one with ``--no-batching`` (each query encoded alone on the same single
   model thread; it serves a copy of the store folder, since an embedded store has one owner). For
   each query modality (text, image, audio) and each client count, N concurrent clients send at most
   ``--requests`` queries (``k=10``) or for at most ``--seconds``, whichever ends first; the cells
   alternate between the two services, in ``--rounds`` rounds (audio: one round of
   ``--audio-requests``), so that both modes see the same background load. Queries are the
   catalog's own texts, PNG stamps (uploaded as multipart files) and sounds.
   Reported per cell: requests/s (median over rounds), p50/p99 latency (all rounds pooled), errors,
   and the mean batch size read from ``/metrics``; then the ratio of requests/s on and off.
2. The service's overhead over the in-process ``Searcher`` for the same queries, one at a time: the
   service runs in this process on the same store and the same loaded encoders, and each query goes
   to ``Searcher.search`` and then over HTTP (one client, batching on, so the batch wait counts);
   reported: both p50 and the difference.

The load generator (httpx, asyncio) runs on the same machine and takes CPU from the service, in
both modes alike. The load average is printed with each cell: other work on the machine changes the
numbers. Numbers hold for the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODALITIES = ("text", "image", "audio")
K = 10


@dataclass
class Cell:
    """One (modality, clients, batching) measurement; rounds are merged by :func:`merge`."""

    modality: str
    clients: int
    batching: bool
    latencies: list
    errors: int
    seconds: float
    batch_sum: float
    batch_count: float
    rounds_rps: list = field(default_factory=list)
    encode_seconds: float = 0.0

    @property
    def encode_ms(self) -> float:
        """Model time per query: the encode stage's seconds over the queries encoded."""
        return self.encode_seconds / self.batch_sum * 1000 if self.batch_sum else float("nan")

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        """The median over rounds of requests/s (each round: its requests over its wall time)."""
        if self.rounds_rps:
            return float(np.median(self.rounds_rps))
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies) * 1000, q)) if self.latencies else float("nan")

    @property
    def mean_batch(self) -> float:
        return self.batch_sum / self.batch_count if self.batch_count else float("nan")


def merge(cells: list[Cell]) -> Cell:
    """Rounds of one cell: latencies pooled, errors and batches summed, requests/s per round kept."""
    first = cells[0]
    return Cell(
        first.modality,
        first.clients,
        first.batching,
        [x for c in cells for x in c.latencies],
        sum(c.errors for c in cells),
        sum(c.seconds for c in cells),
        sum(c.batch_sum for c in cells),
        sum(c.batch_count for c in cells),
        [c.requests / c.seconds for c in cells if c.seconds],
        sum(c.encode_seconds for c in cells),
    )


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
    def __init__(
        self,
        data_dir: Path,
        collection: str,
        batching: bool,
        max_batch: str,
        max_wait_ms: float,
        store: Path | None = None,
        threads: int | None = None,
    ):
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
            str((store or data_dir) / "qdrant"),
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
            *(["--threads", str(threads)] if threads else []),
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


def batch_totals(url: str, modality: str) -> tuple[float, float, float]:
    """(queries encoded, batches, seconds the model spent encoding) of ``modality`` so far."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    patterns = (
        rf'^mmalign_batch_size_sum{{modality="{modality}"}} (\S+)$',
        rf'^mmalign_batch_size_count{{modality="{modality}"}} (\S+)$',
        rf'^mmalign_stage_seconds_sum{{stage="encode",modality="{modality}"}} (\S+)$',
    )
    out = []
    for pattern in patterns:
        match = re.search(pattern, text, re.M)
        out.append(float(match.group(1)) if match else 0.0)
    return out[0], out[1], out[2]


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
    return Cell(
        modality,
        clients,
        batching,
        latencies,
        errors,
        elapsed,
        after[0] - before[0],
        after[1] - before[1],
        encode_seconds=after[2] - before[2],
    )


def overhead_p50(args, queries: dict, blobs: dict, modalities) -> dict[str, tuple[float, float]]:
    """p50 of the in-process Searcher and of the service (one client, batching on), query by query in
    turn, in one process: the same store, the same moment, the same CPU threads for the encoders."""
    import httpx
    import torch

    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.search import Searcher
    from mmalign.plugin.serve.app import BackgroundServer, create_app
    from mmalign.plugin.serve.config import ServeConfig
    from mmalign.plugin.serve.service import Service
    from mmalign.schemas import StoreConfig

    out = {}
    pool: dict = {}
    threads = args.threads or max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)  # the in-process Searcher gets the threads the model process has
    config = StoreConfig(path=str(args.data_dir / "qdrant"))
    with VectorStore(config) as store:
        max_batch = dict(p.split("=") for p in args.max_batch.split(",")) if "=" in args.max_batch else args.max_batch
        settings = ServeConfig(
            collection=args.collection,
            store=config,
            max_batch={k: int(v) for k, v in max_batch.items()} if isinstance(max_batch, dict) else int(max_batch),
            max_wait_ms=args.max_wait_ms,
            threads=threads,  # as `mmalign serve` by default
            model_process=True,
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
    print(
        "\n| modality | clients | batching | req/s | p50 ms | p99 ms | errors | mean batch | encode ms/query "
        "| requests |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        print(
            f"| {c.modality} | {c.clients} | {'on' if c.batching else 'off'} | {c.rps:.1f} | "
            f"{c.percentile_ms(50):.0f} | {c.percentile_ms(99):.0f} | {c.errors} | {c.mean_batch:.1f} | "
            f"{c.encode_ms:.1f} | {c.requests} |"
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
    parser.add_argument("--requests", type=int, default=240, help="Most requests per cell and round.")
    parser.add_argument("--audio-requests", type=int, default=32, help="Most audio requests per cell.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Most seconds per cell and round.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of text/image cells (audio: one).")
    parser.add_argument(
        "--max-batch",
        default="text=16,image=8,audio=4",
        help="`mmalign serve --max-batch` of the batching service: batches for every modality, to measure them "
        "(the service's own CPU default batches text only).",
    )
    parser.add_argument("--max-wait-ms", type=float, default=4.0)
    parser.add_argument("--threads", type=int, help="As `mmalign serve --threads` (default: its default).")
    parser.add_argument("--overhead-queries", type=int, default=30, help="Sequential queries for the overhead.")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    modalities = [m for m in args.modalities.split(",") if m]
    if max(clients) > 256 or max(args.requests, args.audio_requests) > 5000 or args.seconds > 120 or args.rounds > 10:
        raise SystemExit("bounded load only: at most 256 clients, 5000 requests, 120 s per cell and 10 rounds")
    queries = load_queries(args.data_dir)
    blobs = {p: Path(p).read_bytes() for m in ("image", "audio") for p in queries[m]}
    print(f"queries: {', '.join(f'{len(queries[m])} {m}' for m in modalities)}; k={K}; cpu cores: {os.cpu_count()}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    # Both services run side by side (the off one on a copy of the store: an embedded store has one
    # owner) and the cells alternate between them, so that both see the same background load.
    copy = Path(tempfile.mkdtemp(prefix="mmalign-bench-store-"))
    shutil.copytree(args.data_dir / "qdrant", copy / "qdrant", ignore=shutil.ignore_patterns(".mmalign.lock"))
    services = {
        True: ServiceProcess(
            args.data_dir, args.collection, True, args.max_batch, args.max_wait_ms, threads=args.threads
        ),
        False: ServiceProcess(
            args.data_dir, args.collection, False, args.max_batch, args.max_wait_ms, store=copy, threads=args.threads
        ),
    }
    runs: dict[tuple, list[Cell]] = {}
    try:
        started = time.perf_counter()
        for service in services.values():
            service.wait_ready()
        print(f"services ready in {time.perf_counter() - started:.1f}s")
        for modality in modalities:
            for batching, service in services.items():
                measure(service.url, modality, queries[modality], blobs, 4, batching, 8, 30)  # warm up
        for round_number in range(args.rounds):
            for modality in modalities:
                if modality == "audio" and round_number > 0:
                    continue  # seconds per query: one round
                total = args.requests if modality != "audio" else args.audio_requests
                for n in clients:
                    order = (True, False) if round_number % 2 == 0 else (False, True)
                    for batching in order:
                        service = services[batching]
                        cell = measure(
                            service.url, modality, queries[modality], blobs, n, batching, total, args.seconds
                        )
                        runs.setdefault((modality, n, batching), []).append(cell)
                        print(
                            f"  round {round_number + 1} {modality:5s} clients {n:3d} batching "
                            f"{'on ' if batching else 'off'}: {cell.rps:7.1f} req/s  "
                            f"p50 {cell.percentile_ms(50):6.0f} ms  p99 {cell.percentile_ms(99):6.0f} ms  "
                            f"errors {cell.errors}  batch {cell.mean_batch:.1f}  encode {cell.encode_ms:.1f} ms/query  "
                            f"load {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
    finally:
        for service in services.values():
            service.stop()
        shutil.rmtree(copy, ignore_errors=True)
    cells = [merge(c) for c in runs.values()]
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
