"""``mmalign store snapshot`` / ``restore``: a backup of one collection version in one file, and its restore.

The archive is logical, not a copy of the engine's files: it is written from the points as the store
returns them, every point checked on the way (a damaged version is refused: repair it first), so it can
be restored into any engine (Edge, local mode, a server) and never carries a damaged file along.
(Qdrant Edge 0.9 can unpack a server's shard snapshot, but cannot make one.)

Format: an uncompressed tar of ``part-NNNNN.safetensors`` (each dense named vector's rows, and which
points have it), ``part-NNNNN.json`` (item ids, payloads, sparse vectors) and, last,
``manifest.json`` (the collection's record, vector sizes, point count and the SHA-256 of every part). No
pickle. The file is written under a temporary name and renamed when complete.

Restore builds the alias's next version from the archive, checks every part's SHA-256 and the points
it wrote, builds the indexes and points the alias at it (the version that was live stays, as after a
re-embed, for ``rollback``). A restore that was stopped resumes on the version it was building.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.disk import ensure_store_space
from mmalign.connectors.errors import StoreError
from mmalign.connectors.query import SparseVector
from mmalign.connectors.store import PointData, VectorStore
from mmalign.plugin.index.checks import point_problems, seal_written
from mmalign.plugin.index.versions import list_versions, parse_version, utc_now, version_name
from mmalign.schemas.store import CollectionRecord

FORMAT = "mmalign-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PART_POINTS = 1024
#: Record fields a restored version does not take from the archive (they describe the copy, not the data).
_NOT_RESTORED = ("points", "verified_at", "state", "push", "previous", "created_at", "damage", "replaced_by")


@dataclass
class SnapshotReport:
    collection: str
    version: str
    path: str
    points: int
    bytes: int
    sha256: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestoreReport:
    archive: str
    alias: str
    version: str
    points: int
    previous: str | None
    resumed: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _part(points: list[Any], dense: list[str]) -> tuple[bytes, bytes]:
    """(safetensors bytes, JSON bytes) of one page of points."""
    from safetensors.numpy import save

    ids, payloads, sparse = [], [], []
    rows: dict[str, list[np.ndarray]] = {n: [] for n in dense}
    where: dict[str, list[int]] = {n: [] for n in dense}
    for number, p in enumerate(points):
        payload = dict(p.payload)
        ids.append(payload.pop("item_id"))
        payloads.append(payload)
        named = {}
        for name, value in (p.vector or {}).items():
            if isinstance(value, SparseVector):
                named[name] = {"indices": list(value.indices), "values": list(value.values)}
            else:
                rows[name].append(np.asarray(value, dtype=np.float32))
                where[name].append(number)
        sparse.append(named)
    tensors = {}
    for name in dense:
        if rows[name]:
            tensors[f"vectors.{name}"] = np.stack(rows[name])
            tensors[f"rows.{name}"] = np.asarray(where[name], dtype=np.int64)
    body = json.dumps({"item_ids": ids, "payloads": payloads, "sparse": sparse}, ensure_ascii=False).encode()
    return save(tensors, metadata={"format": FORMAT}), body


def snapshot_collection(
    store: VectorStore,
    collection: str,
    path: str | Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> SnapshotReport:
    """Write every point of ``collection`` (an alias is followed to its version) into the archive ``path``."""
    started = time.perf_counter()
    physical = store.resolve_alias(collection) or collection
    record = store.collection_record(physical)
    if record is None:
        raise StoreError(f"collection {collection!r} does not exist; collections: {store.list_collections()}")
    sizes = store.vector_sizes(physical)
    sparse_names = store.sparse_vectors(physical)
    dense = sorted(sizes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    parts, total, last = [], 0, time.monotonic()
    expected = store.count(physical)
    try:
        with tarfile.open(tmp, "w") as tar:
            pages = store.scroll_pages(physical, with_vectors=True, with_sparse=True, page_size=PART_POINTS)
            for number, page in enumerate(pages):
                for p in page:
                    problems = point_problems(p, record.dim, bundle_id=record.bundle_id)
                    if problems:
                        raise StoreError(
                            f"{physical} is damaged (point {p.id}: {problems[0]}); a snapshot would keep the "
                            f"damage: repair it first (repair_collection; CLI: `mmalign store verify "
                            f"--collection {collection} --repair`)"
                        )
                tensors, body = _part(page, dense)
                name = f"part-{number:05d}"
                _add(tar, f"{name}.safetensors", tensors)
                _add(tar, f"{name}.json", body)
                parts.append({"name": name, "points": len(page), "sha256": [_sha256(tensors), _sha256(body)]})
                total += len(page)
                if on_progress is not None and time.monotonic() - last >= 10.0:
                    on_progress(total, expected)
                    last = time.monotonic()
            if total != expected:
                raise StoreError(f"{physical} counts {expected} points but {total} could be read: it is damaged")
            alias = next((a for a, c in store.aliases().items() if c == physical), None)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "collection": physical,
                "alias": alias or record.alias,
                "record": record.stored(),
                "vector_sizes": sizes,
                "sparse_vectors": sparse_names,
                "points": total,
                "parts": parts,
                "created_at": utc_now(),
                "source": store.describe(),
            }
            _add(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return SnapshotReport(
        collection, physical, str(path), total, path.stat().st_size, digest.hexdigest(), time.perf_counter() - started
    )


def read_manifest(path: str | Path) -> dict:
    """The manifest of a snapshot archive; a clear StoreError when the file is not one, or of a newer format."""
    try:
        with tarfile.open(path, "r") as tar:
            member = tar.extractfile(MANIFEST)
            manifest = json.loads(member.read()) if member is not None else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise StoreError(f"{str(path)!r} is not a complete mmalign snapshot: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{str(path)!r} is not an mmalign snapshot (no {FORMAT} manifest)")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise StoreError(
            f"{str(path)!r} has snapshot format {manifest['format_version']}; this mmalign reads {FORMAT_VERSION}"
        )
    return manifest


def _read_part(tar: tarfile.TarFile, part: dict, dim: int) -> list[PointData]:
    from safetensors.numpy import load

    blobs = []
    for suffix, digest in zip((".safetensors", ".json"), part["sha256"]):
        member = tar.extractfile(part["name"] + suffix)
        data = member.read() if member is not None else b""
        if _sha256(data) != digest:
            raise StoreError(f"part {part['name']}{suffix} of the snapshot does not match its SHA-256: damaged file")
        blobs.append(data)
    tensors, body = load(blobs[0]), json.loads(blobs[1])
    vectors: list[dict[str, Any]] = [dict() for _ in body["item_ids"]]
    for key, rows in tensors.items():
        if key.startswith("vectors."):
            name = key.removeprefix("vectors.")
            if rows.shape[1] != dim:
                raise StoreError(f"part {part['name']}: vector {name!r} has size {rows.shape[1]}, not {dim}")
            for number, row in zip(tensors[f"rows.{name}"].tolist(), rows):
                vectors[number][name] = row
    for number, named in enumerate(body["sparse"]):
        for name, value in named.items():
            vectors[number][name] = SparseVector(tuple(value["indices"]), tuple(value["values"]))
    return [PointData(i, v, p) for i, v, p in zip(body["item_ids"], vectors, body["payloads"])]


def restore_collection(
    store: VectorStore,
    path: str | Path,
    *,
    alias: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RestoreReport:
    """Restore the archive ``path`` as the next version of ``alias`` (default: the alias it was taken from)
    and point the alias at it; see the module docstring."""
    started = time.perf_counter()
    manifest = read_manifest(path)
    source = manifest["collection"]
    alias = alias or manifest.get("alias") or (parse_version(source) or (None,))[0]
    if not alias:
        raise StoreError(f"the snapshot of {source!r} names no alias: give the alias to restore it under")
    stored = manifest["record"]
    dim, digest = int(stored["dim"]), _sha256(json.dumps(manifest["parts"]).encode())
    live = store.resolve_alias(alias)
    target, resumed = _restoring(store, alias, digest), True
    if target is None:
        resumed = False
        ensure_store_space(store, int(manifest["points"]), dim, f"restoring {manifest['points']:,} points")
        numbers = [parse_version(n)[1] for n in list_versions(store, alias)] + [0]
        target = version_name(alias, max(numbers) + 1)
        kept = CollectionRecord.from_stored(target, stored).carried(drop=_NOT_RESTORED)
        store.create_collection(
            target,
            dim,
            bundle_id=stored.get("bundle_id"),
            extra={**kept, "alias": alias, "state": "building", "created_at": utc_now(), "restoring": digest},
            extra_vectors=[v for v in manifest["vector_sizes"] if v not in ("image", "text", "audio", "fused")],
            sparse_vectors=manifest.get("sparse_vectors", []),
        )
    written: list[str] = []
    with tarfile.open(path, "r") as tar:
        for part in manifest["parts"]:
            points = _read_part(tar, part, dim)
            store.upsert(target, points)
            written += [p.item_id for p in points]
            if on_progress is not None:
                on_progress(len(written), int(manifest["points"]))
    if len(written) != int(manifest["points"]):
        raise StoreError(f"the snapshot's parts hold {len(written)} points, its manifest says {manifest['points']}")
    store.build_index(target)
    seal_written(store, target, written, before=None)
    if store.count(target) != len(written):
        raise StoreError(f"{target} counts {store.count(target)} points after the restore of {len(written)}")
    store.update_record(target, state="verified", previous=live, restored_from=str(Path(path).resolve()))
    store.set_alias(alias, target)
    store.update_record(target, state="ready")
    return RestoreReport(str(path), alias, target, len(written), live, resumed, time.perf_counter() - started)


def _restoring(store: VectorStore, alias: str, digest: str) -> str | None:
    """A version of ``alias`` that a stopped restore of the same archive was building."""
    for name in list_versions(store, alias):
        record = store.collection_record(name)
        if record.state == "building" and record.restoring == digest:
            return name
    return None
