"""The ``mmalign`` command line: thin click commands over library calls.

Only click and the spec registry are imported at start-up; each command imports what it needs.
"""

from __future__ import annotations

import json
import sys

import click

from mmalign.plugin.encoders.registry import DEFAULT_PRESET, RegistryError, list_presets

MODALITIES = ("image", "text", "audio")


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _parse_weights(values: tuple[str, ...]) -> dict[str, str]:
    weights = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            _fail(f"--weights expects ENCODER=PATH_OR_TAG, got {value!r}")
        weights[name] = path
    return weights


def store_options(fn):
    """--qdrant-path | --qdrant-url [--api-key] [--grpc]: shared by every command that opens the store."""
    fn = click.option("--grpc", is_flag=True, help="Use gRPC with a server.")(fn)
    fn = click.option("--api-key", envvar="QDRANT_API_KEY", help="Server API key (or $QDRANT_API_KEY).")(fn)
    fn = click.option("--qdrant-url", envvar="QDRANT_URL", help="Qdrant server URL (or $QDRANT_URL).")(fn)
    fn = click.option("--qdrant-path", help="Embedded store folder (default ./mmalign-data/qdrant), or :memory:.")(fn)
    return fn


def store_config(qdrant_path, qdrant_url, api_key, grpc):
    from pydantic import ValidationError

    from mmalign.schemas import StoreConfig

    try:
        return StoreConfig(path=qdrant_path, url=qdrant_url, api_key=api_key, prefer_grpc=grpc)
    except ValidationError as exc:
        _fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmalign")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """mmalign: multimodal retrieval for Qdrant (image, text, audio in one shared space)."""
    import logging

    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), format="%(levelname)s %(name)s: %(message)s")


# -- encoders ---------------------------------------------------------------------------------
@main.group()
def encoders() -> None:
    """Encoders and presets (answered from specs: no weights are loaded)."""


@encoders.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def encoders_list(as_json: bool) -> None:
    """List registered encoders (with output size) and presets."""
    from mmalign.plugin.encoders.registry import encoder_info, get_preset, list_encoders
    from mmalign.plugin.encoders.weights import is_packaged, packaged_weights_available

    infos = [encoder_info(name) for name in list_encoders()]
    presets = [get_preset(name) for name in list_presets()]
    if as_json:
        click.echo(json.dumps({
            "encoders": [i.model_dump(mode="json") for i in infos],
            "presets": [p.model_dump(mode="json") for p in presets],
            "default_preset": DEFAULT_PRESET,
        }, indent=2))
        return
    click.echo(f"{'encoder':<22}{'modality':<10}{'dim':>6}  {'kind':<18}weights")
    for info in infos:
        status = ""
        if is_packaged(info.weights):
            status = " (installed)" if packaged_weights_available(info.weights) else " (NOT installed)"
        click.echo(f"{info.name:<22}{info.modality.value:<10}{info.dim:>6}  {info.kind:<18}{info.weights}{status}")
    click.echo("")
    click.echo(f"{'preset':<16}{'image':<22}{'text':<22}audio")
    for preset in presets:
        mark = " (default)" if preset.name == DEFAULT_PRESET else ""
        click.echo(f"{preset.name:<16}{preset.image or '-':<22}{preset.text or '-':<22}{preset.audio or '-'}{mark}")


# -- features --------------------------------------------------------------------------------
@main.command()
@click.argument("catalog", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Feature cache folder.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help=f"One of: {', '.join(list_presets())}.")
@click.option("--media-root", type=click.Path(exists=True, file_okay=False),
              help="Root that media paths are relative to (default: the catalog's folder).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "folder"]), help="Default: from the name.")
@click.option("--modality", "modalities", multiple=True, type=click.Choice(MODALITIES),
              help="Only these modalities (repeatable; default: all the preset has).")
@click.option("--weights", multiple=True, metavar="ENCODER=PATH",
              help="Weights for an encoder: a local path or a tag (repeatable).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Default: per modality (32 image, 64 text, 8 audio).")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=1), help="Decode threads.")
@click.option("--dead-letter", type=click.Path(dir_okay=False), help="Default: OUT/dead_letter.jsonl.")
@click.option("--csv-id-column", default="id", show_default=True)
@click.option("--csv-text-column", default="text", show_default=True)
@click.option("--csv-image-column", default="image", show_default=True)
@click.option("--csv-audio-column", default="audio", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
def features(catalog, out_dir, preset, media_root, fmt, modalities, weights, device, batch_size, workers,
             dead_letter, csv_id_column, csv_text_column, csv_image_column, csv_audio_column, as_json, progress):
    """Encode CATALOG (JSONL, CSV or media folder) into the feature cache OUT."""
    from mmalign.connectors import SourceError
    from mmalign.connectors.sources import CsvColumns, open_catalog
    from mmalign.plugin.encoders.weights import WeightsError
    from mmalign.plugin.features.extract import extract_features

    try:
        source = open_catalog(catalog, media_root=media_root, format=fmt, csv_columns=CsvColumns(
            id=csv_id_column, text=csv_text_column, image=csv_image_column, audio=csv_audio_column))
        report = extract_features(
            source, out_dir, preset=preset, modalities=modalities or None, weights=_parse_weights(weights),
            device=device, batch_size=batch_size, workers=workers, dead_letter=dead_letter,
            show_progress=sys.stderr.isatty() if progress is None else progress)
    except (SourceError, RegistryError, WeightsError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    click.echo(f"catalog {report.catalog}: {report.records_ok} items, {report.records_invalid} invalid records")
    click.echo(f"{'modality':<9}{'encoder':<20}{'dim':>5}{'present':>9}{'encoded':>9}{'cached':>8}{'failed':>8}"
               f"{'items/s':>9}{'load s':>8}")
    for modality, c in report.modalities.items():
        click.echo(f"{modality.value:<9}{c.encoder:<20}{c.dim:>5}{c.present:>9}{c.encoded:>9}{c.cached:>8}"
                   f"{c.failed:>8}{c.items_per_s:>9.1f}{c.load_seconds:>8.1f}")
    failed = report.records_invalid + sum(c.failed for c in report.modalities.values())
    click.echo(f"features in {report.out_dir} ({report.seconds:.1f}s)"
               + (f"; {failed} problem(s) written to {report.dead_letter}" if failed else ""))


# -- train / eval ------------------------------------------------------------------------------
DEFAULT_FEATURES_DIR = "mmalign-data/features"


def catalog_options(fn):
    fn = click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "folder"]),
                      help="Catalog format (default: from the name).")(fn)
    fn = click.option("--media-root", type=click.Path(exists=True, file_okay=False),
                      help="Root that media paths are relative to (default: the catalog's folder).")(fn)
    fn = click.option("--features", "features_dir", default=DEFAULT_FEATURES_DIR, show_default=True,
                      type=click.Path(file_okay=False), help="Feature cache (filled as needed).")(fn)
    return fn


@main.command()
@click.argument("catalog", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True)
@click.option("--dim", default=256, show_default=True, type=click.IntRange(min=2), help="D, the shared space.")
@click.option("--rank", default=32, show_default=True, type=click.IntRange(min=1), help="r of each projection.")
@click.option("--epochs", default=150, show_default=True, type=click.IntRange(min=0),
              help="Max epochs of teacher and student (early stopping on the val split).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--test-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True,
                                                                                        max_open=True))
@click.option("--init", type=click.Choice(["cca", "svd", "random"]), default="cca", show_default=True)
@click.option("--fusion", type=click.Choice(["weighted", "concat"]), default="weighted", show_default=True)
@click.option("--no-distill", is_flag=True, help="Train the student without the teacher (ablation).")
@click.option("--interactions", type=click.Path(exists=True, dir_okay=False),
              help="user_id,item_id[,weight][,timestamp] file: adds the teacher's co-occurrence term.")
@click.option("--holdout", type=click.Choice(["leave-last-out", "temporal"]),
              help="Train on the training part of this interactions split only (for a fair eval-rec).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TrainConfig JSON; command-line options override it.")
@click.option("--weights", multiple=True, metavar="ENCODER=PATH")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the held-out results as one JSON object.")
@catalog_options
@click.pass_context
def train(ctx, catalog, out, preset, dim, rank, epochs, seed, test_fraction, init, fusion, no_distill,
          interactions, holdout, config_file, weights, device, as_json, fmt, media_root, features_dir):
    """Train the alignment on CATALOG's features and write a bundle to OUT."""
    from pathlib import Path

    from pydantic import ValidationError

    from mmalign.connectors import SourceError
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.evaluation import format_table
    from mmalign.plugin.encoders.weights import WeightsError
    from mmalign.plugin.workflows.train import train_bundle
    from mmalign.schemas import TrainConfig

    base = json.loads(Path(config_file).read_text()) if config_file else {}
    given = {name: value for name, value in dict(dim=dim, rank=rank, seed=seed, test_fraction=test_fraction,
                                                 init=init, fusion=fusion).items()
             if not config_file or ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    if not config_file or ctx.get_parameter_source("epochs") != click.core.ParameterSource.DEFAULT:
        given.update(epochs=epochs, teacher_epochs=epochs)
    if no_distill:
        given["distill"] = False
    try:
        cfg = TrainConfig.model_validate({**base, **given})
    except ValidationError as exc:
        _fail(f"invalid training config: {exc}")
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    try:
        source = open_catalog(catalog, media_root=media_root, format=fmt)
        summary = train_bundle(source, out, preset=preset, features_dir=features_dir, cfg=cfg,
                               weights=_parse_weights(weights), interactions=interactions,
                               interactions_holdout=holdout, device=device,
                               show_progress=sys.stderr.isatty(), echo=echo)
    except (SourceError, RegistryError, WeightsError, ValueError) as exc:
        _fail(str(exc))
    results = summary["metrics"]["results"]
    if as_json:
        click.echo(json.dumps({"bundle_id": summary["bundle_id"], "n_items": summary["metrics"]["n_items"],
                               "results": results}, indent=2))
        return
    params = summary["parameters"]
    click.echo(f"bundle {summary['bundle_id']} -> {out} ({summary['seconds']}s)")
    ratio = f" (ratio 1/{params['teacher'] / params['student']:.0f})" if params["teacher"] else ""
    click.echo(f"parameters: student {params['student']:,}, teacher {params['teacher']:,}{ratio}")
    if results:
        click.echo(f"held-out test items: {summary['metrics']['n_items']}")
        click.echo(format_table(results))
    else:
        click.echo("one modality: no cross-modal evaluation (use eval-rec with interactions)")


@main.command("eval")
@click.option("--bundle", "bundle_path", required=True, type=click.Path(exists=True, file_okay=False))
@click.argument("catalog", required=False, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--device", default="auto", show_default=True)
@catalog_options
def eval_command(bundle_path, catalog, as_json, device, fmt, media_root, features_dir):
    """Evaluate a bundle on its held-out items: every model, every query -> target pair."""
    from mmalign.connectors import SourceError
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.bundle import BundleError
    from mmalign.plugin.align.evaluation import format_table
    from mmalign.plugin.workflows.train import evaluate_bundle

    try:
        source = open_catalog(catalog, media_root=media_root, format=fmt) if catalog else None
        report = evaluate_bundle(bundle_path, source, features_dir=features_dir, device=device)
    except (SourceError, BundleError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"bundle {report['bundle_id']}: {report['n_items']} held-out items")
    click.echo(format_table(report["results"]))


# -- ingest / search -----------------------------------------------------------------------------
def _print_ingest(report) -> None:
    click.echo(f"collection {report.collection} (-> {report.physical_collection}), bundle {report.bundle_id}")
    click.echo(f"ok {report.ok}, unchanged {report.unchanged}, payload-only {report.payload_updated}, "
               f"failed {report.failed}"
               + (f", degraded {report.degraded}" if report.degraded else "") + f" in {report.seconds:.1f}s")
    for name, stage in report.stages.items():
        click.echo(f"  {name:<11}{stage.items:>7} items {stage.seconds:>8.2f}s {stage.items_per_s:>9.1f} items/s")
    if report.failed or report.degraded:
        click.echo(f"problems written to {report.dead_letter}")


@main.command()
@click.argument("catalog", type=click.Path(exists=True))
@click.option("--bundle", "bundle_path", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--collection", required=True, help="Name apps query (an alias to NAME__vN).")
@click.option("--batch-size", "chunk_size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Items per chunk (encode, project, upsert).")
@click.option("--dead-letter", type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@catalog_options
@store_options
def ingest(catalog, bundle_path, collection, chunk_size, dead_letter, device, as_json, fmt, media_root, features_dir,
           qdrant_path, qdrant_url, api_key, grpc):
    """Embed CATALOG with BUNDLE and upsert it into COLLECTION (idempotent, incremental, resumable)."""
    from mmalign.connectors import SourceError
    from mmalign.connectors.sources import open_catalog
    from mmalign.connectors.store import StoreError
    from mmalign.plugin.align.bundle import BundleError
    from mmalign.plugin.index.ingest import ingest as run_ingest

    config = store_config(qdrant_path, qdrant_url, api_key, grpc)
    try:
        report = run_ingest(open_catalog(catalog, media_root=media_root, format=fmt), bundle=bundle_path,
                            collection=collection, store=config, features_dir=features_dir, chunk_size=chunk_size,
                            dead_letter=dead_letter, device=device, show_progress=sys.stderr.isatty())
    except (SourceError, StoreError, BundleError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        _print_ingest(report)


def print_hits(hits, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([h.to_json() for h in hits], indent=2, default=str))
        return
    if not hits:
        click.echo("no results")
    for rank, hit in enumerate(hits, start=1):
        text = hit.payload.get("text") or ""
        mods = ",".join(hit.payload.get("modalities", []))
        click.echo(f"{rank:>3}. {hit.score:7.4f}  {hit.id:<40} [{mods}] {text[:60]}")


@main.command()
@click.option("--collection", required=True)
@click.option("--text", "texts", multiple=True, help="Text query (repeatable).")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Image file query (repeatable).")
@click.option("--audio", "audios", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Audio file query (repeatable).")
@click.option("--like", "likes", multiple=True, help="Item id: more like this (repeatable).")
@click.option("--using", type=click.Choice(["fused", "image", "text", "audio"]), default="fused", show_default=True,
              help="Which stored vector to search.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="Payload filter (repeatable; AND "
              "across keys, OR within a key).")
@click.option("--fusion", type=click.Choice(["rrf", "mean"]), default="rrf", show_default=True,
              help="How several query inputs are combined.")
@click.option("--bundle", "bundle_path", type=click.Path(exists=True, file_okay=False),
              help="Default: the bundle the collection was built with.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print [{"id", "score", "payload"}, ...].')
@store_options
def search(collection, texts, images, audios, likes, using, k, filters, fusion, bundle_path, device, as_json,
           qdrant_path, qdrant_url, api_key, grpc):
    """Cross-modal search: any query modality against any named vector."""
    from mmalign.connectors.store import StoreError
    from mmalign.plugin.align.bundle import BundleError
    from mmalign.plugin.index.search import Searcher, parse_filters

    try:
        searcher = Searcher(collection, store=store_config(qdrant_path, qdrant_url, api_key, grpc),
                            bundle=bundle_path, device=device)
        try:
            hits = searcher.search(text=texts, image=images, audio=audios, like=likes, using=using, k=k,
                                   filters=parse_filters(filters), fusion=fusion)
        finally:
            searcher.close()
    except (StoreError, BundleError, ValueError) as exc:
        _fail(str(exc))
    print_hits(hits, as_json)


@main.command()
@click.option("--data-dir", default="mmalign-data", show_default=True, type=click.Path(file_okay=False),
              help="Where the catalog, features, bundle and embedded Qdrant go.")
@click.option("--device", default="auto", show_default=True)
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(min=1))
def quickstart(data_dir, device, k):
    """Real catalog end to end: tuxpaint stamps -> features -> bundle -> Qdrant -> cross-modal queries."""
    from mmalign.plugin.workflows.quickstart import quickstart as run

    try:
        run(data_dir, echo=click.echo, device=device, show_progress=sys.stderr.isatty(), k=k)
    except FileNotFoundError as exc:
        _fail(str(exc))


# -- recommend ---------------------------------------------------------------------------------------
def _user_cfg(half_life_days, negative_below):
    from mmalign.schemas import UserVectorConfig

    return UserVectorConfig(half_life_days=half_life_days, negative_below=negative_below)


def user_vector_options(fn):
    fn = click.option("--negative-below", type=float,
                      help="Interaction weights below this are negative feedback (e.g. 3 for star ratings).")(fn)
    fn = click.option("--half-life-days", type=click.FloatRange(min=0, min_open=True),
                      help="Time decay of older interactions (default: none).")(fn)
    return fn


@main.command()
@click.option("--collection", required=True, help="The items collection.")
@click.option("--user", "user_id", help="User id (omit with --like for an anonymous session).")
@click.option("--interactions", type=click.Path(exists=True, dir_okay=False),
              help="Rebuild all user vectors from this file first (user_id,item_id[,weight][,timestamp]).")
@click.option("--like", "likes", multiple=True, help="Anonymous session: items like these (repeatable).")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE")
@click.option("--strategy", type=click.Choice(["vector", "best_score", "average_vector"]), default="vector",
              show_default=True, help="User vector, or Qdrant RecommendQuery over the user's items.")
@click.option("--include-seen", is_flag=True, help="Do not exclude items the user already has.")
@click.option("--text", "cold_text", help="Cold start: a text query for users with no history.")
@click.option("--popularity-weight", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Add w·log(1+popularity) (scaled to [0, 1]) to user-vector scores; eval-rec suggests w.")
@click.option("--json", "as_json", is_flag=True)
@user_vector_options
@store_options
def recommend(collection, user_id, interactions, likes, k, filters, strategy, include_seen, cold_text,
              popularity_weight, as_json, half_life_days, negative_below, qdrant_path, qdrant_url, api_key, grpc):
    """Recommend items for a user (user vectors in the shared space) or for an anonymous session."""
    from mmalign.connectors import SourceError
    from mmalign.connectors.interactions import read_interactions
    from mmalign.connectors.store import StoreError
    from mmalign.plugin.index.search import parse_filters
    from mmalign.plugin.recommend.recommender import Recommender

    if not user_id and not likes:
        _fail("give --user, or --like ITEM for an anonymous session")
    try:
        rec = Recommender(collection, store=store_config(qdrant_path, qdrant_url, api_key, grpc),
                          cfg=_user_cfg(half_life_days, negative_below), popularity_weight=popularity_weight)
        try:
            if interactions:
                load = read_interactions(interactions)
                counts = rec.rebuild_users(load.interactions)
                click.echo(f"user vectors: {counts['users']} users from {counts['interactions']} interactions; "
                           f"{counts['unknown_item_rows']} rows name {counts['unknown_item_ids']} unknown item(s); "
                           f"{len(load.invalid)} invalid rows", err=True)
            if likes:
                hits = rec.more_like(likes, k=k, filters=parse_filters(filters))
            else:
                hits = rec.recommend(user_id, k=k, filters=parse_filters(filters), exclude_seen=not include_seen,
                                     strategy=strategy, cold_start_query={"text": [cold_text]} if cold_text else None)
        finally:
            rec.store.close()
    except (SourceError, StoreError, ValueError) as exc:
        _fail(str(exc))
    print_hits(hits, as_json)


@main.command("eval-rec")
@click.option("--collection", required=True)
@click.option("--interactions", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", "how", type=click.Choice(["leave-last-out", "temporal"]), default="leave-last-out",
              show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_vector_options
@store_options
def eval_rec(collection, interactions, how, as_json, half_life_days, negative_below, qdrant_path, qdrant_url,
             api_key, grpc):
    """Recall/NDCG@10/20 of user vectors vs popularity, item-kNN, PureSVD and RecommendQuery."""
    from mmalign.connectors import SourceError
    from mmalign.connectors.store import StoreError, VectorStore
    from mmalign.plugin.recommend.evaluation import evaluate_collection, format_rec_table

    try:
        with VectorStore(store_config(qdrant_path, qdrant_url, api_key, grpc)) as vs:
            report = evaluate_collection(collection, interactions, store=vs, how=how,
                                         cfg=_user_cfg(half_life_days, negative_below))
    except (SourceError, StoreError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['collection']}: {report['n_items']} items; split: {report['split']}")
    click.echo(f"interactions: {report['interactions']} ({report['unknown_item_rows']} rows name "
               f"{report['unknown_item_ids']} items not in the collection; {report['invalid_rows']} invalid)")
    click.echo(format_rec_table(report["results"]))


# -- versions --------------------------------------------------------------------------------------
@main.command()
@click.option("--collection", required=True, help="The alias apps query.")
@click.option("--bundle", "bundle_path", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--catalog", type=click.Path(exists=True), help="Needed when the new bundle's encoders differ.")
@click.option("--keep", default=2, show_default=True, type=click.IntRange(min=0),
              help="Previous versions to keep after the swap.")
@click.option("--min-quality", type=float, help="Refuse the swap if the new bundle's probe is below this.")
@click.option("--reencode", is_flag=True, help="Re-encode from the catalog even if the encoders are the same.")
@click.option("--batch-size", "chunk_size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@catalog_options
@store_options
def reembed(collection, bundle_path, catalog, keep, min_quality, reencode, chunk_size, device, as_json, fmt,
            media_root, features_dir, qdrant_path, qdrant_url, api_key, grpc):
    """Build the next version with a new bundle, verify it, swap the alias (zero downtime)."""
    from mmalign.connectors import SourceError
    from mmalign.connectors.sources import open_catalog
    from mmalign.connectors.store import StoreError
    from mmalign.plugin.align.bundle import BundleError
    from mmalign.plugin.index.reembed import reembed as run

    try:
        source = open_catalog(catalog, media_root=media_root, format=fmt) if catalog else None
        report = run(collection, bundle=bundle_path, store=store_config(qdrant_path, qdrant_url, api_key, grpc),
                     features_dir=features_dir, catalog=source, keep=keep, min_quality=min_quality,
                     chunk_size=chunk_size, device=device, force_reencode=reencode)
    except (SourceError, StoreError, BundleError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(f"{report.collection}: {report.old_version} ({report.old_bundle}) -> {report.new_version} "
                   f"({report.new_bundle}), {report.mode}")
        click.echo(f"written {report.written}, already there {report.resumed}, failed {report.failed}, "
                   f"expected {report.expected} ({report.seconds:.1f}s)")
        click.echo(f"quality probe (student text→image R@10): old {report.quality_old}, new {report.quality_new}")
        click.echo(f"alias now on {report.new_version}" if report.swapped else f"NOT swapped: {report.reason}")
        if report.dropped:
            click.echo(f"dropped: {', '.join(report.dropped)}")
    if not report.swapped:
        sys.exit(1)


@main.command()
@click.argument("collection")
@click.option("--json", "as_json", is_flag=True)
@store_options
def versions(collection, as_json, qdrant_path, qdrant_url, api_key, grpc):
    """List the versions of COLLECTION (bundle, points, created, which is live)."""
    from mmalign.connectors.store import StoreError, VectorStore
    from mmalign.plugin.index.versions import version_table

    try:
        with VectorStore(store_config(qdrant_path, qdrant_url, api_key, grpc)) as vs:
            rows = version_table(vs, collection)
    except StoreError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no versions of {collection!r}")
    for r in rows:
        click.echo(f"{'*' if r['live'] else ' '} {r['name']:<28}{r['points']:>8} points  bundle {r['bundle_id']}  "
                   f"{r['state']:<9}{r['created_at'] or ''}")


@main.command()
@click.argument("collection")
@click.option("--to", "to", help="Version to make live (vK or K); default: the previous ready one.")
@store_options
def rollback(collection, to, qdrant_path, qdrant_url, api_key, grpc):
    """Point COLLECTION back at an earlier version (atomic alias swap)."""
    from mmalign.connectors.store import StoreError, VectorStore
    from mmalign.plugin.index.versions import rollback as run

    try:
        with VectorStore(store_config(qdrant_path, qdrant_url, api_key, grpc)) as vs:
            name = run(vs, collection, to)
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
    click.echo(f"{collection} -> {name}")


# -- schemas -----------------------------------------------------------------------------------
@main.group()
def schemas() -> None:
    """Data contracts."""


@schemas.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False))
def schemas_export(out_dir: str) -> None:
    """Write one JSON Schema per data contract into OUT_DIR."""
    from mmalign.plugin.schema_export import export_schemas

    for path in export_schemas(out_dir):
        click.echo(str(path))


# -- store -------------------------------------------------------------------------------------
@main.group()
def store() -> None:
    """The Qdrant store (embedded by default, or a server by URL)."""


@store.command("info")
@store_options
@click.option("--json", "as_json", is_flag=True)
def store_info(qdrant_path, qdrant_url, api_key, grpc, as_json):
    """List collections with point counts and the bundle/D each was built with."""
    from mmalign.connectors.store import StoreError, VectorStore

    try:
        with VectorStore(store_config(qdrant_path, qdrant_url, api_key, grpc)) as vs:
            aliases = {collection: alias for alias, collection in vs.aliases().items()}
            rows = []
            for name in vs.list_collections():
                record = vs.collection_record(name)
                rows.append({"name": name, "alias": aliases.get(name), "points": vs.count(name), "dim": record.dim,
                             "bundle_id": record.bundle_id})
    except StoreError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no collections")
    for row in rows:
        alias = f"  (alias {row['alias']})" if row["alias"] else ""
        click.echo(f"{row['name']:<30}{row['points']:>9} points  D={row['dim']}  bundle={row['bundle_id']}{alias}")


if __name__ == "__main__":  # pragma: no cover
    main()
