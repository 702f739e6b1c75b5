"""Interaction sources: CSV/TSV or JSONL of ``user_id, item_id[, weight][, timestamp]``.

Bad rows are counted with the reason, never silently dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mmalign.connectors.errors import SourceError
from mmalign.schemas import Interaction


@dataclass
class InteractionLoad:
    interactions: list[Interaction]
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


def _rows(path: Path) -> Iterator[tuple[str, dict]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as handle:
            for n, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield f"{path.name}:{n}", json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield f"{path.name}:{n}", {"__error__": f"invalid JSON: {exc.msg}"}
        return
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".inter") else ","
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        # RecBole .inter headers carry types: "user_id:token"
        reader.fieldnames = [name.split(":")[0] for name in (reader.fieldnames or [])]
        for n, row in enumerate(reader, start=2):
            yield f"{path.name}:{n}", row


def read_interactions(path: str | Path) -> InteractionLoad:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"interactions file {str(path)!r} does not exist")
    load = InteractionLoad([])
    for source, row in _rows(path):
        if "__error__" in row:
            load.invalid.append((source, row["__error__"]))
            continue
        data = {"user_id": str(row.get("user_id", "") or ""), "item_id": str(row.get("item_id", "") or "")}
        weight = row.get("weight", row.get("rating"))
        if weight not in (None, ""):
            data["weight"] = weight
        stamp = row.get("timestamp")
        if stamp not in (None, ""):
            data["timestamp"] = (
                float(stamp) if isinstance(stamp, str) and stamp.replace(".", "", 1).isdigit() else stamp
            )
        try:
            load.interactions.append(Interaction.model_validate(data))
        except ValidationError as exc:
            load.invalid.append(
                (source, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
            )
    return load
