"""``mmalign train`` and ``mmalign eval``: a bundle from a catalog's features, and its held-out metrics."""

from __future__ import annotations

import click

from mmalign.plugin.cli.options import (
    catalog_options,
    echo_json,
    fail,
    interactions_dead_letter_option,
    json_option,
    parse_weights,
    preset_option,
    runtime_option,
)
from mmalign.schemas import TrainConfig

#: The options' defaults are TrainConfig's, so the CLI and the library train the same model.
_DEFAULT = {name: field.default for name, field in TrainConfig.model_fields.items()}


@click.command()
@click.argument("catalog", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@preset_option
@click.option(
    "--dim", default=_DEFAULT["dim"], show_default=True, type=click.IntRange(min=2), help="D, the shared space."
)
@click.option(
    "--rank", default=_DEFAULT["rank"], show_default=True, type=click.IntRange(min=1), help="r of each projection."
)
@click.option(
    "--epochs",
    default=_DEFAULT["epochs"],
    show_default=True,
    type=click.IntRange(min=0),
    help="Max epochs of teacher and student (early stopping on the val split).",
)
@click.option("--seed", default=_DEFAULT["seed"], show_default=True, type=int)
@click.option(
    "--test-fraction",
    default=_DEFAULT["test_fraction"],
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
)
@click.option(
    "--init",
    type=click.Choice(["cca", "svd", "random", "base"]),
    default="cca",
    show_default=True,
    help="Student start (closed form); base: fine-tune the teacher from the shipped base bundle (student from CCA).",
)
@click.option("--fusion", type=click.Choice(["weighted", "concat"]), default="weighted", show_default=True)
@click.option("--no-distill", is_flag=True, help="Train the student without the teacher (ablation).")
@click.option(
    "--interactions",
    type=click.Path(exists=True, dir_okay=False),
    help="user_id,item_id[,weight][,timestamp] file: adds the teacher's co-occurrence term.",
)
@click.option(
    "--holdout",
    type=click.Choice(["leave-last-out", "temporal"]),
    help="Train on the training part of this interactions split only (for a fair eval-rec).",
)
@interactions_dead_letter_option("FEATURES/interactions_dead_letter.jsonl")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TrainConfig JSON; command-line options override it.",
)
@click.option("--weights", multiple=True, metavar="ENCODER=PATH")
@click.option("--device", default="auto", show_default=True)
@runtime_option
@json_option
@catalog_options
@click.pass_context
def train(
    ctx,
    catalog,
    out,
    preset,
    dim,
    rank,
    epochs,
    seed,
    test_fraction,
    init,
    fusion,
    no_distill,
    interactions,
    holdout,
    dead_letter,
    config_file,
    weights,
    device,
    runtime,
    as_json,
    fmt,
    media_root,
    features_dir,
):
    """Train the alignment on CATALOG's features and write a bundle to OUT."""
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.workflows.train import train_bundle

    init_bundle = None
    if init == "base":
        init_bundle, init = "base", "cca"
    options = dict(dim=dim, rank=rank, seed=seed, test_fraction=test_fraction, init=init, fusion=fusion)
    cfg = _train_config(ctx, config_file, options, epochs=epochs, no_distill=no_distill)
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    source = open_catalog(catalog, media_root=media_root, format=fmt)
    report = train_bundle(
        source,
        out,
        preset=preset,
        features_dir=features_dir,
        cfg=cfg,
        weights=parse_weights(weights),
        interactions=interactions,
        interactions_holdout=holdout,
        interactions_dead_letter=dead_letter,
        device=device,
        show_progress=True,
        echo=echo,
        init_bundle=init_bundle,
        runtime=runtime,
    )
    if as_json:
        echo_json(report)
    else:
        _echo_train_report(report, out)


def _train_config(ctx, config_file, options: dict, *, epochs: int, no_distill: bool) -> TrainConfig:
    """The TrainConfig of the command: the ``--config`` file's, overridden by the options given on the command
    line (without a file, by every option: its defaults are TrainConfig's); ``--epochs`` sets both the teacher's
    and the student's."""
    import json
    from pathlib import Path

    from pydantic import ValidationError

    def given(name: str) -> bool:
        return not config_file or ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT

    base = json.loads(Path(config_file).read_text()) if config_file else {}
    chosen = {name: value for name, value in options.items() if given(name)}
    if given("epochs"):
        chosen.update(epochs=epochs, teacher_epochs=epochs)
    if no_distill:
        chosen["distill"] = False
    try:
        return TrainConfig.model_validate({**base, **chosen})
    except ValidationError as exc:
        fail(f"invalid training config: {exc}")


def _echo_train_report(report, out) -> None:
    """The bundle written, its parameters and its held-out retrieval table."""
    from mmalign.plugin.cli.render import retrieval_table

    params = report.parameters
    click.echo(f"bundle {report.bundle_id} -> {out} ({report.seconds}s)")
    ratio = f" (ratio 1/{params.teacher / params.student:.0f})" if params.teacher else ""
    click.echo(f"parameters: student {params.student:,}, teacher {params.teacher:,}{ratio}")
    if report.metrics.results:
        click.echo(f"held-out test items: {report.metrics.n_items}")
        click.echo(retrieval_table(report.metrics.results))
    else:
        click.echo("one modality: no cross-modal evaluation (use eval-rec with interactions)")


@click.command("eval")
@click.option("--bundle", "bundle_path", required=True, help="A bundle folder, or base (the shipped base bundle).")
@click.argument("catalog", required=False, type=click.Path(exists=True))
@click.option(
    "--split-of",
    type=click.Path(exists=True, file_okay=False),
    help="Evaluate on the test items of this other bundle (trained on CATALOG): same queries.",
)
@json_option
@click.option("--device", default="auto", show_default=True)
@catalog_options
def eval_command(bundle_path, catalog, split_of, as_json, device, fmt, media_root, features_dir):
    """Evaluate a bundle on its held-out items (or a catalog it was not trained on): every model,
    every query -> target pair."""
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.cli.render import retrieval_table
    from mmalign.plugin.workflows.train import evaluate_bundle

    source = open_catalog(catalog, media_root=media_root, format=fmt) if catalog else None
    report = evaluate_bundle(bundle_path, source, features_dir=features_dir, device=device, split_of=split_of)
    if as_json:
        echo_json(report)
        return
    click.echo(f"bundle {report.bundle_id}: {report.n_items} held-out items")
    click.echo(retrieval_table(report.results))
