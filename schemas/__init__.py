"""Data contracts of mmalign: pydantic models only (no torch, no I/O).

Non-Python clients get these as JSON Schema with ``mmalign schemas export DIR``.
"""

from mmalign.schemas.catalog import CatalogItem, Interaction, MediaRef, Modality, VectorName
from mmalign.schemas.encoders import (
    EncoderSpec,
    HFTextSpec,
    LibrosaAudioSpec,
    OpenClipImageSpec,
    OpenClipTextSpec,
    Preset,
    TimmImageSpec,
    WhisperCT2AudioSpec,
)
from mmalign.schemas.recommend import UserVectorConfig
from mmalign.schemas.reports import (
    DeadLetterRecord,
    EncoderInfo,
    FeatureReport,
    IngestReport,
    ModalityCounts,
    RecEvalReport,
    RecRow,
    ReembedReport,
    SearchHit,
    StageTiming,
    UserRebuildReport,
    VersionInfo,
)
from mmalign.schemas.store import CollectionRecord, StoreConfig
from mmalign.schemas.training import (
    BundleConfig,
    EvalReport,
    HeldOutMetrics,
    ParameterCounts,
    RetrievalResult,
    TrainConfig,
    TrainReport,
)

SCHEMA_VERSION = 1

#: Every model whose JSON Schema is exported, by file stem.
EXPORTED_MODELS = {
    "catalog_item": CatalogItem,
    "interaction": Interaction,
    "encoder_spec": EncoderSpec,
    "preset": Preset,
    "store_config": StoreConfig,
    "collection_record": CollectionRecord,
    "encoder_info": EncoderInfo,
    "feature_report": FeatureReport,
    "dead_letter_record": DeadLetterRecord,
    "train_config": TrainConfig,
    "eval_report": EvalReport,
    "train_report": TrainReport,
    "bundle_config": BundleConfig,
    "ingest_report": IngestReport,
    "reembed_report": ReembedReport,
    "search_hit": SearchHit,
    "version_info": VersionInfo,
    "user_vector_config": UserVectorConfig,
    "user_rebuild_report": UserRebuildReport,
    "rec_eval_report": RecEvalReport,
}

__all__ = [
    "SCHEMA_VERSION",
    "EXPORTED_MODELS",
    "CatalogItem",
    "Interaction",
    "MediaRef",
    "Modality",
    "VectorName",
    "EncoderSpec",
    "HFTextSpec",
    "LibrosaAudioSpec",
    "OpenClipImageSpec",
    "OpenClipTextSpec",
    "Preset",
    "TimmImageSpec",
    "WhisperCT2AudioSpec",
    "DeadLetterRecord",
    "EncoderInfo",
    "FeatureReport",
    "ModalityCounts",
    "IngestReport",
    "StageTiming",
    "StoreConfig",
    "UserVectorConfig",
    "TrainConfig",
    "BundleConfig",
    "EvalReport",
    "RetrievalResult",
    "HeldOutMetrics",
    "ParameterCounts",
    "TrainReport",
    "RecEvalReport",
    "RecRow",
    "ReembedReport",
    "SearchHit",
    "UserRebuildReport",
    "VersionInfo",
]
