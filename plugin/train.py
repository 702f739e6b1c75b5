"""Training: closed-form baselines (svd, cca), the joint teacher, and the distilled student.

Everything is tuned on a validation split carved from the training items; the test split is
only recorded (in the bundle) for ``mmalign eval``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from plugin.cca import cca, pca, ridge_to_targets
from plugin.evaluate import evaluate_embedder, primary_metric
from plugin.paired import PairedFeatures
from schemas import Modality, TrainConfig

log = logging.getLogger(__name__)


# -- closed-form fits ----------------------------------------------------------------------------
@dataclass
class LinearFit:
    """Per modality: mean (d,), components (d, k) and a per-component scale (k,)."""

    mean: dict[Modality, np.ndarray]
    components: dict[Modality, np.ndarray]
    scale: dict[Modality, np.ndarray]
    info: dict = field(default_factory=dict)


def _pivot_pair(data: PairedFeatures) -> tuple[Modality, Modality]:
    pairs = list(combinations(data.modalities, 2))
    if not pairs:
        raise ValueError(f"alignment needs two modalities present together in some items; "
                         f"have {[m.value for m in data.modalities]}")
    best = max(pairs, key=lambda p: int(data.pair_mask(*p).sum()))
    if data.pair_mask(*best).sum() < 2:
        raise ValueError(f"too few items ({int(data.pair_mask(*best).sum())}) with both {best[0].value} and "
                         f"{best[1].value} to align them")
    return best


def fit_cca(data: PairedFeatures, rank: int, reg: float, power: float) -> LinearFit:
    """CCA on the pair with the most co-present items; every other modality is regressed onto the
    canonical coordinates of the items it shares with that pair."""
    a, b = _pivot_pair(data)
    both = data.pair_mask(a, b)
    (ma, wa), (mb, wb), corr = cca(data.features[a][both], data.features[b][both], rank, reg)
    scale = corr ** power
    fit = LinearFit({a: ma, b: mb}, {a: wa, b: wb}, {a: scale, b: scale},
                    {"pivot": [a.value, b.value], "reg": reg, "correlations": corr[:8].round(4).tolist()})
    for other in data.modalities:
        if other in (a, b):
            continue
        targets, rows = [], []
        for anchor in (a, b):
            shared = data.pair_mask(other, anchor)
            if shared.sum() >= 2:
                rows.append(np.flatnonzero(shared))
                targets.append((data.features[anchor][shared] - fit.mean[anchor]) @ fit.components[anchor])
        if not rows:
            log.warning("%s shares no items with %s/%s: it starts from PCA", other.value, a.value, b.value)
            mean, comps, _ = pca(data.features[other][data.masks[other]], rank)
            fit.mean[other], fit.components[other], fit.scale[other] = mean, comps, np.ones(rank, np.float32)
            continue
        x = np.concatenate([data.features[other][r] for r in rows])
        mean, w = ridge_to_targets(x, np.concatenate(targets), reg)
        fit.mean[other], fit.components[other], fit.scale[other] = mean, w, scale
    return fit


def fit_svd(data: PairedFeatures, rank: int) -> LinearFit:
    fit = LinearFit({}, {}, {})
    for m in data.modalities:
        mean, comps, _ = pca(data.features[m][data.masks[m]], rank)
        fit.mean[m], fit.components[m], fit.scale[m] = mean, comps, np.ones(rank, np.float32)
    return fit


# -- torch helpers ---------------------------------------------------------------------------------
def _tensors(data: PairedFeatures, index: np.ndarray | None = None):
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
        feats, masks = _tensors(data)
        with torch.no_grad():
            return self.model(feats, masks)[1].numpy()


def _sub_targets(soft, rows):
    if soft is None:
        return None
    sub = soft[rows][:, rows]
    return sub / sub.sum(1, keepdim=True)


def _pair_losses(embeddings, masks, logit_scale, modalities, soft=None):
    from plugin.losses import info_nce

    total, count = 0.0, 0
    for a, b in combinations(modalities, 2):
        both = masks[a] & masks[b]
        if both.sum() >= 2:
            total = total + info_nce(embeddings[a][both], embeddings[b][both], logit_scale, _sub_targets(soft, both))
            count += 1
    return total, count


def _batch_soft_targets(batch_f, batch_m, cfg: TrainConfig):
    """Soft positives from the raw text features (near-duplicate descriptions); identity elsewhere."""
    import torch

    from plugin.losses import soft_targets_from

    if cfg.soft_target_temperature <= 0 or Modality.TEXT not in batch_f:
        return None
    has = batch_m[Modality.TEXT]
    ref = torch.nn.functional.normalize(batch_f[Modality.TEXT], dim=-1)
    soft = soft_targets_from(ref, cfg.soft_target_temperature)
    eye = torch.eye(len(has))
    rows = has[:, None] & has[None, :]
    soft = torch.where(rows, soft, eye)
    return soft / soft.sum(1, keepdim=True)


def _mixup(batch_f, batch_m, alpha: float, generator):
    """Mix each item with another of the batch (same λ for all its modalities): new pairs, with the
    teacher labelling them. Only modalities both items have stay present."""
    import torch

    n = len(next(iter(batch_f.values())))
    perm = torch.randperm(n, generator=generator)
    lam = torch.distributions.Beta(alpha, alpha).sample((n, 1))
    lam = torch.maximum(lam, 1 - lam)  # the original item dominates
    feats = {m: lam * f + (1 - lam) * f[perm] for m, f in batch_f.items()}
    masks = {m: k & k[perm] for m, k in batch_m.items()}
    return feats, masks


def _noisy(batch_f, cfg: TrainConfig, generator):
    """Gaussian feature noise scaled to each row's norm: augmentation in feature space."""
    import torch

    if cfg.feature_noise <= 0:
        return batch_f
    out = {}
    for m, f in batch_f.items():
        scale = f.norm(dim=1, keepdim=True) / f.shape[1] ** 0.5
        out[m] = f + cfg.feature_noise * scale * torch.randn(f.shape, generator=generator)
    return out


def _drop_modalities(masks, rate, generator):
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


def _fit(model, params, train: PairedFeatures, val: PairedFeatures | None, cfg: TrainConfig, epochs: int,
         lr: float, step_loss: Callable, kind: str, val_score: Callable | None = None) -> FitResult:
    """Generic loop: AdamW, learnable temperature, early stopping on the validation score
    (``val_score(model)``; default: the cross-modal primary metric on ``val``).

    Epoch 0 is the initialisation itself, so training can only keep or improve the val score.
    """
    import torch

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
    feats, masks = _tensors(train)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
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
        if score > best_val + 1e-9:
            best_val, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return FitResult(best_epoch, best_val, history)


# -- models ----------------------------------------------------------------------------------------
def build_student(dims: dict[Modality, int], cfg: TrainConfig, fit: LinearFit | None):
    from plugin.student import Student

    student = Student(dims, cfg.dim, cfg.rank, cfg.fusion)
    if fit is not None:
        for m in student.modalities:
            proj = student.projections[m.value]
            comps = fit.components[m][:, : proj.rank]
            proj.init_from(fit.mean[m], comps, fit.scale[m][: proj.rank])
    return student


def train_teacher(train: PairedFeatures, val: PairedFeatures, cfg: TrainConfig, fit: LinearFit,
                  histories: list | None = None):
    """Teacher: pairwise InfoNCE between unimodal embeddings + InfoNCE between each e_m and the joint
    embedding of the item seen through a random subset of its modalities, + with ``histories`` (per
    user, training-item rows in time order) the co-occurrence term of :func:`plugin.rec_space.history_loss`."""
    import torch

    from plugin.losses import info_nce
    from plugin.teacher import Teacher

    torch.manual_seed(cfg.seed)
    teacher = Teacher(train.dims(), cfg.dim, cfg.teacher_hidden, cfg.teacher_layers, dropout=cfg.dropout)
    for m in teacher.modalities:
        k = min(cfg.dim, fit.components[m].shape[1])
        teacher.towers[m.value].init_linear(fit.mean[m], fit.components[m][:, :k] * fit.scale[m][:k])
    all_f, all_m = _tensors(train)

    if cfg.teacher_freeze_linear:
        for m in teacher.modalities:
            teacher.towers[m.value].linear.weight.requires_grad_(False)

    def step(batch_f, batch_m, idx, scale, generator):
        soft = _batch_soft_targets(batch_f, batch_m, cfg)
        batch_f = _noisy(batch_f, cfg, generator)
        raw = {m: teacher.unimodal(m, batch_f[m]) for m in teacher.modalities}
        unit = {m: torch.nn.functional.normalize(r, dim=-1) for m, r in raw.items()}
        loss, count = _pair_losses(unit, batch_m, scale, teacher.modalities, soft)
        dropped = _drop_modalities(batch_m, cfg.modality_dropout, generator)
        joint = teacher.joint(raw, dropped)
        for m in teacher.modalities:
            present = batch_m[m]
            if present.sum() >= 2:
                loss = loss + info_nce(unit[m][present], joint[present], scale, _sub_targets(soft, present))
                count += 1
        if histories and cfg.cooccurrence_weight > 0:
            from plugin.rec_space import history_loss

            all_raw = {m: teacher.unimodal(m, all_f[m]) for m in teacher.modalities}
            items = teacher.joint(all_raw, all_m)
            loss = loss + cfg.cooccurrence_weight * history_loss(items, histories, scale, generator, len(idx))
            count += 1
        return loss / max(count, 1) if count else None

    result = _fit(teacher, [p for p in teacher.parameters() if p.requires_grad], train, val, cfg, cfg.teacher_epochs, cfg.teacher_lr,
                  step, "teacher")
    return teacher, result


def train_student(train: PairedFeatures, val: PairedFeatures, cfg: TrainConfig, fit: LinearFit | None,
                  teacher=None):
    """Student: InfoNCE between its modalities (+ each modality vs. its fused vector), plus, with a
    teacher, α·CE(P_teacher ‖ Q_student) + β·(1 − cos(s_m, teacher joint))."""
    import torch

    from plugin.losses import cosine_gap, info_nce, relational_ce

    torch.manual_seed(cfg.seed)
    student = build_student(train.dims(), cfg, fit)
    targets = None
    if teacher is not None:
        teacher.eval()
        feats, masks = _tensors(train)
        with torch.no_grad():
            t_unit, t_joint = teacher(feats, masks)
        targets = (t_unit, t_joint)

    def step(batch_f, batch_m, idx, scale, generator):
        soft = _batch_soft_targets(batch_f, batch_m, cfg)
        batch_f = _noisy(batch_f, cfg, generator)
        teacher_unit = None
        if cfg.mixup > 0 and teacher is not None:
            batch_f, batch_m = _mixup(batch_f, batch_m, cfg.mixup, generator)
            soft = None
            with torch.no_grad():
                teacher_unit, _ = teacher(batch_f, batch_m)
        emb = {m: student.embed(m, batch_f[m]) for m in student.modalities}
        loss, count = _pair_losses(emb, batch_m, scale, student.modalities, soft)
        fused = student.fusion(emb, _drop_modalities(batch_m, cfg.modality_dropout, generator))
        for m in student.modalities:
            present = batch_m[m]
            if present.sum() >= 2:
                loss = loss + 0.5 * info_nce(emb[m][present], fused[present], scale)
        if targets is not None:
            t_unit, t_joint = targets
            batch_unit = teacher_unit if teacher_unit is not None else {m: t_unit[m][idx] for m in t_unit}
            for a, b in combinations(student.modalities, 2):
                both = batch_m[a] & batch_m[b]
                if both.sum() >= 2 and cfg.alpha > 0:
                    loss = loss + cfg.alpha * relational_ce(
                        batch_unit[a][both], batch_unit[b][both], emb[a][both], emb[b][both],
                        cfg.tau_teacher, cfg.tau_student)
            if cfg.beta > 0 and teacher_unit is None:
                for m in student.modalities:
                    present = batch_m[m]
                    if present.any():
                        loss = loss + cfg.beta * cosine_gap(emb[m][present], t_joint[idx][present])
        return loss / max(count, 1) if count else None

    result = _fit(student, list(student.parameters()), train, val, cfg, cfg.epochs, cfg.lr, step, "student")
    return student, result
