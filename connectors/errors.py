"""Errors that name the item, the file and what would be valid."""

from __future__ import annotations


class ItemError(Exception):
    """A problem with one item; the run records it in the dead-letter file and goes on."""

    stage = "load"

    def __init__(self, item_id: str | None, reason: str, *, path: str | None = None, modality: str | None = None):
        self.item_id = item_id
        self.reason = reason
        self.path = path
        self.modality = modality
        where = f" ({modality}: {path})" if path else (f" ({modality})" if modality else "")
        super().__init__(f"item {item_id!r}{where}: {reason}")


class MediaError(ItemError):
    """A media file is missing, unreadable, empty, outside the media root or of an unsupported type."""


class SourceError(Exception):
    """The catalog itself cannot be read (missing file, unknown format, bad column mapping)."""
