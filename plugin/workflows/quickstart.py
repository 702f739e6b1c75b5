"""``mmalign quickstart``: a real catalog end to end on the embedded store, in a few minutes on a CPU.

tuxpaint stamps -> features (offline-small, cached) -> bundle (trained once, then reused) ->
ingest into ``stamps`` -> text→image, image→text and sound→items queries, printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmalign.connectors.sources import open_catalog
from mmalign.schemas import StoreConfig

COLLECTION = "stamps"
TEXT_QUERIES = ("a frog", "a red fire truck", "something to eat")


def quickstart(
    data_dir: str | Path = "mmalign-data",
    *,
    echo: Callable[[str], None] = print,
    device: str = "auto",
    show_progress: bool = False,
    k: int = 5,
) -> dict:
    from mmalign.connectors.datasets.tuxpaint import write_catalog
    from mmalign.plugin.align.bundle import BundleError, load_bundle
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.search import Searcher
    from mmalign.plugin.workflows.train import train_bundle

    data = Path(data_dir)
    catalog_path = data / "quickstart" / "tuxpaint.jsonl"
    root, items = write_catalog(catalog_path)
    with_audio = sum("audio" in i for i in items)
    echo(f"[1/4] catalog: {len(items)} tuxpaint stamps ({with_audio} with a sound effect) -> {catalog_path}")
    catalog = open_catalog(catalog_path, media_root=root)
    features = data / "features"
    bundle_dir = data / "bundles" / "quickstart"
    bundle = None
    if (bundle_dir / "config.json").exists():
        try:
            bundle = load_bundle(bundle_dir, with_teacher=False)
            echo(f"[2/4] reusing bundle {bundle.bundle_id} in {bundle_dir} (delete it to retrain)")
        except BundleError as exc:
            echo(f"[2/4] existing bundle unusable ({exc}); retraining")
    if bundle is None:
        echo("[2/4] features (cached after the first run) and training (teacher + distilled student)")
        summary = train_bundle(
            catalog,
            bundle_dir,
            features_dir=features,
            device=device,
            show_progress=show_progress,
            echo=lambda line: echo(f"      {line}"),
        )
        bundle = load_bundle(bundle_dir, with_teacher=False)
        tti = next(r for r in summary.metrics.results if (r.model, r.query, r.target) == ("student", "text", "image"))
        echo(f"      held-out text→image recall@10 {tti.recall_at_10:.3f} ({tti.n_queries} queries)")
    store = StoreConfig(path=str(data / "qdrant"))
    report = ingest(
        catalog,
        bundle=bundle,
        collection=COLLECTION,
        store=store,
        features_dir=features,
        device=device,
        show_progress=show_progress,
    )
    echo(
        f"[3/4] ingest into '{COLLECTION}' (embedded Qdrant in {data / 'qdrant'}): ok {report.ok}, unchanged "
        f"{report.unchanged}, failed {report.failed} ({report.seconds:.1f}s)"
    )

    echo("[4/4] queries")
    searcher = Searcher(COLLECTION, store=store, bundle=bundle, device=device)
    shown: dict = {}
    try:
        test_ids = set(bundle.config["split"]["test_ids"])
        by_id = {i["id"]: i for i in items}
        for text in TEXT_QUERIES:
            hits = searcher.search(text=[text], using="image", k=k)
            _show(echo, f'text "{text}" → images', hits)
            shown[f"text:{text}"] = [h.id for h in hits]
        held_out_image = next(i for i in sorted(test_ids) if by_id.get(i, {}).get("image"))
        hits = searcher.search(image=[root / by_id[held_out_image]["image"]], using="text", k=k)
        _show(echo, f"image of held-out stamp '{held_out_image}' ({by_id[held_out_image]['text']}) → texts", hits)
        shown[f"image:{held_out_image}"] = [h.id for h in hits]
        held_out_sound = next((i for i in sorted(test_ids) if by_id.get(i, {}).get("audio")), None)
        if held_out_sound:
            hits = searcher.search(audio=[root / by_id[held_out_sound]["audio"]], using="image", k=k)
            _show(echo, f"sound of held-out stamp '{held_out_sound}' ({by_id[held_out_sound]['text']}) → images", hits)
            shown[f"audio:{held_out_sound}"] = [h.id for h in hits]
    finally:
        searcher.close()
    echo(f"\nnext: mmalign search --collection {COLLECTION} --qdrant-path {data / 'qdrant'} --text 'a sailing boat'")
    return {"bundle_id": bundle.bundle_id, "ingest": report.model_dump(mode="json"), "queries": shown}


def _show(echo, title: str, hits) -> None:
    echo(f"\n  {title}")
    for rank, hit in enumerate(hits, start=1):
        echo(f"   {rank}. {hit.score:.3f}  {hit.id:<42} {hit.payload.get('text') or ''}")
