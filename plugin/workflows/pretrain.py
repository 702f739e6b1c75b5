"""``mmalign pretrain``: the pooled corpus's features (cached, resumable) -> teacher -> base bundle.

The base bundle is written like any bundle (config.json with the sha256 of each weight file, and the
``pool`` it learned from); copied into the package (``mmalign/plugin/align/base``) it is what
``--bundle base`` and ``train --init base`` name.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmalign.connectors.errors import DataError
from mmalign.connectors.sources import Catalog, open_catalog
from mmalign.plugin.encoders.registry import DEFAULT_PRESET
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.features.extract import extract_features, preset_specs
from mmalign.plugin.features.paired import load_paired
from mmalign.schemas import Modality, TrainConfig

log = logging.getLogger(__name__)
#: The pool's modalities: image + text pairs.
POOL_MODALITIES = (Modality.IMAGE, Modality.TEXT)


def description_path(catalog_path: str | Path) -> Path:
    """Where the pool builder writes the pool's description (sources, counts, licences, exclusions)."""
    path = Path(catalog_path)
    return path.with_name(path.stem + ".description.json")


def pretrain_bundle(
    catalog,
    out: str | Path,
    *,
    features_dir: str | Path,
    preset: str = DEFAULT_PRESET,
    cfg: TrainConfig | None = None,
    cached_only: bool = False,
    limit: int | None = None,
    batch_sources: int = 8,
    per_source: int = 32,
    student_epochs: int = 6,
    device: str = "auto",
    show_progress: bool = False,
    echo: Callable[[str], None] = log.info,
) -> dict:
    """Pretrain on the pooled ``catalog`` (items with ``metadata.source`` and ``metadata.group``) and
    write the base bundle to ``out``; returns a summary (bundle id, counts, seconds, val metrics).

    ``cached_only``: train on the items whose features are already cached (a feature pass still
    running, or stopped part-way: the pool is written round-robin over sources, so any prefix is
    balanced); otherwise missing features are extracted first (resumable: a rerun encodes only what
    is new). ``limit``: the first N items of the pool.
    """
    from mmalign.plugin.align.bundle import save_bundle
    from mmalign.plugin.align.pretrain import pretrain

    cfg = cfg or TrainConfig()
    started = time.perf_counter()
    if not isinstance(catalog, Catalog):
        catalog = open_catalog(catalog)
    specs = {m: s for m, s in preset_specs(preset, None).items() if m in POOL_MODALITIES}
    items = catalog.items()[:limit] if limit else catalog.items()
    if not cached_only:
        extract_features(catalog, features_dir, specs=specs, items=items, device=device, show_progress=show_progress)
    data, sources, groups = pool_pairs(items, features_dir, specs)
    echo(f"pool: {len(data)} of {len(items)} items have image and text features")
    result = pretrain(
        data,
        sources,
        groups,
        cfg,
        batch_sources=batch_sources,
        per_source=per_source,
        student_epochs=student_epochs,
        echo=echo,
    )
    models = result.models
    bridge = None
    if specs[Modality.IMAGE].kind == "labelled_image":  # the zero-shot student also reads the label part
        models, cfg, bridge = _with_label_bridge(models, data, specs[Modality.IMAGE], cfg, echo)
    pool = _pool_record(catalog.path, sources)
    summary = {
        "split": {"seed": cfg.seed, "test_ids": [], "n_train": result.n_train, "n_val": result.n_val, "groups": True},
        "training_summary": {
            **result.summary,
            "label_bridge": bridge,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "parameters": {"student": models["student"].n_parameters(), "teacher": models["teacher"].n_parameters()},
        "metrics": {
            "split": "val (held-out concept groups of the pool)",
            "n_items": result.n_val,
            "results": result.val_results,
        },
        "preset": preset,
        "pool": pool,
    }
    bundle_id = save_bundle(
        out,
        specs=specs,
        cfg=cfg,
        student=models["student"],
        teacher=models["teacher"],
        baselines={k: models[k] for k in ("svd", "cca")},
        summary=summary,
    )
    echo(f"base bundle {bundle_id} -> {out} ({time.perf_counter() - started:.0f}s)")
    return {"bundle_id": bundle_id, "out": str(out), "seconds": round(time.perf_counter() - started, 1), **summary}


def _with_label_bridge(models: dict, data, image_spec, cfg: TrainConfig, echo):
    """The student joined with the label bridge (:mod:`mmalign.plugin.align.bridge`), the baselines padded to its
    rank, and the config that records that rank; also what was done, for the summary."""
    from mmalign.plugin.align.bridge import BRIDGE_RANK, BRIDGE_WEIGHT, padded, with_label_bridge

    student = with_label_bridge(models["student"], data, image_spec.backbone.dim, BRIDGE_WEIGHT, BRIDGE_RANK)
    rank, added = student.rank, student.rank - models["student"].rank
    models = {**models, "student": student, **{k: padded(models[k], rank) for k in ("svd", "cca")}}
    echo(f"student: joined with the label bridge (weight {BRIDGE_WEIGHT}, {added} text directions): rank {rank}")
    summary = {"weight": BRIDGE_WEIGHT, "rank": added, "distilled_rank": cfg.rank}
    return models, cfg.model_copy(update={"rank": rank}), summary


def pool_pairs(items, features_dir: str | Path, specs):
    """(the pool items with both image and text features, their sources, their concept groups)."""
    data = load_paired(FeatureCache(features_dir), specs, [i.id for i in items])
    paired = data.masks[Modality.IMAGE] & data.masks[Modality.TEXT]
    if paired.sum() < 100:
        raise DataError(
            f"only {int(paired.sum())} pool items have both image and text features in {str(features_dir)!r}; "
            f"run with cached_only=False (CLI: without --cached-only) to extract them"
        )
    data = data.subset(np.flatnonzero(paired))
    by_id = {i.id: i for i in items}
    sources = [str(by_id[i].metadata.get("source", "catalog")) for i in data.item_ids]
    groups = [str(by_id[i].metadata.get("group", i)) for i in data.item_ids]
    return data, sources, groups


def _pool_record(catalog_path: Path, sources: list[str]) -> dict:
    """The pool's description as the bundle records it: the builder's (licences, exclusions), with
    the pair counts of what was actually trained on."""
    from collections import Counter

    counts = Counter(sources)
    described = description_path(catalog_path)
    record = json.loads(described.read_text()) if described.is_file() else {"name": Path(catalog_path).stem}
    licences = {s["source"]: s["licence"] for s in record.get("sources", [])}
    return {
        "name": record.get("name", Path(catalog_path).stem),
        "n_pairs": len(sources),
        "sources": [
            {"source": s, "pairs": n, "licence": licences.get(s, "unknown")} for s, n in sorted(counts.items())
        ],
        "excluded": record.get("excluded", []),
        "command": record.get("command"),
    }
