"""A shared space that serves recommendation: items consumed by the same users move together.

Used when interactions are given for a catalog with a single modality (e.g. MovieLens movies with
text only), where there is no cross-modal pair to align: the teacher learns item embeddings from
their features with a co-occurrence InfoNCE term, the low-rank student is distilled from it, and
both early-stop on NDCG@10 of user vectors on a leave-last-out split of the *training* interactions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from mmalign.plugin.align.cooccurrence import user_histories
from mmalign.plugin.features.paired import PairedFeatures
from mmalign.plugin.recommend.scorers import user_vector_scorer
from mmalign.plugin.recommend.splits import Matrix, evaluate_scorer, split_interactions
from mmalign.schemas import Interaction, TrainConfig, UserVectorConfig

log = logging.getLogger(__name__)


def fit_cooccurrence_space(
    data: PairedFeatures,
    interactions: Sequence[Interaction],
    cfg: TrainConfig,
    user_cfg: UserVectorConfig | None = None,
    echo: Callable[[str], None] = log.info,
) -> dict:
    """Returns {"svd", "teacher", "student"} models and a training summary."""
    import torch

    from mmalign.plugin.align.closed_form import fit_svd
    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.align.trainer import TorchEmbedder

    user_cfg = user_cfg or UserVectorConfig()
    torch.manual_seed(cfg.seed)
    inner = split_interactions(interactions, "leave-last-out")
    matrix = Matrix(inner, data.item_ids, user_cfg)
    echo(
        f"co-occurrence: {len(inner.train)} training interactions of {len({r.user_id for r in inner.train})} "
        f"users; validation: {len(inner.test)} users' latest training interaction"
    )

    def val_score(model) -> float:
        fused = TorchEmbedder(model, "m").fuse(data)
        scorer = user_vector_scorer(inner, data.item_ids, fused, user_cfg)
        return evaluate_scorer("val", scorer, matrix, inner)["ndcg@10"]

    svd_fit = fit_svd(data, cfg.rank)
    svd_model = build_student(data.dims(), cfg, svd_fit)
    svd_val = val_score(svd_model)
    echo(f"svd (content only): val NDCG@10 {svd_val:.4f}")
    histories = user_histories(inner.train, data.item_ids, user_cfg)
    teacher, teacher_run = _train_teacher(data, histories, cfg, val_score)
    echo(_run_line("teacher", teacher_run))
    student = build_student(data.dims(), cfg, svd_fit)
    student, student_run = _distil_student(data, histories, teacher, student, cfg, val_score)
    echo(_run_line("student", student_run))
    return {
        "models": {"svd": svd_model, "teacher": teacher, "student": student},
        "summary": {
            "objective": "co-occurrence (single modality)",
            "validation": "NDCG@10 of user vectors, leave-last-out on the training interactions",
            "svd_val": svd_val,
            "teacher": teacher_run,
            "student": student_run,
        },
    }


def _run_line(name: str, run: dict) -> str:
    return f"{name}: val NDCG@10 {run['best_val']:.4f} at epoch {run['best_epoch']} ({run['seconds']:.1f}s)"


def _run_summary(result, started: float) -> dict:
    return {
        "best_epoch": result.best_epoch,
        "best_val": result.best_val,
        "epochs_run": len(result.history) - 1,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _train_teacher(data: PairedFeatures, histories, cfg: TrainConfig, val_score) -> tuple:
    """The teacher, initialised from each modality's SVD, trained on the co-occurrence InfoNCE term alone."""
    from mmalign.plugin.align.closed_form import fit_svd
    from mmalign.plugin.align.losses import history_loss
    from mmalign.plugin.align.teacher import Teacher
    from mmalign.plugin.align.trainer import feature_tensors, fit_model

    started = time.perf_counter()
    teacher = Teacher(data.dims(), cfg.dim, cfg.teacher_hidden, cfg.teacher_layers, dropout=cfg.dropout)
    teacher_fit = fit_svd(data, min(cfg.dim, min(data.dims().values())))
    for m in teacher.modalities:
        teacher.towers[m.value].init_linear(teacher_fit.mean[m], teacher_fit.components[m])
    feats_all, masks_all = feature_tensors(data)

    def step(batch_f, batch_m, idx, scale, generator):
        raw = {m: teacher.unimodal(m, feats_all[m]) for m in teacher.modalities}
        return history_loss(teacher.joint(raw, masks_all), histories, scale, generator, cfg.batch_size)

    params = list(teacher.parameters())
    result = fit_model(
        teacher, params, data, None, cfg, cfg.teacher_epochs, cfg.teacher_lr, step, "teacher", val_score=val_score
    )
    return teacher, _run_summary(result, started)


def _distil_student(data: PairedFeatures, histories, teacher, student, cfg: TrainConfig, val_score) -> tuple:
    """The low-rank student (SVD-initialised): the co-occurrence term, plus the teacher's in-batch similarity
    distribution (``alpha``) and cosine to its item embeddings (``beta``)."""
    import torch

    from mmalign.plugin.align.losses import cosine_gap, history_loss, relational_ce
    from mmalign.plugin.align.trainer import feature_tensors, fit_model

    started = time.perf_counter()
    feats_all, masks_all = feature_tensors(data)
    teacher.eval()
    with torch.no_grad():
        _, t_joint = teacher(feats_all, masks_all)

    def step(batch_f, batch_m, idx, scale, generator):
        emb = {m: student.embed(m, feats_all[m]) for m in student.modalities}
        items = student.fusion(emb, masks_all)
        loss = history_loss(items, histories, scale, generator, cfg.batch_size)
        target = t_joint[idx]
        if cfg.alpha > 0:
            loss = loss + cfg.alpha * relational_ce(
                target, target, items[idx], items[idx], cfg.tau_teacher, cfg.tau_student
            )
        if cfg.beta > 0:
            loss = loss + cfg.beta * cosine_gap(items[idx], target)
        return loss

    params = list(student.parameters())
    result = fit_model(student, params, data, None, cfg, cfg.epochs, cfg.lr, step, "student", val_score=val_score)
    return student, _run_summary(result, started)
