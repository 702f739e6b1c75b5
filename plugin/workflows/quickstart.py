"""``mmalign quickstart``: a real catalog end to end on the embedded store, in a few minutes on a CPU.

tuxpaint stamps -> features (offline-small, cached) -> bundle (trained once, then reused) ->
ingest into ``stamps`` -> text→image, image→text and sound→items queries, printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmalign.connectors.sources import open_catalog
from mmalign.plugin.encoders.registry import DEFAULT_PRESET
from mmalign.schemas import StoreConfig

COLLECTION = "stamps"
TEXT_QUERIES = ("a frog", "a red fire truck", "something to eat")
#: Said by espeak-ng (when installed) and searched as audio: a spoken query.
SPOKEN_QUERY = "a red fire truck"


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
    from mmalign.plugin.index.search import Searcher, SearchQuery
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
            stale = _stale_encoders(bundle)
            if stale:
                echo(
                    f"[2/4] bundle {bundle.bundle_id} was trained with other encoders than {DEFAULT_PRESET} has now "
                    f"({', '.join(stale)}); retraining"
                )
                bundle = None
            else:
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
    if _built_with_other_bundle(store, bundle):  # a collection of an earlier quickstart: a new version of it
        from mmalign.plugin.index.reembed import reembed

        done = reembed(COLLECTION, bundle=bundle, store=store, features_dir=features, catalog=catalog, device=device)
        echo(f"      '{COLLECTION}' re-embedded with bundle {bundle.bundle_id}: now {done.new_version}")
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
        test_ids = set(bundle.config.test_ids())
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
        spoken = _speak(SPOKEN_QUERY, data / "quickstart" / "spoken-query.wav")
        if spoken is not None:
            result = searcher.run(SearchQuery(audio=[spoken], using="image", k=k))
            hits, heard = result.hits, result.heard
            said = heard[0].transcript if heard else None
            what = f'heard "{said}"' if said else ("no speech heard" if heard else "no transcript")
            _show(echo, f'spoken "{SPOKEN_QUERY}" (espeak-ng, {spoken.name}; {what}) → images', hits)
            shown[f"spoken:{SPOKEN_QUERY}"] = [h.id for h in hits]
    finally:
        searcher.close()
    echo(f"\nnext: mmalign search --collection {COLLECTION} --qdrant-path {data / 'qdrant'} --text 'a sailing boat'")
    return {"bundle_id": bundle.bundle_id, "ingest": report.model_dump(mode="json"), "queries": shown}


def _stale_encoders(bundle) -> list[str]:
    """The bundle's encoders that are not the default preset's any more (e.g. a new default audio encoder)."""
    from mmalign.plugin.encoders.registry import encoder_id
    from mmalign.plugin.features.extract import preset_specs

    specs = preset_specs(DEFAULT_PRESET)
    return [
        f"{m.value}: {bundle.encoder_spec(m).name} -> {specs[m].name}"
        for m in bundle.modalities
        if m in specs and encoder_id(bundle.encoder_spec(m)) != encoder_id(specs[m])
    ]


def _built_with_other_bundle(store: StoreConfig, bundle) -> bool:
    from mmalign.connectors.store import VectorStore

    with VectorStore(store) as vs:
        if vs.resolve_alias(COLLECTION) is None:
            return False
        record = vs.collection_record(COLLECTION)
        return record is not None and record.bundle_id != bundle.bundle_id


def _speak(text: str, out: Path) -> Path | None:
    """``text`` spoken by espeak-ng into ``out`` (None when espeak-ng is not installed)."""
    import shutil
    import subprocess

    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-v", "en-gb", "-s", "150", "-w", str(out), text], check=True, capture_output=True)
    return out


def _show(echo, title: str, hits) -> None:
    echo(f"\n  {title}")
    for rank, hit in enumerate(hits, start=1):
        echo(f"   {rank}. {hit.score:.3f}  {hit.id:<42} {hit.payload.get('text') or ''}")
