"""Training configuration and evaluation results (recorded in every bundle)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmalign.schemas.reports import FeatureReport


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(256, gt=0, description="D, the shared space.")
    rank: int = Field(
        64, gt=0, description="r of each low-rank projection (64: the student stays under 5 % of the teacher)."
    )
    init: Literal["cca", "svd", "random"] = "cca"
    fusion: Literal["weighted", "concat"] = "weighted"
    seed: int = 0
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.15, ge=0, lt=1, description="Of the non-test items; early stopping and tuning.")
    cca_regs: tuple[float, ...] = Field((0.1, 0.3, 1.0), description="CCA ridge values tried; val picks one.")
    cca_power: float = Field(2.0, ge=0, description="Canonical directions are scaled by correlation**power.")
    teacher_epochs: int = Field(150, ge=0)
    teacher_hidden: int = Field(1024, gt=0)
    teacher_layers: int = Field(2, ge=1)
    teacher_lr: float = Field(3e-4, gt=0)
    teacher_batch_size: int | None = Field(None, ge=2, description="Teacher batch (default: batch_size).")
    epochs: int = Field(150, ge=0, description="Student epochs.")
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(64, ge=2)
    patience: int = Field(20, ge=1, description="Epochs without a better val score before stopping.")
    modality_dropout: float = Field(0.3, ge=0, lt=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    distill: bool = True
    alpha: float = Field(2.0, ge=0, description="Weight of CE(P_teacher || Q_student).")
    beta: float = Field(0.5, ge=0, description="Weight of 1 - cos(student, teacher joint).")
    tau_teacher: float = Field(0.05, gt=0)
    tau_student: float = Field(0.05, gt=0)
    cooccurrence_weight: float = Field(1.0, ge=0, description="Teacher term for items shared by users.")
    student_hidden: int = Field(
        0, ge=0, description="Width of the student's non-linear residual on its rank-r code (0: linear only)."
    )
    unpaired_cosine: float = Field(
        1.0,
        ge=0,
        description="Weight of 1 - cos(student, teacher) per modality on single-modality inputs (no pairing).",
    )
    unpaired_relational: float = Field(
        1.0,
        ge=0,
        description="Weight of CE(P_teacher || Q_student) over batches of unrelated inputs of two modalities.",
    )
    unpaired_batch: int = Field(256, ge=2, description="Single-modality inputs per modality and student step.")
    unpaired_mixup: float = Field(
        0.0, ge=0, le=1, description="Share of unpaired inputs that are mixes of two training features."
    )


class RetrievalResult(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str
    query: str
    target: str
    recall_at_1: float = Field(alias="recall@1")
    recall_at_5: float = Field(alias="recall@5")
    recall_at_10: float = Field(alias="recall@10")
    mrr: float
    n_queries: int


class EvalReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle_id: str
    n_items: int
    results: list[RetrievalResult]


class HeldOutMetrics(BaseModel):
    """Every model's retrieval quality on the held-out test items (empty for one-modality bundles)."""

    model_config = ConfigDict(extra="forbid")

    split: str = Field(description="test, or none when there is nothing cross-modal to evaluate")
    n_items: int
    results: list[RetrievalResult]


class ParameterCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    student: int
    teacher: int = Field(description="0 when the bundle has no teacher.")


class TrainReport(BaseModel):
    """Summary of ``mmalign train`` (also recorded in the bundle's config.json, less the feature report)."""

    model_config = ConfigDict(extra="forbid")

    bundle_id: str
    out: str
    preset: str
    seconds: float
    parameters: ParameterCounts
    metrics: HeldOutMetrics
    split: dict[str, Any] = Field(description="Seed, fractions, sizes and the held-out test ids.")
    training_summary: dict[str, Any] = Field(description="Chosen CCA ridge, best epochs, validation scores, times.")
    feature_report: FeatureReport
