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

import numpy as np

from plugin.paired import PairedFeatures
from plugin.rec_eval import Matrix, evaluate_scorer, split_interactions, user_vector_scorer
from schemas import Interaction, TrainConfig, UserVectorConfig

log = logging.getLogger(__name__)


def fit_cooccurrence_space(data: PairedFeatures, interactions: Sequence[Interaction], cfg: TrainConfig,
                           user_cfg: UserVectorConfig | None = None,
                           echo: Callable[[str], None] = log.info) -> dict:
    """Returns {"svd", "teacher", "student"} models and a training summary."""
    import torch

    from plugin.losses import cosine_gap, relational_ce
    from plugin.teacher import Teacher
    from plugin.train import TorchEmbedder, _fit, _tensors, build_student, fit_svd

    user_cfg = user_cfg or UserVectorConfig()
    torch.manual_seed(cfg.seed)
    inner = split_interactions(interactions, "leave-last-out")
    matrix = Matrix(inner, data.item_ids, user_cfg)
    echo(f"co-occurrence: {len(inner.train)} training interactions of {len({r.user_id for r in inner.train})} "
         f"users; validation: {len(inner.test)} users' latest training interaction")

    def val_score(model) -> float:
        fused = TorchEmbedder(model, "m").fuse(data)
        scorer = user_vector_scorer(inner, data.item_ids, fused, user_cfg)
        return evaluate_scorer("val", scorer, matrix, inner)["ndcg@10"]

    svd_fit = fit_svd(data, cfg.rank)
    svd_model = build_student(data.dims(), cfg, svd_fit)
    svd_val = val_score(svd_model)
    echo(f"svd (content only): val NDCG@10 {svd_val:.4f}")

    t0 = time.perf_counter()
    teacher = Teacher(data.dims(), cfg.dim, cfg.teacher_hidden, cfg.teacher_layers, dropout=cfg.dropout)
    teacher_fit = fit_svd(data, min(cfg.dim, min(data.dims().values())))
    for m in teacher.modalities:
        teacher.towers[m.value].init_linear(teacher_fit.mean[m], teacher_fit.components[m])

    histories = user_histories(inner.train, data.item_ids, user_cfg)
    feats_all, masks_all = _tensors(data)

    def teacher_step(batch_f, batch_m, idx, scale, generator):
        raw = {m: teacher.unimodal(m, feats_all[m]) for m in teacher.modalities}
        return history_loss(teacher.joint(raw, masks_all), histories, scale, generator, cfg.batch_size)

    teacher_result = _fit(teacher, list(teacher.parameters()), data, None, cfg, cfg.teacher_epochs, cfg.teacher_lr,
                          teacher_step, "teacher", val_score=val_score)
    teacher_s = time.perf_counter() - t0
    echo(f"teacher: val NDCG@10 {teacher_result.best_val:.4f} at epoch {teacher_result.best_epoch} ({teacher_s:.1f}s)")

    t0 = time.perf_counter()
    student = build_student(data.dims(), cfg, svd_fit)
    teacher.eval()
    with torch.no_grad():
        _, t_joint = teacher(feats_all, masks_all)

    def student_step(batch_f, batch_m, idx, scale, generator):
        emb = {m: student.embed(m, feats_all[m]) for m in student.modalities}
        items = student.fusion(emb, masks_all)
        loss = history_loss(items, histories, scale, generator, cfg.batch_size)
        target = t_joint[idx]
        if cfg.alpha > 0:
            loss = loss + cfg.alpha * relational_ce(target, target, items[idx], items[idx], cfg.tau_teacher,
                                                    cfg.tau_student)
        if cfg.beta > 0:
            loss = loss + cfg.beta * cosine_gap(items[idx], target)
        return loss

    student_result = _fit(student, list(student.parameters()), data, None, cfg, cfg.epochs, cfg.lr, student_step,
                          "student", val_score=val_score)
    student_s = time.perf_counter() - t0
    echo(f"student: val NDCG@10 {student_result.best_val:.4f} at epoch {student_result.best_epoch} ({student_s:.1f}s)")
    return {
        "models": {"svd": svd_model, "teacher": teacher, "student": student},
        "summary": {
            "objective": "co-occurrence (single modality)",
            "validation": "NDCG@10 of user vectors, leave-last-out on the training interactions",
            "svd_val": svd_val,
            "teacher": {"best_epoch": teacher_result.best_epoch, "best_val": teacher_result.best_val,
                        "epochs_run": len(teacher_result.history) - 1, "seconds": round(teacher_s, 2)},
            "student": {"best_epoch": student_result.best_epoch, "best_val": student_result.best_val,
                        "epochs_run": len(student_result.history) - 1, "seconds": round(student_s, 2)},
        },
    }


def user_histories(interactions: Sequence[Interaction], item_ids: Sequence[str], cfg: UserVectorConfig):
    """Per user, the positive item rows in time order (users with at least two)."""
    from plugin.user_vectors import strength

    position = {item: n for n, item in enumerate(item_ids)}
    by_user: dict[str, list] = {}
    for row in sorted(interactions, key=lambda r: (r.timestamp.timestamp() if r.timestamp else 0.0, r.item_id)):
        n = position.get(row.item_id)
        if n is not None and strength(row.weight, cfg) > 0:
            by_user.setdefault(row.user_id, []).append(n)
    return [np.array(rows) for rows in by_user.values() if len(rows) >= 2]


def history_loss(items, histories, scale, generator, batch_size: int):
    """Co-occurrence as next-item prediction: for sampled users and a random cut in their history, the
    normalised sum of the item vectors before the cut must score the item at the cut above every other
    item the user has not seen (full softmax over the catalog)."""
    import torch
    import torch.nn.functional as F

    picks = torch.randint(0, len(histories), (batch_size,), generator=generator).tolist()
    users, targets, seen_masks = [], [], []
    for p in picks:
        rows = histories[p]
        cut = int(torch.randint(1, len(rows), (1,), generator=generator))
        before = torch.from_numpy(rows[:cut])
        users.append(items[before].sum(0))
        targets.append(int(rows[cut]))
        mask = torch.zeros(len(items), dtype=torch.bool)
        mask[before] = True
        seen_masks.append(mask)
    user_vectors = F.normalize(torch.stack(users), dim=-1)
    logits = scale * user_vectors @ items.T
    logits = logits.masked_fill(torch.stack(seen_masks), float("-inf"))
    return F.cross_entropy(logits, torch.tensor(targets))
