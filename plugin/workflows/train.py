"""``mmalign train`` and ``mmalign eval``: from a catalog's cached features to a bundle and its metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mmalign.connectors.errors import DataError
from mmalign.connectors.sources import Catalog, open_catalog
from mmalign.plugin.align.evaluation import shared_space_modalities
from mmalign.plugin.align.fit import evaluate_models, fit_alignment
from mmalign.plugin.align.pretrain import DEFAULT_BASE_MODE
from mmalign.plugin.encoders.registry import DEFAULT_PRESET
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.features.extract import extract_features, preset_specs
from mmalign.plugin.features.paired import PairedFeatures, load_paired
from mmalign.schemas import EvalReport, TrainConfig, TrainReport

log = logging.getLogger(__name__)


def catalog_features(catalog, features_dir, preset, weights, device, show_progress, runtime=None):
    """Make sure the cache holds the catalog's features (a rerun only encodes what is new)."""
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    specs = preset_specs(preset, weights, runtime=runtime, device=device)
    report = extract_features(
        catalog, features_dir, specs=specs, preset=preset, device=device, show_progress=show_progress
    )
    items = catalog.items()
    data = load_paired(FeatureCache(features_dir), specs, [i.id for i in items])
    return catalog, specs, report, data


def train_bundle(
    catalog,
    out: str | Path,
    *,
    preset: str = DEFAULT_PRESET,
    features_dir: str | Path,
    cfg: TrainConfig | None = None,
    weights: Mapping[str, str] | None = None,
    interactions: str | Path | None = None,
    interactions_holdout: str | None = None,
    interactions_dead_letter: str | Path | None = None,
    device: str = "auto",
    show_progress: bool = False,
    echo: Callable[[str], None] = log.info,
    init_bundle: str | Path | None = None,
    base_mode: str = DEFAULT_BASE_MODE,
    runtime: str | None = None,
) -> TrainReport:
    """Features (cached) -> alignment -> bundle on disk; returns the report.

    ``init_bundle`` (``"base"``: the shipped base bundle): the teacher is fine-tuned from that
    bundle's teacher instead of started from CCA (the student still starts from this catalog's CCA);
    the bundle records it under ``init``. A modality the base has no tower for (audio) starts from
    CCA as without a base.

    Two or more modalities: :func:`fit_alignment` (cross-modal; interactions add the teacher's
    co-occurrence term). One modality: with interactions, :func:`mmalign.plugin.recommend.space.fit_cooccurrence_space`;
    without, a content-only PCA bundle. ``interactions_holdout`` ("leave-last-out" or "temporal")
    trains on the training part of that split only, so that ``eval-rec`` on the same split is fair.
    Invalid interaction rows go to ``interactions_dead_letter`` (default
    ``FEATURES/interactions_dead_letter.jsonl``) with their reasons, and are counted in the summary.
    """
    from mmalign.plugin.align.bundle import save_bundle

    started = time.perf_counter()
    base, cfg = _init_from(init_bundle, cfg or TrainConfig(), echo)
    catalog, specs, feature_report, data = catalog_features(
        catalog, features_dir, preset, weights, device, show_progress, runtime
    )
    specs = {m: s for m, s in specs.items() if m in data.modalities}
    if not specs:
        raise DataError("no item has features for any modality of the preset; see the dead-letter file")
    data = PairedFeatures(
        data.item_ids, {m: data.features[m] for m in specs}, {m: data.masks[m] for m in specs}, data.encoder_ids
    )
    rows, invalid = None, {}
    if interactions is not None:
        letters = interactions_dead_letter or Path(features_dir) / "interactions_dead_letter.jsonl"
        rows, invalid = _load_interactions(interactions, interactions_holdout, set(data.item_ids), echo, letters)
    models, training, split, metrics = _fit_models(data, specs, cfg, rows, base, base_mode, echo)
    student, teacher = models["student"], models.get("teacher")
    summary = {
        "split": split,
        "training_summary": {
            **training,
            "interactions": str(interactions) if interactions else None,
            "interactions_holdout": interactions_holdout,
            **invalid,
        },
        "parameters": {"student": student.n_parameters(), "teacher": teacher.n_parameters() if teacher else 0},
        "metrics": metrics,
        "preset": preset,
    }
    if base is not None:
        summary["init"] = {"base_bundle_id": base.bundle_id, "base_name": str(init_bundle), "mode": base_mode}
    baselines = {k: models[k] for k in ("svd", "cca") if k in models}
    bundle_id = save_bundle(
        out, specs=specs, cfg=cfg, student=student, teacher=teacher, baselines=baselines, summary=summary
    )
    report = {k: v for k, v in summary.items() if k != "init"}
    seconds = round(time.perf_counter() - started, 1)
    return TrainReport.model_validate(
        {**report, "bundle_id": bundle_id, "out": str(out), "seconds": seconds, "feature_report": feature_report}
    )


def _init_from(init_bundle, cfg: TrainConfig, echo):
    """(the base bundle or None, ``cfg`` with the base teacher's shape): what ``init_bundle`` starts from."""
    if init_bundle is None:
        return None, cfg
    from mmalign.plugin.align.bundle import load_bundle

    base = load_bundle(init_bundle)
    shape = base.config.teacher
    if shape is None or base.teacher is None:
        raise DataError(f"bundle {base.bundle_id} ({init_bundle}) has no teacher to fine-tune")
    echo(f"teacher: fine-tuned from bundle {base.bundle_id} ({init_bundle}); student: from this catalog's CCA")
    return base, cfg.model_copy(update={"teacher_hidden": shape.hidden, "teacher_layers": shape.layers})


def _fit_models(data: PairedFeatures, specs, cfg: TrainConfig, rows, base, base_mode: str, echo):
    """(models, training summary, split, test metrics): the cross-modal fit of two or more modalities, else
    the one-modality bundle (a co-occurrence space with interactions, PCA without)."""
    if len(specs) < 2:
        models, training = _single_modality(data, cfg, rows, echo)
        split = {"seed": cfg.seed, "test_ids": [], "kind": "interactions" if rows else "none"}
        return models, training, split, {"split": "none", "n_items": 0, "results": []}
    if base is not None:
        base.check_encoders({m: s for m, s in specs.items() if m.value in base.config.encoders})
    result = fit_alignment(
        data,
        cfg,
        interactions=rows,
        raw_modalities=shared_space_modalities(specs),
        echo=echo,
        base=base,
        base_mode=base_mode,
    )
    metrics = {"split": "test", "n_items": len(result.test), "results": result.results}
    return result.models, result.training_summary, result.split, metrics


def _load_interactions(path, holdout: str | None, known: set[str], echo, dead_letter) -> tuple[list, dict]:
    """The usable rows, and the invalid-row count and dead-letter file for the training summary."""
    from mmalign.connectors.interactions import read_interactions
    from mmalign.plugin.recommend.splits import split_interactions

    load = read_interactions(path, dead_letter=dead_letter)
    unknown = sum(r.item_id not in known for r in load.interactions)
    written = f", written to {dead_letter}" if load.invalid else ""
    echo(
        f"interactions: {len(load.interactions)} rows ({len(load.invalid)} invalid{written}, {unknown} naming "
        f"items without features: not used)"
    )
    invalid = {
        "interactions_invalid": len(load.invalid),
        "interactions_dead_letter": str(dead_letter) if load.invalid else None,
    }
    rows = [r for r in load.interactions if r.item_id in known]
    if holdout:
        split = split_interactions(rows, holdout)
        echo(f"interactions: training on {len(split.train)} rows; {split.name} held out for eval-rec")
        rows = split.train
    return rows, invalid


def _single_modality(data: PairedFeatures, cfg: TrainConfig, interactions, echo):
    from mmalign.plugin.align.closed_form import fit_svd
    from mmalign.plugin.align.student import build_student

    if interactions:
        from mmalign.plugin.recommend.space import fit_cooccurrence_space

        fitted = fit_cooccurrence_space(data, interactions, cfg, echo=echo)
        return fitted["models"], fitted["summary"]
    echo(
        f"one modality ({data.modalities[0].value}) and no interactions: nothing to align; the bundle is the "
        f"content-only PCA projection (give interactions, CLI --interactions, to learn a space that serves "
        f"recommendation)"
    )
    student = build_student(data.dims(), cfg, fit_svd(data, cfg.rank))
    return {"student": student, "svd": student}, {"objective": "content-only PCA"}


def evaluate_bundle(
    bundle_path: str | Path,
    catalog=None,
    *,
    features_dir: str | Path,
    item_ids: Sequence[str] | None = None,
    device: str = "auto",
    show_progress: bool = False,
    split_of: str | Path | None = None,
) -> EvalReport:
    """Metrics of every model in the bundle on its held-out items (or on ``item_ids``).

    With a catalog, features are (re)extracted into the cache first; without one, the cache must
    already hold them. A bundle evaluated on a catalog it was not trained on (``base``) has no
    held-out items of that catalog: then every item of the catalog is evaluated, or ``split_of``
    (another bundle, trained on the catalog) names the test items, so that zero-shot and fine-tuned
    compare on the same queries.
    """
    from mmalign.plugin.align.bundle import load_bundle, load_bundle_config

    bundle = load_bundle(bundle_path)
    if split_of is not None and item_ids is None:
        item_ids = load_bundle_config(split_of).test_ids()
    if item_ids is None and not bundle.config.test_ids():
        if catalog is None:
            raise DataError(
                f"bundle {bundle.bundle_id} has no held-out items (a base bundle): pass the catalog to "
                f"evaluate on, and split_of (CLI --split-of) a bundle trained on it to use that bundle's test items"
            )
        if not isinstance(catalog, Catalog):
            catalog = open_catalog(catalog)
        item_ids = [i.id for i in catalog.items()]
    specs = {m: bundle.encoder_spec(m) for m in bundle.modalities}
    if catalog is not None:
        if not isinstance(catalog, Catalog):
            catalog = open_catalog(catalog)
        extract_features(catalog, features_dir, specs=specs, device=device, show_progress=show_progress)
    ids = list(item_ids) if item_ids is not None else bundle.config.test_ids()
    data = load_paired(FeatureCache(features_dir), specs, ids)
    if len(data) == 0:
        raise DataError(
            f"none of the {len(ids)} evaluation items has cached features in {str(features_dir)!r}; "
            f"pass the catalog so that they are extracted"
        )
    models = {
        "svd": bundle.baselines.get("svd"),
        "cca": bundle.baselines.get("cca"),
        "teacher": bundle.teacher,
        "student": bundle.student,
    }
    results = evaluate_models(models, data, shared_space_modalities(specs))
    return EvalReport.model_validate({"bundle_id": bundle.bundle_id, "n_items": len(data), "results": results})
