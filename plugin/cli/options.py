"""Options shared by several commands, and the one place user input becomes library config."""

from __future__ import annotations

import functools

import click

from mmalign.plugin.encoders.registry import DEFAULT_PRESET, list_presets

MODALITIES = ("image", "text", "audio")
DEFAULT_FEATURES_DIR = "mmalign-data/features"
#: Exit status of a run that finished but could not process some items (see the dead-letter file).
EXIT_ITEMS_FAILED = 3
#: Where ``recommend`` and ``eval-rec`` write the interaction rows they could not read.
DEFAULT_INTERACTIONS_DEAD_LETTER = "mmalign-data/interactions_dead_letter.jsonl"


def interactions_dead_letter_option(default_help: str):
    """``--dead-letter FILE``: where bad interaction rows go, each with its file:line and reason."""
    return click.option(
        "--dead-letter",
        type=click.Path(dir_okay=False),
        help=f"Where invalid interaction rows are written, with file:line and reason (default: {default_help}).",
    )


def fail(message: str) -> None:
    raise click.ClickException(message)


def parse_weights(values: tuple[str, ...]) -> dict[str, str]:
    weights = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            fail(f"--weights expects ENCODER=PATH_OR_TAG, got {value!r}")
        weights[name] = path
    return weights


def with_store(fn=None, *, api_key_flag: str = "--api-key"):
    """The store options of every command that opens the store — ``--qdrant-path`` [``--engine edge|local``]
    | ``--qdrant-url`` [``--api-key``] [``--grpc``] — turned into one ``store: StoreConfig`` argument.
    ``api_key_flag``: ``serve`` names the server's key ``--qdrant-api-key`` (its ``--api-key`` is its own)."""

    def decorate(fn):
        @functools.wraps(fn)
        def command(*args, qdrant_path, engine, qdrant_url, qdrant_api_key, grpc, **kwargs):
            return fn(*args, store=store_config(qdrant_path, qdrant_url, qdrant_api_key, grpc, engine), **kwargs)

        options = [
            click.option("--qdrant-path", help="Embedded store folder (default ./mmalign-data/qdrant), or :memory:."),
            click.option(
                "--engine",
                type=click.Choice(["edge", "local"]),
                envvar="MMALIGN_ENGINE",
                help="Engine of the embedded store: edge (Qdrant Edge: HNSW, payload indexes; default) or local "
                "(qdrant-client's local mode, for tests and prototypes). Or $MMALIGN_ENGINE.",
            ),
            click.option("--qdrant-url", envvar="QDRANT_URL", help="Qdrant server URL (or $QDRANT_URL)."),
            click.option(
                api_key_flag,
                "qdrant_api_key",
                envvar="QDRANT_API_KEY",
                help="Qdrant server API key (or $QDRANT_API_KEY).",
            ),
            click.option("--grpc", is_flag=True, help="Use gRPC with a server."),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate(fn) if fn is not None else decorate


def store_config(qdrant_path, qdrant_url, api_key, grpc, engine=None):
    """The StoreConfig of the store options. What the command line says wins over the environment: a
    --qdrant-path or --engine given there sets aside a $QDRANT_URL (and its $QDRANT_API_KEY), and a
    server URL sets aside a $MMALIGN_ENGINE."""
    from pydantic import ValidationError

    from mmalign.schemas import StoreConfig

    ctx = click.get_current_context(silent=True)
    if ctx is not None and "qdrant_url" in ctx.params:
        from click.core import ParameterSource

        def source(name):
            return ctx.get_parameter_source(name)

        from_env = ParameterSource.ENVIRONMENT
        if qdrant_url is not None and source("qdrant_url") is from_env:
            if qdrant_path is not None or (engine is not None and source("engine") is not from_env):
                qdrant_url = None
                api_key = None if source("qdrant_api_key") is from_env else api_key
        if qdrant_url is not None and engine is not None and source("engine") is from_env:
            engine = None
    try:
        return StoreConfig(path=qdrant_path, url=qdrant_url, engine=engine, api_key=api_key, prefer_grpc=grpc)
    except ValidationError as exc:
        fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))


def catalog_options(fn):
    fn = click.option(
        "--format",
        "fmt",
        type=click.Choice(["jsonl", "csv", "folder"]),
        help="Catalog format (default: from the name).",
    )(fn)
    fn = click.option(
        "--media-root",
        type=click.Path(exists=True, file_okay=False),
        help="Root that media paths are relative to (default: the catalog's folder).",
    )(fn)
    fn = click.option(
        "--features",
        "features_dir",
        default=DEFAULT_FEATURES_DIR,
        show_default=True,
        type=click.Path(file_okay=False),
        help="Feature cache (filled as needed).",
    )(fn)
    return fn


def runtime_option(fn):
    """``--runtime``: where the image and text encoders run (their features are cached per runtime)."""
    from mmalign.plugin.encoders.runtime import RUNTIME_CHOICES

    return click.option(
        "--runtime",
        type=click.Choice(RUNTIME_CHOICES),
        default=None,
        help="Where the image and text encoders run: torch, onnx (ONNX Runtime, exported from the same weights at "
        "first use) or auto (onnx on a CPU, torch on a GPU). Default: $MMALIGN_RUNTIME, else auto.",
    )(fn)


def preset_option(fn):
    return click.option(
        "--preset", default=DEFAULT_PRESET, show_default=True, help=f"One of: {', '.join(list_presets())}."
    )(fn)


def user_vector_options(fn):
    fn = click.option(
        "--negative-below",
        type=float,
        help="Interaction weights below this are negative feedback (e.g. 3 for star ratings).",
    )(fn)
    fn = click.option(
        "--half-life-days",
        type=click.FloatRange(min=0, min_open=True),
        help="Time decay of older interactions (default: none).",
    )(fn)
    return fn


def user_cfg(half_life_days, negative_below):
    from mmalign.schemas import UserVectorConfig

    return UserVectorConfig(half_life_days=half_life_days, negative_below=negative_below)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")(fn)


def echo_json(model) -> None:
    """A report model (or a list of them) as JSON: the shape its exported JSON Schema describes."""
    import json

    from pydantic import BaseModel

    if isinstance(model, BaseModel):
        click.echo(model.model_dump_json(indent=2, by_alias=True))
    else:
        click.echo(json.dumps([m.model_dump(mode="json", by_alias=True) for m in model], indent=2))


class BundleArgument(click.ParamType):
    """A bundle folder, or the name of a bundle shipped with mmalign (``base``), as its folder."""

    name = "bundle"

    def convert(self, value, param, ctx):
        from mmalign.connectors.errors import BundleError
        from mmalign.plugin.align.bundle import SHIPPED_BUNDLES, resolve_bundle

        try:
            path = resolve_bundle(value)
        except BundleError as exc:
            self.fail(str(exc), param, ctx)
        if not path.is_dir():
            self.fail(
                f"{value!r} is not a bundle folder, nor a shipped bundle ({', '.join(SHIPPED_BUNDLES)})", param, ctx
            )
        return str(path)


BUNDLE = BundleArgument()
