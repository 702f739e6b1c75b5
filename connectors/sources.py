"""Catalog sources: JSONL, CSV and a media folder, all yielding :class:`SourceRecord`.

A record is either a valid :class:`~schemas.CatalogItem` or the reason it is not one; a
bad line never stops the read. Media paths stay as written; :meth:`Catalog.resolve` checks
them against the media root when they are used.
"""

from __future__ import annotations

import csv
import json
import math
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mmalign.connectors.errors import ItemError, MediaError, SourceError
from mmalign.connectors.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from mmalign.connectors.paths import resolve_media_path
from mmalign.schemas import CatalogItem, Modality

FORMATS = ("jsonl", "csv", "folder")


@dataclass(frozen=True)
class SourceRecord:
    """One entry of a catalog: ``item`` when valid, else ``error``; ``source`` says where it was."""

    source: str
    item: CatalogItem | None = None
    error: ItemError | None = None


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV columns hold what; columns not named here go to ``metadata`` (unless listed in ``drop``)."""

    id: str = "id"
    text: str | None = "text"
    image: str | None = "image"
    audio: str | None = "audio"
    drop: tuple[str, ...] = ()


@dataclass
class Catalog:
    """A readable catalog and the root its media paths are resolved under."""

    path: Path
    format: str
    media_root: Path
    csv_columns: CsvColumns = field(default_factory=CsvColumns)
    folder_ignore: tuple[str, ...] = ()

    def records(self) -> Iterator[SourceRecord]:
        """Every entry, item ids normalised to Unicode NFC (two spellings of one id are one item: the
        second is an error naming the first)."""
        reader = {"jsonl": _read_jsonl, "csv": _read_csv, "folder": _read_folder}[self.format]
        seen: dict[str, tuple[str, str]] = {}
        for record in reader(self):
            if record.item is not None:
                raw = record.item.id
                item_id = unicodedata.normalize("NFC", raw)
                if item_id != raw:
                    record = SourceRecord(record.source, item=record.item.model_copy(update={"id": item_id}))
                first = seen.get(item_id)
                if first is not None:
                    first_source, first_raw = first
                    if first_raw == raw:
                        reason = f"duplicate item id; first defined at {first_source}"
                    else:
                        reason = (
                            f"duplicate item id: {raw!r} is {item_id!r} in Unicode NFC, which {first_source} "
                            f"defines (as {first_raw!r}); ids are compared in NFC"
                        )
                    yield SourceRecord(record.source, error=ItemError(item_id, reason))
                    continue
                seen[item_id] = (record.source, raw)
            yield record

    def items(self) -> list[CatalogItem]:
        """All valid items (use :meth:`records` to see the invalid ones too)."""
        return [r.item for r in self.records() if r.item is not None]

    def resolve(self, item: CatalogItem, modality: Modality) -> Path:
        ref = getattr(item, modality.value)
        try:
            return resolve_media_path(ref, self.media_root, item_id=item.id, modality=modality.value)
        except (OSError, ValueError) as exc:  # NUL byte, name too long, permission denied
            raise MediaError(item.id, f"cannot use path: {exc}", path=ref, modality=modality.value) from exc


def open_catalog(
    path: str | Path,
    *,
    media_root: str | Path | None = None,
    format: str | None = None,
    csv_columns: CsvColumns | None = None,
    folder_ignore: Sequence[str] = (),
) -> Catalog:
    """Open a catalog file or media folder; ``format`` is guessed from the path when omitted."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"catalog {str(path)!r} does not exist")
    if format is None:
        if path.is_dir():
            format = "folder"
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            format = "jsonl"
        elif path.suffix.lower() in (".csv", ".tsv"):
            format = "csv"
        else:
            raise SourceError(
                f"cannot tell the format of {str(path)!r} from its name; pass format= one of {list(FORMATS)}"
            )
    if format not in FORMATS:
        raise SourceError(f"unknown catalog format {format!r}; valid: {list(FORMATS)}")
    if format == "folder" and not path.is_dir():
        raise SourceError(f"format 'folder' needs a directory, got file {str(path)!r}")
    if format != "folder" and path.is_dir():
        raise SourceError(f"format {format!r} needs a file, got directory {str(path)!r}")
    root = Path(media_root) if media_root is not None else (path if path.is_dir() else path.parent)
    if not root.is_dir():
        raise SourceError(f"media root {str(root)!r} is not a directory")
    return Catalog(
        path=path,
        format=format,
        media_root=root.resolve(),
        csv_columns=csv_columns or CsvColumns(),
        folder_ignore=tuple(folder_ignore),
    )


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "item"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _guess_id(data: object) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("id"), (str, int)):
        return str(data["id"])
    return None


def bad_utf8(text: str) -> str | None:
    """Where a line read with ``errors="surrogateescape"`` held bytes that are not UTF-8, or None."""
    for column, char in enumerate(text, start=1):
        if "\udc80" <= char <= "\udcff":
            return f"byte 0x{ord(char) - 0xDC00:02x} at column {column} is not valid UTF-8"
    return None


def unencodable(data: object) -> str | None:
    """The first string in ``data`` that cannot be written as UTF-8 (an unpaired surrogate), or None."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                shown = value[:40].encode("utf-8", "backslashreplace").decode()
                return f"text {shown!r} is not valid Unicode: {exc.reason}"
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json_line(line: str) -> tuple[object, str | None]:
    """(value, None), or (None, the reason): invalid JSON, NaN/Infinity, numbers out of range, nesting
    too deep."""
    try:
        return json.loads(line, parse_float=_finite_float, parse_constant=_no_constant), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} (col {exc.colno})"
    except (ValueError, RecursionError) as exc:  # int too long, NaN, out-of-range float, deep nesting
        return None, f"{type(exc).__name__}: {exc}"


def _read_jsonl(catalog: Catalog) -> Iterator[SourceRecord]:
    with open(catalog.path, encoding="utf-8-sig", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            source = f"{catalog.path.name}:{number}"
            if not line.strip():
                continue
            reason = bad_utf8(line)
            if reason is not None:
                yield SourceRecord(source, error=ItemError(None, f"{source}: {reason}"))
                continue
            data, reason = parse_json_line(line)
            if reason is not None:
                yield SourceRecord(source, error=ItemError(None, f"invalid JSON at {source}: {reason}"))
                continue
            if not isinstance(data, dict):
                yield SourceRecord(
                    source, error=ItemError(None, f"{source}: expected a JSON object, got {type(data).__name__}")
                )
                continue
            reason = unencodable(data)
            if reason is not None:
                yield SourceRecord(source, error=ItemError(None, f"{source}: {reason}"))
                continue
            if isinstance(data.get("id"), int):
                data["id"] = str(data["id"])
            try:
                yield SourceRecord(source, item=CatalogItem.model_validate(data))
            except ValidationError as exc:
                yield SourceRecord(source, error=ItemError(_guess_id(data), _validation_reason(exc)))


def _read_csv(catalog: Catalog) -> Iterator[SourceRecord]:
    cols = catalog.csv_columns
    delimiter = "\t" if catalog.path.suffix.lower() == ".tsv" else ","
    with open(catalog.path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        try:
            header = reader.fieldnames or []
        except csv.Error as exc:
            raise SourceError(f"CSV {str(catalog.path)!r}: cannot read its header line: {exc}") from exc
        reason = bad_utf8("".join(header))
        if reason is not None:
            raise SourceError(f"CSV {str(catalog.path)!r}: header line: {reason}")
        if cols.id not in header:
            raise SourceError(f"CSV {str(catalog.path)!r} has no id column {cols.id!r}; columns: {header}")
        for name in (cols.text, cols.image, cols.audio):
            if name is not None and name not in header and name not in ("text", "image", "audio"):
                raise SourceError(f"CSV {str(catalog.path)!r} has no column {name!r}; columns: {header}")
        mapped = {cols.id, cols.text, cols.image, cols.audio, *cols.drop}
        number = 1
        while True:
            number += 1
            source = f"{catalog.path.name}:{number}"
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # a field over the size limit, a stray quote in strict mode
                yield SourceRecord(source, error=ItemError(None, f"{source}: unreadable CSV row: {exc}"))
                continue
            if None in row:
                yield SourceRecord(
                    source, error=ItemError(row.get(cols.id), f"{source}: more fields than header columns")
                )
                continue
            reason = next(
                (f"column {k!r}: {r}" for k, v in row.items() if isinstance(v, str) and (r := bad_utf8(v))), None
            )
            if reason is not None:
                yield SourceRecord(source, error=ItemError(None, f"{source}: {reason}"))
                continue
            data = {
                "id": row.get(cols.id) or "",
                "text": row.get(cols.text) if cols.text else None,
                "image": row.get(cols.image) if cols.image else None,
                "audio": row.get(cols.audio) if cols.audio else None,
                "metadata": {k: v for k, v in row.items() if k not in mapped and v not in (None, "")},
            }
            try:
                yield SourceRecord(source, item=CatalogItem.model_validate(data))
            except ValidationError as exc:
                yield SourceRecord(source, error=ItemError(data["id"] or None, _validation_reason(exc)))


def _read_folder(catalog: Catalog) -> Iterator[SourceRecord]:
    """Group files by stem: NAME.png|jpg|webp|svg + NAME.txt + NAME.wav|ogg|mp3|flac -> one item.

    The item id is the stem's path relative to the folder; its sub-folder is the ``category``.
    Where several images (or sounds) share a stem, the first suffix in the supported list wins.
    """
    root = catalog.path
    groups: dict[Path, dict[str, Path]] = {}
    for file in sorted(root.rglob("*")):
        if not file.is_file() or any(file.match(pattern) for pattern in catalog.folder_ignore):
            continue
        suffix = file.suffix.lower()
        rel = file.relative_to(root)
        slot = (
            "image"
            if suffix in IMAGE_SUFFIXES
            else "audio"
            if suffix in AUDIO_SUFFIXES
            else "text"
            if suffix == ".txt"
            else None
        )
        if slot is None:
            continue
        group = groups.setdefault(rel.with_suffix(""), {})
        order = IMAGE_SUFFIXES if slot == "image" else AUDIO_SUFFIXES if slot == "audio" else (".txt",)
        current = group.get(slot)
        if current is None or order.index(suffix) < order.index(current.suffix.lower()):
            group[slot] = file
    for stem, files in sorted(groups.items()):
        item_id = stem.as_posix()
        source = f"{root.name}/{item_id}"
        text = None
        if "text" in files:
            try:
                lines = files["text"].read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                yield SourceRecord(
                    source,
                    error=ItemError(item_id, f"cannot read text: {exc}", path=str(files["text"]), modality="text"),
                )
                continue
            text = lines[0].strip() if lines else None
        data = {
            "id": item_id,
            "text": text,
            "image": files["image"].relative_to(root).as_posix() if "image" in files else None,
            "audio": files["audio"].relative_to(root).as_posix() if "audio" in files else None,
            "metadata": {"category": stem.parent.as_posix()} if stem.parent != Path(".") else {},
        }
        reason = unencodable(data)  # a file name that is not UTF-8
        if reason is not None:
            yield SourceRecord(source, error=ItemError(None, f"{source}: {reason}"))
            continue
        try:
            yield SourceRecord(source, item=CatalogItem.model_validate(data))
        except ValidationError as exc:
            yield SourceRecord(source, error=ItemError(item_id, _validation_reason(exc)))
