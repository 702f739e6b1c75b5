"""Raw encoder features on disk, keyed by item id + content hash + encoder id.

Layout: ``ROOT/<modality>/<encoder name>--<spec hash>/`` holding ``encoder.json`` (the spec)
and append-only shards ``shard-NNNNNN.safetensors`` (tensor ``features`` (n, d) float32;
header metadata ``item_ids`` and ``content_hashes`` as JSON). A later shard overrides an
earlier one for the same item, so a changed file is simply re-encoded into a new shard.
Shards are written to a temporary name and renamed: a killed run loses at most one shard.
No pickle anywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmalign.plugin.encoders.registry import encoder_id as spec_encoder_id
from mmalign.schemas import Modality
from mmalign.schemas.encoders import EncoderSpec

FORMAT_VERSION = 1

#: folder -> (index, shard names it covers), shared by every FeatureCache of this process.
_INDEX_CACHE: dict[str, tuple[dict, list[str]]] = {}


@dataclass(frozen=True)
class CacheEntry:
    content_hash: str
    shard: str
    row: int


@dataclass
class FeatureTable:
    """Features of several items for one modality/encoder, row-aligned with ``item_ids``."""

    modality: Modality
    encoder_id: str
    item_ids: list[str]
    content_hashes: list[str]
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)


class FeatureCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def directory(self, modality: Modality, spec: EncoderSpec) -> Path:
        name, digest = spec_encoder_id(spec).split(":")
        return self.root / Modality(modality).value / f"{name}--{digest}"

    def index(self, modality: Modality, spec: EncoderSpec) -> dict[str, CacheEntry]:
        """Item id -> where its newest features are. Reads shard headers only, and only of shards
        this process has not read yet (ingest asks once per chunk; shards are append-only)."""
        from safetensors import safe_open

        folder = self.directory(modality, spec)
        shards = sorted(p.name for p in folder.glob("shard-*.safetensors"))
        key = str(folder.resolve())
        cached = _INDEX_CACHE.get(key)
        if cached is None or not set(cached[1]) <= set(shards) or (cached[1] and shards[: len(cached[1])] != cached[1]):
            cached = ({}, [])  # first look, or shards were rewritten (compact): read everything
        entries, seen = dict(cached[0]), list(cached[1])
        for name in shards[len(seen) :]:
            with safe_open(str(folder / name), framework="numpy") as handle:
                meta = handle.metadata() or {}
            ids = json.loads(meta.get("item_ids", "[]"))
            hashes = json.loads(meta.get("content_hashes", "[]"))
            for row, (item_id, content_hash) in enumerate(zip(ids, hashes)):
                entries[item_id] = CacheEntry(content_hash, name, row)
            seen.append(name)
        _INDEX_CACHE[key] = (entries, seen)
        return dict(entries)

    def write(
        self,
        modality: Modality,
        spec: EncoderSpec,
        item_ids: list[str],
        content_hashes: list[str],
        features: np.ndarray,
    ) -> Path | None:
        """Append one shard; returns its path (None for an empty write)."""
        from safetensors.numpy import save_file

        if not item_ids:
            return None
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.shape != (len(item_ids), spec.dim) or len(content_hashes) != len(item_ids):
            raise ValueError(f"shard shape {features.shape} does not match {len(item_ids)} items of dim {spec.dim}")
        folder = self.directory(modality, spec)
        folder.mkdir(parents=True, exist_ok=True)
        spec_file = folder / "encoder.json"
        if not spec_file.exists():
            spec_file.write_text(
                json.dumps(
                    {
                        "format_version": FORMAT_VERSION,
                        "encoder_id": spec_encoder_id(spec),
                        "spec": spec.model_dump(mode="json"),
                    },
                    indent=2,
                )
            )
        existing = sorted(folder.glob("shard-*.safetensors"))
        number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
        path = folder / f"shard-{number:06d}.safetensors"
        tmp = folder / f".{path.name}.tmp"
        save_file(
            {"features": features},
            str(tmp),
            metadata={
                "format_version": str(FORMAT_VERSION),
                "encoder_id": spec_encoder_id(spec),
                "item_ids": json.dumps(item_ids),
                "content_hashes": json.dumps(content_hashes),
            },
        )
        os.replace(tmp, path)
        return path

    def load(self, modality: Modality, spec: EncoderSpec, item_ids: list[str] | None = None) -> FeatureTable:
        """Newest features for ``item_ids`` (all cached items when None); unknown ids are left out."""
        from safetensors.numpy import load_file

        index = self.index(modality, spec)
        wanted = [i for i in (item_ids if item_ids is not None else sorted(index)) if i in index]
        folder = self.directory(modality, spec)
        shards: dict[str, np.ndarray] = {}
        rows = np.zeros((len(wanted), spec.dim), dtype=np.float32)
        for n, item_id in enumerate(wanted):
            entry = index[item_id]
            if entry.shard not in shards:
                shards[entry.shard] = load_file(str(folder / entry.shard))["features"]
            rows[n] = shards[entry.shard][entry.row]
        return FeatureTable(
            Modality(modality), spec_encoder_id(spec), wanted, [index[i].content_hash for i in wanted], rows
        )

    def compact(self, modality: Modality, spec: EncoderSpec) -> int:
        """Rewrite all shards as one (newest rows only); returns the row count."""
        table = self.load(modality, spec)
        folder = self.directory(modality, spec)
        old = sorted(folder.glob("shard-*.safetensors"))
        if len(old) <= 1:
            return len(table)
        path = self.write(modality, spec, table.item_ids, table.content_hashes, table.features)
        for shard in old:
            if shard != path:
                shard.unlink()
        return len(table)
