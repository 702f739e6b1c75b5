"""Training loops: the generic early-stopping fit, the joint teacher and the distilled student.

Everything is tuned on a validation split carved from the training items; the test split is
only recorded (in the bundle) for ``mmalign eval``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from mmalign.plugin.align.closed_form import LinearFit
from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality, TrainConfig

log = logging.getLogger(__name__)


def feature_tensors(data: PairedFeatures, index: np.ndarray | None = None):
    import torch

    index = np.arange(len(data)) if index is None else index
    feats = {m: torch.from_numpy(np.ascontiguousarray(data.features[m][index])) for m in data.features}
    masks = {m: torch.from_numpy(data.masks[m][index]) for m in data.masks}
    return feats, masks


class TorchEmbedder:
    """Adapts a Student or Teacher to the evaluation protocol (numpy in, numpy out, eval mode)."""

    def __init__(self, model, kind: str):
        self.model, self.kind = model, kind
        self.modalities = list(model.modalities)

    def embed(self, modality: Modality, x: np.ndarray) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad():
            return self.model.embed(modality, torch.from_numpy(np.ascontiguousarray(x))).numpy()

    def fuse(self, data: PairedFeatures) -> np.ndarray:
        import torch

        self.model.eval()
        feats, masks = feature_tensors(data)
        with torch.no_grad():
            return self.model(feats, masks)[1].numpy()


def pair_losses(embeddings, masks, logit_scale, modalities):
    from mmalign.plugin.align.losses import info_nce

    total, count = 0.0, 0
    for a, b in combinations(modalities, 2):
        both = masks[a] & masks[b]
        if both.sum() >= 2:
            total = total + info_nce(embeddings[a][both], embeddings[b][both], logit_scale)
            count += 1
    return total, count


def drop_modalities(masks, rate, generator):
    """Randomly hide modalities (never all of an item's) so the joint/fused paths learn to cope."""
    import torch

    if rate <= 0:
        return masks
    mods = list(masks)
    present = torch.stack([masks[m] for m in mods], 1)
    keep = present & (torch.rand(present.shape, generator=generator) >= rate)
    empty = keep.sum(1) == 0
    if empty.any():
        # keep one random present modality for rows that lost them all
        choice = torch.multinomial(present[empty].float(), 1, generator=generator).squeeze(1)
        keep[empty] = False
        keep[empty.nonzero().squeeze(1), choice] = True
    return {m: keep[:, i] for i, m in enumerate(mods)}


@dataclass
class FitResult:
    best_epoch: int
    best_val: float
    history: list[float]


def fit_model(
    model,
    params,
    train: PairedFeatures,
    val: PairedFeatures | None,
    cfg: TrainConfig,
    epochs: int,
    lr: float,
    step_loss: Callable,
    kind: str,
    val_score: Callable | None = None,
    batch_size: int | None = None,
) -> FitResult:
    """Generic loop: AdamW, learnable temperature, early stopping on the validation score
    (``val_score(model)``; default: the cross-modal primary metric on ``val``).

    Epoch 0 is the initialisation itself, so training can only keep or improve the val score.
    """
    import torch

    from mmalign.connectors.progress import Progress

    if val_score is None:

        def val_score(m):
            return primary_metric(evaluate_embedder(kind, TorchEmbedder(m, kind), val, with_fused=False))

    generator = torch.Generator().manual_seed(cfg.seed)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    optimizer = torch.optim.AdamW([*params, logit_scale], lr=lr, weight_decay=cfg.weight_decay)
    best_state = copy.deepcopy(model.state_dict())
    best_val = val_score(model)
    best_epoch, history, bad = 0, [best_val], 0
    n = len(train)
    batch_size = batch_size or cfg.batch_size
    feats, masks = feature_tensors(train)
    # a line every ~10 s off a terminal (epochs may end early: early stopping)
    progress = Progress(epochs * math.ceil(n / batch_size), f"{kind} training (up to {epochs} epochs)", unit="batch")
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            progress.update()
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            batch_f = {m: f[idx] for m, f in feats.items()}
            batch_m = {m: k[idx] for m, k in masks.items()}
            loss = step_loss(batch_f, batch_m, idx, logit_scale.exp().clamp(max=100), generator)
            if not torch.is_tensor(loss):
                continue
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        score = val_score(model)
        history.append(score)
        log.debug("%s epoch %d: val %.4f", kind, epoch, score)
        if score > best_val + 1e-9:
            best_val, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    progress.close()
    model.load_state_dict(best_state)
    return FitResult(best_epoch, best_val, history)


def train_teacher(
    train: PairedFeatures,
    val: PairedFeatures,
    cfg: TrainConfig,
    fit: LinearFit,
    histories: list | None = None,
    init=None,
):
    """Teacher: pairwise InfoNCE between unimodal embeddings + InfoNCE between each e_m and the joint
    embedding of the item seen through a random subset of its modalities, + with ``histories`` (per
    user, training-item rows in time order) the co-occurrence term :func:`history_loss`.

    ``init``: a teacher to start from (e.g. the base bundle's, see :func:`teacher_from_base`) instead
    of one whose linear maps start as the CCA fit; epoch 0 (kept unless training beats it on
    validation) is then that teacher."""
    import torch

    from mmalign.plugin.align.teacher import Teacher

    torch.manual_seed(cfg.seed)
    if init is not None:
        teacher = init
    else:
        teacher = Teacher(train.dims(), cfg.dim, cfg.teacher_hidden, cfg.teacher_layers, dropout=cfg.dropout)
        for m in teacher.modalities:
            k = min(cfg.dim, fit.components[m].shape[1])
            teacher.towers[m.value].init_linear(fit.mean[m], fit.components[m][:, :k] * fit.scale[m][:k])
    all_f, all_m = feature_tensors(train)
    step = teacher_step(teacher, cfg, histories, all_f, all_m)
    result = fit_model(
        teacher,
        list(teacher.parameters()),
        train,
        val,
        cfg,
        cfg.teacher_epochs,
        cfg.teacher_lr,
        step,
        "teacher",
        batch_size=cfg.teacher_batch_size,
    )
    return teacher, result


def teacher_step(teacher, cfg: TrainConfig, histories=None, all_f=None, all_m=None) -> Callable:
    """The teacher's loss on one batch: ``step(batch_f, batch_m, idx, scale, generator)``."""
    import torch

    from mmalign.plugin.align.losses import history_loss, info_nce

    def step(batch_f, batch_m, idx, scale, generator):
        raw = {m: teacher.unimodal(m, batch_f[m]) for m in teacher.modalities}
        unit = {m: torch.nn.functional.normalize(r, dim=-1) for m, r in raw.items()}
        loss, count = pair_losses(unit, batch_m, scale, teacher.modalities)
        dropped = drop_modalities(batch_m, cfg.modality_dropout, generator)
        joint = teacher.joint(raw, dropped)
        for m in teacher.modalities:
            present = batch_m[m]
            if present.sum() >= 2:
                loss = loss + info_nce(unit[m][present], joint[present], scale)
                count += 1
        if histories and cfg.cooccurrence_weight > 0:
            all_raw = {m: teacher.unimodal(m, all_f[m]) for m in teacher.modalities}
            items = teacher.joint(all_raw, all_m)
            loss = loss + cfg.cooccurrence_weight * history_loss(items, histories, scale, generator, len(idx))
            count += 1
        return loss / max(count, 1) if count else None

    return step


def single_modality_pools(data: PairedFeatures) -> dict[Modality, np.ndarray]:
    """Per modality, the features of every item of ``data`` that has it, as rows with no item
    attached: an item with one modality counts as much as a paired one, and nothing that pairs a
    row of one modality with a row of another is kept."""
    return {m: np.ascontiguousarray(data.features[m][data.masks[m]]) for m in data.modalities}


def _unpaired_batch(pool, targets, batch: int, mixup: float, generator, embed):
    """``batch`` rows of ``pool`` (n, d) and their teacher embeddings (``targets``, precomputed); a
    ``mixup`` share of the rows are convex mixes of two pool rows, embedded by ``embed`` (the teacher)."""
    import torch

    n = len(pool)
    idx = torch.randint(0, n, (batch,), generator=generator)
    x, t = pool[idx], targets[idx]
    if mixup > 0:
        mixed = torch.rand(batch, generator=generator) < mixup
        k = int(mixed.sum())
        if k:
            other = pool[torch.randint(0, n, (k,), generator=generator)]
            lam = torch.rand(k, 1, generator=generator)
            x = x.clone()
            t = t.clone()
            x[mixed] = lam * x[mixed] + (1 - lam) * other
            with torch.no_grad():
                t[mixed] = embed(x[mixed])
    return x, t


def train_student(
    train: PairedFeatures, val: PairedFeatures, cfg: TrainConfig, fit: LinearFit | None, teacher=None, start=None
):
    """Student: InfoNCE between its modalities (+ each modality vs. its fused vector), plus, with a
    teacher, alpha * CE(P_teacher || Q_student) + beta * (1 - cos(s_m, teacher joint)) on the
    training pairs, and the unpaired terms: per modality, single-modality training inputs (and mixes
    of two of them) embedded by the teacher's tower of that modality, matched by cosine
    (``unpaired_cosine``) and by the in-batch similarity distributions between unrelated inputs of
    two modalities (``unpaired_relational``). The unpaired terms never use which rows belong to one
    item. ``start`` (a Student) is trained from a copy of it instead of from ``fit``."""
    import torch

    from mmalign.plugin.align.student import build_student

    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(start) if start is not None else build_student(train.dims(), cfg, fit, cfg.student_hidden)
    for m in student.modalities:
        if m in train.masks and train.masks[m].any():
            student.projections[m.value].set_input_scale(train.features[m][train.masks[m]])
    objective = StudentObjective(student, teacher, cfg, train)
    result = fit_model(
        student, list(student.parameters()), train, val, cfg, cfg.epochs, cfg.lr, objective.step, "student"
    )
    return student, result


class StudentObjective:
    """The student's loss on one batch (see :func:`train_student`), with the teacher's targets computed once:
    its embeddings of every training item, and per modality the pool of single-modality inputs."""

    def __init__(self, student, teacher, cfg: TrainConfig, train: PairedFeatures):
        import torch

        self.student, self.teacher, self.cfg = student, teacher, cfg
        self.targets = None
        self.pools: dict = {}
        if teacher is None:
            return
        teacher.eval()
        feats, masks = feature_tensors(train)
        with torch.no_grad():
            self.targets = teacher(feats, masks)
        if cfg.unpaired_cosine > 0 or cfg.unpaired_relational > 0 or cfg.neighbourhood > 0:
            for m, rows in single_modality_pools(train).items():
                if len(rows) >= 2:
                    x = torch.from_numpy(rows)
                    with torch.no_grad():
                        self.pools[m] = (x, teacher.embed(m, x))

    def step(self, batch_f, batch_m, idx, scale, generator):
        from mmalign.plugin.align.losses import info_nce

        student, cfg = self.student, self.cfg
        emb = {m: student.embed(m, batch_f[m]) for m in student.modalities}
        loss, count = pair_losses(emb, batch_m, scale, student.modalities)
        fused = student.fusion(emb, drop_modalities(batch_m, cfg.modality_dropout, generator))
        for m in student.modalities:
            present = batch_m[m]
            if present.sum() >= 2:
                loss = loss + 0.5 * info_nce(emb[m][present], fused[present], scale)
        if self.targets is not None:
            loss = self.distillation(loss, emb, batch_m, idx)
        if self.pools:
            loss = loss + self.unpaired_loss(generator)
            count = max(count, 1)
        return loss / max(count, 1) if count else None

    def distillation(self, loss, emb, batch_m, idx):
        """``loss`` + alpha * the teacher's in-batch similarity structure + beta * the cosine gap to its joint
        vector."""
        from mmalign.plugin.align.losses import cosine_gap, relational_ce

        cfg, modalities = self.cfg, self.student.modalities
        t_unit, t_joint = self.targets
        batch_unit = {m: t_unit[m][idx] for m in t_unit}
        for a, b in combinations(modalities, 2):
            both = batch_m[a] & batch_m[b]
            if both.sum() >= 2 and cfg.alpha > 0:
                t_a, t_b, s_a, s_b = batch_unit[a][both], batch_unit[b][both], emb[a][both], emb[b][both]
                loss = loss + cfg.alpha * relational_ce(t_a, t_b, s_a, s_b, cfg.tau_teacher, cfg.tau_student)
        if cfg.beta > 0:
            for m in modalities:
                present = batch_m[m]
                if present.any():
                    loss = loss + cfg.beta * cosine_gap(emb[m][present], t_joint[idx][present])
        return loss

    def unpaired_loss(self, generator):
        from mmalign.plugin.align.losses import cosine_gap, neighbourhood_ce, relational_ce

        cfg, student, teacher = self.cfg, self.student, self.teacher
        inputs, t_emb = {}, {}
        for m, (x, t) in self.pools.items():
            inputs[m], t_emb[m] = _unpaired_batch(
                x, t, cfg.unpaired_batch, cfg.unpaired_mixup, generator, lambda rows, m=m: teacher.embed(m, rows)
            )
        s_emb = {m: student.embed(m, x) for m, x in inputs.items()}
        loss = 0.0
        if cfg.unpaired_cosine > 0:
            for m in inputs:
                loss = loss + cfg.unpaired_cosine * cosine_gap(s_emb[m], t_emb[m])
        if cfg.neighbourhood > 0:
            for m, x in inputs.items():
                centred = x - student.projections[m.value].mean
                loss = loss + cfg.neighbourhood * neighbourhood_ce(centred, s_emb[m], cfg.tau_teacher, cfg.tau_student)
        if cfg.unpaired_relational > 0:
            for a, b in combinations(list(inputs), 2):
                loss = loss + cfg.unpaired_relational * relational_ce(
                    t_emb[a], t_emb[b], s_emb[a], s_emb[b], cfg.tau_teacher, cfg.tau_student
                )
        return loss
