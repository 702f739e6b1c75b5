"""Closed-form initialisations: per-modality PCA (``svd``, aligns nothing: a baseline) and
low-rank CCA between the best-covered pair of modalities (``cca``, already aligned)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from mmalign.connectors.errors import DataError
from mmalign.plugin.align.linalg import cca, pca, ridge_to_targets
from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality

log = logging.getLogger(__name__)


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
        raise DataError(
            f"alignment needs two modalities present together in some items; have {[m.value for m in data.modalities]}"
        )
    best = max(pairs, key=lambda p: int(data.pair_mask(*p).sum()))
    if data.pair_mask(*best).sum() < 2:
        raise DataError(
            f"too few items ({int(data.pair_mask(*best).sum())}) with both {best[0].value} and "
            f"{best[1].value} to align them"
        )
    return best


def fit_cca(data: PairedFeatures, rank: int, reg: float, power: float) -> LinearFit:
    """CCA on the pair with the most co-present items; every other modality is regressed onto the
    canonical coordinates of the items it shares with that pair."""
    a, b = _pivot_pair(data)
    both = data.pair_mask(a, b)
    (ma, wa), (mb, wb), corr = cca(data.features[a][both], data.features[b][both], rank, reg)
    scale = corr**power
    fit = LinearFit(
        {a: ma, b: mb},
        {a: wa, b: wb},
        {a: scale, b: scale},
        {"pivot": [a.value, b.value], "reg": reg, "correlations": corr[:8].round(4).tolist()},
    )
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
