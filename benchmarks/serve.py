"""`mmalign serve` under load: throughput and latency per query modality, per runtime and batching mode.

    python -m benchmarks.serve [--data-dir mmalign-data] [--clients 8,32] [--rounds 3] [--seconds 15]
    python -m benchmarks.serve --configs torch:window,torch:adaptive,onnx:adaptive --modalities text,image
    python -m benchmarks.serve --during-reembed      # queries while a reembed job runs (benchmarks/serve_jobs.py)

Needs the quickstart collection (``mmalign quickstart --data-dir mmalign-data``) and the serve extra.

1. Starts one ``mmalign serve`` process per configuration of ``--configs`` (RUNTIME:MODE; runtime torch or
   onnx; mode ``adaptive`` (``--max-wait-ms 0``: a lone query is encoded at once, what arrives while the
   model is busy forms the next batch), ``window`` (a fixed ``--window-ms`` wait for more queries: the
   batching before issue #26) or ``off`` (``--no-batching``: each query encoded alone)) on the quickstart
   collection (127.0.0.1 only; each on its own copy of the store folder but the first, since an embedded
   store has one owner). For each query modality (text, image, audio) and each client count, N concurrent
   clients send at most ``--requests`` queries (``k=10``) or for at most ``--seconds``, whichever ends
   first; the cells go through the configurations in turn (the order rotates each round), in ``--rounds``
   rounds (audio: one round of ``--audio-requests``), so that every configuration sees the same background
   load. Queries are the catalog's own texts, PNG stamps (uploaded as multipart files) and sounds.
   Reported per cell: requests/s (median over rounds), p50/p99 latency (all rounds pooled), errors, the
   mean batch size and the model's encode time per query read from ``/metrics``; then each
   configuration's requests/s over the first configuration's (the baseline), and batching on over off
   per runtime.
2. The service's overhead over the in-process ``Searcher`` for the same queries, one at a time, per
   runtime: the service (model process, adaptive batching) runs in this process on the same store, and
   each query goes to ``Searcher.search`` (same runtime, the model process's thread count) and then over
   HTTP (one client); reported: both p50 and the difference.

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
    """One (modality, clients, configuration) measurement; rounds are merged by :func:`merge`."""

    modality: str
    clients: int
    config: str
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
        first.config,
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


MODES = ("adaptive", "window", "off")


def parse_configs(value: str) -> list[tuple[str, str]]:
    """``torch:window,onnx:adaptive`` -> [("torch", "window"), ("onnx", "adaptive")]."""
    configs = []
    for part in value.split(","):
        runtime, _, mode = part.strip().partition(":")
        if runtime not in ("torch", "onnx") or mode not in MODES:
            raise SystemExit(f"--configs: {part!r} is not RUNTIME:MODE (runtime torch|onnx, mode {'|'.join(MODES)})")
        configs.append((runtime, mode))
    return configs


def config_label(config: tuple[str, str]) -> str:
    return f"{config[0]} {config[1]}"


class ServiceProcess:
    def __init__(
        self,
        data_dir: Path,
        collection: str,
        config: tuple[str, str],
        max_batch: str,
        window_ms: float,
        store: Path | None = None,
        threads: int | None = None,
    ):
        runtime, mode = config
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
            str(window_ms if mode == "window" else 0.0),
            "--batching" if mode != "off" else "--no-batching",
            "--runtime",
            runtime,
            *(["--threads", str(threads)] if threads else []),
        ]
        self.log = open(data_dir / f"bench-serve-{runtime}-{mode}.log", "w")
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
            self.proc.send_signal(signal.SIGTERM)  # passed on to the command by the CLI's supervisor
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


def measure(url, modality, values, blobs, clients, config, total, seconds) -> Cell:
    before = batch_totals(url, modality)
    latencies, errors, elapsed = asyncio.run(drive(url, modality, values, blobs, clients, total, seconds))
    after = batch_totals(url, modality)
    return Cell(
        modality,
        clients,
        config,
        latencies,
        errors,
        elapsed,
        after[0] - before[0],
        after[1] - before[1],
        encode_seconds=after[2] - before[2],
    )


def overhead_p50(args, queries: dict, blobs: dict, modalities, runtime: str) -> dict[str, tuple[float, float]]:
    """p50 of the in-process Searcher and of the service (one client, adaptive batching), query by query in
    turn, in one process: the same store, the same moment, the same runtime and CPU threads for the encoders."""
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
    os.environ["MMALIGN_ONNX_THREADS"] = str(threads)
    config = StoreConfig(path=str(args.data_dir / "qdrant"))
    with VectorStore(config) as store:
        max_batch = dict(p.split("=") for p in args.max_batch.split(",")) if "=" in args.max_batch else args.max_batch
        settings = ServeConfig(
            collection=args.collection,
            store=config,
            max_batch={k: int(v) for k, v in max_batch.items()} if isinstance(max_batch, dict) else int(max_batch),
            max_wait_ms=0.0,
            threads=threads,  # as `mmalign serve` by default
            model_process=True,
            runtime=runtime,
        )
        service = Service(settings, store=store, encoder_pool=pool)
        service.load()
        with (
            BackgroundServer(create_app(service, watch_interval_s=0)) as server,
            httpx.Client(base_url=server.url, timeout=60) as client,
            Searcher(args.collection, store=store, encoder_pool=pool, runtime=runtime) as searcher,
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
        service.close()
    return out


def print_tables(cells: list[Cell], overhead: dict[str, dict[str, tuple[float, float]]], configs: list[str]) -> None:
    print(
        "\n| modality | clients | service | req/s | p50 ms | p99 ms | errors | mean batch | encode ms/query "
        "| requests |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        print(
            f"| {c.modality} | {c.clients} | {c.config} | {c.rps:.1f} | "
            f"{c.percentile_ms(50):.0f} | {c.percentile_ms(99):.0f} | {c.errors} | {c.mean_batch:.1f} | "
            f"{c.encode_ms:.1f} | {c.requests} |"
        )
    by_key = {(c.modality, c.clients, c.config): c for c in cells}
    base = configs[0]
    print(f"\n| modality | clients | service | req/s | × {base} |")
    print("|---|---:|---|---:|---:|")
    for (modality, clients, config), cell in by_key.items():
        reference = by_key.get((modality, clients, base))
        if reference is not None and reference.rps:
            print(f"| {modality} | {clients} | {config} | {cell.rps:.1f} | {cell.rps / reference.rps:.2f}× |")
    pairs = [(c, c.replace(" off", " " + m)) for c in configs if c.endswith(" off") for m in ("adaptive", "window")]
    rows = [
        (modality, clients, on, by_key[(modality, clients, on)].rps / cell.rps)
        for (modality, clients, config), cell in by_key.items()
        for off, on in pairs
        if config == off and (modality, clients, on) in by_key and cell.rps and clients > 1
    ]
    if rows:
        print("\n| modality | clients | batching | req/s over the same runtime with batching off |")
        print("|---|---:|---|---:|")
        for modality, clients, on, ratio in rows:
            print(f"| {modality} | {clients} | {on} | {ratio:.2f}× |")
    for runtime, table in overhead.items():
        print("\n| modality | runtime | in-process Searcher p50 ms | service p50 ms (1 client) | overhead ms |")
        print("|---|---|---:|---:|---:|")
        for modality, (inproc, service) in table.items():
            print(f"| {modality} | {runtime} | {inproc:.1f} | {service:.1f} | {service - inproc:+.1f} |")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--during-reembed" in argv:  # queries while the service runs a reembed job: benchmarks/serve_jobs.py
        from benchmarks.serve_jobs import during_reembed

        return during_reembed([a for a in argv if a != "--during-reembed"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("mmalign-data"))
    parser.add_argument("--collection", default="stamps")
    parser.add_argument("--clients", default="8,32", help="Concurrent client counts (comma-separated).")
    parser.add_argument("--modalities", default=",".join(MODALITIES))
    parser.add_argument(
        "--configs",
        default="torch:window,torch:adaptive,onnx:adaptive,torch:off,onnx:off",
        help="Services to compare, RUNTIME:MODE (runtime torch|onnx; mode adaptive|window|off); the first is the "
        "baseline of the ratio table.",
    )
    parser.add_argument("--requests", type=int, default=240, help="Most requests per cell and round.")
    parser.add_argument("--audio-requests", type=int, default=32, help="Most audio requests per cell.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Most seconds per cell and round.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of text/image cells (audio: one).")
    parser.add_argument(
        "--max-batch",
        default="text=16,image=8,audio=4",
        help="`mmalign serve --max-batch` of the batching services: batches for every modality, to measure them "
        "(the service's own CPU default batches text only).",
    )
    parser.add_argument("--window-ms", type=float, default=4.0, help="The wait of the `window` mode.")
    parser.add_argument("--threads", type=int, help="As `mmalign serve --threads` (default: its default).")
    parser.add_argument("--overhead-queries", type=int, default=30, help="Sequential queries for the overhead.")
    parser.add_argument("--overhead-runtimes", default="torch,onnx", help="Runtimes of the overhead table.")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    modalities = [m for m in args.modalities.split(",") if m]
    configs = parse_configs(args.configs)
    if max(clients) > 256 or max(args.requests, args.audio_requests) > 5000 or args.seconds > 120 or args.rounds > 10:
        raise SystemExit("bounded load only: at most 256 clients, 5000 requests, 120 s per cell and 10 rounds")
    queries = load_queries(args.data_dir)
    blobs = {p: Path(p).read_bytes() for m in ("image", "audio") for p in queries[m]}
    print(f"queries: {', '.join(f'{len(queries[m])} {m}' for m in modalities)}; k={K}; cpu cores: {os.cpu_count()}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    # The services run side by side (all but the first on a copy of the store: an embedded store has one
    # owner) and the cells go through them in turn, so that all see the same background load.
    copies = []
    services = {}
    for number, config in enumerate(configs):
        store = None
        if number:
            store = Path(tempfile.mkdtemp(prefix="mmalign-bench-store-"))
            shutil.copytree(args.data_dir / "qdrant", store / "qdrant", ignore=shutil.ignore_patterns(".mmalign.lock"))
            copies.append(store)
        services[config_label(config)] = ServiceProcess(
            args.data_dir, args.collection, config, args.max_batch, args.window_ms, store=store, threads=args.threads
        )
    labels = list(services)
    runs: dict[tuple, list[Cell]] = {}
    try:
        started = time.perf_counter()
        for service in services.values():
            service.wait_ready()
        print(f"services ready in {time.perf_counter() - started:.1f}s: {', '.join(labels)}")
        for modality in modalities:
            for label, service in services.items():
                measure(service.url, modality, queries[modality], blobs, 4, label, 8, 30)  # warm up
        for round_number in range(args.rounds):
            for modality in modalities:
                if modality == "audio" and round_number > 0:
                    continue  # seconds per query: one round
                total = args.requests if modality != "audio" else args.audio_requests
                for n in clients:
                    shift = round_number % len(labels)
                    for label in labels[shift:] + labels[:shift]:
                        service = services[label]
                        cell = measure(service.url, modality, queries[modality], blobs, n, label, total, args.seconds)
                        runs.setdefault((modality, n, label), []).append(cell)
                        print(
                            f"  round {round_number + 1} {modality:5s} clients {n:3d} {label:15s}: "
                            f"{cell.rps:7.1f} req/s  p50 {cell.percentile_ms(50):6.0f} ms  "
                            f"p99 {cell.percentile_ms(99):6.0f} ms  errors {cell.errors}  batch {cell.mean_batch:.1f}  "
                            f"encode {cell.encode_ms:.1f} ms/query  load {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
    finally:
        for service in services.values():
            service.stop()
        for store in copies:
            shutil.rmtree(store, ignore_errors=True)
    cells = [merge(c) for c in runs.values()]
    overhead = {}
    for runtime in [r for r in args.overhead_runtimes.split(",") if r]:
        overhead[runtime] = overhead_p50(args, queries, blobs, [m for m in modalities if m != "audio"], runtime)
    cells.sort(key=lambda c: (modalities.index(c.modality), c.clients, labels.index(c.config)))
    print_tables(cells, overhead, labels)
    print(
        "\nload average after: {:.2f} {:.2f} {:.2f} (other work on the machine skews the numbers)".format(
            *os.getloadavg()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
