"""Write jobs run by the service that owns the store: ingest, reembed, rollback, drop-version, index.

An embedded store has one owner. While ``mmalign serve`` holds it, the writes that other processes
cannot make (``mmalign ingest|reembed|rollback|drop-version``, ``store index``) are sent to the service
as jobs (``POST /v1/collections/{name}/jobs``) and run here, on a thread of the service's process,
while queries go on being answered.

- **One job at a time per collection**, in the order they came (a FIFO per collection, one worker
  thread each). Each job has an id, a state (``queued`` -> ``running`` -> ``done`` | ``failed`` |
  ``cancelled``), progress (stage, items done of total), a log, and as result the typed report that the
  CLI prints (:class:`~mmalign.schemas.IngestReport`, :class:`~mmalign.schemas.ReembedReport`, ...).
- **Cancel** (``DELETE /v1/jobs/{id}``): a queued job is cancelled at once; a running ingest or reembed
  stops between two chunks (what was written stays: a rerun resumes it; a reembed never swaps); a
  rollback, drop or index runs in one step and cannot be stopped once it started.
- **Persisted** under ``<store>/.mmalign-jobs/`` (one JSON file per job, replaced atomically): jobs
  outlive the client that sent them, and a service killed during a job finds it at its next start. An
  ingest or reembed that was running is queued again and resumes (the collection records say where it
  was: a reembed goes on with the version it was building, and the alias moves only after verify); a
  rollback, drop or index that was running is reported failed (each is one atomic step). A job that was
  interrupted :data:`MAX_ATTEMPTS` times is reported failed instead of being tried again.
- **Paths** in the arguments (catalog, media root, bundle, feature cache, dead letter) must lie under
  the roots the service was started with (:class:`JobsConfig`; the media root it serves counts for
  reading), after symlinks are resolved.
- **A bounded share of the CPU**: the job thread runs torch with ``JobsConfig.threads`` threads (when the
  query encoders are in the model process, the only torch work of the service's process is the job's)
  and can run at a lower priority (``nice``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from mmalign.connectors.errors import MmalignError
from mmalign.connectors.store_files import read_json, write_json_atomic
from mmalign.plugin.serve.errors import ServiceError, public_message

log = logging.getLogger(__name__)

JobKind = Literal["ingest", "reembed", "rollback", "drop_version", "index"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED = ("done", "failed", "cancelled")
#: Kinds that are written in chunks and resumed by a rerun (the others are one atomic step each).
RESUMABLE = ("ingest", "reembed")
#: A job interrupted this many times (the service killed while it ran) is reported failed.
MAX_ATTEMPTS = 3
#: Lines of log kept per job.
LOG_LINES = 400
#: Seconds between two writes of a running job's progress to disk.
SAVE_EVERY_S = 2.0
JOBS_FOLDER = ".mmalign-jobs"


class JobsConfig(BaseModel):
    """How the service runs write jobs (``mmalign serve --jobs-root/--jobs-dir/--job-threads/--job-nice``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roots: tuple[Path, ...] = Field(
        default=(),
        description="Folders the paths of a job must lie under (catalog, bundle, media root, feature cache, "
        "dead letter). Empty: the folder that holds the embedded store (e.g. mmalign-data for "
        "mmalign-data/qdrant). The media root the service serves also counts for reading.",
    )
    folder: Path | None = Field(
        default=None,
        description="Where jobs are kept (one JSON file each). None: <store>/.mmalign-jobs for an embedded "
        "store in a folder; not kept (lost at exit) for an in-memory store or a server without this setting.",
    )
    threads: int = Field(default=1, ge=1, description="torch threads of a job (encoders, projections).")
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How much lower the job thread's CPU priority is (Linux nice). 10: measured on 2 shared cores, "
        "queries kept 0.6-0.85 of their rate during a reembed (0.32 with 0) while the job took 1.4-2x longer "
        "(benchmarks/serve_jobs.py, docs/serve.md#writes-while-serving).",
    )
    keep: int = Field(default=200, ge=1, description="Finished jobs kept (the oldest are forgotten).")


# -- what a job is asked to do ----------------------------------------------------------------------------
class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestArgs(_Args):
    """As ``mmalign ingest CATALOG --bundle B --collection NAME``."""

    catalog: str = Field(description="Catalog file or media folder (a path on the service's machine).")
    bundle: str = Field(description="Bundle folder, or 'base' (the shipped base bundle).")
    media_root: str | None = Field(default=None, description="Default: the catalog's folder.")
    format: Literal["jsonl", "csv", "folder"] | None = None
    features_dir: str | None = Field(default=None, description="Feature cache; default: <first root>/features.")
    dead_letter: str | None = None
    chunk_size: int = Field(default=256, ge=1)
    device: str = "auto"
    runtime: str | None = Field(default=None, description="torch, onnx or auto (as --runtime).")
    collab: bool = False
    runner: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_workers: int = Field(default=1, ge=1)


class ReembedArgs(_Args):
    """As ``mmalign reembed --collection NAME --bundle B``."""

    bundle: str
    catalog: str | None = Field(default=None, description="Needed when the new bundle's encoders differ.")
    media_root: str | None = None
    format: Literal["jsonl", "csv", "folder"] | None = None
    features_dir: str | None = None
    dead_letter: str | None = None
    keep: int = Field(default=2, ge=0)
    min_quality: float | None = None
    reencode: bool = False
    chunk_size: int = Field(default=256, ge=1)
    device: str = "auto"
    runner: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_workers: int = Field(default=1, ge=1)


class RollbackArgs(_Args):
    to: str | None = Field(default=None, description="vK or K; default: the previous ready version.")


class DropVersionArgs(_Args):
    name: str = Field(description="The physical version to delete, e.g. catalog__v3 (no alias may point at it).")
    force: bool = False


class IndexArgs(_Args):
    pass


ARGS: dict[str, type[_Args]] = {
    "ingest": IngestArgs,
    "reembed": ReembedArgs,
    "rollback": RollbackArgs,
    "drop_version": DropVersionArgs,
    "index": IndexArgs,
}


def _request_model(kind: str, args: type[_Args]) -> type[BaseModel]:
    """The body that asks for one kind of job: ``{"kind": KIND, "args": {...}}`` (``args`` may be left out
    when none of its fields is required)."""
    required = any(f.is_required() for f in args.model_fields.values())
    name = "".join(part.title() for part in kind.split("_")) + "Job"
    default = ... if required else Field(default_factory=args)
    return create_model(name, __config__=ConfigDict(extra="forbid"), kind=(Literal[kind], ...), args=(args, default))


#: The body of ``POST /v1/collections/{name}/jobs``: one model per kind, told apart by ``kind``.
JobRequest = Annotated[Union[tuple(_request_model(k, a) for k, a in ARGS.items())], Field(discriminator="kind")]  # noqa: UP007
#: Argument fields that name files the job reads, and those it writes.
READ_PATHS = ("catalog", "bundle", "media_root")
WRITE_PATHS = ("features_dir", "dead_letter")


# -- what a job is ----------------------------------------------------------------------------------------
class JobProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = Field(default="queued", description="What the job is doing now.")
    done: int = Field(default=0, description="Items done in this stage.")
    total: int | None = Field(default=None, description="Items of this stage, when known.")


class Job(BaseModel):
    """A write job: what was asked, where it is, and its result (the typed report the CLI prints)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: JobKind
    collection: str
    args: dict[str, Any] = Field(description="The job's arguments, paths resolved on the service's machine.")
    state: JobState = "queued"
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    result_type: str | None = Field(
        default=None, description="IngestReport, ReembedReport, IndexReport, RollbackResult or DropResult."
    )
    result: dict[str, Any] | None = Field(default=None, description="The report, as `mmalign ... --json` prints it.")
    error: str | None = None
    cancel_requested: bool = False
    attempts: int = Field(default=0, description="Times it was started (more than 1: resumed after a restart).")
    revision: int = Field(default=0, description="Grows with every change (GET /v1/jobs/{id}?since=N waits for one).")
    log: list[str] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class JobCancelled(Exception):
    """Raised between two chunks of a job whose cancel was asked for."""


class ServiceStopping(Exception):
    """Raised between two chunks when the service shuts down (the job resumes at its next start)."""


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# -- paths ------------------------------------------------------------------------------------------------
def confine(field: str, value: str, roots: Iterable[Path]) -> str:
    """``value`` as an absolute path with symlinks resolved, if it lies under one of ``roots`` (a relative
    path is taken under the first root); else a 403 naming the field (never the path)."""
    roots = [Path(r).resolve() for r in roots]
    if not roots:
        raise ServiceError(
            403,
            "path_not_allowed",
            f"args.{field}: this service takes no paths in jobs (start it with --jobs-root DIR; an in-memory "
            "store has no default root)",
        )
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = roots[0] / path
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise ServiceError(
            403,
            "path_not_allowed",
            f"args.{field} is outside the folders this service takes job paths from (mmalign serve --jobs-root; "
            f"{len(roots)} root(s))",
        )
    return str(resolved)


# -- the queue --------------------------------------------------------------------------------------------
class _JobLog(logging.Handler):
    """Log records of the library emitted on a job's thread go into that job's log too."""

    def __init__(self, queue: JobQueue):
        super().__init__(logging.INFO)
        self.queue = queue
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        job_id = self.queue._thread_jobs.get(threading.get_ident())
        if job_id is not None:
            try:
                self.queue._log(job_id, public_message(self.format(record)))
            except Exception:  # noqa: BLE001 - logging never fails the job
                pass


class JobQueue:
    """The service's write jobs: submit, list, get, wait, cancel; one worker thread per collection."""

    def __init__(
        self,
        store,
        config: JobsConfig | None = None,
        *,
        read_roots: Callable[[], Iterable[Path | None]] = tuple,
        model_process: bool = False,
    ):
        self.store = store
        self.config = config or JobsConfig()
        self.roots = list(self.config.roots) or _default_roots(store)
        self.folder = self.config.folder or _default_folder(store)
        self._read_roots = read_roots
        self._model_process = model_process
        self._cond = threading.Condition()
        self._io = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, deque[str]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._thread_jobs: dict[int, str] = {}
        self._saved: dict[str, tuple[int, float]] = {}
        self._stopping = threading.Event()
        self._started = False
        self._handler = _JobLog(self)
        #: Encoders built by ingest jobs, kept for the next job (never shared with the query path).
        self.encoder_pool: dict = {}

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the jobs kept on disk: resume or fail what a killed service left running, run what is queued."""
        if self._started:
            return
        self._started = True
        logging.getLogger("mmalign").addHandler(self._handler)
        if self.folder is not None:
            self._load()
        with self._cond:
            for collection in list(self._queues):
                self._ensure_worker(collection)

    def _load(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        found = []
        for path in self.folder.glob("*.json"):
            try:
                found.append(Job.model_validate(read_json(path)))
            except (OSError, ValueError) as exc:
                log.warning("ignoring an unreadable job file %s: %s", path.name, exc)
        for job in sorted(found, key=lambda j: (j.created_at, j.id)):
            self._saved[job.id] = (job.revision, 0.0)  # as it is on disk
            if job.state == "running":
                self._recover(job)
                self._save(job, force=True)
            self._jobs[job.id] = job
            if job.state == "queued":
                self._queues.setdefault(job.collection, deque()).append(job.id)
        self._prune()

    def _recover(self, job: Job) -> None:
        """A job the service was running when it was killed."""
        where = f"the service stopped during this job (attempt {job.attempts})"
        if job.cancel_requested:
            job.state, job.finished_at = "cancelled", _now()
            job.log.append(f"{_now()} {where}; it was being cancelled: cancelled")
        elif job.kind in RESUMABLE and job.attempts < MAX_ATTEMPTS:
            job.state = "queued"
            job.progress = JobProgress(stage="queued (resumes)", done=job.progress.done, total=job.progress.total)
            job.log.append(f"{_now()} {where}; queued again: it resumes where the store says it was")
        else:
            job.state, job.finished_at = "failed", _now()
            job.error = where + "; " + _left_as(job)
            job.log.append(f"{_now()} {job.error}")
        job.revision += 1

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop: running jobs stop at their next chunk (they resume at the next start), queued ones stay."""
        self._stopping.set()
        with self._cond:
            workers = list(self._workers.values())
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        logging.getLogger("mmalign").removeHandler(self._handler)

    # -- the API ------------------------------------------------------------------------------------------
    def submit(self, collection: str, request: BaseModel) -> Job:
        """Queue a job on ``collection`` (``request``: one of :data:`JobRequest`); paths are confined first."""
        if self._stopping.is_set():
            raise ServiceError(503, "stopping", "the service is shutting down; send the job again after its restart")
        kind = request.kind
        args = request.args.model_dump()
        self._confine(kind, args)
        if kind != "ingest" and not self.store.collection_exists(collection):
            raise ServiceError(404, "collection_missing", f"collection {collection!r} does not exist; ingest it first")
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, collection=collection, args=args, created_at=_now())
        job.log.append(f"{job.created_at} queued: {kind} on {collection!r}")
        with self._cond:
            self._jobs[job.id] = job
            self._queues.setdefault(collection, deque()).append(job.id)
            ahead = len(self._queues[collection]) - 1 + (collection in self._running_collections())
            if ahead:
                job.log.append(f"{job.created_at} waiting for {ahead} job(s) on {collection!r}")
            snapshot = job.model_copy(deep=True)
        self._save(snapshot, force=True)
        with self._cond:
            self._ensure_worker(collection)
        self._prune()
        return snapshot

    def get(self, job_id: str) -> Job:
        with self._cond:
            return self._get(job_id).model_copy(deep=True)

    def wait(self, job_id: str, since: int, timeout_s: float) -> Job:
        """The job once its revision is past ``since`` (or it is finished), or as it is after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            job = self._get(job_id)
            while job.revision <= since and not job.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return job.model_copy(deep=True)

    def list(self, collection: str | None = None, state: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first, without their logs."""
        with self._cond:
            jobs = [
                j.model_copy(update={"log": []})
                for j in reversed(self._jobs.values())  # in the order they came (read back in that order)
                if (collection is None or j.collection == collection) and (state is None or j.state == state)
            ]
        return jobs[:limit]

    def cancel(self, job_id: str) -> Job:
        with self._cond:
            job = self._get(job_id)
            if job.finished:
                raise ServiceError(409, "job_finished", f"job {job_id!r} is already {job.state}; nothing to cancel")
            if job.state == "queued":
                self._queues.get(job.collection, deque()).remove(job_id)
                job.state, job.finished_at = "cancelled", _now()
                job.log.append(f"{job.finished_at} cancelled before it started")
            elif job.kind not in RESUMABLE:
                raise ServiceError(
                    409, "job_running", f"job {job_id!r} ({job.kind}) runs in one step and cannot be stopped now"
                )
            else:
                job.cancel_requested = True
                job.log.append(f"{_now()} cancel asked: the job stops after the chunk it is writing")
            job.revision += 1
            self._cond.notify_all()
            snapshot = job.model_copy(deep=True)
        self._save(snapshot, force=True)
        return snapshot

    # -- inside -------------------------------------------------------------------------------------------
    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ServiceError(404, "unknown_job", f"no job {job_id!r}; GET /v1/jobs lists the jobs")
        return job

    def _running_collections(self) -> set[str]:
        return {j.collection for j in self._jobs.values() if j.state == "running"}

    def _confine(self, kind: str, args: dict[str, Any]) -> None:
        readable = [*self.roots, *(r for r in self._read_roots() if r is not None)]
        for field in READ_PATHS:
            value = args.get(field)
            if value is not None and not (field == "bundle" and value == "base"):
                args[field] = confine(field, value, readable)
        for field in WRITE_PATHS:
            if field in ARGS[kind].model_fields:
                value = args.get(field)
                if value is None and field == "features_dir":
                    value = "features"  # under the first root: mmalign-data/features next to mmalign-data/qdrant
                if value is not None:
                    args[field] = confine(field, value, self.roots)
        if args.get("catalog") is not None:  # the media root a catalog implies must be allowed too
            from mmalign.connectors.sources import open_catalog

            try:
                catalog = open_catalog(args["catalog"], media_root=args.get("media_root"), format=args.get("format"))
            except MmalignError as exc:
                raise ServiceError(400, "bad_request", f"args.catalog: {public_message(str(exc))}") from None
            confine("media_root", str(catalog.media_root), readable)

    def _ensure_worker(self, collection: str) -> None:
        """(Under the lock.) A worker for ``collection`` when it has queued jobs and none is running."""
        if self._stopping.is_set() or not self._started:
            return
        worker = self._workers.get(collection)
        if worker is not None and worker.is_alive():
            return
        if not self._queues.get(collection):
            return
        worker = threading.Thread(
            target=self._work, args=(collection,), name=f"mmalign-job-{collection}"[:40], daemon=True
        )
        self._workers[collection] = worker
        worker.start()

    def _work(self, collection: str) -> None:
        self._lower_priority()
        while not self._stopping.is_set():
            with self._cond:
                queue = self._queues.get(collection)
                if not queue:
                    self._workers.pop(collection, None)
                    return
                job = self._jobs[queue.popleft()]
                job.state, job.started_at, job.finished_at = "running", _now(), None
                job.attempts += 1
                job.progress = JobProgress(stage="starting", done=0, total=job.progress.total)
                job.log.append(f"{job.started_at} started (attempt {job.attempts})")
                job.revision += 1
                self._cond.notify_all()
                snapshot = job.model_copy(deep=True)
            self._save(snapshot, force=True)
            self._thread_jobs[threading.get_ident()] = job.id
            try:
                self._execute(job)
            finally:
                self._thread_jobs.pop(threading.get_ident(), None)
        with self._cond:
            self._workers.pop(collection, None)

    def _execute(self, job: Job) -> None:
        started = time.perf_counter()
        outcome: dict[str, Any]
        try:
            result_type, result = run_job(self, job)
            outcome = {"state": "done", "result_type": result_type, "result": result}
        except JobCancelled:
            outcome = {"state": "cancelled", "note": "cancelled between two chunks; " + _left_as(job)}
        except ServiceStopping:
            outcome = {"state": "queued", "note": "the service is stopping: the job resumes at its next start"}
        except MmalignError as exc:
            outcome = {"state": "failed", "error": public_message(str(exc))}
        except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback, the job is failed
            log.exception("job %s (%s on %r) failed", job.id, job.kind, job.collection)
            outcome = {
                "state": "failed",
                "error": f"internal error ({type(exc).__name__}); the service log has the details",
            }
        with self._cond:
            job.state = outcome["state"]
            now = _now()
            if job.state == "queued":  # stopped by a shutdown: not an attempt that failed
                job.attempts -= 1
                job.progress.stage = "queued (resumes)"
                self._queues.setdefault(job.collection, deque()).appendleft(job.id)
            else:
                job.finished_at = now
                job.progress.stage = job.state
            job.result_type = outcome.get("result_type")
            job.result = outcome.get("result")
            job.error = outcome.get("error")
            line = outcome.get("note") or outcome.get("error") or f"done in {time.perf_counter() - started:.1f} s"
            job.log.append(f"{now} {job.state}: {line}" if job.state != "done" else f"{now} {line}")
            job.log[:] = job.log[-LOG_LINES:]
            job.revision += 1
            self._cond.notify_all()
            snapshot = job.model_copy(deep=True)
        self._save(snapshot, force=True)
        self._prune()

    def _lower_priority(self) -> None:
        """The job thread runs at a lower CPU priority (``nice``), where the system allows it."""
        if self.config.nice:
            try:  # Linux: a thread id is a process id for the scheduler
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self.config.nice)
            except (AttributeError, OSError) as exc:
                log.warning("cannot lower the priority of the job thread: %s", exc)

    def _limit_torch(self) -> None:
        """torch's threads for the job, when the query encoders are in the model process (torch in this
        process then runs only jobs; with the encoders in this process, the service's --threads stays)."""
        if not self._model_process:
            return  # the query encoders use torch in this process: its threads are the service's setting
        import torch

        if torch.get_num_threads() != self.config.threads:
            torch.set_num_threads(self.config.threads)

    # -- progress, cancel, log (called on the job's thread) -----------------------------------------------
    def _progress(self, job: Job, stage: str, done: int, total: int | None) -> None:
        with self._cond:
            if job.progress.stage != stage:
                job.log.append(f"{_now()} {stage}" + (f" ({total} items)" if total is not None else ""))
            job.progress = JobProgress(stage=stage, done=done, total=total)
            job.revision += 1
            self._cond.notify_all()
            snapshot = job.model_copy(deep=True)
        self._save(snapshot)

    def _check(self, job: Job) -> None:
        if job.cancel_requested:
            raise JobCancelled(job.id)
        if self._stopping.is_set():
            raise ServiceStopping(job.id)

    def _log(self, job_id: str, line: str) -> None:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                job.log.append(f"{_now()} {line}")
                del job.log[:-LOG_LINES]
                job.revision += 1
                self._cond.notify_all()

    # -- disk ---------------------------------------------------------------------------------------------
    def _save(self, job: Job, *, force: bool = False) -> None:
        """Write ``job`` (a snapshot) to its file: always on a state change, else at most every few seconds."""
        if self.folder is None:
            return
        with self._io:
            revision, at = self._saved.get(job.id, (-1, 0.0))
            if job.revision <= revision or (not force and time.monotonic() - at < SAVE_EVERY_S):
                return
            try:
                write_json_atomic(self.folder / f"{job.id}.json", job.model_dump(mode="json"))
            except OSError as exc:
                log.error("cannot keep job %s on disk: %s", job.id, exc)
                return
            self._saved[job.id] = (job.revision, time.monotonic())

    def _prune(self) -> None:
        with self._cond:
            finished = [j for j in reversed(self._jobs.values()) if j.finished]  # newest first
            gone = [j.id for j in finished[self.config.keep :]]
            for job_id in gone:
                del self._jobs[job_id]
        for job_id in gone:
            self._saved.pop(job_id, None)
            if self.folder is not None:
                (self.folder / f"{job_id}.json").unlink(missing_ok=True)


def _left_as(job: Job) -> str:
    """What an interrupted job left behind, in words."""
    if job.kind == "reembed":
        return (
            "the alias was not moved by this job unless its log says swapped; the version it was building stays, "
            "and a reembed with the same bundle resumes it"
        )
    if job.kind == "ingest":
        return "what was written stays; the same ingest again resumes (unchanged items are skipped)"
    if job.kind == "rollback":
        return f"the alias moves in one step: `mmalign versions {job.collection}` shows where it points"
    return "it runs in one step: it happened or it did not (`mmalign versions` shows the versions)"


def _default_roots(store) -> list[Path]:
    folder = _store_folder(store)
    return [folder.parent.resolve()] if folder is not None else []


def _default_folder(store) -> Path | None:
    folder = _store_folder(store)
    return folder / JOBS_FOLDER if folder is not None else None


def _store_folder(store) -> Path | None:
    """The folder of an embedded store (None for an in-memory store or a server)."""
    config = getattr(store, "config", None)
    if config is None or config.is_server or config.resolved_path == ":memory:":
        return None
    return Path(config.resolved_path).resolve()


# -- running one job --------------------------------------------------------------------------------------
def run_job(queue: JobQueue, job: Job) -> tuple[str, dict[str, Any]]:
    """Run ``job`` on ``queue``'s store; returns (result type, the report as JSON)."""
    args = ARGS[job.kind].model_validate(job.args)
    store = queue.store
    if job.kind == "ingest":
        return _ingest(queue, job, args)
    if job.kind == "reembed":
        return _reembed(queue, job, args)
    queue._progress(job, job.kind.replace("_", " "), 0, None)
    if job.kind == "rollback":
        from mmalign.plugin.index.versions import rollback

        live = rollback(store, job.collection, args.to)
        return "RollbackResult", {"collection": job.collection, "live": live}
    if job.kind == "drop_version":
        from mmalign.plugin.index.versions import drop_version

        drop_version(store, args.name, force=args.force)
        return "DropResult", {"dropped": args.name}
    from dataclasses import asdict

    return "IndexReport", asdict(store.build_index(job.collection))


def _chunks(queue: JobQueue, job: Job, stage: str, chunk_size: int, total: int | None, after: str):
    """An ``on_chunk`` callback: progress after each chunk, then cancel/stop checks between chunks."""

    def on_chunk(number: int) -> None:
        done = (number + 1) * chunk_size if total is None else min((number + 1) * chunk_size, total)
        last = total is not None and done >= total
        queue._progress(job, after if last else stage, done, total)
        queue._check(job)

    return on_chunk


def _catalog(args):
    from mmalign.connectors.sources import open_catalog

    return open_catalog(args.catalog, media_root=args.media_root, format=args.format) if args.catalog else None


def _ingest(queue: JobQueue, job: Job, args: IngestArgs) -> tuple[str, dict[str, Any]]:
    from mmalign.plugin.index.ingest import ingest

    catalog = _catalog(args)
    queue._progress(job, "reading the catalog", 0, None)
    total = sum(1 for _ in catalog.records())
    queue._check(job)
    queue._limit_torch()
    queue._progress(job, f"ingest into {job.collection}", 0, total)
    report = ingest(
        catalog,
        bundle=args.bundle,
        collection=job.collection,
        store=queue.store,
        features_dir=args.features_dir,
        dead_letter=args.dead_letter,
        chunk_size=args.chunk_size,
        device=args.device,
        runtime=args.runtime,
        collab=args.collab,
        runner=args.runner,
        ray_address=args.ray_address,
        ray_workers=args.ray_workers,
        encoder_pool=queue.encoder_pool,
        on_chunk=_chunks(queue, job, f"ingest into {job.collection}", args.chunk_size, total, "index and check"),
    )
    return "IngestReport", report.model_dump(mode="json", by_alias=True)


def _reembed(queue: JobQueue, job: Job, args: ReembedArgs) -> tuple[str, dict[str, Any]]:
    from mmalign.plugin.index.ingest import IngestOptions
    from mmalign.plugin.index.reembed import reembed

    store = queue.store
    live = store.resolve_alias(job.collection)
    total = store.count(live) if live else None
    queue._limit_torch()
    queue._progress(job, "build the next version", 0, total)
    report = reembed(
        job.collection,
        bundle=args.bundle,
        store=store,
        features_dir=args.features_dir,
        catalog=_catalog(args),
        keep=args.keep,
        min_quality=args.min_quality,
        chunk_size=args.chunk_size,
        dead_letter=args.dead_letter,
        device=args.device,
        force_reencode=args.reencode,
        ingest_options=IngestOptions(runner=args.runner, ray_address=args.ray_address, ray_workers=args.ray_workers),
        on_chunk=_chunks(queue, job, "build the next version", args.chunk_size, total, "verify and swap"),
    )
    if report.swapped:
        queue._log(job.id, f"swapped: {job.collection} -> {report.new_version} (bundle {report.new_bundle})")
    elif not report.already_live:
        queue._log(job.id, f"not swapped: {report.reason}")
    return "ReembedReport", report.model_dump(mode="json", by_alias=True)


__all__ = [
    "FINISHED",
    "Job",
    "JobCancelled",
    "JobProgress",
    "JobQueue",
    "JobRequest",
    "JobsConfig",
]
