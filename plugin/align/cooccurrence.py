"""The co-occurrence signal for training: users' histories as rows of the training features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmalign.schemas import Interaction, UserVectorConfig


def user_histories(interactions: Sequence[Interaction], item_ids: Sequence[str], cfg: UserVectorConfig):
    """Per user, the positive item rows in time order (users with at least two)."""
    position = {item: n for n, item in enumerate(item_ids)}
    by_user: dict[str, list] = {}
    for row in sorted(interactions, key=lambda r: (r.timestamp.timestamp() if r.timestamp else 0.0, r.item_id)):
        n = position.get(row.item_id)
        if n is not None and cfg.strength(row.weight) > 0:
            by_user.setdefault(row.user_id, []).append(n)
    return [np.array(rows) for rows in by_user.values() if len(rows) >= 2]
