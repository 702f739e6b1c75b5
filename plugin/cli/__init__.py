"""The ``mmalign`` command line: thin click commands over library calls, one module per command group.

Only click and the spec registry are imported at start-up; each command imports what it needs.
An :class:`~mmalign.connectors.errors.MmalignError` (a precondition the user can fix) prints as one
line and exits with status 1; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import click

from mmalign.connectors.errors import MmalignError
from mmalign.plugin.cli.encoders import encoders
from mmalign.plugin.cli.features import features
from mmalign.plugin.cli.index import drop_version, ingest, quickstart, reembed, rollback, search, versions
from mmalign.plugin.cli.pretrain import pretrain
from mmalign.plugin.cli.recommend import eval_rec, recommend
from mmalign.plugin.cli.serve import serve
from mmalign.plugin.cli.store import schemas, store
from mmalign.plugin.cli.train import eval_command, train


def store_paths(argv) -> list[str]:
    """The embedded store folders a command line names (``--qdrant-path``, ``--to-path``)."""
    paths = []
    for flag in ("--qdrant-path", "--to-path"):
        for i, arg in enumerate(argv):
            if arg == flag and i + 1 < len(argv):
                paths.append(argv[i + 1])
            elif arg.startswith(flag + "="):
                paths.append(arg.split("=", 1)[1])
    return paths


class MmalignGroup(click.Group):
    """Turns user errors into one clear line; lets real bugs show their traceback."""

    def main(self, *args, **kwargs):
        """Runs the command in a child process whose SIGBUS (a full disk under the store's memory-mapped
        files) becomes one clear error line (connectors/disk.py)."""
        import sys

        from mmalign.connectors.disk import supervised

        return supervised(lambda: super(MmalignGroup, self).main(*args, **kwargs), store_paths(sys.argv[1:]))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MmalignError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=MmalignGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmalign")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """mmalign: multimodal retrieval for Qdrant (image, text, audio in one shared space)."""
    import logging

    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), format="%(levelname)s %(name)s: %(message)s")


for command in (
    encoders,
    features,
    train,
    pretrain,
    eval_command,
    ingest,
    search,
    quickstart,
    recommend,
    eval_rec,
    reembed,
    versions,
    rollback,
    drop_version,
    schemas,
    store,
    serve,
):
    main.add_command(command)

__all__ = ["main"]
