"""Pretraining on a pooled corpus of many sources, and starting a catalog's teacher from the result.

Domain handling (the pool mixes ~200 icon sets, each its own style):

- **centring per source**: every source's features are centred on that source's own mean before
  anything is fitted, so that what separates sets (stroke width, colour, padding) is not what the
  space learns; a catalog is centred on its own mean in the same way (:func:`recentre`);
- **domain-balanced batches**: each teacher batch draws ``per_source`` items from each of
  ``batch_sources`` random sources, so the negatives of a pair are mostly of its own style (what a
  catalog's retrieval has to separate) and a large set cannot dominate;
- a **non-linear teacher** (the joint teacher of :mod:`.teacher`, residual MLP towers) initialised
  from closed-form CCA on the centred pool;
- validation by **concept group** (a concept's variants are all on one side).

No I/O: features in, models out (``mmalign.plugin.workflows.pretrain`` writes the base bundle).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmalign.plugin.align.closed_form import fit_cca, fit_svd
from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    models: dict  # teacher, student, cca, svd; inputs are raw features (means set to the pool's mean)
    summary: dict
    val_results: list[dict]
    n_train: int
    n_val: int
    global_mean: dict = field(default_factory=dict)


def source_means(data: PairedFeatures, sources: Sequence[str]) -> dict[str, dict[Modality, np.ndarray]]:
    """Per source and modality, the mean feature of the items that have that modality."""
    sources = np.asarray(sources)
    out: dict[str, dict[Modality, np.ndarray]] = {}
    for source in np.unique(sources):
        rows = sources == source
        out[str(source)] = {
            m: data.features[m][rows & data.masks[m]].mean(0) for m in data.modalities if (rows & data.masks[m]).any()
        }
    return out


def centre_by_source(data: PairedFeatures, sources: Sequence[str]) -> tuple[PairedFeatures, dict[Modality, np.ndarray]]:
    """A copy of ``data`` with each source centred on its own mean; also the mean of the source means
    (what a model reading raw, uncentred features subtracts)."""
    means = source_means(data, sources)
    sources = np.asarray(sources)
    feats = {m: f.copy() for m, f in data.features.items()}
    for source, by_modality in means.items():
        rows = sources == source
        for m, mean in by_modality.items():
            present = rows & data.masks[m]
            feats[m][present] -= mean
    global_mean = {m: np.mean([bm[m] for bm in means.values() if m in bm], axis=0) for m in data.modalities}
    return PairedFeatures(data.item_ids, feats, dict(data.masks), dict(data.encoder_ids)), global_mean


def recentre(model, means: dict[Modality, np.ndarray]):
    """``model`` (a Teacher or Student whose inputs were centred per source) reading raw features of
    one domain whose mean is ``means``: every per-modality input mean is set to it (in place)."""
    import torch

    modules = getattr(model, "towers", None) or model.projections
    for m, mean in means.items():
        key = Modality(m).value
        if key in modules:
            modules[key].mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    return model


def domain_mean(data: PairedFeatures) -> dict[Modality, np.ndarray]:
    """The mean feature of one domain (a catalog), per modality, over the items that have it."""
    return {m: data.features[m][data.masks[m]].mean(0) for m in data.modalities}


def pretrain(
    data: PairedFeatures,
    sources: Sequence[str],
    groups: Sequence[str],
    cfg: TrainConfig,
    *,
    val_fraction: float = 0.05,
    batch_sources: int = 8,
    per_source: int = 32,
    student_epochs: int = 6,
    echo: Callable[[str], None] = log.info,
) -> PretrainResult:
    """Closed-form baselines, the teacher (domain-balanced) and its distilled student on the pool."""
    import torch

    from mmalign.connectors.datasets.pool import group_split
    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.align.trainer import train_student

    torch.manual_seed(cfg.seed)
    group_of = dict(zip(data.item_ids, groups))
    source_of = dict(zip(data.item_ids, sources))
    train_ids, val_ids = group_split(list(data.item_ids), group_of, val_fraction, cfg.seed)
    centred, global_mean = centre_by_source(data, sources)
    train, val = centred.select(train_ids), centred.select(val_ids)
    echo(
        f"pool: {len(data)} items from {len(set(sources))} sources; train {len(train)}, val {len(val)} "
        f"(whole concept groups held out); features centred per source"
    )
    t0 = time.perf_counter()
    cca_fit = fit_cca(train, cfg.dim, cfg.cca_regs[0], cfg.cca_power)
    student_fit = fit_cca(train, cfg.rank, cfg.cca_regs[0], cfg.cca_power)
    svd_fit = fit_svd(train, cfg.rank)
    closed_s = time.perf_counter() - t0
    teacher, teacher_summary = train_balanced_teacher(
        train, val, [source_of[i] for i in train_ids], cfg, cca_fit, batch_sources, per_source, echo
    )
    t0 = time.perf_counter()
    scfg = cfg.model_copy(update={"epochs": student_epochs, "batch_size": max(cfg.batch_size, 256)})
    student, student_result = train_student(train, val, scfg, student_fit, teacher)
    student_s = time.perf_counter() - t0
    echo(
        f"student: best val {student_result.best_val:.3f} at epoch {student_result.best_epoch} "
        f"({len(student_result.history) - 1} epochs, {student_s:.0f}s)"
    )
    cca = build_student(train.dims(), cfg, student_fit)
    svd = build_student(train.dims(), cfg, svd_fit)
    models = {"svd": svd, "cca": cca, "teacher": teacher, "student": student}
    from mmalign.plugin.align.trainer import TorchEmbedder

    val_results = [r for name, m in models.items() for r in evaluate_embedder(name, TorchEmbedder(m, name), val)]
    for model in models.values():
        recentre(model, global_mean)
    summary = {
        "objective": "pretraining on a pooled corpus (centred per source, domain-balanced teacher batches)",
        "teacher": teacher_summary,
        "student": {
            "best_epoch": student_result.best_epoch,
            "best_val": student_result.best_val,
            "epochs_run": len(student_result.history) - 1,
            "seconds": round(student_s, 1),
        },
        "closed_form_seconds": round(closed_s, 1),
        "batch_sources": batch_sources,
        "per_source": per_source,
    }
    return PretrainResult(models, summary, val_results, len(train), len(val), global_mean)


def train_balanced_teacher(
    train: PairedFeatures,
    val: PairedFeatures,
    train_sources: Sequence[str],
    cfg: TrainConfig,
    fit,
    batch_sources: int,
    per_source: int,
    echo: Callable[[str], None] = log.info,
):
    """The joint teacher on domain-balanced batches; early stopping on the validation score."""
    import torch

    from mmalign.plugin.align.teacher import Teacher
    from mmalign.plugin.align.trainer import TorchEmbedder, feature_tensors, teacher_step

    teacher = Teacher(train.dims(), cfg.dim, cfg.teacher_hidden, cfg.teacher_layers, dropout=cfg.dropout)
    for m in teacher.modalities:
        k = min(cfg.dim, fit.components[m].shape[1])
        teacher.towers[m.value].init_linear(fit.mean[m], fit.components[m][:, :k] * fit.scale[m][:k])
    step = teacher_step(teacher, cfg)
    feats, masks = feature_tensors(train)
    by_source: dict[str, np.ndarray] = {}
    for i, s in enumerate(train_sources):
        by_source.setdefault(s, []).append(i)
    pools = [torch.as_tensor(v) for v in by_source.values() if len(v) >= 2]
    generator = torch.Generator().manual_seed(cfg.seed)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [*teacher.parameters(), logit_scale]
    optimizer = torch.optim.AdamW(params, lr=cfg.teacher_lr, weight_decay=cfg.weight_decay)

    def score():
        return primary_metric(evaluate_embedder("teacher", TorchEmbedder(teacher, "teacher"), val, with_fused=False))

    started = time.perf_counter()
    best_val, best_epoch, bad = score(), 0, 0
    best_state = copy.deepcopy(teacher.state_dict())
    echo(f"teacher: epoch 0 (CCA init) val {best_val:.3f}")
    steps = max(1, len(train) // (batch_sources * per_source))
    history = [best_val]
    for epoch in range(1, cfg.teacher_epochs + 1):
        teacher.train()
        for _ in range(steps):
            chosen = torch.randperm(len(pools), generator=generator)[:batch_sources]
            idx = torch.cat(
                [pools[c][torch.randint(0, len(pools[c]), (per_source,), generator=generator)] for c in chosen]
            ).unique()
            loss = step(
                {m: f[idx] for m, f in feats.items()},
                {m: k[idx] for m, k in masks.items()},
                idx,
                logit_scale.exp().clamp(max=100),
                generator,
            )
            if loss is None:
                continue
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        value = score()
        history.append(value)
        echo(f"teacher: epoch {epoch} val {value:.3f} ({time.perf_counter() - started:.0f}s)")
        if value > best_val + 1e-9:
            best_val, best_epoch, bad = value, epoch, 0
            best_state = copy.deepcopy(teacher.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    teacher.load_state_dict(best_state)
    teacher.eval()
    return teacher, {
        "best_epoch": best_epoch,
        "best_val": best_val,
        "epochs_run": len(history) - 1,
        "seconds": round(time.perf_counter() - started, 1),
    }


#: How a catalog's teacher starts from the base: ``all`` (the base's towers, re-centred on the catalog)
#: or ``hidden`` (the catalog's CCA as the linear map, as without a base, plus the base's pretrained
#: hidden layer in each tower's MLP, whose output layer starts at zero: epoch 0 is the catalog's CCA).
#: ``hidden`` is the default: on the benchmark catalogs ``all`` starts far below the catalog's CCA and
#: ends below it (docs/benchmarks.md), while ``hidden`` can only do as well as no base on validation.
BASE_MODES = ("all", "hidden")
DEFAULT_BASE_MODE = "hidden"


def teacher_from_base(
    base_teacher, dims: dict[Modality, int], cfg: TrainConfig, fit, means, mode: str = DEFAULT_BASE_MODE
):
    """A teacher for a catalog started from the base teacher (see :data:`BASE_MODES`): the towers of
    the modalities the base has, its mixer and output; a modality the base lacks (audio) gets a new
    tower initialised from the catalog's CCA ``fit``, as without a base."""
    import torch

    from mmalign.connectors.errors import ConfigError
    from mmalign.plugin.align.teacher import Teacher

    if base_teacher.dim != cfg.dim:
        raise ConfigError(
            f"starting from the base bundle needs dim {base_teacher.dim} (its shared dimension D; CLI --dim), "
            f"got {cfg.dim}"
        )
    hidden = base_teacher.towers[base_teacher.modalities[0].value].mlp[0].out_features
    layers = len(base_teacher.mixer.layers)
    teacher = Teacher(dims, cfg.dim, hidden, layers, dropout=cfg.dropout)
    if mode not in BASE_MODES:
        raise ConfigError(f"unknown base mode {mode!r}; valid: {list(BASE_MODES)}")
    for m in teacher.modalities:
        tower = teacher.towers[m.value]
        if m in base_teacher.modalities and mode == "all":
            tower.load_state_dict(base_teacher.towers[m.value].state_dict())
            continue
        k = min(cfg.dim, fit.components[m].shape[1])
        tower.init_linear(fit.mean[m], fit.components[m][:, :k] * fit.scale[m][:k])
        if m in base_teacher.modalities:  # mode "hidden": the pretrained hidden layer, a zero output layer
            tower.mlp[0].load_state_dict(base_teacher.towers[m.value].mlp[0].state_dict())
    teacher.mixer.load_state_dict(base_teacher.mixer.state_dict())
    teacher.out.load_state_dict(base_teacher.out.state_dict())
    with torch.no_grad():
        for i, m in enumerate(teacher.modalities):
            if m in base_teacher.modalities:
                teacher.type_embedding[i].copy_(base_teacher.type_embedding[base_teacher.modalities.index(m)])
    if mode == "hidden":
        return teacher  # tower means are the catalog's (CCA fit on its training items)
    return recentre(teacher, {m: v for m, v in means.items() if m in base_teacher.modalities})
