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
    dropout: float = Field(
        0.3, ge=0, lt=1, description="The teacher's dropout (0.3 chosen on validation splits; 0.1 until issue #21)."
    )
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
    neighbourhood: float = Field(
        0.0,
        ge=0,
        description="Weight of the neighbourhood-preservation term (each encoder's in-batch k-NN structure kept).",
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


# ---------------------------------------------------------------------------------------------
# The bundle's config.json, typed (schema versions 1 and 2 read by the same model).


class BundleEncoder(BaseModel):
    """The frozen encoder of one modality, as the bundle was trained on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    encoder_id: str
    dim: int = Field(gt=0)
    spec: dict[str, Any] = Field(description="The EncoderSpec as JSON (read with ENCODER_SPEC_ADAPTER).")


class StudentShape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["low-rank"] = "low-rank"
    hidden: int = Field(0, ge=0, description="Width of the code residual (0: linear student).")


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["weighted", "concat"]
    weights: dict[str, float] = Field(description="Per-modality fusion weight (renormalised over those present).")


class TeacherShape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(gt=0)
    layers: int = Field(ge=1)


class BundleSplit(BaseModel):
    """How the items were split; ``test_ids`` are the held-out items (empty: nothing held out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int
    test_ids: list[str] = Field(default_factory=list)
    test_fraction: float | None = None
    val_fraction: float | None = None
    n_train: int | None = None
    n_val: int | None = None
    kind: str | None = Field(None, description="Single-modality bundles: interactions or none.")
    groups: bool | None = Field(None, description="Whether items of one concept group were kept on one side.")


class BundleMetrics(BaseModel):
    """Held-out metrics as recorded in a bundle (``split``/``n_items`` absent in some older files)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str | None = None
    n_items: int | None = None
    results: list[RetrievalResult] = Field(default_factory=list)


class BaseInit(BaseModel):
    """Where a fine-tuned bundle started: the base bundle it was initialised from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_bundle_id: str
    base_name: str | None = Field(None, description="e.g. 'base' for the shipped base bundle.")
    mode: str | None = Field(None, description="How the teacher started from the base: all or hidden.")


class PoolSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    pairs: int = Field(ge=0)
    licence: str


class PoolDescription(BaseModel):
    """The pooled corpus a base bundle was pretrained on (what, how much, which catalogs left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    n_pairs: int = Field(ge=0)
    sources: list[PoolSource]
    excluded: list[str] = Field(default_factory=list, description="Sets or catalogs kept out of the pool, and why.")
    command: str | None = Field(None, description="The command that built it.")


class BundleConfig(BaseModel):
    """``config.json`` of an alignment bundle (schema versions 1 and 2).

    ``bundle_id`` is a hash over the file's JSON (less the id itself), so the model is read from
    and written to exactly that JSON: :meth:`to_json_dict` gives back the fields that were set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mmalign-bundle"] = "mmalign-bundle"
    schema_version: int = Field(description="1 (no per-file digests) or 2.")
    bundle_id: str
    encoders: dict[str, BundleEncoder] = Field(description="By modality name (image, text, audio).")
    dim: int = Field(gt=0, description="D, the shared space.")
    ranks: dict[str, int]
    student: StudentShape | None = Field(None, description="Absent in bundles written before the code residual.")
    fusion: FusionConfig
    teacher: TeacherShape | None = None
    baselines: list[str] = Field(default_factory=list)
    training: dict[str, Any] = Field(description="The TrainConfig as JSON (may hold retired options).")
    split: BundleSplit
    training_summary: dict[str, Any] = Field(default_factory=dict)
    parameters: ParameterCounts | None = None
    metrics: BundleMetrics | None = None
    preset: str | None = None
    files: dict[str, str] = Field(default_factory=dict, description="sha256 of each weight file (schema 2).")
    init: BaseInit | None = Field(None, description="Set when fine-tuned from a base bundle (--init base).")
    pool: PoolDescription | None = Field(None, description="Set on a base bundle: the corpus it was pretrained on.")

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON the bundle id hashes (fields that were set, by their JSON names)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def test_ids(self) -> list[str]:
        return list(self.split.test_ids)

    def encoder_ids(self) -> dict[str, str]:
        return {m: e.encoder_id for m, e in self.encoders.items()}

    def student_recall(self, query: str = "text", target: str = "image") -> float | None:
        """The student's held-out recall@10 for one query→target cell (None when not measured)."""
        for r in self.metrics.results if self.metrics else []:
            if r.model == "student" and (r.query, r.target) == (query, target):
                return r.recall_at_10
        return None
