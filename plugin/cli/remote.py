"""Write commands sent to the ``mmalign serve`` that holds the store, as jobs (plugin/serve/jobs.py).

An embedded store has one owner. When ``mmalign ingest|reembed|rollback|drop-version`` finds its store
held by a running ``mmalign serve`` (the service records its address next to the store's lock), or is
given ``--via URL``, the command is sent to that service as a job: its progress is printed on stderr,
and the command prints the job's report and exits with the status it would have had run here. Ctrl-C
stops following; the job goes on in the service (``DELETE /v1/jobs/{id}`` cancels it).

Only the standard library is used here (no HTTP package is needed for the CLI).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import click

#: Seconds between two progress lines when nothing changes (long work prints at least this often).
HEARTBEAT_S = 10.0
#: Seconds one long poll waits for a change of the job.
POLL_S = 5.0


def remote_options(fn):
    """``--via URL`` and ``--service-key KEY`` of the commands that can run as a job in a service."""
    fn = click.option(
        "--service-key",
        envvar="MMALIGN_API_KEY",
        help="API key of the service the job is sent to (or $MMALIGN_API_KEY).",
    )(fn)
    fn = click.option(
        "--via",
        metavar="URL",
        help="Send this command as a job to the mmalign serve at URL (default: to the service that holds the "
        "store, when one does).",
    )(fn)
    return fn


class RemoteService:
    """The jobs API of one service, over urllib."""

    def __init__(self, url: str, key: str | None = None, *, pid: int | None = None):
        self.url = url.rstrip("/")
        self.key = key
        self.pid = pid

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read() or b"{}")
            except ValueError:
                error = {}
            detail = error.get("detail") or exc.reason
            raise click.ClickException(
                f"the service at {self.url} refused the job: {detail} ({exc.code} {error.get('code', '')})".rstrip()
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise click.ClickException(f"cannot reach the service at {self.url}: {reason}") from None

    def submit(self, collection: str, kind: str, args: dict[str, Any]) -> dict:
        from urllib.parse import quote

        return self.call("POST", f"/v1/collections/{quote(collection, safe='')}/jobs", {"kind": kind, "args": args})

    def follow(self, job: dict, echo=None) -> dict:
        """Poll the job until it is finished, printing its progress; returns the finished job."""
        echo = echo or (lambda line: click.echo(line, err=True))
        last_line, last_at = None, 0.0
        while True:
            line = progress_line(job)
            now = time.monotonic()
            if line != last_line or now - last_at >= HEARTBEAT_S:
                echo(line)
                last_line, last_at = line, now
            if job["state"] in ("done", "failed", "cancelled"):
                return job
            job = self.call("GET", f"/v1/jobs/{job['id']}?since={job['revision']}&wait={POLL_S:g}", timeout=POLL_S + 60)


def progress_line(job: dict) -> str:
    progress = job.get("progress") or {}
    done, total = progress.get("done", 0), progress.get("total")
    count = ""
    if total:
        count = f" {done:,}/{total:,} items ({100 * done / total:.0f}%)"
    elif done:
        count = f" {done:,} items"
    return f"job {job['id']} ({job['kind']} {job['collection']}): {job['state']}, {progress.get('stage', '')}{count}"


def service_for(store, via: str | None, key: str | None) -> RemoteService | None:
    """The service to send a write command to: ``--via``, else the one that holds the embedded store."""
    if via:
        return RemoteService(via, key)
    if store.is_server or store.resolved_path == ":memory:" or not os.path.isdir(store.resolved_path):
        return None
    from mmalign.connectors.store_files import read_service_address

    record = read_service_address(store.resolved_path)
    if record is None:
        return None
    return RemoteService(record["url"], key, pid=record.get("pid"))


def run_remote(store, via: str | None, key: str | None, collection: str, kind: str, args: dict) -> dict | None:
    """Send a command as a job when a service owns the store (or ``--via``); None: run it here.

    Returns the finished job's result (the report); a failed or cancelled job is a ClickException."""
    service = service_for(store, via, key)
    if service is None:
        return None
    job = service.submit(collection, kind, args)
    held = f"the store is held by mmalign serve (pid {service.pid}); " if service.pid else ""
    click.echo(f"{held}sent as job {job['id']} to {service.url}", err=True)
    try:
        job = service.follow(job)
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped following; job {job['id']} goes on in the service: {service.url}/v1/jobs/{job['id']} "
            f"(cancel: curl -X DELETE {service.url}/v1/jobs/{job['id']})",
            err=True,
        )
        sys.exit(130)
    if job["state"] == "failed":
        raise click.ClickException(f"job {job['id']} failed: {job.get('error')}")
    if job["state"] == "cancelled":
        raise click.ClickException(f"job {job['id']} was cancelled: {(job.get('log') or [''])[-1]}")
    return job["result"]


#: Arguments that are paths: sent absolute, as the service on this machine must read them.
PATH_ARGS = ("catalog", "bundle", "media_root", "features_dir", "dead_letter")


def job_args(args: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A command's options as a job's arguments: paths made absolute (``bundle="base"`` is a name)."""
    out = {**args, **more}
    for key in PATH_ARGS:
        if out.get(key) is not None and not (key == "bundle" and out[key] == "base"):
            out[key] = os.path.abspath(out[key])
    return out
