"""Contrastive and distillation losses over in-batch similarities."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float,
             soft_targets: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` and row i of ``b`` are positives, the rest negatives.

    ``soft_targets`` (n, n), rows summing to 1, spreads the positive mass over near-duplicate
    items (e.g. two stamps both described "A frog."), which are otherwise false negatives.
    """
    logits = logit_scale * a @ b.T
    if soft_targets is None:
        target = torch.arange(len(a), device=a.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return 0.5 * (F.cross_entropy(logits, soft_targets) + F.cross_entropy(logits.T, soft_targets.T))


def soft_targets_from(reference: torch.Tensor, temperature: float) -> torch.Tensor:
    """Row-stochastic targets from a reference similarity (unit rows): near-identical items share mass."""
    sim = reference @ reference.T
    return F.softmax(sim / temperature, dim=1)


def relational_ce(teacher_a: torch.Tensor, teacher_b: torch.Tensor, student_a: torch.Tensor,
                  student_b: torch.Tensor, tau_teacher: float, tau_student: float) -> torch.Tensor:
    """CE(P_teacher || Q_student) = -sum p log q over in-batch similarity distributions (both directions)."""
    loss = 0.0
    for t_logits, s_logits in (((teacher_a @ teacher_b.T), (student_a @ student_b.T)),
                               ((teacher_b @ teacher_a.T), (student_b @ student_a.T))):
        p = F.softmax(t_logits / tau_teacher, dim=1)
        log_q = F.log_softmax(s_logits / tau_student, dim=1)
        loss = loss - (p * log_q).sum(dim=1).mean()
    return 0.5 * loss


def cosine_gap(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(student, teacher) over rows."""
    return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
