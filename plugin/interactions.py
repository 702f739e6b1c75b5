"""Item-item co-occurrence from interactions (items consumed by the same users)."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from connectors.interactions import read_interactions

log = logging.getLogger(__name__)


def cooccurrence_matrix(path: str | Path, item_ids: list[str]) -> np.ndarray:
    """(N, N) counts of users shared by two items (positive interactions only), in ``item_ids`` order."""
    load = read_interactions(path)
    position = {item: n for n, item in enumerate(item_ids)}
    by_user: dict[str, set[int]] = defaultdict(set)
    unknown = 0
    for row in load.interactions:
        if row.weight <= 0:
            continue
        n = position.get(row.item_id)
        if n is None:
            unknown += 1
            continue
        by_user[row.user_id].add(n)
    if unknown or load.invalid:
        log.warning("interactions: %d rows name items outside the training set, %d invalid rows", unknown,
                    len(load.invalid))
    counts = np.zeros((len(item_ids), len(item_ids)), dtype=np.float32)
    for items in by_user.values():
        idx = np.fromiter(items, dtype=np.int64)
        counts[np.ix_(idx, idx)] += 1
    np.fill_diagonal(counts, 0)
    return counts
