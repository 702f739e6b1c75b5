"""Collaborative factors, fold-in, the content → collab map and the cold-item protocol, on a tiny
synthetic catalog whose answer is known (numpy/scipy only: no ``implicit``, no store)."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from mmalign.plugin.recommend.collab import ContentMap, fit_collab, hybrid_scores, item_collab_vectors
from mmalign.plugin.recommend.scorers import collab_scorer, hybrid_scorer, popularity_scorer
from mmalign.plugin.recommend.splits import (
    Matrix,
    cold_item_split,
    cold_matrix,
    evaluate_cold,
    evaluate_scorer,
    split_interactions,
)
from mmalign.schemas import Interaction, UserVectorConfig
from mmalign.schemas.recommend import CollabConfig

DIM = 8
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
CLUSTERS = "abc"


def ev(user, item, days=0.0, weight=1.0):
    return Interaction(user_id=user, item_id=item, weight=weight, timestamp=T0 + timedelta(days=days))


def catalog(seed=0, per_cluster=10, extra_cold=True):
    """Items a0..a9 / b0..b9 / c0..c9 with content near axis 0 / 1 / 2; with ``extra_cold``, one
    more item per cluster (a_new, ...) whose content is in its cluster but that nobody interacted with."""
    rng = np.random.default_rng(seed)
    ids, vectors = [], []
    for axis, name in enumerate(CLUSTERS):
        for i in [*range(per_cluster), *(["new"] if extra_cold else [])]:
            v = 0.15 * rng.normal(size=DIM)
            v[axis] += 1.0
            ids.append(f"{name}{i}" if i != "new" else f"{name}_new")
            vectors.append(v / np.linalg.norm(v))
    return ids, np.asarray(vectors)


def interactions(seed=0, users_per_cluster=12, likes=7, per_cluster=10):
    """Each user likes ``likes`` random items of one cluster, one a day."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in CLUSTERS:
        for u in range(users_per_cluster):
            for day, i in enumerate(rng.choice(per_cluster, likes, replace=False)):
                rows.append(ev(f"u{c}{u}", f"{c}{i}", day))
    return rows


@pytest.mark.parametrize("method", ["als", "svd"])
def test_collab_factors_recommend_the_users_cluster(method):
    ids, _ = catalog(extra_cold=False)
    rows = interactions()
    cfg = CollabConfig(method=method, rank=4, reg=1.0, alpha=10.0)
    f = fit_collab(rows, ids, cfg)
    assert f.item_factors.shape == (30, 4) and f.user_factors.shape == (36, 4)
    for user in ("ua0", "ub3", "uc7"):
        seen = {r.item_id for r in rows if r.user_id == user}
        scores = f.item_factors @ f.user_vector(user)
        ranked = [ids[i] for i in np.argsort(-scores) if ids[i] not in seen]
        assert all(i[0] == user[1] for i in ranked[:3]), (user, ranked[:5])


@pytest.mark.parametrize("method", ["als", "svd"])
def test_fold_in_is_the_stored_user_factor_and_matches_a_refit(method):
    ids, _ = catalog(extra_cold=False)
    rows = interactions()
    cfg = CollabConfig(method=method, rank=4, reg=1.0, alpha=10.0)
    f = fit_collab(rows, ids, cfg)
    for user in ("ua0", "ub5"):
        items = [r.item_id for r in rows if r.user_id == user]
        np.testing.assert_allclose(f.fold_in(items), f.user_vector(user), rtol=1e-8, atol=1e-10)
    # a new interaction: fold-in against the old item factors vs a full refit with the interaction
    user = "ua0"
    seen = {r.item_id for r in rows if r.user_id == user}
    new = next(f"a{i}" for i in range(10) if f"a{i}" not in seen)
    folded = f.fold_in([*seen, new])
    refit = fit_collab([*rows, ev(user, new, 30)], ids, cfg)
    unseen = [n for n, i in enumerate(ids) if i not in seen | {new}]

    def top(item_factors, u, k=2):  # the two cluster items the user has not seen yet
        s = item_factors[unseen] @ u
        return {ids[unseen[n]] for n in np.argsort(-s)[:k]}

    assert top(f.item_factors, folded) == top(refit.item_factors, refit.user_vector(user))


def test_cold_item_gets_a_predicted_vector_and_reaches_the_users_whose_history_matches():
    ids, content = catalog()
    rows = interactions()
    f = fit_collab(rows, ids, CollabConfig(method="als", rank=4, reg=1.0, alpha=10.0))
    warm = np.asarray([not i.endswith("_new") for i in ids])
    assert np.allclose(f.item_factors[~warm], 0)  # no history: ALS has nothing to learn from
    cmap = ContentMap(0.1).fit(content[warm], f.item_factors[warm])
    items = item_collab_vectors(f, content, warm, cmap)
    np.testing.assert_array_equal(items[warm], f.item_factors[warm])  # learned vectors are kept
    for c in CLUSTERS:
        predicted = items[ids.index(f"{c}_new")]
        cluster = f.item_factors[[n for n, i in enumerate(ids) if i[0] == c and warm[n]]].mean(0)
        others = [f.item_factors[[n for n, i in enumerate(ids) if i[0] == o and warm[n]]].mean(0) for o in CLUSTERS]
        sims = [float(predicted @ o / np.linalg.norm(predicted) / np.linalg.norm(o)) for o in others]
        assert int(np.argmax(sims)) == CLUSTERS.index(c), sims
        assert np.dot(predicted, cluster) > 0
    for user in ("ua1", "ub2", "uc3"):
        seen = {r.item_id for r in rows if r.user_id == user}
        scores = hybrid_scores(f.user_vector(user), items, None, content, 0.0)
        ranked = [ids[n] for n in np.argsort(-scores) if ids[n] not in seen]
        assert f"{user[1]}_new" in ranked[:5], ranked[:5]  # 3 unseen warm items of the cluster + the new one
        assert not any(i.endswith("_new") and i[0] != user[1] for i in ranked[:5])


def test_hybrid_scores_fall_back_to_the_term_that_exists():
    rng = np.random.default_rng(0)
    collab, content = rng.normal(size=(5, 3)), rng.normal(size=(5, 4))
    u_collab, u_content = rng.normal(size=3), rng.normal(size=4)
    only_collab = hybrid_scores(u_collab, collab, None, content, 0.5)
    np.testing.assert_allclose(only_collab, collab @ u_collab / np.linalg.norm(u_collab))
    only_content = hybrid_scores(None, collab, u_content, content, 0.5)
    np.testing.assert_allclose(only_content, 0.5 * content @ u_content / np.linalg.norm(u_content))
    np.testing.assert_allclose(hybrid_scores(u_collab, collab, u_content, content, 0.5), only_collab + only_content)
    assert not hybrid_scores(None, collab, None, content, 0.5).any()


def test_cold_item_split_removes_every_interaction_of_the_cold_items():
    ids, _ = catalog(extra_cold=False)
    rows = interactions()
    # c-items first appear late: shift every c interaction after all the others
    rows = [ev(r.user_id, r.item_id, 100 + i) if r.item_id[0] == "c" else r for i, r in enumerate(rows)]
    # a user of cluster a also likes two c items (later): a target; the c users have no other history
    rows += [ev("ua0", "c0", 500), ev("ua0", "c1", 501)]
    split = cold_item_split(rows, cold_fraction=1 / 3)
    assert set(split.cold_items) == {f"c{i}" for i in range(10)}
    assert not any(r.item_id[0] == "c" for r in split.train)
    assert split.targets == {"ua0": ["c0", "c1"]}
    assert split.users_without_history == 12


def test_cold_evaluation_breaks_ties_at_random_and_content_ranks_cold_items():
    ids, content = catalog(extra_cold=False)
    rows = interactions(users_per_cluster=20)
    rows = [ev(r.user_id, r.item_id, 100 + i) if r.item_id in {"a9", "b9", "c9"} else r for i, r in enumerate(rows)]
    split = cold_item_split(rows, cold_fraction=0.1)
    assert set(split.cold_items) == {"a9", "b9", "c9"}
    m = cold_matrix(split, ids, UserVectorConfig())
    popularity = evaluate_cold("popularity", popularity_scorer(m), m, split, k=1)
    # popularity gives every cold item 0: by chance 1 in 3 within the cold items, not every time
    assert 0.15 < popularity["cold_recall@1"] < 0.5
    f = fit_collab(split.train, ids, CollabConfig(method="als", rank=4, reg=1.0, alpha=10.0))
    warm = np.asarray(m.matrix.sum(0) > 0)
    items = item_collab_vectors(f, content, warm, ContentMap(0.1).fit(content[warm], f.item_factors[warm]))
    mapped = evaluate_cold("content → collab", collab_scorer(f, items), m, split, k=1)
    assert mapped["cold_recall@1"] == 1.0
    scorer = hybrid_scorer(f, items, split.train, ids, content, UserVectorConfig(), 0.5)
    hybrid = evaluate_cold("hybrid", scorer, m, split)
    assert hybrid["cold_ndcg@20"] == 1.0 and hybrid["n_users"] == len(split.targets)


def test_collab_on_the_warm_protocol_beats_popularity_on_the_known_answer_catalog():
    ids, _ = catalog(extra_cold=False)
    rows = interactions(users_per_cluster=20)
    split = split_interactions(rows, "leave-last-out")
    m = Matrix(split, ids, UserVectorConfig())
    f = fit_collab(split.train, ids, CollabConfig(method="als", rank=4, reg=1.0, alpha=10.0))
    assert evaluate_scorer("collab", collab_scorer(f), m, split)["ndcg@10"] > (
        evaluate_scorer("popularity", popularity_scorer(m), m, split)["ndcg@10"] + 0.1
    )


def test_eval_rec_reports_collab_hybrid_and_the_cold_protocol(tmp_path, monkeypatch):
    import mmalign.plugin.recommend.tuning as tuning
    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.index.versions import resolve_for_write
    from mmalign.plugin.recommend.evaluation import evaluate_collection
    from mmalign.schemas import StoreConfig

    ids, content = catalog(extra_cold=False)
    rows = interactions(users_per_cluster=20)
    late = {"a9", "b9", "c9"}
    rows = [ev(r.user_id, r.item_id, 100 + i) if r.item_id in late else r for i, r in enumerate(rows)]
    inter = tmp_path / "inter.csv"
    inter.write_text(
        "user_id,item_id,weight,timestamp\n"
        + "".join(f"{r.user_id},{r.item_id},1,{int(r.timestamp.timestamp())}\n" for r in rows)
    )
    with VectorStore(StoreConfig(path=str(tmp_path / "q"))) as vs:
        record = resolve_for_write(vs, "items", DIM, "bundle-x")
        vs.upsert(record.name, [PointData(i, {"fused": v}) for i, v in zip(ids, content)])
        monkeypatch.setattr(tuning, "has_implicit", lambda: False)  # as in CI: no implicit installed
        report = evaluate_collection("items", inter, store=vs, cold_fraction=0.1)
    assert report.collab is not None and report.collab["method"] in ("als", "svd")
    names = [r.model for r in report.results]
    assert any(n.startswith("collab (") for n in names) and any(n.startswith("hybrid (") for n in names)
    cold = {r.model.split(" (")[0]: r for r in report.cold_results}
    assert "3 items" in report.cold_split
    # popularity cannot rank items nobody has rated (chance among 3); content → collab can
    assert cold["hybrid"].cold_recall_at_20 == 1.0  # 3 cold items: everything is in the top 20
    mapped = next(r for r in report.cold_results if "content → collab" in r.model and r.model.startswith("collab"))
    assert mapped.cold_ndcg_at_20 > cold["popularity"].cold_ndcg_at_20 + 0.2


# -- the collab vector in the store and the hybrid strategy (each embedded engine) ---------------------
COLLAB_CFG = CollabConfig(method="als", rank=4, reg=1.0, alpha=10.0, map_reg=0.1, content_weight=0.1)


def _items_store(vs, collab=True):
    from mmalign.connectors.store import PointData

    ids, content = catalog()
    vs.create_collection("items", DIM, bundle_id="bundle-x", extra_vectors=("collab",) if collab else ())
    vs.upsert("items", [PointData(i, {"fused": v}, {"metadata": {"cluster": i[0]}}) for i, v in zip(ids, content)])
    return ids


@pytest.fixture
def collab_store(store_config):
    from mmalign.connectors.store import VectorStore

    with VectorStore(store_config) as vs:
        _items_store(vs)
        yield vs


def test_rebuild_writes_collab_vectors_and_a_cold_item_reaches_the_users_it_matches(collab_store):
    from mmalign.plugin.recommend.recommender import Recommender

    rows = interactions()
    rec = Recommender("items", store=collab_store)
    rec.rebuild_users(rows, collab=COLLAB_CFG)
    assert rec.collab_state["predicted_items"] == 3 and rec.collab_state["warm_items"] == 30
    points = collab_store.retrieve("items", ["a0", "a_new"], with_vectors=True)
    assert all("collab" in p.vector and "fused" in p.vector and np.any(p.vector["collab"]) for p in points)
    assert all(p.payload["metadata"]["cluster"] == "a" for p in points)  # payload kept
    assert sorted(collab_store.vector_sizes("items_users")) == ["audio", "collab", "fused", "image", "text"]
    for user in ("ua1", "ub2", "uc3"):
        seen = {r.item_id for r in rows if r.user_id == user}
        hits = rec.recommend(user, k=4)  # hybrid by default: the collection has collab vectors
        ids = [h.id for h in hits]
        assert f"{user[1]}_new" in ids and all(i[0] == user[1] for i in ids), ids  # 3 unseen + the new one
        assert not seen & set(ids)
        assert [h.id for h in rec.recommend(user, k=4, strategy="hybrid")] == ids
    filtered = rec.recommend("ua1", k=3, filters={"cluster": "b"})
    assert len(filtered) == 3 and all(h.id[0] == "b" for h in filtered)


def test_update_user_folds_in_without_a_refit(collab_store):

    from mmalign.plugin.recommend.collab import als_solve, unpack
    from mmalign.plugin.recommend.recommender import Recommender

    rows = interactions()
    rec = Recommender("items", store=collab_store)
    rec.rebuild_users(rows, collab=COLLAB_CFG)
    before = rec.get_profile("ua0").collab
    seen = {r.item_id for r in rows if r.user_id == "ua0"}
    new = next(f"a{i}" for i in range(10) if f"a{i}" not in seen)
    profile = rec.update_user("ua0", [ev("ua0", new, 40)])
    assert not np.allclose(profile.collab, before)
    # the same as ALS's user step against the stored item factors
    k = rec.collab_state["rank"]
    got = collab_store.retrieve("items", sorted(seen | {new}), with_vectors=["collab"])
    y = np.asarray([p.vector["collab"][:k] for p in got]) * rec.collab_state["max_norm"]  # stored normalised
    expected = als_solve(y, unpack(rec.collab_state["gram"]), np.arange(len(y)), COLLAB_CFG)
    np.testing.assert_allclose(rec.get_profile("ua0").collab, expected, rtol=1e-4, atol=1e-5)
    assert new not in {h.id for h in rec.recommend("ua0", k=5)}
    # a brand-new user with three b items: folded in, served by the hybrid
    rec.update_user("newcomer", [ev("newcomer", f"b{i}", i) for i in range(3)])
    assert rec.get_profile("newcomer").collab is not None
    assert all(h.id[0] == "b" for h in rec.recommend("newcomer", k=5))


def test_hybrid_falls_back_to_the_user_vector_without_collab_vectors(store_config):
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.recommend.recommender import Recommender

    with VectorStore(store_config) as vs:
        _items_store(vs, collab=False)
        rec = Recommender("items", store=vs)
        rec.rebuild_users(interactions(), collab=COLLAB_CFG)
        assert rec.collab_state is None and "collab" not in vs.vector_sizes("items_users")
        vector = [h.id for h in rec.recommend("ua1", k=5, strategy="vector")]
        assert [h.id for h in rec.recommend("ua1", k=5, strategy="hybrid")] == vector
        assert [h.id for h in rec.recommend("ua1", k=5)] == vector
        # cold start for a new user still works (popularity)
        assert len(rec.recommend("nobody", k=3, strategy="hybrid")) == 3


def test_cli_recommend_is_hybrid_by_default_when_collab_vectors_exist(tmp_path):
    import json

    from click.testing import CliRunner

    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.cli import main
    from mmalign.schemas import StoreConfig

    qdrant = str(tmp_path / "q")
    with VectorStore(StoreConfig(path=qdrant)) as vs:
        _items_store(vs)
    inter = tmp_path / "inter.csv"
    inter.write_text(
        "user_id,item_id,weight,timestamp\n"
        + "".join(f"{r.user_id},{r.item_id},1,{int(r.timestamp.timestamp())}\n" for r in interactions())
    )
    args = ["recommend", "--collection", "items", "--qdrant-path", qdrant, "--user", "ub1", "-k", "4", "--json"]
    result = CliRunner().invoke(main, [*args, "--interactions", str(inter)])
    assert result.exit_code == 0, result.output
    hybrid = [h["id"] for h in json.loads(result.stdout)]
    assert "b_new" in hybrid and all(i[0] == "b" for i in hybrid)  # the cold item, through content → collab
    result = CliRunner().invoke(main, [*args, "--strategy", "hybrid"])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.stdout)] == hybrid


def test_content_map_survives_a_json_round_trip():
    import json

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 3))
    cmap = ContentMap(0.5).fit(x, y)
    back = ContentMap.from_dict(json.loads(json.dumps(cmap.to_dict())))
    np.testing.assert_array_equal(back.predict(x), cmap.predict(x))


# -- a cold item at ingest: predicted collab vector, replaced by the learned one after a rebuild ------
def _cold_points(ids, content):
    from mmalign.connectors.store import PointData

    return [
        PointData(i, {"fused": v}, {"metadata": {"cluster": i[0]}}) for i, v in zip(ids, content) if i.endswith("_new")
    ]


def test_an_item_ingested_after_a_rebuild_gets_a_predicted_vector_then_the_learned_one(store_config):
    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.index.collab import IngestCollab
    from mmalign.plugin.recommend.recommender import Recommender

    ids, content = catalog()
    with VectorStore(store_config) as vs:
        vs.create_collection("items", DIM, bundle_id="bundle-x", extra_vectors=("collab",))
        assert IngestCollab.open(vs, "items", "items", "bundle-x") is None  # no rebuild yet: no content map
        warm = [PointData(i, {"fused": v}, {"metadata": {"cluster": i[0]}}) for i, v in zip(ids, content)]
        vs.upsert("items", [p for p in warm if not p.item_id.endswith("_new")])
        rows = interactions()
        rec = Recommender("items", store=vs)
        rec.rebuild_users(rows, collab=COLLAB_CFG)
        assert {p.payload["collab_source"] for p in vs.scroll("items", with_payload=True)} == {"learned"}
        learned_a0 = vs.retrieve("items", ["a0"], with_vectors=["collab"])[0].vector["collab"]
        assert IngestCollab.open(vs, "items", "items", "another-bundle") is None  # a map of another space

        # the three new items arrive (as ingest writes them): each gets the content → collab prediction
        points = _cold_points(ids, content)
        assert IngestCollab.open(vs, "items", "items", "bundle-x").attach(points) == 3
        vs.upsert("items", points)
        for p in vs.retrieve("items", ["a_new", "b_new", "c_new"], with_vectors=["collab"]):
            assert p.payload["collab_source"] == "predicted" and np.any(p.vector["collab"])
        rec = Recommender("items", store=vs)
        for user in ("ua1", "ub2", "uc3"):
            hits = [h.id for h in rec.recommend(user, k=4)]
            assert f"{user[1]}_new" in hits and all(i[0] == user[1] for i in hits), hits

        # a warm item re-ingested (its media changed) keeps its learned vector
        [again] = [PointData("a0", {"fused": content[ids.index("a0")]}, {})]
        assert IngestCollab.open(vs, "items", "items", "bundle-x").attach([again]) == 0
        assert again.payload["collab_source"] == "learned"
        np.testing.assert_allclose(again.vectors["collab"], learned_a0, rtol=1e-6)

        # a_new gathers interactions: the next rebuild replaces the prediction with the learned factor
        predicted = vs.retrieve("items", ["a_new"], with_vectors=["collab"])[0].vector["collab"]
        more = [ev(f"ua{u}", "a_new", 20) for u in range(6)]
        rec.rebuild_users([*rows, *more], collab=COLLAB_CFG)
        [p] = vs.retrieve("items", ["a_new"], with_vectors=["collab"])
        assert p.payload["collab_source"] == "learned" and not np.allclose(p.vector["collab"], predicted)
        sources = {q.payload["item_id"]: q.payload["collab_source"] for q in vs.scroll("items", with_payload=True)}
        assert sources["b_new"] == sources["c_new"] == "predicted" and sources["a0"] == "learned"


def test_ingest_writes_predicted_collab_vectors_for_new_items(trained, store):
    """The wiring through ``ingest``: items added after a rebuild get predicted vectors; unchanged
    items keep theirs; a metadata-only edit keeps ``collab_source``."""
    import json

    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.recommend.recommender import Recommender

    base, full = trained
    bundle = load_bundle(base / "bundle", with_teacher=False)
    lines = full.read_text().splitlines()
    first = full.parent / "first.jsonl"
    first.write_text("\n".join(lines[:24]) + "\n")
    store.create_collection("shop", bundle.dim, bundle_id=bundle.bundle_id, extra_vectors=("collab",))

    def run(path):
        return ingest(path, bundle=bundle, collection="shop", store=store, features_dir=base / "features", device="cpu")

    run(first)
    assert not any("collab" in (p.vector or {}) for p in store.scroll("shop", with_vectors=["collab"]))
    # users who like the even items and users who like the odd ones (items 0..23 only)
    rows = [
        ev(f"{g}{u}", f"item{i}", i) for g, r in (("even", 0), ("odd", 1)) for u in range(4) for i in range(r, 24, 2)
    ]
    Recommender("shop", store=store).rebuild_users(rows, collab=CollabConfig(rank=2, reg=1.0, map_reg=1.0))
    edited = json.loads(lines[30])
    edited["metadata"]["on_sale"] = True
    everything = full.parent / "everything.jsonl"
    everything.write_text("\n".join([*lines[:30], json.dumps(edited), *lines[31:]]) + "\n")
    report = run(everything)
    assert (report.ok, report.unchanged) == (12, 24)
    points = {p.payload["item_id"]: p for p in store.scroll("shop", with_payload=True, with_vectors=["collab"])}
    assert all(points[f"item{i}"].payload["collab_source"] == "learned" for i in range(24))
    assert all(points[f"item{i}"].payload["collab_source"] == "predicted" for i in range(24, 36))
    assert all(np.any(p.vector["collab"]) for p in points.values())
    edited["metadata"]["on_sale"] = False  # a metadata-only change: vectors and collab_source stay
    everything.write_text("\n".join([*lines[:30], json.dumps(edited), *lines[31:]]) + "\n")
    assert run(everything).payload_updated == 1
    [p] = store.retrieve("shop", ["item30"], with_vectors=["collab"])
    assert p.payload["collab_source"] == "predicted" and p.payload["metadata"]["on_sale"] is False
    assert np.allclose(p.vector["collab"], points["item30"].vector["collab"], atol=1e-6)


def test_one_se_choice_keeps_a_content_term_only_when_it_beats_its_noise():
    from mmalign.plugin.recommend.tuning import one_se_choice

    rng = np.random.default_rng(0)
    base = rng.random(400)
    noisy = base + rng.normal(0, 0.2, 400) + 0.005  # better on average, but by far less than its noise
    clear = base + 0.05 + rng.normal(0, 0.01, 400)
    assert one_se_choice({0.0: base, 0.4: noisy}, lambda w: 0.0) == 0.0
    assert one_se_choice({0.0: base, 0.4: noisy, 0.2: clear}, lambda w: 0.0) == 0.2
    # a grid of (ridge, cold weight): the noisy weight falls back to the best setting without it
    grid = {(1.0, 0.0): base, (10.0, 0.0): base - 0.01, (1.0, 0.2): noisy}
    assert one_se_choice(grid, lambda key: (key[0], 0.0)) == (1.0, 0.0)


def test_the_cold_content_weight_applies_to_predicted_items_only(collab_store):
    from mmalign.plugin.recommend.recommender import Recommender

    rows = interactions()
    rec = Recommender("items", store=collab_store)
    scores = {}
    for beta in (0.0, 2.0):
        rec.rebuild_users(rows, collab=COLLAB_CFG.model_copy(update={"cold_content_weight": beta}))
        scores[beta] = {h.id: h.score for h in rec.recommend("ua1", k=8)}
    assert "a_new" in scores[0.0] and "a_new" in scores[2.0]
    warm = [i for i in scores[0.0] if not i.endswith("_new") and i in scores[2.0]]
    assert warm and all(abs(scores[0.0][i] - scores[2.0][i]) < 1e-5 for i in warm)  # learned: unchanged
    assert scores[2.0]["a_new"] > scores[0.0]["a_new"] + 1.0  # predicted: + 2 · cos(content) of its cluster
    assert next(iter(scores[2.0])) == "a_new"


def test_ingest_collab_creates_the_vector_and_reembed_keeps_it(trained, store):
    from mmalign.connectors.store import StoreError
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.reembed import reembed
    from mmalign.plugin.recommend.recommender import Recommender

    base, catalog = trained

    def run(collection, **kw):
        return ingest(catalog, collection=collection, store=store, features_dir=base / "features", device="cpu", **kw)

    run("shop", bundle=base / "bundle", collab=True)
    assert "collab" in store.vector_sizes("shop__v1")
    assert run("shop", bundle=base / "bundle", collab=True).unchanged == 36  # it has the vector: fine
    run("plain", bundle=base / "bundle")
    with pytest.raises(StoreError, match=r"'plain__v1' has no \['collab'\] vector.*new collection name"):
        run("plain", bundle=base / "bundle", collab=True)
    rows = [ev(f"u{i % 4}", f"item{i}", i) for i in range(36)]
    Recommender("shop", store=store).rebuild_users(rows, collab=CollabConfig(rank=2, reg=1.0))
    reembed("shop", bundle=base / "bundle2", store=store, features_dir=base / "features")
    assert store.resolve_alias("shop") == "shop__v2" and "collab" in store.vector_sizes("shop__v2")
    rec = Recommender("shop", store=store)
    rec.rebuild_users(rows, collab=CollabConfig(rank=2, reg=1.0))  # the users belong to the old bundle
    assert rec.collab_state is not None and len(rec.recommend("u1", k=3)) == 3
