"""``mmalign store`` and ``mmalign schemas``: the store's contents, and the data contracts."""

from __future__ import annotations

import json

import click

from mmalign.plugin.cli.options import store_config, store_options


@click.group()
def store() -> None:
    """The Qdrant store (embedded by default, or a server by URL)."""


@store.command("info")
@store_options
@click.option("--json", "as_json", is_flag=True)
def store_info(qdrant_path, qdrant_url, api_key, grpc, as_json):
    """List collections with point counts and the bundle/D each was built with."""
    from mmalign.connectors.store import VectorStore

    with VectorStore(store_config(qdrant_path, qdrant_url, api_key, grpc)) as vs:
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
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no collections")
    for row in rows:
        alias = f"  (alias {row['alias']})" if row["alias"] else ""
        click.echo(f"{row['name']:<30}{row['points']:>9} points  D={row['dim']}  bundle={row['bundle_id']}{alias}")


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
