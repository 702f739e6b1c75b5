"""Text rendering of reports for the terminal (``--json`` prints the report models instead)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import click

from mmalign.schemas import (
    FeatureReport,
    IngestReport,
    RecRow,
    ReembedReport,
    RetrievalResult,
    SearchHit,
    VersionInfo,
)


def retrieval_table(results: Iterable[RetrievalResult]) -> str:
    lines = [f"{'model':<9}{'query':<7}{'target':<8}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MRR':>7}{'n':>6}"]
    for r in results:
        lines.append(
            f"{r.model:<9}{r.query:<7}{r.target:<8}{r.recall_at_1:>7.3f}{r.recall_at_5:>7.3f}"
            f"{r.recall_at_10:>7.3f}{r.mrr:>7.3f}{r.n_queries:>6}"
        )
    return "\n".join(lines)


def rec_table(rows: Sequence[RecRow | Mapping]) -> str:
    lines = [f"{'model':<34}{'R@10':>8}{'R@20':>8}{'NDCG@10':>9}{'NDCG@20':>9}{'users':>7}"]
    for row in rows:
        r = row if isinstance(row, RecRow) else RecRow.model_validate(row)
        lines.append(
            f"{r.model:<34}{r.recall_at_10:>8.4f}{r.recall_at_20:>8.4f}{r.ndcg_at_10:>9.4f}"
            f"{r.ndcg_at_20:>9.4f}{r.n_users:>7}"
        )
    return "\n".join(lines)


def print_features(report: FeatureReport) -> None:
    click.echo(f"catalog {report.catalog}: {report.records_ok} items, {report.records_invalid} invalid records")
    click.echo(
        f"{'modality':<9}{'encoder':<20}{'dim':>5}{'present':>9}{'encoded':>9}{'cached':>8}{'failed':>8}"
        f"{'items/s':>9}{'load s':>8}"
    )
    for modality, c in report.modalities.items():
        click.echo(
            f"{modality.value:<9}{c.encoder:<20}{c.dim:>5}{c.present:>9}{c.encoded:>9}{c.cached:>8}"
            f"{c.failed:>8}{c.items_per_s:>9.1f}{c.load_seconds:>8.1f}"
        )
    failed = report.records_invalid + sum(c.failed for c in report.modalities.values())
    click.echo(
        f"features in {report.out_dir} ({report.seconds:.1f}s)"
        + (f"; {failed} problem(s) written to {report.dead_letter}" if failed else "")
    )


def print_ingest(report: IngestReport) -> None:
    click.echo(f"collection {report.collection} (-> {report.physical_collection}), bundle {report.bundle_id}")
    click.echo(
        f"ok {report.ok}, unchanged {report.unchanged}, payload-only {report.payload_updated}, "
        f"failed {report.failed}"
        + (f", degraded {report.degraded}" if report.degraded else "")
        + f" in {report.seconds:.1f}s"
    )
    for name, stage in report.stages.items():
        if name == "index":  # one pass over the whole collection, not a per-item stage
            click.echo(f"  {name:<11}{stage.items:>7} points{stage.seconds:>8.2f}s (build_index)")
            continue
        click.echo(f"  {name:<11}{stage.items:>7} items {stage.seconds:>8.2f}s {stage.items_per_s:>9.1f} items/s")
    if report.failed or report.degraded:
        click.echo(f"problems written to {report.dead_letter}")


def print_hits(hits: Sequence[SearchHit]) -> None:
    if not hits:
        click.echo("no results")
    for rank, hit in enumerate(hits, start=1):
        text = hit.payload.get("text") or ""
        mods = ",".join(hit.payload.get("modalities", []))
        click.echo(f"{rank:>3}. {hit.score:7.4f}  {hit.id:<40} [{mods}] {text[:60]}")


def print_reembed(report: ReembedReport) -> None:
    click.echo(
        f"{report.collection}: {report.old_version} ({report.old_bundle}) -> {report.new_version} "
        f"({report.new_bundle}), {report.mode}"
    )
    click.echo(
        f"written {report.written}, already there {report.resumed}, failed {report.failed}, "
        f"expected {report.expected} ({report.seconds:.1f}s)"
    )
    click.echo(f"quality probe (student text→image R@10): old {report.quality_old}, new {report.quality_new}")
    click.echo(f"alias now on {report.new_version}" if report.swapped else f"NOT swapped: {report.reason}")
    if report.dropped:
        click.echo(f"dropped: {', '.join(report.dropped)}")


def print_versions(collection: str, rows: Sequence[VersionInfo]) -> None:
    if not rows:
        click.echo(f"no versions of {collection!r}")
    for r in rows:
        click.echo(
            f"{'*' if r.live else ' '} {r.name:<28}{r.points:>8} points  bundle {r.bundle_id}  "
            f"{r.state or '':<9}{r.created_at or ''}"
        )
