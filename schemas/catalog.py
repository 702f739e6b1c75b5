"""Catalog items and interactions: what users feed mmalign."""

from __future__ import annotations

import math
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Modality(str, Enum):
    """An input modality; each has its own encoder and projection."""

    IMAGE = "image"
    TEXT = "text"
    AUDIO = "audio"


class VectorName(str, Enum):
    """Names of the Qdrant named vectors; one enum for the collection schema and queries."""

    IMAGE = "image"
    TEXT = "text"
    AUDIO = "audio"
    FUSED = "fused"


MediaRef = str
"""A media path, relative to the catalog's media root (or absolute inside it)."""


class CatalogItem(BaseModel):
    """One catalog entry. At least one of ``text``, ``image``, ``audio`` is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=512, description="Stable item id (the point id is uuid5 of it).")
    text: str | None = Field(default=None, description="Free text describing the item.")
    image: MediaRef | None = Field(default=None, description="Image path (PNG, JPEG, WebP, SVG).")
    audio: MediaRef | None = Field(default=None, description="Audio path (WAV, OGG, MP3, FLAC).")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Payload fields stored with the point.")

    @field_validator("id")
    @classmethod
    def _id_is_clean(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError(f"item id {value!r} has leading or trailing whitespace")
        return value

    @field_validator("text", "image", "audio")
    @classmethod
    def _blank_is_missing(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _has_a_modality(self) -> CatalogItem:
        if not self.modalities:
            raise ValueError(f"item {self.id!r} has no modality: give at least one of 'text', 'image', 'audio'")
        return self

    @property
    def modalities(self) -> list[Modality]:
        """The modalities this item has, in canonical order."""
        return [m for m in Modality if getattr(self, m.value) is not None]


class Interaction(BaseModel):
    """A user consumed (clicked, bought, rated) an item; ``weight`` < 0 is negative feedback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    weight: float = 1.0
    timestamp: datetime | None = None

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"weight must be a finite number, got {value!r}")
        return value
