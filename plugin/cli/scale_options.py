"""Options of the commands that work at scale (issue #25): where the encode stage runs (``--runner ray``) and
how a new collection is laid out on a server (shards, replicas, write consistency, quantization, vectors on
disk). Each decorator turns its options into the library's arguments."""

from __future__ import annotations

import functools

import click


def runner_options(fn):
    """``--runner local|ray``, ``--ray-address``, ``--ray-workers``: passed on as ``runner``, ``ray_address``,
    ``ray_workers``."""
    options = [
        click.option(
            "--runner",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="Where decoding and encoding run: this process, or a Ray cluster (pip install 'mmalign[ray]').",
        ),
        click.option(
            "--ray-address",
            envvar="RAY_ADDRESS",
            help="Ray cluster to join, e.g. ray://head:10001 (or $RAY_ADDRESS); default: a local cluster.",
        ),
        click.option(
            "--ray-workers",
            default=1,
            show_default=True,
            type=click.IntRange(min=1),
            help="Encoder actors (each loads the encoders once; one GPU each when the cluster has them).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def layout_options(fn):
    """``--shards``, ``--replication-factor``, ``--write-consistency``, ``--quantization``, ``--vectors-on-disk``:
    folded into the command's ``store`` (a StoreConfig); they apply to the collections it creates."""

    @functools.wraps(fn)
    def command(*args, store, shards, replication_factor, write_consistency, quantization, vectors_on_disk, **kwargs):
        from mmalign.schemas import StoreConfig

        layout = {
            "shard_number": shards,
            "replication_factor": replication_factor,
            "write_consistency_factor": write_consistency,
            "quantization": quantization,
            "vectors_on_disk": vectors_on_disk or None,
        }
        update = {k: v for k, v in layout.items() if v is not None}
        if update:
            store = StoreConfig(**{**store.model_dump(), **update})
        return fn(*args, store=store, **kwargs)

    options = [
        click.option("--shards", type=click.IntRange(min=1), help="Shards of a new collection (server)."),
        click.option("--replication-factor", type=click.IntRange(min=1), help="Replicas of each shard (server)."),
        click.option(
            "--write-consistency", type=click.IntRange(min=1), help="Replicas that must confirm a write (server)."
        ),
        click.option(
            "--quantization",
            type=click.Choice(["int8", "binary"]),
            help="Quantize the dense vectors (Edge and server); searches rescore with the originals.",
        ),
        click.option("--vectors-on-disk", is_flag=True, help="Keep the original vectors on disk (memory-mapped)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
