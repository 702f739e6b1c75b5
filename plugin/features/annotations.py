"""What an encoder found in an input, beside its features: e.g. the transcript of a clip.

Kept next to the feature shards of the encoder, in ``annotations.jsonl``: one JSON line per encoded item,
``{"item_id", "content_hash", "annotation"}``, appended by each writer in one write (so lines of several
processes never interleave). Keyed like the features: the newest line of an item wins, and it counts only
for the content hash it was made from. Shards can be compacted or quarantined without touching it; a torn
line (a killed writer) is skipped, and the next writer starts on a new line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmalign.plugin.features.cache import FeatureCache
from mmalign.schemas import Modality
from mmalign.schemas.encoders import EncoderSpec

log = logging.getLogger(__name__)

FILE_NAME = "annotations.jsonl"

#: path -> (bytes read, size and mtime seen, {item id: (content hash, annotation)}): lines are only appended.
_INDEX: dict[str, tuple[int, tuple[int, int], dict[str, tuple[str, dict]]]] = {}


class AnnotationTable:
    def __init__(self, root: str | Path | FeatureCache):
        self.cache = root if isinstance(root, FeatureCache) else FeatureCache(root)

    def path(self, modality: Modality, spec: EncoderSpec) -> Path:
        return self.cache.directory(modality, spec) / FILE_NAME

    def write(
        self,
        modality: Modality,
        spec: EncoderSpec,
        item_ids: Sequence[str],
        content_hashes: Sequence[str],
        annotations: Sequence[dict | None],
    ) -> int:
        """Append the non-empty annotations; returns how many were written."""
        lines = [
            json.dumps({"item_id": i, "content_hash": h, "annotation": a}, ensure_ascii=False, allow_nan=False)
            for i, h, a in zip(item_ids, content_hashes, annotations, strict=True)
            if a
        ]
        if not lines:
            return 0
        path = self.path(modality, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ("\n".join(lines) + "\n").encode("utf-8")
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _lock(fd)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a writer was killed mid-line: start on a line of our own
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
        return len(lines)

    def read(self, modality: Modality, spec: EncoderSpec, wanted: Mapping[str, str]) -> dict[str, dict]:
        """item id -> annotation, for the items of ``wanted`` (item id -> content hash) whose newest
        annotation was made from that content."""
        index = self._index(self.path(modality, spec))
        out = {}
        for item_id, content_hash in wanted.items():
            found = index.get(item_id)
            if found is not None and found[0] == content_hash:
                out[item_id] = found[1]
        return out

    @staticmethod
    def _index(path: Path) -> dict[str, tuple[str, dict]]:
        key = str(path.resolve()) if path.exists() else str(path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            _INDEX.pop(key, None)
            return {}
        offset, seen, entries = _INDEX.get(key, (0, (0, 0), {}))
        if stat.st_size < offset:  # replaced by a shorter file: read it all again
            offset, entries = 0, {}
        if (stat.st_size, stat.st_mtime_ns) != seen:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
            end = data.rfind(b"\n") + 1  # a torn last line waits for its end (or stays ignored)
            for line in data[:end].splitlines():
                try:
                    row = json.loads(line)
                    entries[str(row["item_id"])] = (str(row["content_hash"]), dict(row["annotation"]))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("%s: skipping an unreadable line after byte %d (%s)", path, offset, exc)
            offset += end
            _INDEX[key] = (offset, (stat.st_size, stat.st_mtime_ns), entries)
        return entries


def _lock(fd: int) -> None:
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed
    except (ImportError, OSError):
        pass
