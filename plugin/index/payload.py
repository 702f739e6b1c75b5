"""The payload of a point: what ingest writes and what queries may filter on."""

from __future__ import annotations

from datetime import datetime, timezone

from mmalign.schemas import CatalogItem, Modality

#: Top-level payload fields mmalign writes; any other filter key addresses ``metadata.<key>``.
RESERVED_PAYLOAD = (
    "item_id",
    "text",
    "image",
    "audio",
    "metadata",
    "modalities",
    "content_hash",
    "media_hash",
    "bundle_id",
    "ingested_at",
)


def build_payload(
    item: CatalogItem, modalities: list[Modality], content_hash: str, bundle_id: str, media: str | None = None
) -> dict:
    return {
        "media_hash": media,
        "text": item.text,
        "image": item.image,
        "audio": item.audio,
        "metadata": item.metadata,
        "modalities": [m.value for m in modalities],
        "content_hash": content_hash,
        "bundle_id": bundle_id,
        "ingested_at": datetime.now(timezone.utc).isoformat(),
    }
