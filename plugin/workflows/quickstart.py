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
    """Catalog, bundle, ingest and queries, each step printed through ``echo``; returns what was shown."""
    from mmalign.connectors.datasets.tuxpaint import write_catalog

    data = Path(data_dir)
    catalog_path = data / "quickstart" / "tuxpaint.jsonl"
    root, items = write_catalog(catalog_path)
    with_audio = sum("audio" in i for i in items)
    echo(f"[1/4] catalog: {len(items)} tuxpaint stamps ({with_audio} with a sound effect) -> {catalog_path}")
    catalog = open_catalog(catalog_path, media_root=root)
    bundle = _the_bundle(catalog, data, echo=echo, device=device, show_progress=show_progress)
    store = StoreConfig(path=str(data / "qdrant"))
    report = _ingest_stamps(catalog, bundle, store, data, echo=echo, device=device, show_progress=show_progress)
    echo("[4/4] queries")
    shown = _queries(bundle, store, root, items, data, echo=echo, device=device, k=k)
    echo(f"\nnext: mmalign search --collection {COLLECTION} --qdrant-path {data / 'qdrant'} --text 'a sailing boat'")
    return {"bundle_id": bundle.bundle_id, "ingest": report.model_dump(mode="json"), "queries": shown}


def _the_bundle(catalog, data: Path, *, echo, device: str, show_progress: bool):
    """The quickstart's bundle: the one trained by an earlier run while its encoders are still the
    preset's, else a new one (features cached after the first run)."""
    from mmalign.plugin.align.bundle import BundleError, load_bundle
    from mmalign.plugin.workflows.train import train_bundle

    bundle_dir = data / "bundles" / "quickstart"
    if (bundle_dir / "config.json").exists():
        try:
            bundle = load_bundle(bundle_dir, with_teacher=False)
            stale = _stale_encoders(bundle)
            if not stale:
                echo(f"[2/4] reusing bundle {bundle.bundle_id} in {bundle_dir} (delete it to retrain)")
                return bundle
            echo(
                f"[2/4] bundle {bundle.bundle_id} was trained with other encoders than {DEFAULT_PRESET} has now "
                f"({', '.join(stale)}); retraining"
            )
        except BundleError as exc:
            echo(f"[2/4] existing bundle unusable ({exc}); retraining")
    echo("[2/4] features (cached after the first run) and training (teacher + distilled student)")
    summary = train_bundle(
        catalog,
        bundle_dir,
        features_dir=data / "features",
        device=device,
        show_progress=show_progress,
        echo=lambda line: echo(f"      {line}"),
    )
    tti = next(r for r in summary.metrics.results if (r.model, r.query, r.target) == ("student", "text", "image"))
    echo(f"      held-out text→image recall@10 {tti.recall_at_10:.3f} ({tti.n_queries} queries)")
    return load_bundle(bundle_dir, with_teacher=False)


def _ingest_stamps(catalog, bundle, store: StoreConfig, data: Path, *, echo, device: str, show_progress: bool):
    """Ingest into ``stamps``; a collection of an earlier quickstart with another bundle is re-embedded first."""
    from mmalign.plugin.index.ingest import ingest

    features = data / "features"
    if _built_with_other_bundle(store, bundle):
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
    return report


def _queries(bundle, store: StoreConfig, root: Path, items: list, data: Path, *, echo, device: str, k: int) -> dict:
    """Text → images, a held-out stamp's image → texts, its sound → images, and a spoken query."""
    from mmalign.plugin.index.search import Searcher, SearchQuery

    shown: dict = {}
    test_ids = sorted(bundle.config.test_ids())
    by_id = {i["id"]: i for i in items}

    def show(key: str, title: str, hits) -> None:
        _show(echo, title, hits)
        shown[key] = [h.id for h in hits]

    with Searcher(COLLECTION, store=store, bundle=bundle, device=device) as searcher:
        for text in TEXT_QUERIES:
            show(f"text:{text}", f'text "{text}" → images', searcher.search(text=[text], using="image", k=k))
        image = next(i for i in test_ids if by_id.get(i, {}).get("image"))
        hits = searcher.search(image=[root / by_id[image]["image"]], using="text", k=k)
        show(f"image:{image}", f"image of held-out stamp '{image}' ({by_id[image]['text']}) → texts", hits)
        sound = next((i for i in test_ids if by_id.get(i, {}).get("audio")), None)
        if sound:
            hits = searcher.search(audio=[root / by_id[sound]["audio"]], using="image", k=k)
            show(f"audio:{sound}", f"sound of held-out stamp '{sound}' ({by_id[sound]['text']}) → images", hits)
        spoken = _speak(SPOKEN_QUERY, data / "quickstart" / "spoken-query.wav")
        if spoken is not None:
            result = searcher.run(SearchQuery(audio=[spoken], using="image", k=k))
            said = result.heard[0].transcript if result.heard else None
            what = f'heard "{said}"' if said else ("no speech heard" if result.heard else "no transcript")
            title = f'spoken "{SPOKEN_QUERY}" (espeak-ng, {spoken.name}; {what}) → images'
            show(f"spoken:{SPOKEN_QUERY}", title, result.hits)
    return shown


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
