"""Queries while the service re-embeds: `python -m benchmarks.serve --during-reembed`.

    python -m benchmarks.serve --during-reembed [--data-dir mmalign-data/serve-jobs] [--items 2000]
        [--clients 8] [--seconds 20] [--job-threads 1] [--job-nice 10] [--mode reproject|reencode]

1. Prepares once (kept in ``--data-dir``): a catalog of the first ``--items`` Papirus icons (image +
   text; ``apt-get install papirus-icon-theme``), their features (preset offline-small), two bundles
   trained on them with seeds 0 and 1 (a short training: the bundles only have to differ), and an
   Edge store with the collection ``icons`` ingested with the first bundle.
2. Copies that store and starts ``mmalign serve`` on the copy, as a user runs it (encoders in the model
   process; ``--job-threads``/``--job-nice`` as given). ``--clients`` clients send the catalog's texts
   (``k=10``) one after the other, without pause: ``--seconds`` before, then during a reembed job to
   the second bundle (``POST /v1/collections/icons/jobs``), then ``--seconds`` after it. ``--mode
   reproject`` re-projects cached features (the reembed of a new student); ``--mode reencode`` makes
   the job encode every item again (an empty feature cache), the heaviest job.
3. Prints per phase: requests, errors, p50/p99/max latency, the bundles the answers came from (an
   answer whose hits come from two bundles is counted as mixed), and where the CPU went: CPU seconds
   per second of the service's process (HTTP, store, and the job), of its model process (the query
   encodes), of this load generator, and of the rest of the machine (other users), from /proc.

Every request is placed in the phase in which it started. Numbers hold for the machine and the
moment they ran on: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLLECTION = "icons"
K = 10


# -- preparing the collection -------------------------------------------------------------------------------
def prepare(data_dir: Path, items: int, features: Path) -> Path:
    """Catalog, features, two bundles and the template store in ``data_dir`` (each step only once)."""
    from mmalign.connectors.datasets.papirus import INSTALL_HINT, write_catalog
    from mmalign.connectors.errors import SourceError

    data_dir.mkdir(parents=True, exist_ok=True)
    catalog = data_dir / "papirus.jsonl"
    media = data_dir / "media_root.txt"
    if not catalog.exists():
        try:
            root, written = write_catalog(catalog, limit=items)
        except SourceError as exc:
            raise SystemExit(f"{exc} (install: {INSTALL_HINT})") from exc
        media.write_text(str(root))
        print(f"catalog: {len(written)} papirus icons -> {catalog}", flush=True)
    media_root = Path(media.read_text())
    for seed, name in ((0, "bundle-a"), (1, "bundle-b")):
        if not (data_dir / name / "config.json").exists():
            from mmalign.connectors.sources import open_catalog
            from mmalign.plugin.workflows.train import train_bundle
            from mmalign.schemas import TrainConfig

            print(f"training {name} (seed {seed}; features are encoded first when missing)…", flush=True)
            cfg = TrainConfig(seed=seed, epochs=2, teacher_epochs=1, teacher_hidden=256)
            train_bundle(
                open_catalog(catalog, media_root=media_root),
                data_dir / name,
                features_dir=features,
                cfg=cfg,
                device="cpu",
                show_progress=False,
                echo=lambda line: print(line, flush=True),
            )
    template = data_dir / "template"
    if not (template / "qdrant").exists():
        from mmalign.connectors.sources import open_catalog
        from mmalign.plugin.index.ingest import ingest
        from mmalign.schemas import StoreConfig

        report = ingest(
            open_catalog(catalog, media_root=media_root),
            bundle=data_dir / "bundle-a",
            collection=COLLECTION,
            store=StoreConfig(path=str(template / "qdrant")),
            features_dir=features,
            device="cpu",
        )
        print(f"template store: {report.ok} points in {COLLECTION!r}", flush=True)
    return media_root


# -- where the CPU went -----------------------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> float:
    """CPU seconds all cores spent busy (not idle, not waiting for I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_sample(service_pid: int, model_pid: int | None) -> dict[str, float]:
    return {
        "service": process_cpu(service_pid),
        "model": process_cpu(model_pid),
        "clients": process_cpu(os.getpid()),
        "machine": machine_cpu(),
        "wall": time.monotonic(),
        "load": os.getloadavg()[0],
    }


# -- the load ---------------------------------------------------------------------------------------------------
async def measure(url: str, texts: list[str], clients: int, seconds: float, job: dict, pids) -> dict:
    import httpx

    records: list[tuple[float, float, int, frozenset]] = []
    stop = asyncio.Event()

    async def client(number: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            i = number * 7
            while not stop.is_set():
                text = texts[i % len(texts)]
                i += 1
                started = time.monotonic()
                try:
                    response = await http.post("/v1/search", json={"text": text, "k": K})
                    status = response.status_code
                    bundles = frozenset(h["payload"].get("bundle_id") for h in response.json()) if status == 200 else ()
                except httpx.HTTPError:
                    status, bundles = 0, frozenset()
                records.append((started, time.monotonic() - started, status, frozenset(bundles)))

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    marks, cpu = {}, {}

    def mark(name: str) -> None:
        marks[name] = time.monotonic()
        cpu[name] = cpu_sample(*pids)

    await asyncio.sleep(2.0)  # every client has sent its first query
    mark("before")
    await asyncio.sleep(seconds)
    mark("during")
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        answer = await http.post(f"/v1/collections/{COLLECTION}/jobs", json=job)
        if answer.status_code != 202:
            stop.set()
            raise SystemExit(f"the job was refused: {answer.status_code} {answer.text}")
        state = answer.json()
        while state["state"] not in ("done", "failed", "cancelled"):
            await asyncio.sleep(0.5)
            state = (await http.get(f"/v1/jobs/{state['id']}")).json()
    mark("after")
    await asyncio.sleep(seconds)
    mark("end")
    stop.set()
    await asyncio.gather(*tasks)
    return {"records": records, "marks": marks, "cpu": cpu, "job": state}


# -- the run ------------------------------------------------------------------------------------------------------
def start_service(run: Path, data_dir: Path, media_root: Path, args) -> subprocess.Popen:
    command = [sys.executable, "-m", "mmalign.plugin", "serve", "--collection", COLLECTION]
    command += ["--qdrant-path", str(run / "qdrant"), "--port", "0", "--no-access-log", "--log-level", "warning"]
    command += [
        "--device",
        "cpu",
        "--watch-interval",
        "1",
        "--jobs-root",
        str(data_dir),
        "--jobs-root",
        str(media_root),
    ]
    command += ["--job-threads", str(args.job_threads), "--job-nice", str(args.job_nice)]
    log = open(run / "serve.log", "w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(run: Path, process: subprocess.Popen, timeout_s: float = 600) -> tuple[str, int]:
    import httpx

    from mmalign.connectors.store_files import read_service_address

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mmalign serve stopped; see {run / 'serve.log'}")
        record = read_service_address(run / "qdrant")
        if record is not None:
            try:
                if httpx.get(record["url"] + "/readyz", timeout=10).status_code == 200:
                    return record["url"], record["pid"]
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise SystemExit(f"mmalign serve was not ready after {timeout_s:.0f} s; see {run / 'serve.log'}")


def phase_rows(result: dict) -> list[dict]:
    marks, cpu = result["marks"], result["cpu"]
    rows = []
    for name, start, end in (("before", "before", "during"), ("during", "during", "after"), ("after", "after", "end")):
        t0, t1 = marks[start], marks[end]
        inside = [r for r in result["records"] if t0 <= r[0] < t1]
        ok = [r for r in inside if r[2] == 200]
        ms = np.array([r[1] * 1000 for r in ok]) if ok else np.array([np.nan])
        a, b = cpu[start], cpu[end]
        wall = b["wall"] - a["wall"]
        share = {k: (b[k] - a[k]) / wall for k in ("service", "model", "clients", "machine")}
        share["rest"] = share["machine"] - share["service"] - share["model"] - share["clients"]
        bundles: dict[str, int] = {}
        for r in ok:
            key = "mixed" if len(r[3]) > 1 else next(iter(r[3]), "none")
            bundles[key] = bundles.get(key, 0) + 1
        rows.append(
            {
                "phase": name,
                "seconds": t1 - t0,
                "requests": len(inside),
                "errors": len(inside) - len(ok),
                "rps": len(ok) / (t1 - t0),
                "p50": float(np.percentile(ms, 50)),
                "p99": float(np.percentile(ms, 99)),
                "max": float(np.max(ms)),
                "bundles": bundles,
                "cpu": share,
                "load": (a["load"] + b["load"]) / 2,
            }
        )
    return rows


def print_tables(rows: list[dict], job: dict, names: dict[str, str], args) -> None:
    print(
        f"\n{args.clients} clients, text queries k={K}; reembed job ({args.mode}, --job-threads {args.job_threads}, "
        f"--job-nice {args.job_nice}) of {args.items} items; {os.cpu_count()} cores\n"
    )
    print("| phase | seconds | requests | errors | req/s | p50 ms | p99 ms | max ms | answers by bundle |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        bundles = ", ".join(f"{names.get(b, b)} {n}" for b, n in sorted(r["bundles"].items()))
        print(
            f"| {r['phase']} | {r['seconds']:.1f} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | "
            f"{r['p50']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | {bundles} |"
        )
    print("\nCPU seconds per second (2 cores = 2.0), from /proc:\n")
    print(
        "| phase | service process (HTTP, store, job) | model process (query encodes) | load generator "
        "| rest of the machine | load average |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        c = r["cpu"]
        print(
            f"| {r['phase']} | {c['service']:.2f} | {c['model']:.2f} | {c['clients']:.2f} | {c['rest']:.2f} | "
            f"{r['load']:.1f} |"
        )
    report = job.get("result") or {}
    print(
        f"\njob {job['id']}: {job['state']}; {report.get('mode')} of {report.get('expected')} items, written "
        f"{report.get('written')}, swapped {report.get('swapped')} ({report.get('old_version')} -> "
        f"{report.get('new_version')}), {report.get('seconds', 0):.1f} s in the job"
        + (f"; error: {job.get('error')}" if job.get("error") else "")
    )


def during_reembed(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Queries while the service re-embeds (benchmarks/serve_jobs.py).")
    parser.add_argument("--data-dir", type=Path, default=Path("mmalign-data/serve-jobs"))
    parser.add_argument("--features", type=Path, help="Feature cache (default: DATA_DIR/features).")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="Seconds of queries before and after the job.")
    parser.add_argument("--mode", choices=("reproject", "reencode"), default="reproject")
    parser.add_argument("--job-threads", type=int, default=1)
    parser.add_argument("--job-nice", type=int, default=10)
    args = parser.parse_args(argv)
    if args.clients > 64 or args.seconds > 120 or args.items > 10000:
        raise SystemExit("bounded load only: at most 64 clients, 120 s per phase and 10,000 items")
    data_dir = args.data_dir.resolve()
    features = (args.features or data_dir / "features").resolve()
    media_root = prepare(data_dir, args.items, features)
    run = data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run.mkdir(parents=True)
    skip = shutil.ignore_patterns(".mmalign.lock", ".mmalign-serve.json", ".mmalign-jobs")
    shutil.copytree(data_dir / "template" / "qdrant", run / "qdrant", ignore=skip)
    job = {"kind": "reembed", "args": {"bundle": str(data_dir / "bundle-b"), "device": "cpu"}}
    if args.mode == "reencode":  # an empty cache: the job encodes every item again
        catalog = {"catalog": str(data_dir / "papirus.jsonl"), "media_root": str(media_root)}
        job["args"] |= catalog | {"features_dir": str(run / "features"), "reencode": True}
    else:
        job["args"]["features_dir"] = str(features)
    texts = [json.loads(line)["text"] for line in (data_dir / "papirus.jsonl").read_text().splitlines()]
    texts = [t for t in texts if t][:: max(1, len(texts) // 256)]
    from mmalign.plugin.align.bundle import load_bundle_config

    names = {load_bundle_config(data_dir / n).bundle_id: n for n in ("bundle-a", "bundle-b")}
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    process = start_service(run, data_dir, media_root, args)
    try:
        url, pid = wait_ready(run, process)
        model = next(iter(children(pid)), None)
        print(f"service pid {pid} (model process {model}) at {url}; {len(texts)} query texts", flush=True)
        result = asyncio.run(measure(url, texts, args.clients, args.seconds, job, (pid, model)))
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
    rows = phase_rows(result)
    print_tables(rows, result["job"], names, args)
    records = [[round(r[0] - result["marks"]["before"], 3), round(r[1], 4), r[2]] for r in result["records"]]
    marks = {k: round(v - result["marks"]["before"], 3) for k, v in result["marks"].items()}
    saved = {"rows": rows, "job": result["job"], "marks": marks, "requests": records}  # [start s, latency s, status]
    (run / "result.json").write_text(json.dumps(saved, default=str))
    print(f"requests and the job's log: {run / 'result.json'}")
    errors = sum(r["errors"] for r in rows)
    mixed = sum(r["bundles"].get("mixed", 0) for r in rows)
    return 0 if result["job"]["state"] == "done" and not errors and not mixed else 1
