"""Contrastive and distillation losses over in-batch similarities."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` and row i of ``b`` are positives, the rest negatives."""
    logits = logit_scale * a @ b.T
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def relational_ce(
    teacher_a: torch.Tensor,
    teacher_b: torch.Tensor,
    student_a: torch.Tensor,
    student_b: torch.Tensor,
    tau_teacher: float,
    tau_student: float,
) -> torch.Tensor:
    """CE(P_teacher || Q_student) = -sum p log q over in-batch similarity distributions (both directions)."""
    loss = 0.0
    for t_logits, s_logits in (
        ((teacher_a @ teacher_b.T), (student_a @ student_b.T)),
        ((teacher_b @ teacher_a.T), (student_b @ student_a.T)),
    ):
        p = F.softmax(t_logits / tau_teacher, dim=1)
        log_q = F.log_softmax(s_logits / tau_student, dim=1)
        loss = loss - (p * log_q).sum(dim=1).mean()
    return 0.5 * loss


def neighbourhood_ce(inputs: torch.Tensor, embedded: torch.Tensor, tau_inputs: float, tau: float) -> torch.Tensor:
    """Neighbourhood preservation: CE between the in-batch neighbour distribution of the encoder's own
    (centred) features and that of their embeddings, self excluded, so that the shared space keeps
    each encoder's k-NN structure (STRUCTURE-style regulariser)."""
    x = F.normalize(inputs, dim=-1)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    p = F.softmax((x @ x.T / tau_inputs).masked_fill(eye, float("-inf")), dim=1)
    log_q = F.log_softmax((embedded @ embedded.T / tau).masked_fill(eye, float("-inf")), dim=1)
    return -(p * log_q.masked_fill(eye, 0.0)).sum(dim=1).mean()


def cosine_gap(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(student, teacher) over rows."""
    return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def history_loss(items, histories, scale, generator, batch_size: int):
    """Co-occurrence as next-item prediction: for sampled users and a random cut in their history, the
    normalised sum of the item vectors before the cut must score the item at the cut above every other
    item the user has not seen (full softmax over the catalog)."""
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
