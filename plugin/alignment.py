"""``mmalign train`` and ``mmalign eval``: from a catalog's cached features to a bundle and its metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from connectors.sources import Catalog, open_catalog
from plugin.evaluate import evaluate_embedder, primary_metric
from plugin.feature_cache import FeatureCache
from plugin.features import extract_features, preset_specs
from plugin.paired import PairedFeatures, split_items
from plugin.registry import DEFAULT_PRESET, encoder_id
from schemas import Modality, TrainConfig, UserVectorConfig
from schemas.encoders import EncoderSpec

log = logging.getLogger(__name__)
MODELS = ("raw", "svd", "cca", "teacher", "student")


def load_paired(cache: FeatureCache, specs: dict[Modality, EncoderSpec], item_ids: Sequence[str]) -> PairedFeatures:
    """Features of ``item_ids`` from the cache; items with no cached modality are left out."""
    tables = {m: cache.load(m, spec, list(item_ids)) for m, spec in specs.items()}
    have = set().union(*(t.item_ids for t in tables.values())) if tables else set()
    ids = [i for i in item_ids if i in have]
    features, masks = {}, {}
    for m, table in tables.items():
        position = {item: n for n, item in enumerate(table.item_ids)}
        matrix = np.zeros((len(ids), specs[m].dim), dtype=np.float32)
        mask = np.zeros(len(ids), dtype=bool)
        for n, item in enumerate(ids):
            row = position.get(item)
            if row is not None:
                matrix[n], mask[n] = table.features[row], True
        features[m], masks[m] = matrix, mask
    data = PairedFeatures.from_arrays(ids, features, masks)
    data.encoder_ids = {m: encoder_id(s) for m, s in specs.items()}
    return data


def _catalog_features(catalog, features_dir, preset, weights, device, show_progress):
    """Make sure the cache holds the catalog's features (a rerun only encodes what is new)."""
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    specs = preset_specs(preset, weights)
    report = extract_features(catalog, features_dir, preset=preset, weights=weights, device=device,
                              show_progress=show_progress)
    items = catalog.items()
    data = load_paired(FeatureCache(features_dir), specs, [i.id for i in items])
    return catalog, specs, report, data


class RawEmbedder:
    """Raw encoder features, where two modalities' encoders share one space (e.g. CLIP image/text)."""

    def __init__(self, modalities):
        self.modalities = list(modalities)

    def embed(self, modality, x):
        return np.asarray(x, dtype=np.float32)

    def fuse(self, data):
        total = sum(np.where(data.masks[m][:, None], data.features[m] / np.maximum(
            np.linalg.norm(data.features[m], axis=1, keepdims=True), 1e-12), 0) for m in self.modalities)
        return total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)


def shared_space_modalities(specs: Mapping[Modality, EncoderSpec]) -> list[Modality]:
    """Modalities whose encoders are two towers of one open_clip model (same arch and weights)."""
    clip = [(m, s) for m, s in specs.items() if s.kind in ("open_clip_image", "open_clip_text")]
    if len(clip) == 2 and clip[0][1].arch == clip[1][1].arch and clip[0][1].weights == clip[1][1].weights:
        return [m for m, _ in clip]
    return []


@dataclass
class AlignmentResult:
    """Everything one training run produced, before it is written as a bundle."""

    models: dict  # svd, cca, teacher, student
    split: dict
    training_summary: dict
    test: PairedFeatures
    results: list[dict]


def fit_alignment(data: PairedFeatures, cfg: TrainConfig, *, interactions: Sequence | None = None,
                  raw_modalities: Sequence[Modality] = (), echo: Callable[[str], None] = log.info
                  ) -> AlignmentResult:
    """Split, fit svd/cca (CCA ridge picked on val), train the teacher, distil the student, test."""
    import torch

    from plugin.train import TorchEmbedder, build_student, fit_cca, fit_svd, train_student, train_teacher

    torch.manual_seed(cfg.seed)
    if len(data.modalities) < 2:
        raise ValueError(f"alignment needs at least two modalities with features; have "
                         f"{[m.value for m in data.modalities]}")
    train_ids, val_ids, test_ids = split_items(data.item_ids, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    train, val, test = data.select(train_ids), data.select(val_ids), data.select(test_ids)
    if len(val) < 2:
        raise ValueError(f"the validation split has {len(val)} items; lower --test-fraction or add items")
    echo(f"items: {len(data)} (train {len(train)}, val {len(val)}, test {len(test)}); "
         f"modalities: {', '.join(f'{m.value}={int(data.masks[m].sum())}' for m in data.modalities)}")
    t0 = time.perf_counter()
    best = None
    for reg in cfg.cca_regs:
        fit = fit_cca(train, cfg.rank, reg, cfg.cca_power)
        model = build_student(train.dims(), cfg, fit)
        score = primary_metric(evaluate_embedder("cca", TorchEmbedder(model, "cca"), val, with_fused=False))
        echo(f"cca reg={reg}: val {score:.3f}")
        if best is None or score > best[0]:
            best = (score, reg, fit, model)
    _, reg, cca_fit, cca_model = best
    svd_fit = fit_svd(train, cfg.rank)
    svd_model = build_student(train.dims(), cfg, svd_fit)
    closed_form_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    teacher, teacher_result = train_teacher(train, val, cfg, fit_cca(train, cfg.dim, reg, cfg.cca_power),
                                            _train_histories(interactions, train))
    teacher_s = time.perf_counter() - t0
    echo(f"teacher: best val {teacher_result.best_val:.3f} at epoch {teacher_result.best_epoch} "
         f"({len(teacher_result.history) - 1} epochs, {teacher_s:.1f}s)")
    t0 = time.perf_counter()
    init = {"cca": cca_fit, "svd": svd_fit, "random": None}[cfg.init]
    student, student_result = train_student(train, val, cfg, init, teacher if cfg.distill else None)
    student_s = time.perf_counter() - t0
    echo(f"student: best val {student_result.best_val:.3f} at epoch {student_result.best_epoch} "
         f"({len(student_result.history) - 1} epochs, {student_s:.1f}s)")
    models = {"svd": svd_model, "cca": cca_model, "teacher": teacher, "student": student}
    return AlignmentResult(
        models=models,
        split={"seed": cfg.seed, "test_fraction": cfg.test_fraction, "val_fraction": cfg.val_fraction,
               "n_train": len(train), "n_val": len(val), "test_ids": test_ids},
        training_summary={
            "cca_reg": reg,
            "teacher": {"best_epoch": teacher_result.best_epoch, "best_val": teacher_result.best_val,
                        "epochs_run": len(teacher_result.history) - 1, "seconds": round(teacher_s, 2)},
            "student": {"best_epoch": student_result.best_epoch, "best_val": student_result.best_val,
                        "epochs_run": len(student_result.history) - 1, "seconds": round(student_s, 2)},
            "closed_form_seconds": round(closed_form_s, 2),
        },
        test=test,
        results=_evaluate_models(models, test, list(raw_modalities)),
    )


def _train_histories(interactions, train: PairedFeatures):
    """Users' histories over the training items only (held-out items never leak into training)."""
    if not interactions:
        return None
    from plugin.rec_space import user_histories

    return user_histories(interactions, train.item_ids, UserVectorConfig()) or None


def train_bundle(catalog, out: str | Path, *, preset: str = DEFAULT_PRESET, features_dir: str | Path,
                 cfg: TrainConfig | None = None, weights: Mapping[str, str] | None = None,
                 interactions: str | Path | None = None, interactions_holdout: str | None = None,
                 device: str = "auto", show_progress: bool = False,
                 echo: Callable[[str], None] = log.info) -> dict:
    """Features (cached) -> alignment -> bundle on disk; returns the summary.

    Two or more modalities: :func:`fit_alignment` (cross-modal; interactions add the teacher's
    co-occurrence term). One modality: with interactions, :func:`plugin.rec_space.fit_cooccurrence_space`;
    without, a content-only PCA bundle. ``interactions_holdout`` ("leave-last-out" or "temporal")
    trains on the training part of that split only, so that ``eval-rec`` on the same split is fair.
    """
    from plugin.bundle import save_bundle

    cfg = cfg or TrainConfig()
    started = time.perf_counter()
    catalog, specs, feature_report, data = _catalog_features(catalog, features_dir, preset, weights, device,
                                                             show_progress)
    specs = {m: s for m, s in specs.items() if m in data.modalities}
    if not specs:
        raise ValueError("no item has features for any modality of the preset; see the dead-letter file")
    data = PairedFeatures(data.item_ids, {m: data.features[m] for m in specs}, {m: data.masks[m] for m in specs},
                          data.encoder_ids)
    rows = None
    if interactions is not None:
        rows = _load_interactions(interactions, interactions_holdout, set(data.item_ids), echo)
    if len(specs) >= 2:
        result = fit_alignment(data, cfg, interactions=rows, raw_modalities=shared_space_modalities(specs), echo=echo)
        models, training = result.models, result.training_summary
        split, metrics = result.split, {"split": "test", "n_items": len(result.test), "results": result.results}
    else:
        models, training = _single_modality(data, cfg, rows, echo)
        split = {"seed": cfg.seed, "test_ids": [], "kind": "interactions" if rows else "none"}
        metrics = {"split": "none", "n_items": 0, "results": []}
    student, teacher = models["student"], models.get("teacher")
    summary = {
        "split": split,
        "training_summary": {**training, "interactions": str(interactions) if interactions else None,
                             "interactions_holdout": interactions_holdout},
        "parameters": {"student": student.n_parameters(), "teacher": teacher.n_parameters() if teacher else 0},
        "metrics": metrics,
        "preset": preset,
    }
    bundle_id = save_bundle(out, specs=specs, cfg=cfg, student=student, teacher=teacher,
                            baselines={k: models[k] for k in ("svd", "cca") if k in models}, summary=summary)
    return {**summary, "bundle_id": bundle_id, "seconds": round(time.perf_counter() - started, 1),
            "feature_report": feature_report}


def _load_interactions(path, holdout: str | None, known: set[str], echo) -> list:
    from connectors.interactions import read_interactions
    from plugin.rec_eval import split_interactions

    load = read_interactions(path)
    unknown = sum(r.item_id not in known for r in load.interactions)
    echo(f"interactions: {len(load.interactions)} rows ({len(load.invalid)} invalid, {unknown} naming items "
         f"without features: not used)")
    rows = [r for r in load.interactions if r.item_id in known]
    if holdout:
        split = split_interactions(rows, holdout)
        echo(f"interactions: training on {len(split.train)} rows; {split.name} held out for eval-rec")
        rows = split.train
    return rows


def _single_modality(data: PairedFeatures, cfg: TrainConfig, interactions, echo):
    from plugin.train import build_student, fit_svd

    if interactions:
        from plugin.rec_space import fit_cooccurrence_space

        fitted = fit_cooccurrence_space(data, interactions, cfg, echo=echo)
        return fitted["models"], fitted["summary"]
    echo(f"one modality ({data.modalities[0].value}) and no interactions: nothing to align; the bundle is the "
         f"content-only PCA projection (pass --interactions to learn a space that serves recommendation)")
    student = build_student(data.dims(), cfg, fit_svd(data, cfg.rank))
    return {"student": student, "svd": student}, {"objective": "content-only PCA"}


def _evaluate_models(models: dict, data: PairedFeatures, raw_modalities: list[Modality]) -> list[dict]:
    from plugin.train import TorchEmbedder

    results = []
    if raw_modalities:
        results += evaluate_embedder("raw", RawEmbedder(raw_modalities), data)
    for name, model in models.items():
        if model is not None:
            results += evaluate_embedder(name, TorchEmbedder(model, name), data)
    return results


def evaluate_bundle(bundle_path: str | Path, catalog=None, *, features_dir: str | Path,
                    item_ids: Sequence[str] | None = None, device: str = "auto",
                    show_progress: bool = False) -> dict:
    """Metrics of every model in the bundle on its held-out items (or on ``item_ids``).

    With a catalog, features are (re)extracted into the cache first; without one, the cache must
    already hold them.
    """
    from plugin.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    specs = {m: bundle.encoder_spec(m) for m in bundle.modalities}
    if catalog is not None:
        if not isinstance(catalog, Catalog):
            catalog = open_catalog(catalog)
        extract_features(catalog, features_dir, specs=specs, device=device, show_progress=show_progress)
    ids = list(item_ids) if item_ids is not None else list(bundle.config["split"]["test_ids"])
    data = load_paired(FeatureCache(features_dir), specs, ids)
    if len(data) == 0:
        raise ValueError(f"none of the {len(ids)} evaluation items has cached features in {str(features_dir)!r}; "
                         f"pass the catalog so that they are extracted")
    models = {"svd": bundle.baselines.get("svd"), "cca": bundle.baselines.get("cca"), "teacher": bundle.teacher,
              "student": bundle.student}
    results = _evaluate_models(models, data, shared_space_modalities(specs))
    return {"bundle_id": bundle.bundle_id, "n_items": len(data), "results": results}
