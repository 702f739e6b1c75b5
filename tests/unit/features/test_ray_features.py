"""``features --runner ray``: the same cache rows, counts and dead letters as in-process (local cluster, 2 CPUs)."""

from __future__ import annotations

import numpy as np
import pytest

from mmalign.connectors.dead_letter import read_dead_letters
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.features.extract import extract_features, preset_specs
from mmalign.schemas import Modality

ray = pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra (pip install 'mmalign[ray]')")
pytestmark = pytest.mark.usefixtures("ray_cluster")  # one local cluster, 2 CPUs (tests/ray_cluster.py)
from mmalign.plugin.features.ray_encode import on_ray as ray_step  # noqa: E402
from tests.ray_cluster import ray_cluster  # noqa: E402, F401 (fixture)


def letters(path) -> set[tuple]:
    return {(r.item_id, r.stage, r.modality, r.reason) for r in read_dead_letters(path)}


def test_features_on_ray_equal_the_in_process_features(media_dir, tmp_path, tiny_preset):
    catalog = media_dir / "catalog.jsonl"
    local = extract_features(catalog, tmp_path / "local", preset=tiny_preset, device="cpu")
    two_actors = ray_step(None, 2)
    on_ray = extract_features(catalog, tmp_path / "ray", preset=tiny_preset, device="cpu", encode_step=two_actors)
    for m in (Modality.IMAGE, Modality.TEXT, Modality.AUDIO):
        want, got = local.modalities[m], on_ray.modalities[m]
        assert (got.present, got.encoded, got.cached, got.failed) == (want.present, want.encoded, 0, want.failed), m
    assert letters(on_ray.dead_letter) == letters(local.dead_letter)
    assert any("cannot decode image" in reason for *_, reason in letters(on_ray.dead_letter))
    specs = preset_specs(tiny_preset)  # as extract_features resolved them
    for m in (Modality.IMAGE, Modality.TEXT):
        spec = specs[m]
        a, b = FeatureCache(tmp_path / "local").load(m, spec), FeatureCache(tmp_path / "ray").load(m, spec)
        order = np.argsort(b.item_ids)
        assert sorted(a.item_ids) == [b.item_ids[i] for i in order]
        np.testing.assert_allclose(b.features[order], a.features[np.argsort(a.item_ids)], atol=1e-5)
    again = extract_features(catalog, tmp_path / "ray", preset=tiny_preset, device="cpu", encode_step=ray_step())
    assert again.modalities[Modality.IMAGE].encoded == 0  # what the cache holds is not sent to Ray again
