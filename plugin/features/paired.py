"""Paired features: one row per item, one matrix per modality, a mask for the modalities it has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mmalign.connectors.errors import ConfigError, DataError
from mmalign.plugin.encoders.registry import encoder_id
from mmalign.plugin.features.cache import FeatureCache
from mmalign.schemas import Modality
from mmalign.schemas.encoders import EncoderSpec


@dataclass
class PairedFeatures:
    """``features[m]`` is (N, d_m) float32 with zero rows where ``masks[m]`` is False."""

    item_ids: list[str]
    features: dict[Modality, np.ndarray]
    masks: dict[Modality, np.ndarray]
    encoder_ids: dict[Modality, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def modalities(self) -> list[Modality]:
        return [m for m in Modality if m in self.features and self.masks[m].any()]

    def dims(self) -> dict[Modality, int]:
        return {m: int(self.features[m].shape[1]) for m in self.features}

    def subset(self, index: np.ndarray | list[int]) -> PairedFeatures:
        index = np.asarray(index, dtype=np.int64)
        return PairedFeatures(
            [self.item_ids[i] for i in index],
            {m: f[index] for m, f in self.features.items()},
            {m: k[index] for m, k in self.masks.items()},
            dict(self.encoder_ids),
        )

    def select(self, item_ids: list[str]) -> PairedFeatures:
        position = {item: n for n, item in enumerate(self.item_ids)}
        missing = [i for i in item_ids if i not in position]
        if missing:
            raise KeyError(f"{len(missing)} item(s) have no features, e.g. {missing[:3]}")
        return self.subset([position[i] for i in item_ids])

    def pair_mask(self, a: Modality, b: Modality) -> np.ndarray:
        return self.masks[a] & self.masks[b]

    @classmethod
    def from_arrays(
        cls, item_ids: list[str], features: dict[Modality, np.ndarray], masks: dict[Modality, np.ndarray] | None = None
    ) -> PairedFeatures:
        n = len(item_ids)
        masks = masks or {m: np.ones(n, dtype=bool) for m in features}
        feats = {}
        for m, f in features.items():
            f = np.asarray(f, dtype=np.float32).copy()
            if f.shape[0] != n:
                raise ValueError(f"{m.value} features have {f.shape[0]} rows for {n} items")
            f[~masks[m]] = 0.0
            finite = np.isfinite(f).all(axis=1)
            if not finite.all():
                bad = [item_ids[i] for i in np.flatnonzero(~finite)]
                raise DataError(
                    f"{m.value} features of {len(bad)} item(s) are NaN or infinite, e.g. {bad[:5]}; "
                    f"they cannot be trained or evaluated on"
                )
            feats[m] = f
        return cls(list(item_ids), feats, {m: np.asarray(k, dtype=bool) for m, k in masks.items()})


def split_items(
    item_ids: list[str], test_fraction: float, val_fraction: float, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """Deterministic train/val/test split of item ids (sorted first, so catalog order does not matter)."""
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise ConfigError(
            f"test_fraction must be in (0, 1) and val_fraction in [0, 1); got {test_fraction}, {val_fraction}"
        )
    ids = sorted(item_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = max(1, int(round(test_fraction * len(ids))))
    test = [ids[i] for i in order[:n_test]]
    rest = [ids[i] for i in order[n_test:]]
    n_val = int(round(val_fraction * len(rest)))
    return rest[n_val:], rest[:n_val], test


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
