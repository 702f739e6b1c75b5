"""``mmalign store verify [--repair]``: read every point of a collection version and check what can be checked.

Per point, the checks of :mod:`.checks`: the payload is an object whose ``item_id`` is the one the point
id was made from (uuid5), the ``fused`` vector is there and so is one vector per modality the payload
lists, every vector has the collection's size, finite values and unit norm.
Per version: the engine's count equals the points that could be read, and the count recorded after the
last verified write (``points`` in the collection record); with a catalog, every item of it is stored
or was dead-lettered. A sample of points is recomputed from the feature cache with the bundle that wrote
them, and must match within :data:`SAMPLE_TOLERANCE`.

What it cannot see: a damaged HNSW graph or payload index (queries would miss points, reads do not),
a vector changed to another plausible unit vector outside the sample, and damage to a version's files
that the engine only reads when a query touches them.

Repair (:func:`repair_collection`) re-ingests the catalog with the collection's bundle: damaged points
are rewritten in place (ingest never trusts a stored point that fails these checks); when the damage is
structural (points unreadable, or fewer points than recorded) it builds the next version from the
catalog instead, verifies it and points the alias at it; the damaged version is kept, marked
``damaged``, for ``mmalign drop-version``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.errors import StoreError
from mmalign.connectors.store import VECTOR_NAMES, VectorStore
from mmalign.plugin.index.checks import point_problems
from mmalign.plugin.index.versions import list_versions, parse_version, utc_now, version_name
from mmalign.schemas import Modality, VectorName

log = logging.getLogger(__name__)

#: A recomputed vector must have cosine >= 1 - this with the stored one.
SAMPLE_TOLERANCE = 1e-3
#: Points recomputed from the feature cache by default.
DEFAULT_SAMPLE = 32
#: Points listed by name in a report (the counts are always complete).
MAX_LISTED = 50
#: Seconds between progress calls.
PROGRESS_EVERY_S = 10.0


@dataclass
class PointProblem:
    """One point that fails a check: its item id (None where the payload does not say) and why."""

    point: str
    item_id: str | None
    reason: str


@dataclass
class VerifyReport:
    """What :func:`verify_collection` read and found; ``ok`` when nothing is wrong."""

    collection: str
    version: str
    bundle_id: str | None
    dim: int
    counted: int | None = None
    read: int = 0
    recorded: int | None = None
    catalog_items: int | None = None
    missing: list[str] = field(default_factory=list)
    missing_total: int = 0
    bad: list[PointProblem] = field(default_factory=list)
    bad_total: int = 0
    unreadable: str | None = None
    sampled: int = 0
    sample_skipped: int = 0
    sample_note: str = ""
    drift: list[PointProblem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def structural(self) -> bool:
        """Damage that rewriting points cannot fix: points unreadable, or fewer than counted/recorded."""
        if self.unreadable is not None:
            return True
        if self.counted is not None and self.read != self.counted:
            return True
        return self.recorded is not None and self.counted is not None and self.counted < self.recorded

    @property
    def ok(self) -> bool:
        recorded_ok = self.recorded is None or self.counted == self.recorded
        return not (self.structural or self.bad_total or self.missing_total or self.drift) and recorded_ok

    def problems(self) -> list[str]:
        """One line per kind of problem found (empty when ``ok``)."""
        lines = []
        if self.unreadable is not None:
            lines.append(f"reading the points failed: {self.unreadable}")
        if self.counted is not None and self.unreadable is None and self.read != self.counted:
            lines.append(f"the engine counts {self.counted} points but {self.read} could be read")
        if self.recorded is not None and self.counted is not None and self.counted != self.recorded:
            why = (
                " (points were lost: the id tracker or a segment is damaged)"
                if self.counted < self.recorded
                else " (a write stopped before it was verified: run it again, or repair_collection; CLI: --repair)"
            )
            lines.append(f"{self.counted} points now, {self.recorded} recorded after the last verified write{why}")
        if self.bad_total:
            shown = "; ".join(f"{p.item_id or p.point}: {p.reason}" for p in self.bad[:3])
            lines.append(f"{self.bad_total} point(s) fail their checks, e.g. {shown}")
        if self.missing_total:
            lines.append(
                f"{self.missing_total} catalog item(s) are neither stored nor dead-lettered, e.g. {self.missing[:3]}"
            )
        if self.drift:
            shown = "; ".join(f"{p.item_id}: {p.reason}" for p in self.drift[:3])
            lines.append(f"{len(self.drift)} of {self.sampled} sampled point(s) differ from their features: {shown}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "structural": self.structural, "problems": self.problems()}


@dataclass
class RepairReport:
    """What :func:`repair_collection` did: rewrote points in place, or rebuilt the version."""

    collection: str
    damaged: str
    action: str  # "none", "rewritten" or "rebuilt"
    rebuilt: str | None = None
    swapped: bool = False
    written: int = 0
    failed: int = 0
    dead_letter: str | None = None
    before: VerifyReport | None = None
    after: VerifyReport | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["before"] = self.before.to_dict() if self.before else None
        out["after"] = self.after.to_dict() if self.after else None
        return out


# -- a version ---------------------------------------------------------------------------------------------------
def verify_collection(
    store: VectorStore,
    collection: str,
    *,
    catalog=None,
    dead_letters: Iterable[str | Path] = (),
    features_dir: str | Path | None = None,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> VerifyReport:
    """Read every point of ``collection`` (an alias is followed to its version) and check it (see the module
    docstring). ``catalog`` (a path or an open Catalog) adds the catalog check; items named in
    ``dead_letters`` files count as accounted for. ``features_dir`` and ``sample`` > 0 add the recomputed
    sample. ``on_progress(read, counted)`` is called every ~10 s."""
    started = time.perf_counter()
    physical = store.resolve_alias(collection) or collection
    record = store.collection_record(physical)
    if record is None:
        raise StoreError(f"collection {collection!r} does not exist; collections: {store.list_collections()}")
    report = VerifyReport(collection, physical, record.bundle_id, record.dim)
    report.recorded = record.points
    stored_ids: set[str] = set()
    reservoir: list[Any] = []
    rng = random.Random(seed)
    try:
        report.counted = store.count(physical)
        last = time.monotonic()
        for page in store.scroll_pages(physical, with_payload=True, with_vectors=True, page_size=512):
            for p in page:
                report.read += 1
                problems = point_problems(p, record.dim, bundle_id=record.bundle_id)
                item_id = p.payload.get("item_id") if isinstance(p.payload, dict) else None
                if problems:
                    report.bad_total += 1
                    if len(report.bad) < MAX_LISTED:
                        report.bad.append(
                            PointProblem(str(p.id), item_id if isinstance(item_id, str) else None, problems[0])
                        )
                    continue
                stored_ids.add(item_id)
                if sample > 0:  # reservoir sampling: every good point equally likely
                    if len(reservoir) < sample:
                        reservoir.append(p)
                    elif (j := rng.randrange(len(stored_ids))) < sample:
                        reservoir[j] = p
            if on_progress is not None and time.monotonic() - last >= PROGRESS_EVERY_S:
                on_progress(report.read, report.counted)
                last = time.monotonic()
    except StoreError as exc:
        report.unreadable = str(exc)
    if catalog is not None:
        _check_catalog(report, catalog, stored_ids, dead_letters)
    if reservoir and features_dir is not None and report.unreadable is None:
        _check_sample(report, record, reservoir, Path(features_dir))
    elif sample > 0 and features_dir is None:
        report.sample_note = "no feature cache given: no vector was recomputed"
    report.seconds = time.perf_counter() - started
    return report


def _check_catalog(report: VerifyReport, catalog, stored_ids: set[str], dead_letters) -> None:
    from mmalign.connectors.dead_letter import read_dead_letters
    from mmalign.connectors.sources import Catalog, open_catalog

    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    items = catalog.items()
    report.catalog_items = len(items)
    failed = {r.item_id for path in dead_letters for r in read_dead_letters(path) if r.item_id}
    missing = [i.id for i in items if i.id not in stored_ids and i.id not in failed]
    report.missing_total = len(missing)
    report.missing = missing[:MAX_LISTED]


def _check_sample(report: VerifyReport, record, points: list[Any], features_dir: Path) -> None:
    """Recompute the sampled points' vectors from the cached features with the collection's bundle."""
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.index.ingest import media_hash, project_items

    bundle_path = record.bundle_path
    if not bundle_path or not Path(bundle_path).is_dir():
        report.sample_note = f"the bundle {bundle_path!r} recorded for {report.version} is not there: no sample"
        return
    bundle = load_bundle(bundle_path, with_teacher=False)
    if bundle.bundle_id != record.bundle_id:
        report.sample_note = f"{bundle_path} now holds bundle {bundle.bundle_id}, not {record.bundle_id}: no sample"
        return
    cache = FeatureCache(features_dir)
    ids = [p.payload["item_id"] for p in points]
    tables = {m: cache.load(m, bundle.encoder_spec(m), ids) for m in bundle.modalities}
    rows = {m: {i: (h, f) for i, h, f in zip(t.item_ids, t.content_hashes, t.features)} for m, t in tables.items()}
    usable, features = [], {m: {} for m in bundle.modalities}
    for p in points:
        item_id, present = p.payload["item_id"], [Modality(m) for m in p.payload.get("modalities", [])]
        found = {m: rows.get(m, {}).get(item_id) for m in present}
        hashes = {m: row[0] if row else None for m, row in found.items()}
        if not present or None in hashes.values() or media_hash(hashes) != p.payload.get("media_hash"):
            report.sample_skipped += 1  # the features of this content are not in the cache
            continue
        usable.append(p)
        for m, (_, row) in found.items():
            features[m][item_id] = row
    if not usable:
        report.sample_note = f"none of the {len(points)} sampled items has its features in {features_dir}"
        return
    recomputed = project_items(bundle, [p.payload["item_id"] for p in usable], features)
    for p, named in zip(usable, recomputed):
        report.sampled += 1
        for name, vector in named.items():
            stored = (p.vector or {}).get(VectorName(name).value)
            if stored is None:
                continue
            a, b = np.asarray(stored, dtype=np.float64), np.asarray(vector, dtype=np.float64)
            cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
            if cosine < 1.0 - SAMPLE_TOLERANCE:
                reason = f"vector {VectorName(name).value!r} has cosine {cosine:.4f} to the one its features give"
                report.drift.append(PointProblem(str(p.id), p.payload["item_id"], reason))
                break


# -- repair ------------------------------------------------------------------------------------------------------
def repair_collection(
    store: VectorStore,
    collection: str,
    *,
    catalog=None,
    media_root: str | Path | None = None,
    features_dir: str | Path = "mmalign-data/features",
    dead_letter: str | Path | None = None,
    device: str = "auto",
    sample: int = DEFAULT_SAMPLE,
    report: VerifyReport | None = None,
) -> RepairReport:
    """Verify ``collection`` (or take ``report``) and repair what is wrong from the catalog (``catalog``, else
    the one recorded by the last ingest) with the bundle recorded in the version: see the module docstring."""
    from mmalign.connectors.sources import Catalog, open_catalog
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.index.ingest import ingest

    started = time.perf_counter()
    letters = Path(dead_letter or Path(features_dir) / "repair_dead_letter.jsonl")
    before = report or verify_collection(
        store, collection, features_dir=features_dir, sample=sample, catalog=catalog, dead_letters=[letters]
    )
    result = RepairReport(collection, before.version, "none", before=before, dead_letter=str(letters))
    if before.ok:
        result.after, result.seconds = before, time.perf_counter() - started
        return result
    record = store.collection_record(before.version)
    if catalog is None:
        catalog = record.catalog
        if not catalog or not Path(catalog).exists():
            raise StoreError(
                f"{before.version} needs repair ({'; '.join(before.problems())}) and the repair re-ingests its "
                f"catalog: pass catalog= (CLI: --catalog; the version records {catalog!r})"
            )
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog, media_root=media_root or record.media_root)
    bundle_path = record.bundle_path
    if not bundle_path or not Path(bundle_path).is_dir():
        raise StoreError(f"{before.version} records bundle {bundle_path!r}, which is not there: cannot re-embed")
    bundle = load_bundle(bundle_path, with_teacher=False)
    if bundle.bundle_id != record.bundle_id:
        raise StoreError(
            f"{bundle_path} holds bundle {bundle.bundle_id}, but {before.version} was built with "
            f"{record.bundle_id}: restore that bundle, or re-embed the collection"
        )
    target = before.version
    if before.structural:
        target = _next_version(store, before.version, record)
        result.action, result.rebuilt = "rebuilt", target
    else:
        result.action = "rewritten"
    written = ingest(
        catalog,
        bundle=bundle,
        collection=target,
        store=store,
        features_dir=features_dir,
        dead_letter=letters,
        device=device,
    )
    result.written, result.failed = written.ok, written.failed
    result.after = verify_collection(
        store, target, catalog=catalog, dead_letters=[letters], features_dir=features_dir, sample=sample
    )
    if result.action == "rebuilt":
        if not result.after.ok:
            raise StoreError(
                f"the rebuilt version {target} fails verification ({'; '.join(result.after.problems())}); "
                f"the alias stays on {before.version}"
            )
        alias = _alias_of(store, before.version)
        store.update_record(target, state="ready")
        if alias is not None:
            store.set_alias(alias, target)
            result.swapped = True
        store.update_record(before.version, state="damaged", damage=before.problems(), replaced_by=target)
    result.seconds = time.perf_counter() - started
    return result


def _alias_of(store: VectorStore, physical: str) -> str | None:
    return next((a for a, c in store.aliases().items() if c == physical), None)


def _next_version(store: VectorStore, damaged: str, record) -> str:
    """The version that replaces ``damaged``: created empty with its record (state ``building``)."""
    alias = _alias_of(store, damaged) or record.alias or (parse_version(damaged) or (None,))[0]
    if alias is None:
        raise StoreError(
            f"{damaged!r} is a plain collection (no alias, not NAME__vN): a rebuild needs a new version to swap "
            f"to; ingest the catalog into a new collection name instead"
        )
    numbers = [parse_version(n)[1] for n in list_versions(store, alias)] + [0]
    name = version_name(alias, max(numbers) + 1)
    dropped = ("points", "verified_at", "state", "push", "damage", "replaced_by", "rebuilt_from", "created_at")
    keep = record.carried(drop=dropped)
    sizes = store.vector_sizes(damaged) if store.collection_exists(damaged) else {}
    store.create_collection(
        name,
        record.dim,
        bundle_id=record.bundle_id,
        extra={**keep, "alias": alias, "state": "building", "created_at": utc_now(), "rebuilt_from": damaged},
        extra_vectors=[v for v in sizes if v not in VECTOR_NAMES],
    )
    return name
