"""``mmalign reembed``: build the next version of a collection with a new bundle, verify, swap the alias.

Same encoders as the live version: points are re-projected from the feature cache (nothing is
decoded or encoded). Other encoders: the catalog is re-ingested into the new version. Either way
the new version is written in chunks and is resumable (a rerun skips points already written with
the new bundle). Before the swap: every item of the live version must be accounted for (written,
or failed with a reason), and the new bundle's quality probe is reported next to the old one;
``min_quality`` can refuse the swap. The alias moves in one atomic operation; older versions
beyond ``keep`` are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.dead_letter import DeadLetterWriter
from mmalign.connectors.disk import ensure_store_space
from mmalign.connectors.errors import ItemError
from mmalign.connectors.faults import crash_point
from mmalign.connectors.store import EXTRA_VECTOR_NAMES, PointData, StoreError, VectorStore
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.index.lexical import lexical_vectors
from mmalign.plugin.index.verify import verify_collection
from mmalign.plugin.index.versions import list_versions, parse_version, utc_now, version_name
from mmalign.schemas import Modality, ReembedReport, StoreConfig
from mmalign.schemas.store import CollectionRecord
from mmalign.schemas.training import BundleConfig
from mmalign.schemas.vocabulary import LEXICAL_VECTOR

log = logging.getLogger(__name__)


def bundle_quality(config: BundleConfig) -> float | None:
    """The quality probe: the student's held-out text→image recall@10 recorded in the bundle
    (else the mean recall@10 of its cross-modal rows)."""
    rows = [r for r in (config.metrics.results if config.metrics else []) if r.model == "student"]
    for r in rows:
        if (r.query, r.target) == ("text", "image"):
            return float(r.recall_at_10)
    cross = [r.recall_at_10 for r in rows if r.target != "fused"]
    return float(np.mean(cross)) if cross else None


def _same_encoders(old_config: BundleConfig, new_config: BundleConfig) -> bool:
    old, new = old_config.encoder_ids(), new_config.encoder_ids()
    return all(old.get(m) == eid for m, eid in new.items())


def reembed(
    collection: str,
    *,
    bundle,
    store: VectorStore | StoreConfig | None = None,
    features_dir: str | Path = "mmalign-data/features",
    catalog=None,
    keep: int = 2,
    min_quality: float | None = None,
    chunk_size: int = 256,
    dead_letter: str | Path | None = None,
    device: str = "auto",
    force_reencode: bool = False,
    on_chunk: Callable[[int], None] | None = None,
    ingest_options=None,
) -> ReembedReport:
    """``ingest_options`` (an :class:`~mmalign.plugin.index.ingest.IngestOptions`, e.g. ``runner="ray"``) say
    how a re-encode ingests the catalog; chunk_size and device given here win."""
    from datetime import datetime, timezone

    with _opened(store) as vs:
        started = time.perf_counter()
        started_at = datetime.now(timezone.utc)
        plan = _plan(vs, collection, bundle, catalog=catalog, force_reencode=force_reencode)
        if plan.already_live:
            return _already_live(vs, collection, plan.live, plan.record, plan.mode, started)
        new_bundle = plan.bundle
        ensure_store_space(vs, vs.count(plan.live), new_bundle.dim, f"re-embedding {collection!r} into a new version")
        target = _next_version(vs, collection, plan.live, new_bundle, str(new_bundle.path.resolve()))
        report = ReembedReport(
            collection=collection,
            old_version=plan.live,
            new_version=target,
            old_bundle=plan.record.bundle_id,
            new_bundle=new_bundle.bundle_id,
            mode=plan.mode,
            expected=vs.count(plan.live),
        )
        letters = DeadLetterWriter(dead_letter or Path(features_dir) / "reembed_dead_letter.jsonl")
        _write_version(
            vs,
            plan,
            target,
            report,
            letters,
            features_dir=features_dir,
            catalog=catalog,
            chunk_size=chunk_size,
            device=device,
            on_chunk=on_chunk,
            ingest_options=ingest_options,
        )
        _verify_and_swap(vs, collection, plan, target, report, keep, min_quality, letters, started_at)
        report.seconds = time.perf_counter() - started
        return report


def _opened(store: VectorStore | StoreConfig | None):
    """``store`` itself (left open), or a store opened from its config and closed after use."""
    if isinstance(store, VectorStore):
        return contextlib.nullcontext(store)
    return VectorStore(store or StoreConfig())


@dataclass
class _Plan:
    """What a re-embed of the version ``live`` (with its ``record`` and its bundle's config, when that is still
    on disk) to ``bundle`` does: ``mode`` reproject (same encoders: from the feature cache), reencode (the
    catalog again) or lexical (same bundle, a version from before lexical search); ``already_live``: nothing."""

    live: str
    record: CollectionRecord
    bundle: Any
    old_config: BundleConfig | None
    mode: str
    already_live: bool = False


def _plan(vs: VectorStore, collection: str, bundle, *, catalog, force_reencode: bool) -> _Plan:
    """How the alias ``collection`` is re-embedded to ``bundle`` (a Bundle or its folder)."""
    from mmalign.plugin.align.bundle import Bundle, load_bundle

    live = vs.resolve_alias(collection)
    if live is None:
        raise StoreError(f"{collection!r} is not an alias of a versioned collection; ingest it first")
    old_record = vs.collection_record(live)
    new_bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, with_teacher=False)
    old_config = _bundle_config(old_record)
    same = old_config is not None and _same_encoders(old_config, new_bundle.config) and not force_reencode
    plan = _Plan(live, old_record, new_bundle, old_config, "reproject" if same else "reencode")
    if old_record.bundle_id == new_bundle.bundle_id:
        if LEXICAL_VECTOR in vs.sparse_vectors(live):
            plan.already_live = True
            return plan
        plan.mode = "lexical"  # a version from before lexical search: vectors copied, the lexical vector added
    if plan.mode == "reencode" and catalog is None:
        raise StoreError(
            f"bundle {new_bundle.bundle_id} uses other encoders than {old_record.bundle_id}: the "
            f"items must be re-encoded, so give the catalog (catalog=...)"
        )
    return plan


def _write_version(
    vs,
    plan: _Plan,
    target: str,
    report,
    letters,
    *,
    features_dir,
    catalog,
    chunk_size,
    device,
    on_chunk,
    ingest_options,
) -> None:
    """Write the new version ``target`` in the plan's mode, counting written, resumed and failed points."""
    if plan.mode == "reproject":
        cache = FeatureCache(features_dir)
        _reproject(vs, plan.live, target, plan.bundle, cache, report, letters, chunk_size, on_chunk)
        return
    if plan.mode == "lexical":
        _add_lexical(vs, plan.live, target, plan.bundle, FeatureCache(features_dir), report, chunk_size, on_chunk)
        return
    from mmalign.plugin.index.ingest import ingest

    result = ingest(
        catalog,
        bundle=plan.bundle,
        collection=target,
        store=vs,
        features_dir=features_dir,
        chunk_size=chunk_size,
        dead_letter=letters.path,
        device=device,
        on_chunk=on_chunk,
        options=ingest_options,
    )
    report.written, report.resumed, report.failed = result.ok, result.unchanged, result.failed


def _bundle_config(record) -> BundleConfig | None:
    from mmalign.plugin.align.bundle import load_bundle_config

    path = record.bundle_path
    if not path or not (Path(path) / "config.json").exists():
        return None
    return load_bundle_config(path)


def _already_live(vs: VectorStore, alias: str, live: str, record, mode: str, started: float) -> ReembedReport:
    """Re-embedding to the bundle that is live is a no-op (it also finishes a run killed after its swap)."""
    if record.state != "ready":
        vs.update_record(live, state="ready", verified_at=utc_now())
    return ReembedReport(
        collection=alias,
        old_version=live,
        new_version=live,
        old_bundle=record.bundle_id,
        new_bundle=record.bundle_id,
        mode=mode,
        expected=vs.count(live),
        already_live=True,
        seconds=time.perf_counter() - started,
        reason=f"bundle {record.bundle_id} is already live on {live}: nothing to do",
    )


def _next_version(vs: VectorStore, alias: str, live: str, bundle, bundle_path: str) -> str:
    """The version to build: an unfinished one for this bundle (building, or verified but not swapped
    because the run stopped) is resumed; else max + 1, recorded as building before anything is written."""
    versions = list_versions(vs, alias)
    for name in versions:
        record = vs.collection_record(name)
        if name != live and record.state in ("building", "verified") and record.bundle_id == bundle.bundle_id:
            vs.update_record(name, previous=live, state="building")
            return name
    number = max([parse_version(n)[1] for n in versions] + [0]) + 1
    name = version_name(alias, number)
    vs.create_collection(
        name,
        bundle.dim,
        bundle_id=bundle.bundle_id,
        extra={
            "bundle_path": bundle_path,
            "created_at": utc_now(),
            "state": "building",
            "alias": alias,
            "previous": live,
            "encoders": {m.value: bundle.encoder_spec(m).name for m in bundle.modalities},
            "media_root": vs.collection_record(live).media_root,
        },
        extra_vectors=[n for n in EXTRA_VECTOR_NAMES if n in vs.vector_sizes(live)],  # collab: rebuilt later
    )
    crash_point("reembed.version_created")
    return name


def _reproject(vs, live, target, bundle, cache: FeatureCache, report, letters, chunk_size, on_chunk) -> None:
    """Scroll the live version; project each item's cached raw features with the new student."""
    from mmalign.plugin.index.ingest import project_items

    specs = {m: bundle.encoder_spec(m) for m in bundle.modalities}
    for number, points in enumerate(vs.scroll_pages(live, page_size=chunk_size)):
        payloads = [p.payload for p in points]
        ids = [p["item_id"] for p in payloads]
        done = {
            p.payload["item_id"] for p in vs.retrieve(target, ids) if p.payload.get("bundle_id") == bundle.bundle_id
        }
        report.resumed += len(done)
        todo = [p for p in payloads if p["item_id"] not in done]
        if todo:
            features = {m: cache.load(m, spec, [p["item_id"] for p in todo]) for m, spec in specs.items()}
            rows = {m: dict(zip(t.item_ids, t.features)) for m, t in features.items()}
            ok = []
            for payload in todo:
                item_id = payload["item_id"]
                present = [Modality(m) for m in payload.get("modalities", []) if Modality(m) in specs]
                missing = [m for m in present if item_id not in rows[m]]
                if missing or not present:
                    report.failed += 1
                    letters.write_error(
                        ItemError(
                            item_id,
                            f"no cached {[m.value for m in missing] or 'usable'} "
                            f"features to re-project; re-embed with the catalog (catalog=...)",
                        ),
                        stage="project",
                    )
                    continue
                ok.append((payload, present))
            usable = {m: {p["item_id"]: rows[m][p["item_id"]] for p, present in ok if m in present} for m in specs}
            vectors = project_items(bundle, [p["item_id"] for p, _ in ok], usable)
            heard = speech_in_payloads(cache, bundle, [p for p, _ in ok])
            out = []
            for (payload, _), named in zip(ok, vectors):
                new_payload = {k: v for k, v in payload.items() if k != "item_id"}
                new_payload.update(bundle_id=bundle.bundle_id, ingested_at=utc_now(), **heard[payload["item_id"]])
                lexical = lexical_vectors(new_payload.get("text"), new_payload.get("heard"))
                out.append(PointData(payload["item_id"], {**named, **lexical}, new_payload))
            vs.upsert(target, out)
            report.written += len(out)
        crash_point("reembed.chunk_written")
        if on_chunk is not None:
            on_chunk(number)


def speech_in_payloads(cache: FeatureCache, bundle, payloads: list[dict]) -> dict[str, dict]:
    """item id -> ``{"heard": ...}`` with only speech (index/spoken.py), from the clip's annotation in the
    feature cache (versions written before kept every transcript); ``{}`` where the cache no longer has
    the clip's annotation (the stored ``heard`` is kept) or the item has no ``heard``."""
    from mmalign.plugin.features.annotations import AnnotationTable
    from mmalign.plugin.index.spoken import speech_heard

    out: dict[str, dict] = {p["item_id"]: {} for p in payloads}
    spec = bundle.encoder_spec(Modality.AUDIO) if Modality.AUDIO in bundle.modalities else None
    with_heard = [p["item_id"] for p in payloads if p.get("heard")]
    if spec is None or not with_heard:
        return out
    index = cache.index(Modality.AUDIO, spec)
    wanted = {i: index[i].content_hash for i in with_heard if i in index}
    for item_id, note in AnnotationTable(cache).read(Modality.AUDIO, spec, wanted).items():
        out[item_id] = {"heard": speech_heard(note)}
    return out


def _add_lexical(vs, live, target, bundle, cache: FeatureCache, report, chunk_size, on_chunk) -> None:
    """The next version of a collection made before lexical search, with the same bundle: every point's
    vectors copied as they are, its ``lexical`` vector made from its payload's text and heard speech (no
    media is decoded or encoded)."""
    for number, points in enumerate(vs.scroll_pages(live, with_vectors=True, page_size=chunk_size)):
        ids = [p.payload["item_id"] for p in points]
        done = {p.payload["item_id"] for p in vs.retrieve(target, ids)}
        report.resumed += len(done)
        todo = [p for p in points if p.payload["item_id"] not in done]
        heard = speech_in_payloads(cache, bundle, [p.payload for p in todo])
        out = []
        for p in todo:
            payload = {k: v for k, v in p.payload.items() if k != "item_id"}
            payload.update(heard[p.payload["item_id"]])
            lexical = lexical_vectors(payload.get("text"), payload.get("heard"))
            out.append(PointData(p.payload["item_id"], {**(p.vector or {}), **lexical}, payload))
        if out:
            vs.upsert(target, out)
            report.written += len(out)
        crash_point("reembed.chunk_written")
        if on_chunk is not None:
            on_chunk(number)


def _item_ids(vs: VectorStore, name: str) -> set[str]:
    return {p.payload["item_id"] for p in vs.scroll(name, with_payload=["item_id"], page_size=2048)}


def _verify_and_swap(vs, alias, plan: _Plan, target, report, keep, min_quality, letters, started_at) -> None:
    """Swap only if every item of the live version (read again now, so items ingested meanwhile count)
    is in the new version or was reported failed in this run's dead letters."""
    from mmalign.connectors.dead_letter import read_dead_letters

    live, bundle, old_config = plan.live, plan.bundle, plan.old_config

    report.quality_old = bundle_quality(old_config) if old_config else None
    report.quality_new = bundle_quality(bundle.config)
    failed_ids = {r.item_id for r in read_dead_letters(letters.path) if r.at >= started_at}
    live_ids, new_ids = _item_ids(vs, live), _item_ids(vs, target)
    missing = sorted(live_ids - new_ids - failed_ids)
    report.expected = len(live_ids)
    if missing:
        report.reason = (
            f"{len(missing)} item(s) of {live} are neither in {target} nor reported failed (e.g. "
            f"{missing[:3]}): not in the catalog, or ingested meanwhile; rerun reembed. The alias "
            f"stays on {live}"
        )
        return
    if min_quality is not None and (report.quality_new is None or report.quality_new < min_quality):
        report.reason = (
            f"quality probe {report.quality_new} is below min_quality {min_quality}; the alias stays on {live}"
        )
        return
    vs.build_index(target)  # payload indexes + HNSW (Edge) before the version goes live
    checked = verify_collection(vs, target, sample=0)  # every point read back and checked (index/verify.py)
    if not checked.ok:
        report.reason = f"{target} fails verification: {'; '.join(checked.problems())}; the alias stays on {live}"
        return
    vs.update_record(target, state="verified", previous=live, verified_at=utc_now(), points=len(new_ids))
    crash_point("reembed.verified")
    vs.set_alias(alias, target)
    report.swapped = True
    crash_point("reembed.swapped")
    vs.update_record(target, state="ready")
    crash_point("reembed.marked_ready")
    # keep the new version, the one that was live (the rollback target, whatever --keep says) and the
    # newest `keep` other ready ones
    ready = [
        n for n in list_versions(vs, alias) if n not in (target, live) and vs.collection_record(n).state == "ready"
    ]
    keep_names = {target, live, *(ready[-keep:] if keep > 0 else [])}
    for name in list_versions(vs, alias):
        if name not in keep_names:
            vs.delete_collection(name)
            report.dropped.append(name)
            crash_point("reembed.dropped")
