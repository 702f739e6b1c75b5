"""Append-only JSONL of bad items with reasons; a run writes here and goes on."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

from mmalign.connectors.errors import ItemError
from mmalign.schemas import DeadLetterRecord


class DeadLetterWriter:
    """Thread-safe writer; ``count`` is what this run wrote. The file is created on first write."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.count = 0
        self._lock = threading.Lock()

    def write(self, record: DeadLetterRecord) -> None:
        line = record.model_dump_json()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
            self.count += 1

    def write_error(self, error: ItemError, *, stage: str | None = None, source: str | None = None) -> None:
        self.write(
            DeadLetterRecord(
                item_id=_clean(error.item_id),
                stage=stage or error.stage,
                reason=_clean(error.reason) or "",
                modality=error.modality,
                path=_clean(error.path),
                source=_clean(source),
                at=datetime.now(timezone.utc),
            )
        )


def _clean(text: object) -> str | None:
    """A string that can be written as UTF-8 JSON: bytes that were not UTF-8 (read with
    ``surrogateescape``) and unpaired surrogates are written as ``\\udcXX`` escapes."""
    if text is None:
        return None
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_dead_letters(path: str | Path) -> list[DeadLetterRecord]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [DeadLetterRecord.model_validate(json.loads(line)) for line in handle if line.strip()]
