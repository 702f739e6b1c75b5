"""What commands report: encoder listings, feature-extraction summaries, dead letters."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from mmalign.schemas.catalog import Modality


class EncoderInfo(BaseModel):
    """One registered encoder, as ``mmalign encoders list --json`` prints it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    modality: Modality
    kind: str
    dim: int
    weights: str | None
    encoder_id: str
    description: str = ""


class ModalityCounts(BaseModel):
    """Per-modality outcome of a feature run."""

    model_config = ConfigDict(extra="forbid")

    encoder: str
    encoder_id: str
    dim: int
    present: int = Field(0, description="Items that have this modality.")
    encoded: int = Field(0, description="Encoded in this run.")
    cached: int = Field(0, description="Skipped: already in the cache with the same content hash.")
    failed: int = Field(0, description="Could not be loaded or encoded; see the dead-letter file.")
    load_seconds: float = Field(0.0, description="Building the encoder (weights loading).")
    seconds: float = Field(0.0, description="Decoding and encoding, model loading excluded.")

    @property
    def items_per_s(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


class FeatureReport(BaseModel):
    """Summary of ``mmalign features``."""

    model_config = ConfigDict(extra="forbid")

    catalog: str
    preset: str
    out_dir: str
    records_ok: int = 0
    records_invalid: int = 0
    modalities: dict[Modality, ModalityCounts] = Field(default_factory=dict)
    dead_letter: str | None = None
    seconds: float = 0.0


class DeadLetterRecord(BaseModel):
    """One bad item or bad modality of an item, with the reason; one JSON line each."""

    model_config = ConfigDict(extra="forbid")

    item_id: str | None = Field(description="None when the record was too broken to have an id.")
    stage: str = Field(description="parse | load | encode | project | upsert")
    reason: str
    modality: Modality | None = None
    path: str | None = None
    source: str | None = Field(default=None, description="Catalog file and line/row, where known.")
    at: datetime


class StageTiming(BaseModel):
    """Wall time of one pipeline stage; stages overlap, so they do not add up to the total."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = 0.0
    items: int = 0

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


class IngestReport(BaseModel):
    """Summary of ``mmalign ingest``."""

    model_config = ConfigDict(extra="forbid")

    collection: str
    physical_collection: str
    bundle_id: str
    ok: int = Field(0, description="Upserted in this run.")
    unchanged: int = Field(0, description="Skipped: same content hash and bundle already stored.")
    payload_updated: int = Field(0, description="Metadata changed only: payload rewritten in place, no re-embedding.")
    failed: int = Field(0, description="Not upserted: invalid record or no usable modality.")
    degraded: int = Field(0, description="Upserted without a modality that failed to load (see dead letter).")
    stages: dict[str, StageTiming] = Field(default_factory=dict)
    seconds: float = 0.0
    dead_letter: str | None = None
