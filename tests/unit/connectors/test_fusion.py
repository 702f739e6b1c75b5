"""Fusion of hybrid branches in mmalign (connectors/fusion.py): equal scores share a rank, and the answer does
not depend on the order in which an engine returns equal scores, nor on the order the points were written."""

import random

import numpy as np
import pytest

from mmalign.connectors.fusion import cut, dbsf, fuse, rrf, shared_ranks
from mmalign.connectors.query import Fused, Nearest, Point, Prefetch
from mmalign.connectors.store import PointData, VectorStore
from mmalign.plugin.index.lexical import document_vector, query_vector
from mmalign.schemas import StoreConfig


def _points(*scores):
    return [Point(f"p{i}", score=s) for i, s in enumerate(scores)]


def test_equal_scores_share_the_average_rank_of_their_group():
    assert shared_ranks(_points(3.0, 2.0, 2.0, 2.0, 1.0)) == [0, 2, 2, 2, 4]
    assert shared_ranks(_points(1.0, 1.0)) == [0.5, 0.5]
    assert shared_ranks(_points(5.0)) == [0] and shared_ranks([]) == []


def test_a_cut_keeps_the_whole_group_of_equal_scores():
    points = _points(3.0, 2.0, 2.0, 2.0, 1.0)
    assert [p.id for p in cut(points, 2)] == ["p0", "p1", "p2", "p3"]
    assert [p.id for p in cut(points, 4)] == ["p0", "p1", "p2", "p3"]
    assert [p.id for p in cut(points, 5)] == [p.id for p in points]


def test_rrf_and_dbsf_give_qdrants_scores_on_distinct_scores():
    from qdrant_client.http import models
    from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion

    rng = np.random.default_rng(3)
    branches = [[Point(f"p{j}", score=float(s)) for j, s in zip(rng.permutation(12)[:8], sorted(rng.random(8))[::-1])]]
    branches.append(
        [Point(f"p{j}", score=float(s)) for j, s in zip(rng.permutation(12)[:6], sorted(rng.random(6))[::-1])]
    )

    def scored(branch):
        return [models.ScoredPoint(id=p.id, version=0, score=p.score) for p in branch]

    want = {p.id: p.score for p in reciprocal_rank_fusion([scored(b) for b in branches], limit=20, weights=[1.0, 3.0])}
    assert rrf(branches, (1.0, 3.0)) == pytest.approx(want)
    want = {p.id: p.score for p in distribution_based_score_fusion([scored(b) for b in branches], limit=20)}
    assert dbsf(branches) == pytest.approx(want)


def test_the_fused_order_does_not_depend_on_the_order_of_equal_scores():
    lexical = _points(2.0, 1.0, 1.0, 1.0, 0.5)
    dense = [Point("p3", score=0.9), Point("p4", score=0.8), Point("p0", score=0.1)]
    answers = set()
    for seed in range(6):
        shuffled = lexical[:1] + random.Random(seed).sample(lexical[1:4], 3) + lexical[4:]
        answers.add(tuple(fuse([dense, shuffled], "rrf", None, 5)))
    assert len(answers) == 1
    [answer] = answers
    # p0: lexical rank 0, dense rank 2; p3: dense rank 0, lexical rank 2 (its group's average): equal, by id
    assert answer[:2] == (("p0", pytest.approx(1 / 2 + 1 / 4)), ("p3", pytest.approx(1 / 2 + 1 / 4)))


TEXTS = ["a red frog", "a red car", "a red hat", "a red bus", "a green frog", "a blue car", "red", "a frog"]


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_hybrid_answers_do_not_depend_on_the_order_points_were_written(engine):
    rng = np.random.default_rng(0)
    points = [
        PointData(f"item{i}", {"fused": rng.normal(size=8), "lexical": document_vector(t)}, {"text": t})
        for i, t in enumerate(TEXTS)
    ]
    dense = rng.normal(size=8).tolist()
    branches = (Prefetch(Nearest(dense, "fused"), limit=3), Prefetch(Nearest(query_vector("red"), "lexical"), limit=3))
    answers = set()
    for seed in range(4):
        with VectorStore(StoreConfig(path=":memory:", engine=engine)) as vs:
            vs.create_collection("c", 8, bundle_id="b")
            vs.upsert("c", random.Random(seed).sample(points, len(points)))
            hits = vs.query("c", Fused(branches, "rrf"), limit=5)
            lexical = vs.query("c", Nearest(query_vector("red"), "lexical"), limit=2)
        answers.add((tuple((h.item_id, round(h.score, 6)) for h in hits), tuple(h.item_id for h in lexical)))
    assert len(answers) == 1, answers
