"""The public API: ``from mmalign.plugin import Searcher, Recommender, ingest, ...`` without paying for torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mmalign.plugin as plugin


def test_every_public_name_resolves_to_its_object():
    from mmalign.plugin.index.search import Searcher
    from mmalign.plugin.recommend.recommender import Recommender

    assert plugin.Searcher is Searcher and plugin.Recommender is Recommender
    for name in plugin._LAZY:
        assert callable(getattr(plugin, name)), name
    with pytest.raises(AttributeError, match="public names"):
        plugin.NoSuchThing  # noqa: B018


def test_importing_the_public_names_does_not_import_torch():
    code = (
        "import sys\n"
        "from mmalign.plugin import Searcher, Recommender, ingest, reembed, train_bundle, load_bundle\n"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'librosa') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the public API pulled in {out}"
