"""``mmalign features``: encode a catalog into the feature cache."""

from __future__ import annotations

import sys

import click

from mmalign.plugin.cli.options import (
    EXIT_ITEMS_FAILED,
    MODALITIES,
    echo_json,
    json_option,
    parse_weights,
    preset_option,
    runtime_option,
)
from mmalign.plugin.cli.scale_options import runner_options


@click.command()
@click.argument("catalog", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Feature cache folder.")
@preset_option
@click.option(
    "--media-root",
    type=click.Path(exists=True, file_okay=False),
    help="Root that media paths are relative to (default: the catalog's folder).",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "folder"]), help="Default: from the name.")
@click.option(
    "--modality",
    "modalities",
    multiple=True,
    type=click.Choice(MODALITIES),
    help="Only these modalities (repeatable; default: all the preset has).",
)
@click.option(
    "--weights",
    multiple=True,
    metavar="ENCODER=PATH",
    help="Weights for an encoder: a local path or a tag (repeatable).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@runtime_option
@runner_options
@click.option("--batch-size", type=click.IntRange(min=1), help="Default: per modality (32 image, 64 text, 8 audio).")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=1), help="Decode threads.")
@click.option("--dead-letter", type=click.Path(dir_okay=False), help="Default: OUT/dead_letter.jsonl.")
@click.option("--csv-id-column", default="id", show_default=True)
@click.option("--csv-text-column", default="text", show_default=True)
@click.option("--csv-image-column", default="image", show_default=True)
@click.option("--csv-audio-column", default="audio", show_default=True)
@json_option
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Progress: a bar on a terminal, otherwise a line at least every 10 s (stage, done/total, rate, time left).",
)
def features(
    catalog,
    out_dir,
    preset,
    media_root,
    fmt,
    modalities,
    weights,
    device,
    runtime,
    runner,
    ray_address,
    ray_workers,
    batch_size,
    workers,
    dead_letter,
    csv_id_column,
    csv_text_column,
    csv_image_column,
    csv_audio_column,
    as_json,
    progress,
):
    """Encode CATALOG (JSONL, CSV or media folder) into the feature cache OUT.

    Exits with status 3 when some items could not be encoded (they are in the dead-letter file).
    """
    from mmalign.connectors.sources import CsvColumns, open_catalog
    from mmalign.plugin.cli.render import print_features
    from mmalign.plugin.features.extract import extract_features

    source = open_catalog(
        catalog,
        media_root=media_root,
        format=fmt,
        csv_columns=CsvColumns(id=csv_id_column, text=csv_text_column, image=csv_image_column, audio=csv_audio_column),
    )
    report = extract_features(
        source,
        out_dir,
        preset=preset,
        modalities=modalities or None,
        weights=parse_weights(weights),
        device=device,
        runtime=runtime,
        batch_size=batch_size,
        workers=workers,
        dead_letter=dead_letter,
        show_progress=progress,
        encode_step=_encode_step(runner, ray_address, ray_workers),
    )
    if as_json:
        echo_json(report)
    else:
        print_features(report)
    if report.records_invalid or any(c.failed for c in report.modalities.values()):
        sys.exit(EXIT_ITEMS_FAILED)


def _encode_step(runner: str, ray_address: str | None, ray_workers: int):
    """None (in-process), or the encode step on Ray (issue #25)."""
    if runner != "ray":
        return None
    from mmalign.plugin.features.ray_encode import on_ray

    return on_ray(ray_address, ray_workers)
