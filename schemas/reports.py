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


class RecRow(BaseModel):
    """One recommender's quality on held-out interactions (leave-last-out or temporal)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str
    recall_at_10: float = Field(alias="recall@10")
    recall_at_20: float = Field(alias="recall@20")
    ndcg_at_10: float = Field(alias="ndcg@10")
    ndcg_at_20: float = Field(alias="ndcg@20")
    n_users: int


class ColdRow(BaseModel):
    """One recommender on the cold-item protocol: the held-out cold items a user liked, ranked (a)
    among the cold items only, (b) among every item the user has not seen in training."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str
    cold_recall_at_20: float = Field(alias="cold_recall@20")
    cold_ndcg_at_20: float = Field(alias="cold_ndcg@20")
    full_recall_at_20: float = Field(alias="full_recall@20")
    full_ndcg_at_20: float = Field(alias="full_ndcg@20")
    n_users: int


class RecEvalReport(BaseModel):
    """Summary of ``mmalign eval-rec``: baselines, user vectors and RecommendQuery on one split."""

    model_config = ConfigDict(extra="forbid")

    collection: str
    split: str
    n_items: int
    interactions: int
    invalid_rows: int
    dead_letter: str | None = Field(None, description="Where the invalid rows were written (None: there were none).")
    unknown_item_rows: int = Field(description="Interaction rows naming an item not in the collection.")
    unknown_item_ids: int
    results: list[RecRow]
    collab: dict | None = Field(None, description="The collab/hybrid settings chosen on the training part.")
    cold_split: str | None = Field(None, description="The cold-item protocol, when it was run.")
    cold_results: list[ColdRow] = Field(default_factory=list)


class UserRebuildReport(BaseModel):
    """What rebuilding the user vectors from an interactions file did."""

    model_config = ConfigDict(extra="forbid")

    users: int
    interactions: int
    unknown_item_rows: int
    unknown_item_ids: int
    invalid_rows: int = 0


class ReembedReport(BaseModel):
    """Summary of ``mmalign reembed``: the version built, what was written, whether the alias moved."""

    model_config = ConfigDict(extra="forbid")

    collection: str
    old_version: str
    new_version: str
    old_bundle: str | None
    new_bundle: str
    mode: str = Field(description="reproject (from cached features) or reencode (from the catalog)")
    expected: int = 0
    written: int = 0
    resumed: int = 0
    failed: int = 0
    quality_old: float | None = None
    quality_new: float | None = None
    swapped: bool = False
    already_live: bool = Field(False, description="The bundle was already live: nothing was done.")
    dropped: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    reason: str | None = None


class SearchHit(BaseModel):
    """One search or recommendation result."""

    model_config = ConfigDict(extra="forbid")

    id: str
    score: float
    payload: dict = Field(default_factory=dict)


class VersionInfo(BaseModel):
    """One physical version of a logical collection, as ``mmalign versions --json`` prints it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    live: bool
    points: int
    bundle_id: str | None
    state: str | None = None
    created_at: str | None = None
