"""User vectors in the shared space, built and updated incrementally from interactions.

A profile keeps the unnormalised sum S = Σ_j s_j · 2^(−(t_ref − t_j)/h) · v_j at a reference time
t_ref. Moving to a later t' multiplies S by 2^(−(t' − t_ref)/h), so adding new timestamped
interactions to a stored profile gives exactly what recomputing from the whole history gives.
An interaction without a timestamp counts as happening at the reference time of the update that
adds it (so with decay, incremental and batch results differ for undated rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from mmalign.schemas import Interaction, UserVectorConfig

SECONDS_PER_DAY = 86400.0


@dataclass
class UserProfile:
    user_id: str
    sum_vector: np.ndarray
    ref_time: float
    seen: list[str] = field(default_factory=list)
    n_positive: int = 0
    n_negative: int = 0
    unknown: int = 0
    negatives: list[str] = field(default_factory=list)
    #: Collaborative factors (see collab.py), when the collection has a collab vector; else None.
    collab: np.ndarray | None = None

    @property
    def positives(self) -> list[str]:
        """Seen items that are not disliked, in the order seen."""
        negatives = set(self.negatives)
        return [i for i in self.seen if i not in negatives]

    @property
    def vector(self) -> np.ndarray | None:
        norm = float(np.linalg.norm(self.sum_vector))
        return self.sum_vector / norm if norm > 1e-12 else None


def strength(weight: float, cfg: UserVectorConfig) -> float:
    """s_j of one interaction (see :meth:`UserVectorConfig.strength`)."""
    return cfg.strength(weight)


def _decay(dt_seconds: float, cfg: UserVectorConfig) -> float:
    if cfg.half_life_days is None:
        return 1.0
    return float(2.0 ** (-dt_seconds / (cfg.half_life_days * SECONDS_PER_DAY)))


def _time(row: Interaction) -> float | None:
    return row.timestamp.timestamp() if row.timestamp is not None else None


def update_profile(
    profile: UserProfile | None,
    user_id: str,
    interactions: Iterable[Interaction],
    item_vectors: Mapping[str, np.ndarray],
    cfg: UserVectorConfig,
    dim: int,
    now: float | None = None,
) -> UserProfile:
    """Add ``interactions`` to ``profile`` (None: start empty). Unknown item ids are counted, not used.

    The reference time becomes ``now``, else the latest interaction time, else the old reference.
    """
    rows = list(interactions)
    times = [t for t in (_time(r) for r in rows) if t is not None]
    old_ref = profile.ref_time if profile is not None else None
    ref = now if now is not None else max([*times, *([old_ref] if old_ref is not None else [])], default=0.0)
    if profile is None:
        profile = UserProfile(user_id, np.zeros(dim, dtype=np.float64), ref)
    else:
        profile.sum_vector = profile.sum_vector * _decay(ref - profile.ref_time, cfg)
        profile.ref_time = ref
    for row in rows:
        vector = item_vectors.get(row.item_id)
        if vector is None:
            profile.unknown += 1
            continue
        s = strength(row.weight, cfg)
        t = _time(row)
        profile.sum_vector = profile.sum_vector + s * _decay(ref - (t if t is not None else ref), cfg) * vector
        if s >= 0:
            profile.n_positive += 1
        else:
            profile.n_negative += 1
            if row.item_id not in profile.negatives:
                profile.negatives.append(row.item_id)
        if row.item_id not in profile.seen:
            profile.seen.append(row.item_id)
    return profile


def build_profiles(
    interactions: Iterable[Interaction],
    item_vectors: Mapping[str, np.ndarray],
    cfg: UserVectorConfig,
    dim: int,
    now: float | None = None,
) -> dict[str, UserProfile]:
    by_user: dict[str, list[Interaction]] = {}
    for row in interactions:
        by_user.setdefault(row.user_id, []).append(row)
    return {user: update_profile(None, user, rows, item_vectors, cfg, dim, now) for user, rows in by_user.items()}
