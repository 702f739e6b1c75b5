"""Fusion of a :class:`~.query.Fused` query's branches, here rather than in the engine.

Why not let Qdrant fuse: an engine returns points of equal score in an order of its own, and RRF turns that
order into different fused scores. Equal scores are common in the ``lexical`` branch (short texts that share
the matched words get the same BM25 score), and Qdrant Edge orders them differently from one run to the next:
the same hybrid query on the same data gave different answers, and each engine gave its own. Here points of
equal score share a rank (the average of their positions), the fused order breaks equal fused scores by
point id, and a branch's candidates are taken a little past its limit so that a group of equal scores is
never cut in the middle. Every engine, every run: the same answer. The formulas are Qdrant's (qdrant-client's
local mode implements the same): weighted RRF ``1 / ((rank + 1) / weight + k - 1)`` with k = 2, and DBSF
(each branch's scores mapped from mean ± 3 standard deviations to 0..1, summed).
"""

from __future__ import annotations

from collections.abc import Sequence

from mmalign.connectors.query import Point

RRF_K = 2
#: Points asked for past a limit, to see whether a group of equal scores goes on past the cut (one is enough:
#: when it ties, more are asked for; asking more every time would deepen every search).
TIE_MARGIN = 1
#: Relative difference under which two scores are equal (engines return float32 scores).
TIE_TOLERANCE = 1e-6


def same_score(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_TOLERANCE * max(abs(a), abs(b), 1e-12)


def best_first(points: Sequence[Point]) -> list[Point]:
    """``points`` by score, best first; equal scores by point id (the engine's own order is not stable)."""
    return sorted(points, key=lambda p: (-(p.score or 0.0), p.id))


def shared_ranks(points: Sequence[Point]) -> list[float]:
    """0-based ranks of ``points`` (best first) where a group of equal scores shares the average of its
    positions (fractional ranking: a tie neither promotes nor demotes its group as a whole). Chosen on the
    validation queries of benchmarks/search_modes over the group's best position, which gave a tie of many
    weak BM25 matches the top rank (tuxpaint 0.946 vs 0.943, Papirus 0.804 vs 0.793, mean of exact and
    partial name recall@1 and paraphrase recall@10; 5 seeds each)."""
    ranks: list[float] = []
    start = 0
    for i in range(1, len(points) + 1):
        if i == len(points) or not same_score(points[i].score or 0.0, points[i - 1].score or 0.0):
            ranks += [(start + i - 1) / 2] * (i - start)
            start = i
    return ranks


def cut(points: Sequence[Point], limit: int) -> list[Point]:
    """The first ``limit`` of ``points`` (best first), and the rest of the group of equal scores at the cut."""
    points = list(points)
    end = min(limit, len(points))
    while 0 < end < len(points) and same_score(points[end].score or 0.0, points[end - 1].score or 0.0):
        end += 1
    return points[:end]


def rrf(branches: Sequence[Sequence[Point]], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Reciprocal rank fusion: each point's summed ``1 / ((rank + 1) / weight + k - 1)`` over the branches."""
    scores: dict[str, float] = {}
    for b, points in enumerate(branches):
        weight = weights[b] if weights is not None else 1.0
        for point, rank in zip(points, shared_ranks(points)):
            scores[point.id] = scores.get(point.id, 0.0) + 1.0 / ((rank + 1.0) / weight + RRF_K - 1.0)
    return scores


def dbsf(branches: Sequence[Sequence[Point]]) -> dict[str, float]:
    """Distribution-based score fusion: each branch's scores mapped from mean ± 3 std to 0..1, summed (one
    point, or all scores equal: 0.5 each)."""
    scores: dict[str, float] = {}
    for points in branches:
        values = [p.score or 0.0 for p in points]
        n = len(values)
        mean = sum(values) / n if n else 0.0
        variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        std = variance**0.5
        for point, value in zip(points, values):
            normal = 0.5 if std == 0.0 else (value - (mean - 3 * std)) / (6 * std)
            scores[point.id] = scores.get(point.id, 0.0) + normal
    return scores


def fuse(
    branches: Sequence[Sequence[Point]], fusion: str, weights: Sequence[float] | None, limit: int
) -> list[tuple[str, float]]:
    """The first ``limit`` (point id, fused score) of the branches' candidates (each best first)."""
    scores = rrf(branches, weights) if fusion == "rrf" else dbsf(branches)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
