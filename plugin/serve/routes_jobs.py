"""The jobs router: write jobs (ingest, reembed, rollback, drop-version, index) run by the service that
owns the store (see :mod:`.jobs`). With ``--api-key`` they need the key; without one, only clients on
127.0.0.1 may use them (:class:`~mmalign.plugin.serve.http.ServiceMiddleware`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from mmalign.plugin.serve.http import json_response
from mmalign.plugin.serve.jobs import Job, JobRequest, JobState
from mmalign.plugin.serve.models import Error
from mmalign.plugin.serve.routes import SECURED

JOB_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Unknown kind or argument, a catalog that cannot be opened"},
    401: {"model": Error, "description": "Missing or wrong API key"},
    403: {
        "model": Error,
        "description": "A path outside the service's job roots (path_not_allowed), or a client that is not "
        "on 127.0.0.1 while the service has no API key (jobs_local_only)",
    },
    404: {"model": Error, "description": "Unknown job or collection"},
    409: {"model": Error, "description": "Cancel of a finished job, or of a one-step job that already started"},
}


def jobs_routes(service) -> APIRouter:
    router = APIRouter(tags=["jobs"], dependencies=SECURED)
    jobs = service.jobs

    @router.post("/v1/collections/{name}/jobs", status_code=202, response_model=Job, responses=JOB_ERRORS)
    async def submit(name: str, body: JobRequest):
        """Queue a write job on collection `name`: `{"kind": "reembed", "args": {"bundle": "..."}}`.

        Kinds and their arguments are those of the CLI commands: `ingest` (catalog, bundle, media_root,
        format, features_dir, dead_letter, chunk_size, device, collab), `reembed` (bundle, catalog, media_root,
        format, features_dir, dead_letter, keep, min_quality, reencode, chunk_size, device), `rollback` (to),
        `drop_version` (name, force) and `index`. Paths are on the service's machine and must lie under its job
        roots. One job runs at a time per collection; the answer is the queued job (202), whose progress
        `GET /v1/jobs/{id}` shows."""
        job = await run_in_threadpool(jobs.submit, name, body)
        return json_response(202, job.model_dump(mode="json"), headers={"Location": f"/v1/jobs/{job.id}"})

    @router.get("/v1/jobs", response_model=list[Job], responses=JOB_ERRORS)
    async def list_jobs(
        collection: str | None = None,
        state: JobState | None = None,
        limit: int = Query(50, ge=1, le=500),
    ):
        """The jobs, newest first (without their logs)."""
        found = jobs.list(collection=collection, state=state, limit=limit)
        return json_response(200, [j.model_dump(mode="json") for j in found])

    @router.get("/v1/jobs/{job_id}", response_model=Job, responses=JOB_ERRORS)
    async def get_job(
        job_id: str,
        since: int | None = Query(None, ge=-1, description="Wait for a revision after this one ..."),
        wait: float = Query(0.0, ge=0, le=30, description="... for at most this many seconds."),
    ):
        """One job: state, progress, log, and once done its result (the report `mmalign ... --json` prints)."""
        job = jobs.get(job_id)
        if since is not None and wait > 0:  # a long poll, without holding a thread
            deadline = time.monotonic() + wait
            while job.revision <= since and not job.finished and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                job = jobs.get(job_id)
        return json_response(200, job.model_dump(mode="json"))

    @router.delete("/v1/jobs/{job_id}", response_model=Job, responses=JOB_ERRORS)
    async def cancel(job_id: str):
        """Cancel a job: a queued one at once; a running ingest or reembed after the chunk it is writing
        (what was written stays, and the alias does not move)."""
        job = await run_in_threadpool(jobs.cancel, job_id)
        return json_response(200, job.model_dump(mode="json"))

    return router
