"""Interaction sources: CSV/TSV or JSONL of ``user_id, item_id[, weight][, timestamp]``.

A bad row never stops the read: it is kept in :attr:`InteractionLoad.invalid` with its file:line
and the reason (bytes that are not UTF-8, invalid JSON, a missing id, a weight that is not a
finite number, …), logged, and written to a dead-letter file when one is given.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mmalign.connectors.dead_letter import DeadLetterWriter
from mmalign.connectors.errors import ItemError, SourceError
from mmalign.connectors.sources import bad_utf8, parse_json_line, unencodable
from mmalign.schemas import Interaction

log = logging.getLogger(__name__)


@dataclass
class InteractionLoad:
    interactions: list[Interaction]
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    #: item id of each invalid row where it had one (same order as ``invalid``)
    invalid_items: list[str | None] = field(default_factory=list)

    def write_dead_letters(self, path_or_writer: str | Path | DeadLetterWriter) -> int:
        """Write one dead-letter record per invalid row (stage ``parse``); returns how many."""
        writer = path_or_writer if isinstance(path_or_writer, DeadLetterWriter) else DeadLetterWriter(path_or_writer)
        items = self.invalid_items or [None] * len(self.invalid)
        for (source, reason), item_id in zip(self.invalid, items):
            writer.write_error(ItemError(item_id, reason), stage="parse", source=source)
        return len(self.invalid)


class _Bad(Exception):
    pass


def _rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(file:line, row); a row that cannot be read is ``{"__error__": reason}``."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
            for n, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                reason = bad_utf8(line)
                if reason is None:
                    data, reason = parse_json_line(line)
                    if reason is not None:
                        reason = f"invalid JSON: {reason}"
                    elif not isinstance(data, dict):
                        reason = f"expected a JSON object, got {type(data).__name__}"
                yield f"{path.name}:{n}", ({"__error__": reason} if reason is not None else data)
        return
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".inter") else ","
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        try:
            names = reader.fieldnames or []
        except csv.Error as exc:
            raise SourceError(f"interactions file {str(path)!r}: cannot read its header line: {exc}") from exc
        # RecBole .inter headers carry types: "user_id:token"
        reader.fieldnames = [name.split(":")[0] for name in names]
        n = 1
        while True:
            n += 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield f"{path.name}:{n}", {"__error__": f"unreadable CSV row: {exc}"}
                continue
            reason = next((r for v in row.values() if isinstance(v, str) and (r := bad_utf8(v))), None)
            yield f"{path.name}:{n}", ({"__error__": reason} if reason is not None else row)


def _id(value: object, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad(f"{name} must be a string or a number, got {type(value).__name__}")
    return str(value)


def _timestamp(stamp: object) -> object:
    """A number given as text is seconds since the epoch; anything else goes to pydantic as it is."""
    if isinstance(stamp, str):
        try:
            return float(stamp)
        except ValueError:
            return stamp
    return stamp


def read_interactions(path: str | Path, *, dead_letter: str | Path | DeadLetterWriter | None = None) -> InteractionLoad:
    """Read an interactions file; bad rows are collected with their reasons (see the module docstring).

    ``dead_letter`` (a path or writer): also write one record per bad row there.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"interactions file {str(path)!r} does not exist")
    load = InteractionLoad([])

    def reject(source: str, reason: str, item_id: str | None = None) -> None:
        load.invalid.append((source, reason))
        load.invalid_items.append(item_id)

    for source, row in _rows(path):
        if "__error__" in row:
            reject(source, row["__error__"])
            continue
        try:
            data = {"user_id": _id(row.get("user_id"), "user_id"), "item_id": _id(row.get("item_id"), "item_id")}
        except _Bad as exc:
            reject(source, str(exc))
            continue
        weight = row.get("weight", row.get("rating"))
        if weight not in (None, ""):
            data["weight"] = weight
        stamp = row.get("timestamp")
        if stamp not in (None, ""):
            data["timestamp"] = _timestamp(stamp)
        reason = unencodable(data)
        if reason is not None:
            reject(source, reason)
            continue
        try:
            load.interactions.append(Interaction.model_validate(data))
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
            reject(source, reason, data["item_id"] or None)
        except (ValueError, TypeError, OverflowError) as exc:  # a timestamp pydantic cannot hold
            reject(source, f"{type(exc).__name__}: {exc}", data["item_id"] or None)
    if load.invalid:
        shown = "; ".join(f"{s}: {r}" for s, r in load.invalid[:5])
        more = f" (and {len(load.invalid) - 5} more)" if len(load.invalid) > 5 else ""
        log.warning("%s: %d invalid interaction row(s): %s%s", path.name, len(load.invalid), shown, more)
        if dead_letter is not None:
            load.write_dead_letters(dead_letter)
    return load
