"""``mmalign store`` and ``mmalign schemas``: the store's contents, and the data contracts."""

from __future__ import annotations

import json

import click

from mmalign.plugin.cli.options import fail, with_store
from mmalign.plugin.cli.remote import remote_options, run_remote
from mmalign.plugin.cli.store_integrity import COMMANDS as INTEGRITY_COMMANDS


@click.group()
def store() -> None:
    """The Qdrant store (embedded by default, or a server by URL)."""


for _command in INTEGRITY_COMMANDS:  # verify, snapshot, restore (cli/store_integrity.py)
    store.add_command(_command)


@store.command("info")
@with_store
@click.option("--json", "as_json", is_flag=True)
def store_info(store, as_json):
    """List collections with point counts and the bundle/D each was built with."""
    from mmalign.connectors.store import VectorStore

    with VectorStore(store) as vs:
        aliases = {collection: alias for alias, collection in vs.aliases().items()}
        rows = []
        for name in vs.list_collections():
            record = vs.collection_record(name)
            rows.append(
                {
                    "name": name,
                    "alias": aliases.get(name),
                    "points": vs.count(name),
                    "dim": record.dim,
                    "bundle_id": record.bundle_id,
                    **({"layout": record.layout} if record.layout else {}),  # shards, quantization... (issue #25)
                }
            )
        about = vs.describe()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{about['engine']} store at {about['target']} ({about['package']} {about['version']})")
    if not rows:
        click.echo("no collections")
    for row in rows:
        alias = f"  (alias {row['alias']})" if row["alias"] else ""
        layout = "".join(f"  {k}={v}" for k, v in row.get("layout", {}).items())
        click.echo(
            f"{row['name']:<30}{row['points']:>9} points  D={row['dim']}  bundle={row['bundle_id']}{alias}{layout}"
        )


@store.command("index")
@with_store
@click.option("--collection", required=True, help="Alias or collection to index.")
@click.option("--json", "as_json", is_flag=True)
@remote_options
def store_index(store, collection, as_json, via, service_key):
    """Build the payload indexes and the HNSW graph of COLLECTION (ingest and reembed do it themselves)."""
    from dataclasses import asdict

    from mmalign.connectors.store import IndexReport, VectorStore

    result = run_remote(store, via, service_key, collection, "index", {})
    if result is not None:  # `mmalign serve` holds the store: it built them
        report = IndexReport(**result)
    else:
        with VectorStore(store) as vs:
            report = vs.build_index(collection)
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
        return
    click.echo(_index_line(report))


def _index_line(report) -> str:
    fields = ", ".join(report.payload_fields) or "none"
    line = f"{report.collection}: indexed in {report.seconds:.1f}s ({report.engine}); payload indexes: {fields}"
    if report.engine == "edge":
        d = report.details
        line += f"; HNSW on {', '.join(report.hnsw_vectors)}; {d.get('segments')} segment(s)"
    return line + (f"; {report.note}" if report.note else "")


@store.command("push")
@with_store
@click.option("--collection", required=True, help="Alias (its live version is copied) or collection version.")
@click.option("--to", "to_url", help="URL of the Qdrant server to copy into.")
@click.option("--to-api-key", envvar="QDRANT_TO_API_KEY", help="API key of that server (or $QDRANT_TO_API_KEY).")
@click.option("--to-grpc", is_flag=True, help="Use gRPC with that server.")
@click.option("--to-path", help="Or an embedded store folder to copy into (moving between engines, tests).")
@click.option("--to-engine", type=click.Choice(["edge", "local"]), default="edge", show_default=True)
@click.option("--alias", help="Alias to point at the copy there (default: COLLECTION's alias name).")
@click.option("--batch-size", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
def store_push(
    store,
    collection,
    to_url,
    to_api_key,
    to_grpc,
    to_path,
    to_engine,
    alias,
    batch_size,
    as_json,
):
    """Copy a collection version (vectors, payloads, record) into a Qdrant server in batches, then create
    the alias there. Resumable: rerun the same command after an interruption."""
    from dataclasses import asdict

    from pydantic import ValidationError

    from mmalign.connectors.push import push_collection
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.versions import parse_version
    from mmalign.schemas import StoreConfig

    if (to_url is None) == (to_path is None):
        fail("give the target: --to URL (a Qdrant server) or --to-path FOLDER (an embedded store)")
    try:
        target_config = (
            StoreConfig(url=to_url, api_key=to_api_key, prefer_grpc=to_grpc)
            if to_url
            else StoreConfig(path=to_path, engine=to_engine)
        )
    except ValidationError as exc:
        fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))
    source_config = store
    if source_config == target_config:
        fail("the source and the target are the same store")
    with VectorStore(source_config) as source, VectorStore(target_config) as target:
        if alias is None:
            parsed = parse_version(collection)
            alias = collection if source.resolve_alias(collection) else (parsed[0] if parsed else None)
        report = push_collection(
            source,
            collection,
            target,
            alias=alias,
            batch_size=batch_size,
            on_batch=None if as_json else lambda n: click.echo(".", nl=False, err=True),
        )
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
        return
    click.echo("", err=True)
    resumed = f" (resumed after {report.resumed_from})" if report.resumed_from else ""
    where = f" as alias {report.alias!r}" if report.alias else ""
    click.echo(
        f"pushed {report.collection} ({report.points} points{resumed}) to {report.target}{where} "
        f"in {report.seconds:.1f}s"
    )
    click.echo(_index_line(report.index))


@click.group()
def schemas() -> None:
    """Data contracts."""


@schemas.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False))
def schemas_export(out_dir: str) -> None:
    """Write one JSON Schema per data contract into OUT_DIR."""
    from mmalign.plugin.schema_export import export_schemas

    for path in export_schemas(out_dir):
        click.echo(str(path))
