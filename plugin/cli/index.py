"""``mmalign ingest``, ``search``, ``reembed``, ``versions``, ``rollback`` and ``quickstart``."""

from __future__ import annotations

import sys

import click

from mmalign.plugin.cli.options import (
    BUNDLE,
    EXIT_ITEMS_FAILED,
    catalog_options,
    echo_json,
    json_option,
    runtime_option,
    with_store,
)
from mmalign.plugin.cli.remote import job_args, remote_options, run_remote
from mmalign.plugin.cli.scale_options import layout_options, runner_options


@click.command()
@click.argument("catalog", type=click.Path(exists=True))
@click.option("--bundle", "bundle_path", help="A bundle folder, or base (the default: the shipped base bundle).")
@click.option("--collection", required=True, help="Name apps query (an alias to NAME__vN).")
@click.option(
    "--batch-size",
    "chunk_size",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Items per chunk (encode, project, upsert).",
)
@click.option("--dead-letter", type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True)
@runtime_option
@runner_options
@click.option(
    "--collab",
    is_flag=True,
    help="Create the collection with a collab vector too, for recommend's hybrid strategy (new collections only).",
)
@json_option
@catalog_options
@remote_options
@with_store
@layout_options
def ingest(
    catalog,
    bundle_path,
    collection,
    chunk_size,
    dead_letter,
    device,
    runtime,
    runner,
    ray_address,
    ray_workers,
    collab,
    as_json,
    fmt,
    media_root,
    features_dir,
    via,
    service_key,
    store,
):
    """Embed CATALOG with BUNDLE and upsert it into COLLECTION (idempotent, incremental, resumable).

    Exits with status 3 when some items failed or were stored without a modality (see the dead letter).
    When `mmalign serve` holds the store (or with --via), the service runs it as a job.
    """
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.cli.render import print_ingest
    from mmalign.plugin.index.ingest import ingest as run_ingest
    from mmalign.schemas import IngestReport

    if bundle_path is None:
        from mmalign.plugin.align.bundle import load_bundle_config

        bundle_path = "base"
        click.echo(
            f"no --bundle: using the shipped base bundle {load_bundle_config('base').bundle_id} (zero-shot: "
            f"pretrained on icons with names, its cross-modal recall on catalogs unlike them is low, see "
            f"docs/benchmarks.md; `mmalign train CATALOG` fits a bundle to this catalog)",
            err=True,
        )
    args = {"catalog": catalog, "bundle": bundle_path, "media_root": media_root, "format": fmt}
    args |= {"features_dir": features_dir, "dead_letter": dead_letter, "chunk_size": chunk_size}
    settings = {"device": device, "runtime": runtime, "collab": collab}
    settings |= {"runner": runner, "ray_address": ray_address, "ray_workers": ray_workers}
    result = run_remote(store, via, service_key, collection, "ingest", job_args(args, **settings))
    report = IngestReport.model_validate(result) if result is not None else None
    report = report or run_ingest(
        open_catalog(catalog, media_root=media_root, format=fmt),
        bundle=bundle_path,
        collection=collection,
        store=store,
        features_dir=features_dir,
        chunk_size=chunk_size,
        dead_letter=dead_letter,
        device=device,
        runtime=runtime,
        show_progress=True,
        collab=collab,
        runner=runner,
        ray_address=ray_address,
        ray_workers=ray_workers,
    )
    if as_json:
        echo_json(report)
    else:
        print_ingest(report)
    if report.failed or report.degraded:
        sys.exit(EXIT_ITEMS_FAILED)


@click.command()
@click.option("--collection", required=True)
@click.option("--text", "texts", multiple=True, help="Text query (repeatable).")
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Image file query (repeatable).",
)
@click.option(
    "--audio",
    "audios",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Audio file query (repeatable).",
)
@click.option("--like", "likes", multiple=True, help="Item id: more like this (repeatable).")
@click.option(
    "--using",
    type=click.Choice(["fused", "image", "text", "audio"]),
    default="fused",
    show_default=True,
    help="Which stored vector to search.",
)
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Payload filter (repeatable; AND across keys, OR within a key).",
)
@click.option(
    "--fusion",
    type=click.Choice(["rrf", "mean"]),
    default="rrf",
    show_default=True,
    help="How several query inputs are combined.",
)
@click.option(
    "--mode",
    type=click.Choice(["dense", "lexical", "hybrid"]),
    default=None,
    help="dense (vectors), lexical (BM25 over item words and heard speech) or hybrid (both, fused). "
    "Default: hybrid when words are typed or speech is heard, else dense (docs/search.md).",
)
@click.option(
    "--hybrid-fusion",
    type=click.Choice(["rrf", "dbsf"]),
    default=None,
    help="How hybrid mode fuses its dense and lexical candidates (default: docs/search.md).",
)
@click.option(
    "--lexical-weight",
    default=None,
    type=click.FloatRange(min=0, min_open=True, max=100),
    help="Hybrid mode with rrf: the weight of the lexical branch (dense: 1; default: docs/search.md).",
)
@click.option(
    "--bundle",
    "bundle_path",
    type=BUNDLE,
    help="A bundle folder, or base (the shipped base bundle). Default: the bundle the collection was built with.",
)
@click.option(
    "--rerank-spoken",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="For one spoken --audio query: re-order the top N hits by how likely Whisper finds their text (0: off).",
)
@click.option(
    "--match-heard/--no-match-heard",
    default=True,
    show_default=True,
    help="For one spoken --audio query: re-score the first hits by how well what was heard matches their text.",
)
@click.option("--device", default="auto", show_default=True)
@runtime_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print [{"id", "score", "payload"}, ...]; with an audio query whose encoder transcribes, '
    '{"heard": [{"audio", "transcript", "speech_probability"}], "hits": [...]}.',
)
@with_store
def search(
    collection,
    texts,
    images,
    audios,
    likes,
    using,
    k,
    filters,
    fusion,
    mode,
    hybrid_fusion,
    lexical_weight,
    bundle_path,
    rerank_spoken,
    match_heard,
    device,
    runtime,
    as_json,
    store,
):
    """Cross-modal search: any query modality against any named vector."""
    from mmalign.plugin.cli.render import print_hits
    from mmalign.plugin.index.search import Searcher, parse_filters, search_query

    query = search_query(
        text=texts,
        image=images,
        audio=audios,
        like=likes,
        using=using,
        k=k,
        filters=parse_filters(filters),
        fusion=fusion,
        mode=mode,
        hybrid_fusion=hybrid_fusion,
        lexical_weight=lexical_weight,
        rerank_spoken=rerank_spoken,
        match_heard=match_heard,
    )
    with Searcher(collection, store=store, bundle=bundle_path, device=device, runtime=runtime) as searcher:
        result = searcher.run(query)
    hits, heard = result.hits, [h.as_dict() for h in result.heard]
    if as_json and heard:  # an audio query whose encoder transcribes: what was heard, then the hits
        import json

        body = {"heard": heard, "hits": [h.model_dump(mode="json", by_alias=True) for h in hits]}
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    elif as_json:
        echo_json(hits)
    else:
        for note in heard:
            said = f'"{note["transcript"]}"' if note.get("transcript") else "no speech"
            click.echo(f"heard in {note['audio']}: {said} (speech probability {note['speech_probability']:.2f})")
        print_hits(hits)


@click.command()
@click.option("--collection", required=True, help="The alias apps query.")
@click.option(
    "--bundle", "bundle_path", required=True, type=BUNDLE, help="A bundle folder, or base (the shipped base bundle)."
)
@click.option("--catalog", type=click.Path(exists=True), help="Needed when the new bundle's encoders differ.")
@click.option(
    "--keep", default=2, show_default=True, type=click.IntRange(min=0), help="Previous versions to keep after the swap."
)
@click.option("--min-quality", type=float, help="Refuse the swap if the new bundle's probe is below this.")
@click.option("--reencode", is_flag=True, help="Re-encode from the catalog even if the encoders are the same.")
@click.option("--batch-size", "chunk_size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True)
@runner_options
@json_option
@catalog_options
@remote_options
@with_store
@layout_options
def reembed(
    collection,
    bundle_path,
    catalog,
    keep,
    min_quality,
    reencode,
    chunk_size,
    device,
    runner,
    ray_address,
    ray_workers,
    as_json,
    fmt,
    media_root,
    features_dir,
    via,
    service_key,
    store,
):
    """Build the next version with a new bundle, verify it, swap the alias (zero downtime).

    Exits with status 1 when the swap was refused (the report says why). When `mmalign serve` holds the
    store (or with --via), the service runs it as a job while it goes on answering queries.
    """
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.cli.render import print_reembed
    from mmalign.plugin.index.ingest import IngestOptions
    from mmalign.plugin.index.reembed import reembed as run
    from mmalign.schemas import ReembedReport

    args = {"bundle": bundle_path, "catalog": catalog, "media_root": media_root, "format": fmt}
    args |= {"features_dir": features_dir, "keep": keep, "min_quality": min_quality, "reencode": reencode}
    settings = {"chunk_size": chunk_size, "device": device}
    settings |= {"runner": runner, "ray_address": ray_address, "ray_workers": ray_workers}
    result = run_remote(store, via, service_key, collection, "reembed", job_args(args, **settings))
    source = open_catalog(catalog, media_root=media_root, format=fmt) if catalog and result is None else None
    report = ReembedReport.model_validate(result) if result is not None else None
    report = report or run(
        collection,
        bundle=bundle_path,
        store=store,
        features_dir=features_dir,
        catalog=source,
        keep=keep,
        min_quality=min_quality,
        chunk_size=chunk_size,
        device=device,
        force_reencode=reencode,
        ingest_options=IngestOptions(runner=runner, ray_address=ray_address, ray_workers=ray_workers),
    )
    if as_json:
        echo_json(report)
    else:
        print_reembed(report)
    if not report.swapped and not report.already_live:
        sys.exit(1)


@click.command()
@click.argument("collection")
@click.option("--json", "as_json", is_flag=True)
@with_store
def versions(collection, as_json, store):
    """List the versions of COLLECTION (bundle, points, created, which is live)."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.cli.render import print_versions
    from mmalign.plugin.index.versions import version_table

    with VectorStore(store) as vs:
        rows = version_table(vs, collection)
    if as_json:
        echo_json(rows)
    else:
        print_versions(collection, rows)


@click.command()
@click.argument("collection")
@click.option("--to", "to", help="Version to make live (vK or K); default: the previous ready one.")
@remote_options
@with_store
def rollback(collection, to, via, service_key, store):
    """Point COLLECTION back at an earlier version (atomic alias swap)."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.versions import rollback as run

    result = run_remote(store, via, service_key, collection, "rollback", {"to": to})
    if result is not None:
        name = result["live"]
    else:
        with VectorStore(store) as vs:
            name = run(vs, collection, to)
    click.echo(f"{collection} -> {name}")


@click.command("drop-version")
@click.argument("name")
@click.option("--force", is_flag=True, help="Drop it even if it is what `rollback` would return to.")
@remote_options
@with_store
def drop_version(name, force, via, service_key, store):
    """Delete one physical version NAME (e.g. catalog__v3) that no alias points at."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.versions import drop_version as run
    from mmalign.plugin.index.versions import parse_version

    alias = (parse_version(name) or (name,))[0]  # the job runs in the queue of the version's alias
    if run_remote(store, via, service_key, alias, "drop_version", {"name": name, "force": force}) is None:
        with VectorStore(store) as vs:
            run(vs, name, force=force)
    click.echo(f"dropped {name}")


@click.command()
@click.option(
    "--data-dir",
    default="mmalign-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the catalog, features, bundle and embedded Qdrant go.",
)
@click.option("--device", default="auto", show_default=True)
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(min=1))
def quickstart(data_dir, device, k):
    """Real catalog end to end: tuxpaint stamps -> features -> bundle -> Qdrant -> cross-modal queries."""
    from mmalign.plugin.workflows.quickstart import quickstart as run

    run(data_dir, echo=click.echo, device=device, show_progress=True, k=k)
