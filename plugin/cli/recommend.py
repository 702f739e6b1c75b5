"""``mmalign recommend`` and ``mmalign eval-rec``."""

from __future__ import annotations

import click

from mmalign.plugin.cli.options import (
    DEFAULT_INTERACTIONS_DEAD_LETTER,
    echo_json,
    fail,
    interactions_dead_letter_option,
    json_option,
    user_cfg,
    user_vector_options,
    with_store,
)


@click.command()
@click.option("--collection", required=True, help="The items collection.")
@click.option("--user", "user_id", help="User id (omit with --like for an anonymous session).")
@click.option(
    "--interactions",
    type=click.Path(exists=True, dir_okay=False),
    help="Rebuild all user vectors from this file first (user_id,item_id[,weight][,timestamp]).",
)
@click.option("--like", "likes", multiple=True, help="Anonymous session: items like these (repeatable).")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--strategy",
    type=click.Choice(["hybrid", "vector", "best_score", "average_vector"]),
    default=None,
    help="hybrid: collab + content vectors (the default when the collection has collab vectors, else "
    "vector); vector: the user vector; best_score/average_vector: Qdrant RecommendQuery over the user's items.",
)
@click.option("--include-seen", is_flag=True, help="Do not exclude items the user already has.")
@click.option("--text", "cold_text", help="Cold start: a text query for users with no history.")
@click.option(
    "--popularity-weight",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Add w·log(1+popularity) (scaled to [0, 1]) to user-vector scores; eval-rec suggests w.",
)
@click.option("--json", "as_json", is_flag=True, help='Print [{"id", "score", "payload"}, ...].')
@interactions_dead_letter_option(DEFAULT_INTERACTIONS_DEAD_LETTER)
@user_vector_options
@with_store
def recommend(
    collection,
    user_id,
    interactions,
    likes,
    k,
    filters,
    strategy,
    include_seen,
    cold_text,
    popularity_weight,
    as_json,
    dead_letter,
    half_life_days,
    negative_below,
    store,
):
    """Recommend items for a user (user vectors in the shared space) or for an anonymous session."""
    from mmalign.connectors.interactions import read_interactions
    from mmalign.plugin.cli.render import print_hits
    from mmalign.plugin.index.search import parse_filters
    from mmalign.plugin.recommend.recommender import Recommender

    if not user_id and not likes:
        fail("give --user, or --like ITEM for an anonymous session")
    with Recommender(
        collection,
        store=store,
        cfg=user_cfg(half_life_days, negative_below),
        popularity_weight=popularity_weight,
    ) as rec:
        if interactions:
            dead_letter = dead_letter or DEFAULT_INTERACTIONS_DEAD_LETTER
            load = read_interactions(interactions, dead_letter=dead_letter)
            counts = rec.rebuild_users(load.interactions)
            click.echo(
                f"user vectors: {counts.users} users from {counts.interactions} interactions; "
                f"{counts.unknown_item_rows} rows name {counts.unknown_item_ids} unknown item(s); "
                f"{len(load.invalid)} invalid rows" + (f", written to {dead_letter}" if load.invalid else ""),
                err=True,
            )
        if likes:
            hits = rec.more_like(likes, k=k, filters=parse_filters(filters))
        else:
            hits = rec.recommend(
                user_id,
                k=k,
                filters=parse_filters(filters),
                exclude_seen=not include_seen,
                strategy=strategy,
                cold_start_query={"text": [cold_text]} if cold_text else None,
            )
    if as_json:
        echo_json(hits)
    else:
        print_hits(hits)


@click.command("eval-rec")
@click.option("--collection", required=True)
@click.option("--interactions", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--split", "how", type=click.Choice(["leave-last-out", "temporal"]), default="leave-last-out", show_default=True
)
@click.option(
    "--collab/--no-collab",
    default=True,
    show_default=True,
    help="Also fit collab factors and the hybrid, and tuned baselines (implicit ALS/BPR when installed).",
)
@click.option(
    "--cold-fraction",
    default=0.1,
    show_default=True,
    type=click.FloatRange(min=0, max=0.9),
    help="Cold-item protocol: this fraction of items, those first rated last, lose all their training "
    "interactions (0: off; needs --collab).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the collab factors.")
@interactions_dead_letter_option(DEFAULT_INTERACTIONS_DEAD_LETTER)
@json_option
@user_vector_options
@with_store
def eval_rec(
    collection,
    interactions,
    how,
    collab,
    cold_fraction,
    seed,
    dead_letter,
    as_json,
    half_life_days,
    negative_below,
    store,
):
    """Recall/NDCG@10/20 of user vectors vs popularity, item-kNN, PureSVD and RecommendQuery; with
    --collab, also collab factors and the hybrid; with --cold-fraction, the cold-item protocol."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.cli.render import rec_table
    from mmalign.plugin.recommend.evaluation import evaluate_collection

    with VectorStore(store) as vs:
        report = evaluate_collection(
            collection,
            interactions,
            store=vs,
            how=how,
            cfg=user_cfg(half_life_days, negative_below),
            collab=collab,
            cold_fraction=cold_fraction or None,
            seed=seed,
            dead_letter=dead_letter or DEFAULT_INTERACTIONS_DEAD_LETTER,
        )
    if as_json:
        echo_json(report)
        return
    click.echo(f"{report.collection}: {report.n_items} items; split: {report.split}")
    click.echo(
        f"interactions: {report.interactions} ({report.unknown_item_rows} rows name "
        f"{report.unknown_item_ids} items not in the collection; {report.invalid_rows} invalid"
        + (f", written to {report.dead_letter})" if report.dead_letter else ")")
    )
    click.echo(rec_table(report.results))
    if report.collab:
        chosen = report.collab
        click.echo(
            f"collab chosen on the training part: {chosen['method']} rank {chosen['rank']}, "
            f"content weight {chosen['content_weight']:g}, content → collab ridge {chosen['map_reg']:g}, "
            f"content weight of predicted (cold) items {chosen.get('cold_content_weight', 0):g}"
        )
    if report.cold_split:
        click.echo(f"\n{report.cold_split}")
        click.echo(f"{'model':<48}{'cold R@20':>10}{'cold N@20':>10}{'full R@20':>10}{'full N@20':>10}{'users':>7}")
        for r in report.cold_results:
            click.echo(
                f"{r.model:<48}{r.cold_recall_at_20:>10.4f}{r.cold_ndcg_at_20:>10.4f}"
                f"{r.full_recall_at_20:>10.4f}{r.full_ndcg_at_20:>10.4f}{r.n_users:>7}"
            )
