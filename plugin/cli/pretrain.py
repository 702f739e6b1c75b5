"""``mmalign pretrain``: build the pooled corpus (if needed), its features, the teacher, a base bundle."""

from __future__ import annotations

import sys

import click

from mmalign.plugin.cli.options import catalog_options, echo_json, json_option, preset_option

_POOL = "mmalign-data/pool/pool.jsonl"


@click.command()
@click.argument("pool", required=False, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Base bundle folder to write.")
@preset_option
@click.option("--build", "build_pool", is_flag=True, help=f"(Re)build the pool catalog first (default: {_POOL}).")
@click.option("--per-set", default=400, show_default=True, type=click.IntRange(min=1), help="Concepts per icon set.")
@click.option("--limit", type=click.IntRange(min=1), help="Use the first N pool items (the pool is round-robin).")
@click.option("--cached-only", is_flag=True, help="Train on the items whose features are cached; extract nothing.")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=0), help="Max teacher epochs.")
@click.option("--student-epochs", default=6, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--threads", default=1, show_default=True, type=click.IntRange(min=1), help="torch CPU threads for training."
)
@json_option
@catalog_options
def pretrain(
    pool,
    out,
    preset,
    build_pool,
    per_set,
    limit,
    cached_only,
    epochs,
    student_epochs,
    seed,
    device,
    threads,
    as_json,
    fmt,
    media_root,
    features_dir,
):
    """Pretrain the teacher on the pooled public corpus POOL and write a base bundle to OUT."""
    import json
    from pathlib import Path

    import torch

    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.workflows.pretrain import description_path, pretrain_bundle
    from mmalign.schemas import TrainConfig

    torch.set_num_threads(threads)
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    pool = Path(pool or _POOL)
    if build_pool or not pool.exists():
        from mmalign.connectors.datasets.pool import build_pool as build

        _, _, description = build(pool, per_set=per_set, echo=echo)
        description["command"] = " ".join(["mmalign", *sys.argv[1:]])
        description_path(pool).write_text(json.dumps(description, indent=1) + "\n")
    # dropout 0.1: the shipped base was pretrained with it; the per-catalog default (0.3) was chosen on catalogs'
    # validation splits and never measured on the pool
    cfg = TrainConfig(seed=seed, teacher_epochs=epochs, patience=5, dropout=0.1)
    report = pretrain_bundle(
        open_catalog(pool, media_root=media_root, format=fmt),
        out,
        features_dir=features_dir,
        preset=preset,
        cfg=cfg,
        cached_only=cached_only,
        limit=limit,
        student_epochs=student_epochs,
        device=device,
        show_progress=True,
        echo=echo,
    )
    if as_json:
        echo_json(report)
