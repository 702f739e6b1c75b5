"""Fit every model of a bundle on paired features: svd and cca baselines, the teacher, the student.

No I/O: features in, models and held-out metrics out (``mmalign.plugin.workflows.train`` writes them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mmalign.connectors.errors import DataError
from mmalign.plugin.align.closed_form import fit_cca, fit_svd
from mmalign.plugin.align.cooccurrence import user_histories
from mmalign.plugin.align.evaluation import RawEmbedder, evaluate_embedder, primary_metric
from mmalign.plugin.align.pretrain import DEFAULT_BASE_MODE
from mmalign.plugin.features.paired import PairedFeatures, split_items
from mmalign.schemas import Modality, TrainConfig, UserVectorConfig

log = logging.getLogger(__name__)
MODELS = ("raw", "svd", "cca", "teacher", "student")


@dataclass
class AlignmentResult:
    """Everything one training run produced, before it is written as a bundle."""

    models: dict  # svd, cca, teacher, student
    split: dict
    training_summary: dict
    test: PairedFeatures
    results: list[dict]
    #: the training and validation parts and the closed-form fits (cca at the student's rank, svd), so
    #: that more students can be distilled from the same teacher (benchmarks) without refitting
    train: PairedFeatures | None = None
    val: PairedFeatures | None = None
    fits: dict | None = None


def fit_alignment(
    data: PairedFeatures,
    cfg: TrainConfig,
    *,
    interactions: Sequence | None = None,
    raw_modalities: Sequence[Modality] = (),
    echo: Callable[[str], None] = log.info,
    base=None,
    base_mode: str = DEFAULT_BASE_MODE,
) -> AlignmentResult:
    """Split, fit svd/cca (CCA ridge picked on val), train the teacher, distil the student, test.

    ``base`` (a loaded base :class:`~mmalign.plugin.align.bundle.Bundle`): the teacher starts from
    the base bundle's teacher, re-centred on this catalog's training items (see
    :func:`~mmalign.plugin.align.pretrain.teacher_from_base`, ``base_mode``), instead of from CCA; the student still
    starts from this catalog's CCA and is distilled from that teacher on every training item."""
    import torch

    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.align.trainer import train_student

    torch.manual_seed(cfg.seed)
    train, val, test, split = split_for_training(data, cfg, echo)
    t0 = time.perf_counter()
    reg, cca_fit, cca_model = choose_cca(train, val, cfg, cfg.rank, echo)
    svd_fit = fit_svd(train, cfg.rank)
    svd_model = build_student(train.dims(), cfg, svd_fit)
    closed_form_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    teacher, teacher_result = fit_teacher(train, val, cfg, reg, interactions, base, base_mode)
    teacher_s = _report("teacher", teacher_result, time.perf_counter() - t0, echo)
    t0 = time.perf_counter()
    student_init = {"cca": cca_fit, "svd": svd_fit, "random": None}[cfg.init]
    student, student_result = train_student(train, val, cfg, student_init, teacher if cfg.distill else None)
    fusion = choose_fusion(student, val, echo)
    student_s = _report("student", student_result, time.perf_counter() - t0, echo)
    models = {"svd": svd_model, "cca": cca_model, "teacher": teacher, "student": student}
    return AlignmentResult(
        models=models,
        split=split,
        training_summary={
            "cca_reg": reg,
            "teacher": _training_record(teacher_result, teacher_s),
            "student": _training_record(student_result, student_s),
            "fusion": fusion,
            "closed_form_seconds": round(closed_form_s, 2),
        },
        test=test,
        results=evaluate_models(models, test, list(raw_modalities)),
        train=train,
        val=val,
        fits={"cca": cca_fit, "svd": svd_fit, "cca_reg": reg},
    )


def split_for_training(data: PairedFeatures, cfg: TrainConfig, echo=log.info):
    """(train, val, test, the split's record): the seeded item split of ``cfg``, refused when it leaves
    too little to align or to validate on."""
    if len(data.modalities) < 2:
        raise DataError(
            f"alignment needs at least two modalities with features; have {[m.value for m in data.modalities]}"
        )
    train_ids, val_ids, test_ids = split_items(data.item_ids, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    train, val, test = data.select(train_ids), data.select(val_ids), data.select(test_ids)
    if len(val) < 2:
        raise DataError(
            f"the validation split has {len(val)} items (test_fraction {cfg.test_fraction}, val_fraction "
            f"{cfg.val_fraction} of {len(data)} items); lower test_fraction or add items"
        )
    echo(
        f"items: {len(data)} (train {len(train)}, val {len(val)}, test {len(test)}); "
        f"modalities: {', '.join(f'{m.value}={int(data.masks[m].sum())}' for m in data.modalities)}"
    )
    split = {
        "seed": cfg.seed,
        "test_fraction": cfg.test_fraction,
        "val_fraction": cfg.val_fraction,
        "n_train": len(train),
        "n_val": len(val),
        "test_ids": test_ids,
    }
    return train, val, test, split


def fit_teacher(train: PairedFeatures, val: PairedFeatures, cfg: TrainConfig, reg: float, interactions, base, mode):
    """The teacher: from the catalog's CCA at the shared dimension (ridge ``reg``), or from the ``base``
    bundle's teacher (``mode``: see :data:`~mmalign.plugin.align.pretrain.BASE_MODES`)."""
    from mmalign.plugin.align.trainer import train_teacher

    teacher_fit = fit_cca(train, cfg.dim, reg, cfg.cca_power)
    init = None
    if base is not None:
        from mmalign.plugin.align.pretrain import domain_mean, teacher_from_base

        if base.teacher is None:
            raise DataError(f"bundle {base.bundle_id} has no teacher to start from; pass a base bundle")
        init = teacher_from_base(base.teacher, train.dims(), cfg, teacher_fit, domain_mean(train), mode)
    return train_teacher(train, val, cfg, teacher_fit, _train_histories(interactions, train), init=init)


def fused_score(model, val: PairedFeatures) -> float | None:
    """The mean over query modalities of the MRR of query → fused on ``val`` (each item's relevant result is its
    own fused vector); None when no validation item has two modalities to fuse."""
    from mmalign.plugin.align.trainer import TorchEmbedder

    rows = evaluate_embedder("fusion", TorchEmbedder(model, "fusion"), val, cross_modal=False)
    return sum(r["mrr"] for r in rows) / len(rows) if rows else None


def choose_fusion(student, val: PairedFeatures, echo=log.info) -> dict:
    """Keep the student's learned fusion weights, or equal ones where equal weights score better on the
    validation split's ``→ fused`` cells (:func:`fused_score`). The weights are learned with the rest of the
    student, but the epoch is chosen on cross-modal recall alone, so nothing else stops them from drifting
    towards one modality (measured: a teacher at dropout 0.3 led one papirus student to 0.35 image / 0.65 text,
    image→fused MRR 0.97 on validation). Returns the record kept in the training summary."""
    import torch

    learned = {m.value: round(w, 4) for m, w in student.fusion.weights().items()}
    learned_logits = student.fusion.logits.detach().clone()
    learned_score = fused_score(student, val)
    with torch.no_grad():
        student.fusion.logits.zero_()
    equal_score = fused_score(student, val)
    keep_equal = learned_score is not None and equal_score > learned_score + 1e-9
    if not keep_equal:
        with torch.no_grad():
            student.fusion.logits.copy_(learned_logits)
    record = {
        "learned_weights": learned,
        "kept": "equal" if keep_equal else "learned",
        "val_fused_mrr": {"learned": learned_score, "equal": equal_score},
    }
    if learned_score is not None:
        echo(
            f"fusion weights: learned {learned} (val →fused MRR {learned_score:.3f}) vs equal ({equal_score:.3f}):"
            f" kept {record['kept']}"
        )
    return record


def _report(name: str, result, seconds: float, echo) -> float:
    echo(
        f"{name}: best val {result.best_val:.3f} at epoch {result.best_epoch} "
        f"({len(result.history) - 1} epochs, {seconds:.1f}s)"
    )
    return seconds


def _training_record(result, seconds: float) -> dict:
    return {
        "best_epoch": result.best_epoch,
        "best_val": result.best_val,
        "epochs_run": len(result.history) - 1,
        "seconds": round(seconds, 2),
    }


def choose_cca(train: PairedFeatures, val: PairedFeatures, cfg: TrainConfig, rank: int, echo=log.info):
    """CCA of ``rank`` for each ridge of ``cfg.cca_regs``; the best on the validation split wins.
    Returns (reg, fit, the fit as a student)."""
    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.align.trainer import TorchEmbedder

    shape = cfg.model_copy(update={"rank": rank})
    best = None
    for reg in cfg.cca_regs:
        fit = fit_cca(train, rank, reg, cfg.cca_power)
        model = build_student(train.dims(), shape, fit)
        score = primary_metric(evaluate_embedder("cca", TorchEmbedder(model, "cca"), val, with_fused=False))
        echo(f"cca rank {rank} reg={reg}: val {score:.3f}")
        if best is None or score > best[0]:
            best = (score, reg, fit, model)
    _, reg, fit, model = best
    return reg, fit, model


def evaluate_models(models: dict, data: PairedFeatures, raw_modalities: list[Modality]) -> list[dict]:
    from mmalign.plugin.align.trainer import TorchEmbedder

    results = []
    if raw_modalities:
        results += evaluate_embedder("raw", RawEmbedder(raw_modalities), data)
    for name, model in models.items():
        if model is not None:
            results += evaluate_embedder(name, TorchEmbedder(model, name), data)
    return results


def _train_histories(interactions, train: PairedFeatures):
    """Users' histories over the training items only (held-out items never leak into training)."""
    if not interactions:
        return None
    return user_histories(interactions, train.item_ids, UserVectorConfig()) or None
