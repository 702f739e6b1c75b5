"""The scale options of the CLI turn into the library's arguments: a StoreConfig layout and runner settings."""

from __future__ import annotations

import click
from click.testing import CliRunner

from mmalign.plugin.cli.options import with_store
from mmalign.plugin.cli.scale_options import layout_options, runner_options


@click.command()
@runner_options
@with_store
@layout_options
def probe(store, runner, ray_address, ray_workers):
    click.echo(f"{store.layout} {store.url} {runner} {ray_address} {ray_workers}")


def test_layout_options_reach_the_store_config_and_runner_options_pass_through():
    args = ["--qdrant-url", "http://localhost:6333", "--shards", "4", "--replication-factor", "2"]
    args += ["--write-consistency", "2", "--quantization", "int8", "--vectors-on-disk", "--runner", "ray"]
    result = CliRunner().invoke(probe, [*args, "--ray-address", "ray://head:10001", "--ray-workers", "3"], env={})
    assert result.exit_code == 0, result.output
    layout = "{'shard_number': 4, 'replication_factor': 2, 'write_consistency_factor': 2, 'quantization': 'int8', "
    assert result.output.startswith(layout + "'vectors_on_disk': True} http://localhost:6333 ray ray://head:10001 3")


def test_without_scale_options_the_store_and_runner_are_the_defaults():
    result = CliRunner().invoke(probe, ["--qdrant-path", ":memory:"], env={})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "{} None local None 1"


def test_a_bad_quantization_is_named_with_the_valid_ones():
    result = CliRunner().invoke(probe, ["--quantization", "int4"], env={})
    assert result.exit_code == 2 and "'int4' is not one of 'int8', 'binary'" in result.output
