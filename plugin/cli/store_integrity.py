"""``mmalign store verify|snapshot|restore``: check and repair a collection version, back it up, restore it.

Thin shells over :mod:`mmalign.plugin.index.verify` and :mod:`mmalign.plugin.index.snapshot`; registered on
the ``store`` group by :mod:`mmalign.plugin.cli.store`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from mmalign.plugin.cli.options import DEFAULT_FEATURES_DIR, json_option, with_store

#: Exit status of ``store verify`` when the version is damaged (after ``--repair``: when it still is).
EXIT_DAMAGED = 4


def _progress(verb: str, every_s: float = 10.0):
    """A progress callback that prints a line to stderr at most every ``every_s`` seconds."""
    last = [time.monotonic()]

    def report(done: int, total: int | None) -> None:
        if time.monotonic() - last[0] < every_s:
            return
        last[0] = time.monotonic()
        click.echo(f"{verb}: {done:,} of {total:,} points" if total else f"{verb}: {done:,} points", err=True)

    return report


def _summary(report) -> list[str]:
    where = f"{report.version} (alias {report.collection})" if report.version != report.collection else report.version
    recorded = f", {report.recorded:,} recorded" if report.recorded is not None else ", no count recorded yet"
    counted = f"{report.counted:,}" if report.counted is not None else "?"
    lines = [f"{where}: {report.read:,} points read, {counted} counted{recorded}"]
    if report.catalog_items is not None:
        missing = f"{report.missing_total:,} neither stored nor dead-lettered"
        lines.append(f"  catalog: {report.catalog_items:,} items, {missing}")
    if report.sampled or report.sample_skipped:
        lines.append(
            f"  sample: {report.sampled} recomputed from the feature cache ({report.sample_skipped} without "
            f"cached features), {len(report.drift)} differ"
        )
    if report.sample_note:
        lines.append(f"  sample: {report.sample_note}")
    lines += [f"  PROBLEM: {line}" for line in report.problems()]
    lines.append("  ok" if report.ok else "  damaged")
    return lines


@click.command("verify")
@with_store
@click.option("--collection", required=True, help="Alias (its live version is checked) or collection version.")
@click.option("--catalog", type=click.Path(exists=True), help="Also check that every catalog item is stored.")
@click.option("--media-root", type=click.Path(exists=True, file_okay=False), help="Media root of --catalog.")
@click.option(
    "--features",
    "features_dir",
    default=DEFAULT_FEATURES_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Feature cache the sample is recomputed from.",
)
@click.option("--sample", default=32, show_default=True, type=click.IntRange(min=0), help="Points recomputed.")
@click.option(
    "--dead-letter",
    "dead_letters",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Dead-letter files whose items count as accounted for (default: ingest's and repair's in --features).",
)
@click.option("--repair", is_flag=True, help="Rewrite what is wrong from the catalog (see docs/design.md).")
@click.option("--device", default="auto", show_default=True, help="Device of a repair's encoders.")
@json_option
def store_verify(
    store,
    collection,
    catalog,
    media_root,
    features_dir,
    sample,
    dead_letters,
    repair,
    device,
    as_json,
):
    """Read every point of COLLECTION's version and check it: vectors finite, of the recorded size and unit
    norm, payloads readable and of their point, counts against the record (and the catalog), a sample
    recomputed from the feature cache. Exits 4 when something is wrong (after --repair: still wrong)."""
    from mmalign.connectors.sources import open_catalog
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.verify import repair_collection, verify_collection

    defaults = [Path(features_dir) / f"{run}_dead_letter.jsonl" for run in ("ingest", "repair")]
    letters = [p for p in (dead_letters or defaults) if Path(p).exists()]
    opened = open_catalog(catalog, media_root=media_root) if catalog else None
    progress = None if as_json else _progress("verify")
    with VectorStore(store) as vs:
        report = verify_collection(
            vs,
            collection,
            catalog=opened,
            dead_letters=letters,
            features_dir=features_dir,
            sample=sample,
            on_progress=progress,
        )
        result = None
        if repair and not report.ok:
            if not as_json:
                click.echo("\n".join(_summary(report)))
                click.echo("repairing...", err=True)
            result = repair_collection(
                vs, collection, catalog=opened, features_dir=features_dir, device=device, sample=sample, report=report
            )
    final = result.after if result is not None else report
    if as_json:
        click.echo(json.dumps(result.to_dict() if result is not None else report.to_dict(), indent=2, default=str))
    elif result is not None:
        what = {
            "rewritten": f"rewrote {result.written} point(s) of {result.damaged} in place",
            "rebuilt": f"rebuilt {result.damaged} as {result.rebuilt}"
            + (f" and pointed the alias at it; {result.damaged} is kept, marked damaged" if result.swapped else ""),
        }.get(result.action, "nothing to repair")
        failed = f"; {result.failed} item(s) failed (see {result.dead_letter})" if result.failed else ""
        click.echo(f"repair: {what}{failed} in {result.seconds:.1f}s")
        click.echo("\n".join(_summary(final)))
    else:
        click.echo("\n".join(_summary(report)))
    if not final.ok:
        sys.exit(EXIT_DAMAGED)


@click.command("snapshot")
@with_store
@click.option("--collection", required=True, help="Alias (its live version is saved) or collection version.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The archive file to write.")
@json_option
def store_snapshot(store, collection, out, as_json):
    """Save every point of COLLECTION's version (vectors, payloads, its record) into one archive file: safetensors
    and JSON parts with SHA-256 checksums. A damaged version is refused (store verify --repair first)."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.snapshot import snapshot_collection

    with VectorStore(store) as vs:
        report = snapshot_collection(vs, collection, out, on_progress=None if as_json else _progress("snapshot"))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(
        f"saved {report.version} ({report.points:,} points, {report.bytes / (1 << 20):,.1f} MiB) to {report.path} "
        f"in {report.seconds:.1f}s; sha256 {report.sha256}"
    )


@click.command("restore")
@with_store
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--alias", help="Alias to restore under (default: the one the snapshot was taken from).")
@json_option
def store_restore(store, archive, alias, as_json):
    """Restore a snapshot ARCHIVE as the next version of its alias, checked, then point the alias at it (the
    version that was live stays: `mmalign rollback ALIAS` returns to it). Resumable."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.snapshot import restore_collection

    with VectorStore(store) as vs:
        report = restore_collection(vs, archive, alias=alias, on_progress=None if as_json else _progress("restore"))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    before = f" (was {report.previous})" if report.previous else ""
    resumed = " (resumed)" if report.resumed else ""
    click.echo(
        f"restored {report.points:,} points as {report.version}{resumed}; alias {report.alias!r} -> "
        f"{report.version}{before} in {report.seconds:.1f}s"
    )


COMMANDS = (store_verify, store_snapshot, store_restore)
