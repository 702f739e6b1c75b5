"""The payload of a point: what ingest writes and what queries may filter on."""

from __future__ import annotations

from datetime import datetime, timezone

from mmalign.schemas import CatalogItem, Modality

#: Top-level payload fields mmalign writes; any other filter key addresses ``metadata.<key>``.
RESERVED_PAYLOAD = (
    "item_id",
    "text",
    "text_truncated",
    "image",
    "audio",
    "metadata",
    "modalities",
    "content_hash",
    "media_hash",
    "bundle_id",
    "ingested_at",
    "heard",
    "collab_source",
)


#: Characters of an item's text stored in the payload (and so returned with every hit).
DEFAULT_MAX_PAYLOAD_TEXT = 2000


def payload_text(text: str | None, max_chars: int = DEFAULT_MAX_PAYLOAD_TEXT) -> tuple[str | None, bool]:
    """The text as stored in the payload: cut to ``max_chars`` characters; True when it was cut."""
    if text is None or len(text) <= max_chars:
        return text, False
    return text[:max_chars], True


def build_payload(
    item: CatalogItem,
    modalities: list[Modality],
    content_hash: str,
    bundle_id: str,
    media: str | None = None,
    *,
    max_text_chars: int = DEFAULT_MAX_PAYLOAD_TEXT,
    heard: str | None = None,
) -> dict:
    """The point's payload. ``text`` holds at most ``max_text_chars`` characters; a longer text is cut
    and ``text_truncated`` is true. The full text is not stored in Qdrant: it stays in the catalog
    (look it up by ``item_id``), and the text vector is always computed from the full text.
    ``heard``: what the audio encoder heard in the item's sound (its transcript; "" for no speech), only
    for encoders that transcribe."""
    text, truncated = payload_text(item.text, max_text_chars)
    extra = {} if heard is None else {"heard": payload_text(heard, max_text_chars)[0]}
    return {
        **extra,
        "media_hash": media,
        "text": text,
        "text_truncated": truncated,
        "image": item.image,
        "audio": item.audio,
        "metadata": item.metadata,
        "modalities": [m.value for m in modalities],
        "content_hash": content_hash,
        "bundle_id": bundle_id,
        "ingested_at": datetime.now(timezone.utc).isoformat(),
    }
