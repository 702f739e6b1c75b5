"""User vectors and recommendation on the embedded store, with item vectors whose answer is known."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from mmalign.connectors.store import PointData, StoreError, VectorStore
from mmalign.plugin.index.versions import resolve_for_write
from mmalign.plugin.recommend.recommender import Recommender
from mmalign.plugin.recommend.user_vectors import build_profiles, update_profile
from mmalign.schemas import Interaction, StoreConfig, UserVectorConfig

DIM = 8
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def cluster_vectors(seed=0):
    """Items a0..a9 near axis 0, b0..b9 near axis 1, c0..c9 near axis 2."""
    rng = np.random.default_rng(seed)
    vectors = {}
    for axis, name in enumerate("abc"):
        for i in range(10):
            v = 0.15 * rng.normal(size=DIM)
            v[axis] += 1.0
            vectors[f"{name}{i}"] = v / np.linalg.norm(v)
    return vectors


@pytest.fixture
def store(store_config):  # on each embedded engine (tests/conftest.py)
    with VectorStore(store_config) as vs:
        record = resolve_for_write(vs, "items", DIM, "bundle-x")
        vs.upsert(
            record.name,
            [PointData(i, {"fused": v}, {"metadata": {"cluster": i[0]}}) for i, v in cluster_vectors().items()],
        )
        yield vs


def ev(user, item, days=0, weight=1.0):
    return Interaction(user_id=user, item_id=item, weight=weight, timestamp=T0 + timedelta(days=days))


def test_known_answer_cluster_users_get_their_cluster(store):
    rec = Recommender("items", store=store)
    rec.rebuild_users([ev("ua", f"a{i}", i) for i in range(4)] + [ev("ub", f"b{i}", i) for i in range(3)])
    assert all(h.id.startswith("a") for h in rec.recommend("ua", k=6))
    assert all(h.id.startswith("b") for h in rec.recommend("ub", k=7))


def test_seen_items_are_excluded_unless_asked(store):
    rec = Recommender("items", store=store)
    rec.rebuild_users([ev("ua", f"a{i}", i) for i in range(4)])
    ids = [h.id for h in rec.recommend("ua", k=10)]
    assert not {"a0", "a1", "a2", "a3"} & set(ids)
    assert {"a0", "a1", "a2", "a3"} <= {h.id for h in rec.recommend("ua", k=10, exclude_seen=False)}


def test_negative_feedback_pushes_away(store):
    cfg = UserVectorConfig(negative_below=3)
    history = [ev("u", "a0", 0, 5), ev("u", "b0", 1, 5)]
    plain = Recommender("items", store=store, cfg=cfg)
    plain.rebuild_users(history)
    before = [h.id[0] for h in plain.recommend("u", k=10)]
    plain.rebuild_users(history + [ev("u", "b1", 2, 1), ev("u", "b2", 3, 1)])  # disliked two b items
    after = [h.id[0] for h in plain.recommend("u", k=10)]
    assert after.count("a") > before.count("a") and after[:5] == ["a"] * 5


def test_incremental_update_equals_recomputation(store):
    cfg = UserVectorConfig(half_life_days=7, negative_below=3)
    first = [ev("u", "a0", 0, 5), ev("u", "b3", 2, 2), ev("u", "a1", 5, 4)]
    second = [ev("u", "c0", 9, 5), ev("u", "a2", 20, 1)]
    rec = Recommender("items", store=store, cfg=cfg)
    rec.update_user("u", first)
    incremental = rec.update_user("u", second)
    direct = build_profiles(first + second, cluster_vectors(), cfg, DIM)["u"]
    np.testing.assert_allclose(incremental.sum_vector, direct.sum_vector, rtol=1e-5, atol=1e-6)
    assert incremental.seen == direct.seen and incremental.n_negative == direct.n_negative == 2
    stored = rec.get_profile("u")
    np.testing.assert_allclose(stored.sum_vector, direct.sum_vector, rtol=1e-4, atol=1e-5)


def test_time_decay_favours_recent_interactions():
    cfg = UserVectorConfig(half_life_days=1)
    vectors = cluster_vectors()
    profile = update_profile(None, "u", [ev("u", "a0", 0), ev("u", "b0", 10)], vectors, cfg, DIM)
    assert profile.vector @ vectors["b1"] > profile.vector @ vectors["a1"]


def test_cold_start_popularity_then_query(store):
    rec = Recommender("items", store=store)
    with pytest.raises(StoreError, match="no history"):
        rec.recommend("nobody")
    rec.rebuild_users([ev("u1", "c5"), ev("u2", "c5"), ev("u3", "c5"), ev("u1", "b2"), ev("u2", "b2")])
    hits = rec.recommend("nobody", k=2)
    assert [h.id for h in hits] == ["c5", "b2"]
    assert [h.id for h in rec.recommend("nobody", k=1, filters={"cluster": "b"})] == ["b2"]


def test_unknown_item_ids_are_counted(store):
    rec = Recommender("items", store=store)
    counts = rec.rebuild_users([ev("u", "a0"), ev("u", "zzz"), ev("u", "yyy"), ev("v", "zzz")])
    assert counts.unknown_item_rows == 3 and counts.unknown_item_ids == 2
    assert rec.get_profile("u").unknown == 2


def test_recommend_query_strategies_and_more_like(store):
    rec = Recommender("items", store=store)
    rec.rebuild_users([ev("u", "c0"), ev("u", "c1")])
    for strategy in ("best_score", "average_vector"):
        hits = rec.recommend("u", k=5, strategy=strategy)
        assert all(h.id.startswith("c") and h.id not in ("c0", "c1") for h in hits)
    assert all(h.id.startswith("a") for h in rec.more_like(["a0", "a1"], k=5))
    with pytest.raises(ValueError, match="strategy 'x' is unknown"):
        rec.recommend("u", strategy="x")


def test_leave_last_out_split_and_metrics():
    from mmalign.plugin.recommend.splits import ranking_metrics, split_interactions

    rows = [ev("u", "a0", 0), ev("u", "a1", 1), ev("u", "a2", 2), ev("v", "b0", 0)]
    split = split_interactions(rows)
    assert split.test == {"u": "a2"} and len(split.train) == 3
    m = ranking_metrics(np.array([0.9, 0.8, 0.1, 0.5]), target=3, exclude=np.array([0]))
    assert m["recall@10"] == 1.0 and m["ndcg@10"] == pytest.approx(1 / np.log2(3))
    with pytest.raises(ValueError, match="valid"):
        split_interactions(rows, "random")


def test_baselines_on_a_checkerboard():
    """Two user groups with disjoint tastes: item-kNN and PureSVD must recover the group's items."""
    from mmalign.plugin.recommend.evaluation import baseline_results
    from mmalign.plugin.recommend.splits import split_interactions

    rows = []
    for u in range(20):
        group = "a" if u % 2 == 0 else "b"
        for day, i in enumerate(np.random.default_rng(u).permutation(10)[:6]):
            rows.append(ev(f"u{u}", f"{group}{i}", day))
    split = split_interactions(rows)
    items = [f"{g}{i}" for g in "ab" for i in range(10)]
    _, results = baseline_results(split, items, UserVectorConfig(), svd_rank=2)
    scores = {r["model"]: r["recall@10"] for r in results}
    assert scores["item-knn"] == 1.0 and scores["pure-svd (rank 2)"] == 1.0


def _cli_collection(tmp_path, extra_rows):
    """An ``items`` collection of the cluster vectors in an embedded store, and an interactions file:
    users ua and ub like a0..a3 and b0..b3, then ``extra_rows`` (lines 10, 11, ...)."""
    qdrant = str(tmp_path / "q")
    with VectorStore(StoreConfig(path=qdrant)) as vs:
        record = resolve_for_write(vs, "items", DIM, "bundle-x")
        vs.upsert(record.name, [PointData(i, {"fused": v}) for i, v in cluster_vectors().items()])
    inter = tmp_path / "inter.csv"
    lines = (
        ["user_id,item_id,weight,timestamp"]
        + [f"ua,a{i},5,{1700000000 + i}" for i in range(4)]
        + [f"ub,b{i},5,{1700000000 + i}" for i in range(4)]
        + list(extra_rows)
    )
    inter.write_text("\n".join(lines) + "\n")
    return qdrant, inter


def test_cli_recommend_and_eval_rec(tmp_path):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    qdrant, inter = _cli_collection(tmp_path, ["ua,ghost,5,1700000009"])
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "recommend",
            "--collection",
            "items",
            "--qdrant-path",
            qdrant,
            "--user",
            "ua",
            "--interactions",
            str(inter),
            "-k",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)  # the user-vector summary goes to stderr
    assert [h["id"][0] for h in hits] == ["a", "a", "a"]
    result = runner.invoke(
        main, ["eval-rec", "--collection", "items", "--qdrant-path", qdrant, "--interactions", str(inter), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unknown_item_rows"] == 1 and report["unknown_item_ids"] == 1
    assert {r["model"] for r in report["results"]} >= {
        "popularity",
        "item-knn",
        "pure-svd (rank 50)",
        "user vector (mmalign)",
    }


def test_bad_interaction_rows_go_to_a_dead_letter_file_and_are_counted(tmp_path, monkeypatch):
    """recommend and eval-rec: each invalid row is written with its file:line and reason, and counted."""
    from click.testing import CliRunner

    from mmalign.connectors.dead_letter import read_dead_letters
    from mmalign.plugin.cli import main

    # lines 10 and 11: no item id, a weight that is no number
    qdrant, inter = _cli_collection(tmp_path, ["ua,,5,1700000010", "ub,b1,lots,1700000011"])
    runner = CliRunner()
    letters = tmp_path / "bad.jsonl"
    base = ["--collection", "items", "--qdrant-path", qdrant, "--interactions", str(inter)]
    result = runner.invoke(main, ["recommend", *base, "--user", "ua", "--dead-letter", str(letters), "--json"])
    assert result.exit_code == 0, result.output
    assert f"2 invalid rows, written to {letters}" in result.stderr
    records = read_dead_letters(letters)
    assert [r.source for r in records] == ["inter.csv:10", "inter.csv:11"]
    assert all(r.stage == "parse" and r.reason for r in records)
    assert records[1].item_id == "b1" and "weight" in records[1].reason

    monkeypatch.chdir(tmp_path)  # the default file: mmalign-data/interactions_dead_letter.jsonl
    result = runner.invoke(main, ["eval-rec", *base, "--no-collab", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["invalid_rows"] == 2 and report["dead_letter"] == "mmalign-data/interactions_dead_letter.jsonl"
    assert len(read_dead_letters(tmp_path / report["dead_letter"])) == 2


def test_single_modality_bundles_with_and_without_interactions(tmp_path, tiny_preset):
    """Text-only catalog: without interactions a content-only PCA bundle; with them the co-occurrence
    space (teacher + distilled student), trained on the leave-last-out training part only."""
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.workflows.train import train_bundle
    from mmalign.schemas import TrainConfig

    words = ["red", "green", "blue", "big", "small", "frog", "cat", "dog", "car", "tree", "house", "coin"]
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(
        "".join(
            json.dumps({"id": f"m{i}", "text": f"a {words[i % 12]} {words[(i * 5) % 12]}"}) + "\n" for i in range(24)
        )
    )
    inter = tmp_path / "i.csv"
    rows = ["user_id,item_id,weight,timestamp"]
    for u in range(30):
        items = range(0, 12) if u % 2 == 0 else range(12, 24)
        rows += [
            f"u{u},m{i},1,{1700000000 + n}" for n, i in enumerate(np.random.default_rng(u).permutation(list(items))[:5])
        ]
    rows.append("u0,m1,1,not a time")  # an invalid row: dead-lettered and counted, not trained on
    inter.write_text("\n".join(rows) + "\n")
    cfg = TrainConfig(dim=8, rank=4, epochs=3, teacher_epochs=3, teacher_hidden=16, teacher_layers=1, batch_size=8)
    plain = train_bundle(
        catalog, tmp_path / "content", preset=tiny_preset, features_dir=tmp_path / "f", cfg=cfg, device="cpu"
    )
    assert plain.parameters.teacher == 0 and plain.training_summary["objective"] == "content-only PCA"
    summary = train_bundle(
        catalog,
        tmp_path / "cooc",
        preset=tiny_preset,
        features_dir=tmp_path / "f",
        cfg=cfg,
        interactions=inter,
        interactions_holdout="leave-last-out",
        device="cpu",
    )
    assert summary.training_summary["objective"].startswith("co-occurrence")
    assert summary.training_summary["interactions_invalid"] == 1
    letters = summary.training_summary["interactions_dead_letter"]
    assert letters == str(tmp_path / "f" / "interactions_dead_letter.jsonl")
    from mmalign.connectors.dead_letter import read_dead_letters

    [bad] = read_dead_letters(letters)
    assert bad.source == f"i.csv:{len(rows)}" and "timestamp" in bad.reason
    bundle = load_bundle(tmp_path / "cooc")
    assert bundle.teacher is not None and bundle.modalities == [__import__("schemas").Modality.TEXT]
    assert summary.parameters.student < summary.parameters.teacher


def test_recbole_inter_format_and_bad_rows(tmp_path):
    from mmalign.connectors.interactions import read_interactions

    path = tmp_path / "x.inter"
    path.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4\t881250949\n2\t\t3\t881250950\n3\t11\tnan\t881250951\n"
    )
    load = read_interactions(path)
    assert [(r.user_id, r.item_id, r.weight) for r in load.interactions] == [("1", "10", 4.0)]
    assert load.interactions[0].timestamp.year == 1997
    assert len(load.invalid) == 2 and all(src.startswith("x.inter:") for src, _ in load.invalid)


def test_movielens_catalog_from_recbole(tmp_path):
    import importlib.util

    if importlib.util.find_spec("recbole") is None:
        pytest.skip("MovieLens-100k comes from the recbole package: pip install --no-deps recbole")
    from mmalign.connectors.datasets.movielens import write_catalog
    from mmalign.connectors.sources import open_catalog

    inter, n = write_catalog(tmp_path / "ml.jsonl")
    items = open_catalog(tmp_path / "ml.jsonl").items()
    assert n == len(items) == 1682 and items[0].text.startswith("Toy Story (1995). Genres: Animation")
    assert inter.name == "ml-100k.inter"


def test_popularity_prior_reranks_and_popularity_persists(store):
    history = [ev("u", "a0", 0), ev("u", "a1", 1)] + [ev(f"p{i}", "a9", 0) for i in range(5)]
    rec = Recommender("items", store=store)
    rec.rebuild_users(history)
    plain = [h.id for h in rec.recommend("u", k=3)]
    boosted = Recommender("items", store=store, popularity_weight=1.0)  # popularity read back from the store
    assert boosted.popularity["a9"] == 5
    hits = boosted.recommend("u", k=3)
    assert hits[0].id == "a9" and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert "a9" in plain or hits[0].id != plain[0]
    assert [h.id for h in Recommender("items", store=store).recommend("nobody", k=1)] == ["a9"]  # cold start


def test_choose_popularity_weight_on_training_part():
    from mmalign.plugin.recommend.tuning import choose_popularity_weight

    vectors = cluster_vectors()
    items = sorted(vectors)
    # Users who watched two b items next watch c0, which many one-off users watched: only popularity finds it.
    rows = [
        e
        for u in range(12)
        for e in (ev(f"u{u}", f"b{u % 5}", 0), ev(f"u{u}", f"b{(u + 1) % 5}", 1), ev(f"u{u}", "c0", 2))
    ]
    rows += [ev(f"v{v}", "c0", 0) for v in range(6)]
    weight, scores = choose_popularity_weight(rows, items, np.stack([vectors[i] for i in items]), UserVectorConfig())
    assert weight > 0 and scores[weight] > scores[0.0] + 0.3


def test_explicit_negative_weights_and_dislike_only_users(store):
    from mmalign.plugin.recommend.user_vectors import strength

    assert strength(-1.0, UserVectorConfig()) == -1.0 and strength(2.0, UserVectorConfig()) == 1.0
    rec = Recommender("items", store=store)
    rec.rebuild_users([ev("fan", "c5"), ev("fan2", "c5"), ev("hater", "a0", 0, -1.0)])
    hits = rec.recommend("hater", k=3)  # only dislikes: cold start (popularity), the disliked item excluded
    assert hits[0].id == "c5" and "a0" not in {h.id for h in hits}
