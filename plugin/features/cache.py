"""Raw encoder features on disk, keyed by item id + content hash + encoder id.

Layout: ``ROOT/<modality>/<encoder name>--<spec hash>/`` holding ``encoder.json`` (the spec)
and append-only shards ``shard-NNNNNN-<pid>-<token>.safetensors`` (tensor ``features`` (n, d)
float32; header metadata ``item_ids`` and ``content_hashes`` as JSON, and ``sha256``). A later
shard (higher number) overrides an earlier one for the same item, so a changed file is simply
re-encoded into a new shard. No pickle anywhere.

Writers: a shard is written to a temporary name unique to the writer and renamed with
``os.replace``; its name carries the writer's pid and a random token, so processes sharing one
cache never pick the same name. A killed run loses at most the shard it was writing.

Readers: a shard's header is checked when it is indexed (readable, one item id and content hash
per row, float32 of the encoder's dimension) and its data when it is read (``sha256`` over the
item ids, the content hashes and the tensor bytes; every row finite). A damaged shard is named
in a warning and moved to ``quarantine/`` next to the shards: its items are missing from the
cache, so the next extraction re-encodes them. A shard whose checksum holds but which has
non-finite rows (written by an older version) keeps its finite rows (rewritten to a new shard);
the non-finite items are skipped and named. Shards written before checksums existed
(``format_version`` 1) are read without the checksum.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmalign.connectors.errors import DataError
from mmalign.plugin.encoders.registry import encoder_id as spec_encoder_id
from mmalign.schemas import Modality
from mmalign.schemas.encoders import EncoderSpec

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
#: Damaged shards are moved here (a folder next to the shards), with a ``.reason`` file each.
QUARANTINE = "quarantine"
_SHARD = re.compile(r"^shard-(\d+)(?:-[0-9]+-[0-9a-f]+)?\.safetensors$")

#: folder -> (index, shard names it covers), shared by every FeatureCache of this process.
_INDEX_CACHE: dict[str, tuple[dict, list[str]]] = {}
#: (path, size, mtime_ns) of shards whose data this process has verified.
_VERIFIED: set[tuple[str, int, int]] = set()
#: Damaged shards that could not be moved aside (read-only cache): ignored by this process.
_IGNORED: set[str] = set()


@dataclass(frozen=True)
class CacheEntry:
    content_hash: str
    shard: str
    row: int


@dataclass
class FeatureTable:
    """Features of several items for one modality/encoder, row-aligned with ``item_ids``.

    ``rejected`` lists (item id, reason) of items whose cached features were skipped (non-finite)."""

    modality: Modality
    encoder_id: str
    item_ids: list[str]
    content_hashes: list[str]
    features: np.ndarray
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)


def shard_checksum(item_ids_json: str, hashes_json: str, features: np.ndarray) -> str:
    """sha256 over the item ids, the content hashes (as stored, JSON) and the float32 tensor bytes."""
    digest = hashlib.sha256()
    digest.update(item_ids_json.encode("utf-8"))
    digest.update(b"\n")
    digest.update(hashes_json.encode("utf-8"))
    digest.update(b"\n")
    digest.update(np.ascontiguousarray(features, dtype="<f4").tobytes())
    return digest.hexdigest()


def shard_number(name: str) -> int | None:
    match = _SHARD.match(name)
    return int(match.group(1)) if match else None


class _ShardProblem(Exception):
    """A shard failed a check; ``bad_rows`` is set when only some rows are non-finite (checksum held)."""

    def __init__(self, name: str, reason: str, features: np.ndarray | None = None, bad_rows=None):
        super().__init__(reason)
        self.name, self.reason, self.features, self.bad_rows = name, reason, features, bad_rows


class FeatureCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def directory(self, modality: Modality, spec: EncoderSpec) -> Path:
        name, digest = spec_encoder_id(spec).split(":")
        return self.root / Modality(modality).value / f"{name}--{digest}"

    # -- reading ---------------------------------------------------------------------------------------
    def index(self, modality: Modality, spec: EncoderSpec) -> dict[str, CacheEntry]:
        """Item id -> where its newest features are. Reads shard headers only, and only of shards
        this process has not read yet (ingest asks once per chunk; shards are append-only).
        A shard whose header is damaged is quarantined and left out."""
        folder = self.directory(modality, spec)
        shards = self._shard_names(folder)
        key = str(folder.resolve())
        cached = _INDEX_CACHE.get(key)
        if cached is None or not set(cached[1]) <= set(shards) or (cached[1] and shards[: len(cached[1])] != cached[1]):
            cached = ({}, [])  # first look, or shards were rewritten (compact, quarantine): read everything
        entries, seen = dict(cached[0]), list(cached[1])
        for name in shards[len(seen) :]:
            try:
                ids, hashes = self._read_header(folder / name, spec)
            except FileNotFoundError:  # moved aside or compacted by another process meanwhile
                continue
            except _ShardProblem as problem:
                self._quarantine(folder, problem.name, problem.reason, count=None)
                continue
            for row, (item_id, content_hash) in enumerate(zip(ids, hashes)):
                entries[item_id] = CacheEntry(content_hash, name, row)
            seen.append(name)
        _INDEX_CACHE[key] = (entries, seen)
        return dict(entries)

    def verified_index(self, modality: Modality, spec: EncoderSpec, item_ids: list[str] | None = None):
        """:meth:`index`, after reading and checking every shard that holds the newest features of
        ``item_ids`` (all when None). Damaged shards are quarantined first, so an item missing here
        has no usable features and must be encoded again. Returns (index, rejected)."""
        index, _, _, rejected = self._scan(modality, spec, item_ids, keep=False)
        return index, rejected

    def load(self, modality: Modality, spec: EncoderSpec, item_ids: list[str] | None = None) -> FeatureTable:
        """Newest features for ``item_ids`` (all cached items when None); unknown ids are left out,
        and so are items whose features are damaged (see the module docstring)."""
        index, wanted, rows, rejected = self._scan(modality, spec, item_ids, keep=True)
        return FeatureTable(
            Modality(modality),
            spec_encoder_id(spec),
            wanted,
            [index[i].content_hash for i in wanted],
            rows,
            rejected,
        )

    def _scan(self, modality, spec, item_ids, *, keep: bool):
        folder = self.directory(modality, spec)
        rejected: list[tuple[str, str]] = []
        for _ in range(len(self._shard_names(folder)) + 3):
            index = self.index(modality, spec)
            wanted = [i for i in (item_ids if item_ids is not None else sorted(index)) if i in index]
            rows = np.zeros((len(wanted), spec.dim), dtype=np.float32) if keep else None
            shards: dict[str, np.ndarray | None] = {}
            try:
                for n, item_id in enumerate(wanted):
                    entry = index[item_id]
                    if entry.shard not in shards:
                        shards[entry.shard] = self._read_data(folder, entry.shard, spec, keep=keep)
                    if keep:
                        rows[n] = shards[entry.shard][entry.row]
            except FileNotFoundError:  # another process moved a shard: look again
                _INDEX_CACHE.pop(str(folder.resolve()), None)
                continue
            except _ShardProblem as problem:
                rejected += self._repair(modality, spec, folder, problem, index)
                continue
            return index, wanted, rows, [(i, reason) for i, reason in rejected if i not in index]
        raise DataError(f"feature cache folder {str(folder)!r} keeps failing its checks; move it aside and re-extract")

    @staticmethod
    def _shard_names(folder: Path) -> list[str]:
        names = [p.name for p in folder.glob("shard-*.safetensors") if shard_number(p.name) is not None]
        return sorted(n for n in names if str(folder / n) not in _IGNORED)

    @staticmethod
    def _read_header(path: Path, spec: EncoderSpec) -> tuple[list[str], list[str]]:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                meta = handle.metadata() or {}
                if "features" not in handle.keys():
                    raise ValueError("no tensor 'features'")
                tensor = handle.get_slice("features")
                shape, dtype = list(tensor.get_shape()), tensor.get_dtype()
            ids = json.loads(meta.get("item_ids", "[]"))
            hashes = json.loads(meta.get("content_hashes", "[]"))
            if not (isinstance(ids, list) and isinstance(hashes, list) and len(ids) == len(hashes)):
                raise ValueError("item_ids and content_hashes are not lists of one length")
            if not all(isinstance(v, str) for v in (*ids, *hashes)):
                raise ValueError("item_ids and content_hashes must be strings")
            if shape != [len(ids), spec.dim] or dtype != "F32":
                raise ValueError(f"tensor is {dtype} {shape}, expected F32 {[len(ids), spec.dim]}")
        except FileNotFoundError:
            raise
        except (SafetensorError, OSError, ValueError, TypeError, KeyError) as exc:
            raise _ShardProblem(path.name, f"unreadable header: {exc}") from exc
        return ids, hashes

    @staticmethod
    def _read_data(folder: Path, name: str, spec: EncoderSpec, *, keep: bool) -> np.ndarray | None:
        """A shard's features, checked (checksum, finite rows) unless this process already did."""
        from safetensors import SafetensorError, safe_open

        path = folder / name
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns)
        if stamp in _VERIFIED and not keep:
            return None
        try:
            with safe_open(str(path), framework="numpy") as handle:
                meta = handle.metadata() or {}
                features = handle.get_tensor("features")
        except FileNotFoundError:
            raise
        except (SafetensorError, OSError, ValueError, TypeError, KeyError) as exc:
            raise _ShardProblem(name, f"unreadable: {exc}") from exc
        if stamp in _VERIFIED:
            return features
        if features.ndim != 2 or features.shape[1] != spec.dim or features.dtype != np.float32:
            raise _ShardProblem(name, f"tensor is {features.dtype} {features.shape}, expected float32 (n, {spec.dim})")
        expected = meta.get("sha256")
        if expected is not None:
            actual = shard_checksum(meta.get("item_ids", "[]"), meta.get("content_hashes", "[]"), features)
            if actual != expected:
                raise _ShardProblem(name, f"checksum mismatch (stored sha256 {expected[:12]}…, data {actual[:12]}…)")
        elif meta.get("format_version", "1") != "1":
            raise _ShardProblem(name, "no checksum in a shard of format_version >= 2")
        finite = np.isfinite(features).all(axis=1)
        if not finite.all():
            raise _ShardProblem(
                name, f"{int((~finite).sum())} row(s) with NaN or infinite features", features, np.flatnonzero(~finite)
            )
        _VERIFIED.add(stamp)
        return features

    # -- repairing -------------------------------------------------------------------------------------
    def _repair(self, modality, spec, folder: Path, problem: _ShardProblem, index) -> list[tuple[str, str]]:
        """Quarantine a damaged shard. When only some rows are non-finite (the checksum held), its other
        rows that are still the newest of their item are rewritten to a new shard first."""
        newest = [(item_id, e) for item_id, e in index.items() if e.shard == problem.name]
        rejected: list[tuple[str, str]] = []
        if problem.bad_rows is not None:
            bad = {int(r) for r in problem.bad_rows}
            keep = [(i, e) for i, e in newest if e.row not in bad]
            rejected = [(i, f"non-finite cached features in {problem.name}") for i, e in newest if e.row in bad]
            if rejected:
                log.warning(
                    "feature cache %s: skipping %d item(s) with non-finite features: %s",
                    folder / problem.name,
                    len(rejected),
                    ", ".join(repr(i) for i, _ in rejected[:20]) + (" …" if len(rejected) > 20 else ""),
                )
            if keep:
                try:
                    self.write(
                        modality,
                        spec,
                        [i for i, _ in keep],
                        [e.content_hash for _, e in keep],
                        problem.features[[e.row for _, e in keep]],
                    )
                except OSError as exc:
                    log.warning("feature cache %s: cannot rewrite its finite rows (%s)", folder / problem.name, exc)
        self._quarantine(folder, problem.name, problem.reason, count=len(newest))
        return rejected

    @staticmethod
    def _quarantine(folder: Path, name: str, reason: str, *, count: int | None) -> bool:
        """Move a damaged shard to ``quarantine/``; True when it was moved (or is already gone)."""
        source = folder / name
        items = f"its {count} item(s) will be encoded again" if count is not None else "its items will be encoded again"
        log.warning("feature cache shard %s is damaged (%s): moved to %s/; %s", source, reason, QUARANTINE, items)
        _INDEX_CACHE.pop(str(folder.resolve()), None)
        target_dir = folder / QUARANTINE
        try:
            target_dir.mkdir(exist_ok=True)
            target = target_dir / name
            if target.exists():
                target = target_dir / f"{name}.{secrets.token_hex(4)}"
            os.replace(source, target)
            (target_dir / f"{target.name}.reason").write_text(reason + "\n", encoding="utf-8")
        except FileNotFoundError:
            return True  # another process moved it first
        except OSError as exc:
            log.warning("cannot move %s aside (%s): this process ignores it", source, exc)
            _IGNORED.add(str(source))
            return False
        return True

    # -- writing ---------------------------------------------------------------------------------------
    def write(
        self,
        modality: Modality,
        spec: EncoderSpec,
        item_ids: list[str],
        content_hashes: list[str],
        features: np.ndarray,
    ) -> Path | None:
        """Append one shard; returns its path (None for an empty write). Non-finite rows are refused."""
        from safetensors.numpy import save_file

        if not item_ids:
            return None
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.shape != (len(item_ids), spec.dim) or len(content_hashes) != len(item_ids):
            raise ValueError(f"shard shape {features.shape} does not match {len(item_ids)} items of dim {spec.dim}")
        finite = np.isfinite(features).all(axis=1)
        if not finite.all():
            bad = [item_ids[i] for i in np.flatnonzero(~finite)]
            raise DataError(f"refusing to cache NaN or infinite features of {len(bad)} item(s): {bad[:10]}")
        folder = self.directory(modality, spec)
        folder.mkdir(parents=True, exist_ok=True)
        token = f"{os.getpid()}-{secrets.token_hex(6)}"
        spec_file = folder / "encoder.json"
        if not spec_file.exists():
            body = {"format_version": FORMAT_VERSION, "encoder_id": spec_encoder_id(spec)}
            body["spec"] = spec.model_dump(mode="json")
            tmp_spec = folder / f".encoder.json.{token}.tmp"
            tmp_spec.write_text(json.dumps(body, indent=2))
            os.replace(tmp_spec, spec_file)
        numbers = [shard_number(p.name) for p in folder.glob("shard-*.safetensors")]
        number = max([n for n in numbers if n is not None], default=0) + 1
        path = folder / f"shard-{number:06d}-{token}.safetensors"
        tmp = folder / f".{path.name}.tmp"
        ids_json, hashes_json = json.dumps(item_ids), json.dumps(content_hashes)
        try:
            save_file(
                {"features": features},
                str(tmp),
                metadata={
                    "format_version": str(FORMAT_VERSION),
                    "encoder_id": spec_encoder_id(spec),
                    "item_ids": ids_json,
                    "content_hashes": hashes_json,
                    "sha256": shard_checksum(ids_json, hashes_json, features),
                },
            )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def compact(self, modality: Modality, spec: EncoderSpec) -> int:
        """Rewrite all shards as one (newest rows only); returns the row count. Shards that other
        writers add meanwhile are kept."""
        folder = self.directory(modality, spec)
        old = self._shard_names(folder)
        table = self.load(modality, spec)
        if len(old) <= 1:
            return len(table)
        path = self.write(modality, spec, table.item_ids, table.content_hashes, table.features)
        for name in old:
            if path is None or name != path.name:
                (folder / name).unlink(missing_ok=True)
        return len(table)
