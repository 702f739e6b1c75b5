"""Write jobs run by the service that owns the store (plugin/serve/jobs.py), the CLI that sends them there
(plugin/cli/remote.py), and a service killed during a job. Tiny towers, the embedded Edge store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from mmalign.connectors.store import VectorStore  # noqa: E402
from mmalign.connectors.store_files import read_service_address, write_service_address  # noqa: E402
from mmalign.plugin.index.ingest import ingest  # noqa: E402
from mmalign.plugin.index.search import Searcher  # noqa: E402
from mmalign.plugin.serve import jobs as jobs_module  # noqa: E402
from mmalign.plugin.serve.app import BackgroundServer, create_app  # noqa: E402
from mmalign.plugin.serve.config import ServeConfig  # noqa: E402
from mmalign.plugin.serve.service import Service  # noqa: E402
from mmalign.schemas import ReembedReport, StoreConfig  # noqa: E402
from tests.tiny_catalog import N_ITEMS  # noqa: E402
from tests.unit.serve.test_serve import LEAK  # noqa: E402

QUERIES = ["a red frog", "a big green tree", "a small blue car", "the dog"]


@pytest.fixture
def site(trained, tmp_path):
    """A folder as a user has it: catalog, features, two bundles, and an Edge store with `items` (bundle 1)."""
    base, _ = trained
    root = tmp_path / "data"
    for name in ("catalog", "features", "bundle", "bundle2"):
        shutil.copytree(base / name, root / name)
    with VectorStore(StoreConfig(path=str(root / "qdrant"))) as vs:
        ingest(
            root / "catalog" / "catalog.jsonl",
            bundle=root / "bundle",
            collection="items",
            store=vs,
            features_dir=root / "features",
            device="cpu",
        )
    return root


def make_service(root: Path, pool: dict, **overrides) -> Service:
    settings = {
        "collection": "items",
        "store": StoreConfig(path=str(root / "qdrant")),
        "device": "cpu",
        "max_wait_ms": 5.0,
        **overrides,
    }
    service = Service(ServeConfig(**settings), encoder_pool=pool)
    service.load()
    return service


@pytest.fixture(scope="module")
def pool():
    return {}


@pytest.fixture
def served(site, pool):
    service = make_service(site, pool)
    with BackgroundServer(create_app(service, watch_interval_s=0)) as server:
        server.service = service
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield server, client


def wait_for(client, job_id: str, states=("done", "failed", "cancelled"), timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    job = client.get(f"/v1/jobs/{job_id}").json()
    while job["state"] not in states:
        assert time.monotonic() < deadline, job
        job = client.get(f"/v1/jobs/{job_id}", params={"since": job["revision"], "wait": 2}).json()
    return job


def finished(client, body: dict) -> dict:
    """Send a job and wait until it is finished."""
    answer = client.post("/v1/collections/items/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return wait_for(client, answer.json()["id"])


class Gate:
    """Holds a running job at its first chunk boundary until released (the job's own cancel/stop check)."""

    def __init__(self, monkeypatch):
        self.reached, self.open = threading.Event(), threading.Event()
        check = jobs_module.JobQueue._check

        def held(queue, job):
            self.reached.set()
            assert self.open.wait(60), "the test never released the job"
            return check(queue, job)

        monkeypatch.setattr(jobs_module.JobQueue, "_check", held)


def reembed_job(root: Path, bundle: str = "bundle2", **args) -> dict:
    return {"kind": "reembed", "args": {"bundle": str(root / bundle), "chunk_size": 5, "device": "cpu", **args}}


def bundle_id(root: Path, name: str) -> str:
    from mmalign.plugin.align.bundle import load_bundle_config

    return load_bundle_config(root / name).bundle_id


# -- the endpoints --------------------------------------------------------------------------------------------
def test_a_job_goes_queued_running_done_and_its_result_is_the_report_the_cli_prints(served, site, monkeypatch):
    server, client = served
    gate = Gate(monkeypatch)
    first = client.post("/v1/collections/items/jobs", json=reembed_job(site))
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["state"] in ("queued", "running") and first.headers["location"] == f"/v1/jobs/{job['id']}"
    assert gate.reached.wait(60)
    behind = client.post("/v1/collections/items/jobs", json={"kind": "rollback"}).json()
    assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"
    assert client.get(f"/v1/jobs/{behind['id']}").json()["state"] == "queued"  # one job at a time per collection
    listed = client.get("/v1/jobs", params={"collection": "items"}).json()
    assert [j["id"] for j in listed] == [behind["id"], job["id"]]  # newest first

    cancelled = client.delete(f"/v1/jobs/{behind['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = client.delete(f"/v1/jobs/{behind['id']}")
    assert again.status_code == 409 and again.json()["code"] == "job_finished"
    gate.open.set()

    done = wait_for(client, job["id"])
    assert done["state"] == "done" and done["result_type"] == "ReembedReport", done
    report = ReembedReport.model_validate(done["result"])
    assert report.swapped and report.new_version == "items__v2" and report.written == N_ITEMS
    assert done["progress"] == {"stage": "done", "done": N_ITEMS, "total": N_ITEMS}
    assert any("verify and swap" in line for line in done["log"]) and done["attempts"] == 1
    # the next answer is the new bundle's: the service follows the alias the job moved
    answer = client.post("/v1/search", json={"text": "a red frog", "k": 5}).json()
    assert {h["payload"]["bundle_id"] for h in answer} == {bundle_id(site, "bundle2")}
    assert client.get("/v1/collections").json()[0]["served_bundle_id"] == bundle_id(site, "bundle2")
    assert client.get("/v1/jobs/nope").status_code == 404


def test_a_cancelled_reembed_stops_between_chunks_leaves_the_alias_and_the_next_one_resumes(served, site, monkeypatch):
    server, client = served
    gate = Gate(monkeypatch)
    job = client.post("/v1/collections/items/jobs", json=reembed_job(site)).json()
    assert gate.reached.wait(60)
    asked = client.delete(f"/v1/jobs/{job['id']}").json()
    assert asked["state"] == "running" and asked["cancel_requested"] is True
    gate.open.set()
    cancelled = wait_for(client, job["id"])
    assert cancelled["state"] == "cancelled" and cancelled["result"] is None
    assert "resumes" in cancelled["log"][-1]
    store = server.service.store
    assert store.resolve_alias("items") == "items__v1"
    assert store.collection_record("items__v2").state == "building"
    assert 0 < store.count("items__v2") < N_ITEMS

    monkeypatch.setattr(jobs_module.JobQueue, "_check", lambda queue, job: None)
    resumed = finished(client, reembed_job(site))
    report = ReembedReport.model_validate(resumed["result"])
    assert report.swapped and report.new_version == "items__v2" and report.resumed == 5
    assert report.written + report.resumed == N_ITEMS


def test_rollback_drop_version_and_index_run_as_jobs(served, site):
    server, client = served
    assert finished(client, reembed_job(site))["result"]["swapped"]
    back = finished(client, {"kind": "rollback"})
    assert back["result"] == {"collection": "items", "live": "items__v1"}
    assert server.service.store.resolve_alias("items") == "items__v1"
    refused = finished(client, {"kind": "drop_version", "args": {"name": "items__v1"}})
    assert refused["state"] == "failed" and "live behind alias 'items'" in refused["error"]
    drop = finished(client, {"kind": "drop_version", "args": {"name": "items__v2", "force": True}})
    assert drop["result"] == {"dropped": "items__v2"}
    assert not server.service.store.collection_exists("items__v2")
    index = finished(client, {"kind": "index"})
    assert index["result_type"] == "IndexReport" and index["result"]["collection"] == "items__v1"
    missing = client.post("/v1/collections/nope/jobs", json={"kind": "rollback"})
    assert missing.status_code == 404 and missing.json()["code"] == "collection_missing"


@pytest.mark.parametrize(
    "body, code",
    [
        ({"kind": "explode"}, "bad_request"),
        ({"kind": "reembed", "args": {}}, "bad_request"),  # bundle is required
        ({"kind": "reembed", "args": {"bundle": "x", "shell": "rm"}}, "bad_request"),
        ({"kind": "ingest", "args": {"catalog": "catalog/catalog.jsonl", "bundle": "bundle", "chunk_size": 0}}, None),
    ],
)
def test_unknown_kinds_and_arguments_are_a_400(served, body, code):
    _, client = served
    answer = client.post("/v1/collections/items/jobs", json=body)
    assert answer.status_code == 400 and answer.json()["code"] == (code or "bad_request"), answer.text


def test_job_paths_must_lie_under_the_roots_the_service_was_started_with(served, site, tmp_path):
    server, client = served
    outside = tmp_path / "outside"
    shutil.copytree(site / "bundle2", outside / "bundle2")
    (site / "sneaky").symlink_to(outside / "bundle2")
    catalog = str(site / "catalog" / "catalog.jsonl")
    for args in (
        {"bundle": str(outside / "bundle2")},
        {"bundle": str(site / "sneaky")},  # a symlink inside that points out
        {"bundle": str(site / ".." / "outside" / "bundle2")},
        {"bundle": str(site / "bundle2"), "features_dir": str(outside / "features")},
        {"bundle": str(site / "bundle2"), "catalog": catalog, "media_root": str(outside)},
    ):
        answer = client.post("/v1/collections/items/jobs", json={"kind": "reembed", "args": args})
        assert answer.status_code == 403 and answer.json()["code"] == "path_not_allowed", (args, answer.text)
        assert not LEAK.search(answer.json()["detail"]), answer.json()["detail"]
    # relative paths are read under the first root (the folder holding the store: `site`)
    job = client.post("/v1/collections/items/jobs", json={"kind": "reembed", "args": {"bundle": "bundle2"}}).json()
    assert job["args"]["bundle"] == str((site / "bundle2").resolve())
    assert job["args"]["features_dir"] == str((site / "features").resolve())  # the default cache
    assert wait_for(client, job["id"])["state"] == "done"


def test_jobs_need_the_api_key_and_without_one_only_clients_on_this_machine(site, pool):
    from starlette.testclient import TestClient

    def client_of(service, address=("127.0.0.1", 40000)):  # the app without its lifespan: no server started
        return TestClient(create_app(service, watch_interval_s=0), client=address)

    service = make_service(site, pool, api_key="s3cret")
    try:
        with closing(client_of(service)) as client:
            assert client.post("/v1/collections/items/jobs", json={"kind": "index"}).status_code == 401
            assert client.get("/v1/jobs").status_code == 401
            ok = client.post("/v1/collections/items/jobs", json={"kind": "index"}, headers={"X-API-Key": "s3cret"})
            assert ok.status_code == 202
    finally:
        service.close()
    service = make_service(site, pool)  # no key
    try:
        with closing(client_of(service, ("10.1.2.3", 40000))) as client:
            refused = client.post("/v1/collections/items/jobs", json={"kind": "index"})
            assert refused.status_code == 403 and refused.json()["code"] == "jobs_local_only"
            assert client.get("/v1/jobs").status_code == 403
            assert client.get("/healthz").status_code == 200  # only the jobs are local-only
        with closing(client_of(service)) as client:
            assert client.post("/v1/collections/items/jobs", json={"kind": "index"}).status_code == 202
    finally:
        service.close()


def test_openapi_documents_the_jobs_endpoints(served):
    _, client = served
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/collections/{name}/jobs"]) == {"post"}
    assert set(paths["/v1/jobs/{job_id}"]) == {"get", "delete"} and "get" in paths["/v1/jobs"]


# -- queries during a job ----------------------------------------------------------------------------------------
def test_queries_during_a_reembed_job_all_succeed_and_each_answer_comes_from_one_bundle(served, site):
    server, client = served
    old, new = bundle_id(site, "bundle"), bundle_id(site, "bundle2")
    store = server.service.store
    with Searcher("items", store=store, device="cpu") as searcher:
        before = {q: searcher.search(text=[q], k=5) for q in QUERIES}
    answers, errors, stop = [], [], threading.Event()

    def query_loop(number: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            i = number
            while not stop.is_set():
                text = QUERIES[i % len(QUERIES)]
                i += 1
                response = c.post("/v1/search", json={"text": text, "k": 5})
                (answers if response.status_code == 200 else errors).append((text, response, time.monotonic()))

    threads = [threading.Thread(target=query_loop, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        job = client.post("/v1/collections/items/jobs", json=reembed_job(site, chunk_size=2)).json()
        done = wait_for(client, job["id"])
        swapped_at = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert done["state"] == "done" and done["result"]["swapped"], done
    assert not errors, [(t, r.status_code, r.text) for t, r, _ in errors[:3]]
    with Searcher("items", store=store, device="cpu") as searcher:
        after = {q: searcher.search(text=[q], k=5) for q in QUERIES}
    seen = {old: 0, new: 0}
    for text, response, at in answers:
        hits = response.json()
        bundles = {h["payload"]["bundle_id"] for h in hits}
        assert len(bundles) == 1, bundles  # never two bundles in one answer
        [which] = bundles
        expected = (before if which == old else after)[text]
        # the same scores, and the same hits above the last score (equal scores, e.g. of rank fusion, may come
        # in another order, and at the cut another of them may be kept)
        assert [round(h["score"], 4) for h in hits] == [round(h.score, 4) for h in expected]
        last = round(expected[-1].score, 4)
        assert {h["id"] for h in hits if round(h["score"], 4) > last} == {
            h.id for h in expected if round(h.score, 4) > last
        }
        if at > swapped_at + 0.2:  # answered after the job was done: the new bundle only
            assert which == new
        seen[which] += 1
    assert seen[old] > 0 and seen[new] > 0, seen


# -- the CLI sends its write commands to the service ------------------------------------------------------------
def test_the_cli_routes_reembed_rollback_ingest_and_drop_version_to_the_service_holding_the_store(site, pool):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    store_args = ["--qdrant-path", str(site / "qdrant")]
    runner = CliRunner()
    service = make_service(site, pool)
    with BackgroundServer(create_app(service, watch_interval_s=0)) as server:
        write_service_address(site / "qdrant", server.url, collection="items")  # as `mmalign serve` does
        assert read_service_address(site / "qdrant")["url"] == server.url
        features = ["--features", str(site / "features")]
        result = runner.invoke(
            main, ["reembed", "--collection", "items", "--bundle", str(site / "bundle2"), *features, *store_args]
        )
        assert result.exit_code == 0, result.output
        assert "sent as job" in result.output and "items__v2" in result.output
        assert service.store.resolve_alias("items") == "items__v2"

        result = runner.invoke(main, ["rollback", "items", *store_args])
        assert result.exit_code == 0 and "items -> items__v1" in result.output, result.output

        catalog = str(site / "catalog" / "catalog.jsonl")
        result = runner.invoke(
            main,
            ["ingest", catalog, "--bundle", str(site / "bundle"), "--collection", "items", "--json", *features]
            + store_args,
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output[result.output.index("{") :])
        assert report["unchanged"] == N_ITEMS and report["physical_collection"] == "items__v1"

        result = runner.invoke(main, ["rollback", "items", "--to", "v9", *store_args])
        assert result.exit_code == 1 and "failed: 'items' has no version v9" in result.output, result.output
        result = runner.invoke(main, ["drop-version", "items__v2", "--force", *store_args])
        assert result.exit_code == 0 and "dropped items__v2" in result.output, result.output
        assert not service.store.collection_exists("items__v2")
        result = runner.invoke(main, ["store", "index", "--collection", "items", *store_args])
        assert result.exit_code == 0 and "items__v1: indexed in" in result.output, result.output
        assert [j.kind for j in service.jobs.list()] == [
            "index",
            "drop_version",
            "rollback",
            "ingest",
            "rollback",
            "reembed",
        ]
    service.close()
    # the service is gone: its record is stale and the same command runs here
    assert read_service_address(site / "qdrant") is None
    result = runner.invoke(main, ["rollback", "items", "--to", "v1", *store_args])
    assert result.exit_code == 0 and "sent as job" not in result.output, result.output


# -- a service killed during a job ----------------------------------------------------------------------------------
def start_serve(site: Path, *, crash_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MMALIGN_CRASH_AT", None)
    if crash_at:
        env["MMALIGN_CRASH_AT"] = crash_at
    command = [sys.executable, "-m", "mmalign.plugin", "serve", "--collection", "items"]
    command += ["--qdrant-path", str(site / "qdrant"), "--port", "0", "--in-process", "--device", "cpu"]
    command += ["--watch-interval", "0", "--no-access-log", "--log-level", "warning"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    """Kill what is left of ``mmalign serve`` (the command runs in a forked child: the whole group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(30)


def service_url(site: Path, process: subprocess.Popen, timeout_s: float = 180.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = read_service_address(site / "qdrant")
        if record is not None:
            return record["url"]
        if process.poll() is not None:
            pytest.fail(f"mmalign serve stopped: {process.stdout.read()}")
        time.sleep(0.2)
    pytest.fail("mmalign serve did not record its address")


def test_a_service_killed_during_a_reembed_resumes_the_job_at_its_next_start(site, pool):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    process = start_serve(site, crash_at="reembed.chunk_written:3")
    try:
        url = service_url(site, process)
        # the user types the same command; the CLI sends it to the service, which is killed at the 3rd chunk
        result = CliRunner().invoke(
            main,
            ["reembed", "--collection", "items", "--bundle", str(site / "bundle2"), "--batch-size", "5"]
            + ["--features", str(site / "features"), "--qdrant-path", str(site / "qdrant")],
        )
        print("CLI:", result.output)
        assert process.wait(180) in (-signal.SIGKILL, 128 + signal.SIGKILL)
    finally:
        stop(process)
    assert result.exit_code == 1 and f"cannot reach the service at {url}" in result.output, result.output
    assert read_service_address(site / "qdrant") is None  # stale: its process is gone
    [kept] = [json.loads(p.read_text()) for p in (site / "qdrant" / ".mmalign-jobs").glob("*.json")]
    assert kept["state"] == "running" and kept["kind"] == "reembed"
    with VectorStore(StoreConfig(path=str(site / "qdrant"))) as vs:  # never half-swapped
        assert vs.resolve_alias("items") == "items__v1"
        assert vs.collection_record("items__v2").state == "building" and vs.count("items__v2") == 15

    service = make_service(site, pool)  # the next start resumes it
    try:
        deadline = time.monotonic() + 120
        while (job := service.jobs.get(kept["id"])).state not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job.state == "done" and job.attempts == 2, job
        assert any("the service stopped during this job (attempt 1)" in line for line in job.log)
        report = ReembedReport.model_validate(job.result)
        assert report.swapped and report.new_version == "items__v2" and report.resumed == 15
        assert service.store.resolve_alias("items") == "items__v2"
    finally:
        service.close()


def test_a_service_killed_during_a_rollback_reports_it_failed_at_its_next_start(site, pool):
    from mmalign.plugin.index.reembed import reembed

    with VectorStore(StoreConfig(path=str(site / "qdrant"))) as vs:
        assert reembed("items", bundle=site / "bundle2", store=vs, features_dir=site / "features").swapped
    process = start_serve(site, crash_at="rollback.recorded")
    try:
        url = service_url(site, process)
        with httpx.Client(base_url=url, timeout=60) as client:
            job = client.post("/v1/collections/items/jobs", json={"kind": "rollback"}).json()
        assert process.wait(180) in (-signal.SIGKILL, 128 + signal.SIGKILL)
    finally:
        stop(process)
    service = make_service(site, pool)
    try:
        found = service.jobs.get(job["id"])
        assert found.state == "failed" and "the service stopped during this job (attempt 1)" in found.error
        assert "mmalign versions items" in found.error
        assert service.store.resolve_alias("items") == "items__v2"  # killed before the swap: where it was
    finally:
        service.close()
