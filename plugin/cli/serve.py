"""``mmalign serve``: the HTTP query service and search page (needs the ``serve`` extra)."""

from __future__ import annotations

import click

from mmalign.plugin.cli.options import BUNDLE, runtime_option, with_store


def _parse_max_batch(value: str) -> int | dict[str, int]:
    """``16`` or ``text=16,image=8``."""
    try:
        if "=" not in value:
            return int(value)
        out = {}
        for part in value.split(","):
            name, _, number = part.partition("=")
            out[name.strip()] = int(number)
        return out
    except ValueError:
        raise click.BadParameter(f"{value!r} is not N or MODALITY=N,...", param_hint="--max-batch") from None


@click.command()
@click.option("--collection", required=True, help="The alias (or collection) to serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: a free port.")
@click.option(
    "--api-key",
    "service_key",
    envvar="MMALIGN_API_KEY",
    help="Require this key on /v1/* and /metrics (or $MMALIGN_API_KEY).",
)
@click.option(
    "--media-root",
    type=click.Path(exists=True, file_okay=False),
    help=(
        "Folder the items' media paths are relative to; the page shows thumbnails and plays sounds from it "
        "(default: the media root ingest recorded in the collection)."
    ),
)
@click.option(
    "--bundle",
    "bundle_path",
    type=BUNDLE,
    help="A bundle folder, or base (the shipped base bundle). Default: the bundle the collection was built with.",
)
@click.option("--device", default="auto", show_default=True)
@runtime_option
@click.option("--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(min=0.01), help="Body limit.")
@click.option("--batching/--no-batching", default=True, show_default=True, help="Micro-batch concurrent encodes.")
@click.option(
    "--max-batch",
    help="Most queries encoded together: N for every modality, or MODALITY=N,... Default on a CPU: "
    "text=16,image=1,audio=1 (what pays there, see docs/serve.md); on a GPU: text=64,image=32,audio=8.",
)
@click.option(
    "--model-process/--in-process",
    default=True,
    show_default=True,
    help="Encoders in a process of their own (HTTP work then never slows them down on Python's GIL), "
    "or in the service's process.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads of the encoders (torch, CTranslate2). Default: the cores minus one (at least 1), "
    "leaving a core to HTTP, decoding and the store.",
)
@click.option(
    "--max-wait-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="0: adaptive batching (a lone query is encoded at once; what arrives while the model is busy forms the "
    "next batch); above 0: a fixed window a batch waits for more queries.",
)
@click.option("--k-max", default=100, show_default=True, type=click.IntRange(min=1), help="Largest k accepted.")
@click.option(
    "--watch-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between alias checks (0: only when a request sees the change).",
)
@click.option(
    "--jobs-root",
    "jobs_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder that paths in write jobs (catalog, bundle, media, feature cache) must lie under (repeatable). "
    "Default: the folder that holds the embedded store (mmalign-data for mmalign-data/qdrant).",
)
@click.option(
    "--jobs-dir", type=click.Path(file_okay=False), help="Where jobs are kept (default: <store>/.mmalign-jobs)."
)
@click.option(
    "--job-threads",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="torch threads of a write job (ingest, reembed), which shares the CPU with the queries.",
)
@click.option(
    "--job-nice",
    default=10,
    show_default=True,
    type=click.IntRange(0, 19),
    help="Run write jobs at a lower CPU priority (Linux nice of the job thread; 0: the same as the queries).",
)
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@with_store(api_key_flag="--qdrant-api-key")
def serve(collection, host, port, service_key, watch_interval, log_level, access_log, store, **settings):
    """Serve search, recommend, items and media over HTTP, and a search page at /.

    Loads the bundle and the query encoders once, micro-batches concurrent encodes, and follows the
    alias when `mmalign reembed` moves it to another bundle. It owns the store: `mmalign ingest`,
    `reembed`, `rollback` and `drop-version` on the same store are sent to it as write jobs.
    """
    import logging

    run = _server()
    from mmalign.connectors.store_files import remove_service_address
    from mmalign.plugin.serve.service import Service

    logging.getLogger("mmalign").setLevel(getattr(logging, log_level.upper()))
    config = _serve_config(collection, store, service_key, **settings)
    if host not in ("127.0.0.1", "localhost", "::1") and not service_key:
        click.echo(f"warning: listening on {host} without --api-key: anyone who reaches it can query", err=True)
    click.echo(f"loading the bundle and encoders of {collection!r}…", err=True)
    service = Service(config)
    generation = service.load()
    folder = None if store.is_server or store.resolved_path == ":memory:" else store.resolved_path
    listening = _announce(service, generation, folder, api_key=bool(service_key))
    try:
        run(
            service,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            watch_interval_s=watch_interval,
            on_listening=listening,
        )
    finally:
        if folder is not None:
            remove_service_address(folder)


def _server():
    """The server's ``run``, or a message naming the missing ``serve`` extra."""
    try:
        from mmalign.plugin.serve.app import run
    except ImportError as exc:
        raise click.ClickException(
            f"mmalign serve needs the serve extra ({exc.name} is missing): pip install 'mmalign[serve]'"
        ) from exc
    return run


def _serve_config(
    collection,
    store,
    service_key,
    *,
    bundle_path,
    device,
    runtime,
    media_root,
    max_body_mb,
    batching,
    max_batch,
    model_process,
    threads,
    max_wait_ms,
    k_max,
    jobs_roots,
    jobs_dir,
    job_threads,
    job_nice,
):
    """The service's configuration from the command's options (a refused value as a click error)."""
    import os

    from pydantic import ValidationError

    from mmalign.plugin.serve.config import ServeConfig
    from mmalign.plugin.serve.jobs import JobsConfig

    if threads is None:
        threads = max(1, (os.cpu_count() or 2) - 1)
    try:
        return ServeConfig(
            collection=collection,
            store=store,
            bundle=bundle_path,
            device=device,
            runtime=runtime,
            api_key=service_key,
            media_root=media_root,
            max_body_bytes=int(max_body_mb * (1 << 20)),
            batching=batching,
            max_batch=_parse_max_batch(max_batch) if max_batch else None,
            threads=threads,
            model_process=model_process,
            max_wait_ms=max_wait_ms,
            k_max=k_max,
            jobs=JobsConfig(roots=jobs_roots, folder=jobs_dir, threads=job_threads, nice=job_nice),
        )
    except ValidationError as exc:
        raise click.ClickException("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from exc


def _announce(service, generation, folder: str | None, *, api_key: bool):
    """The callback run once the server listens: it records the address in the store ``folder`` (the CLI sends
    its write jobs there while this process holds the store) and says what is served where."""
    from mmalign.connectors.store_files import write_service_address

    collection = service.config.collection
    media = f"media from {service.media_root}" if service.media_root else "no media (--media-root)"

    def listening(url: str) -> None:
        if folder is not None:
            write_service_address(folder, url, collection=collection, api_key=api_key)
        click.echo(
            f"serving {collection!r} (bundle {generation.bundle_id}, {', '.join(generation.modalities)}; {media}) "
            f"at {url}/ (API docs: /docs)",
            err=True,
        )

    return listening
