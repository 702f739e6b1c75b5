import numpy as np

from mmalign.plugin.encoders.registry import get_encoder_spec
from mmalign.plugin.features.cache import FeatureCache
from mmalign.schemas import Modality


def test_write_load_newest_wins_and_compact(tmp_path):
    spec = get_encoder_spec("logmel-stats")
    cache = FeatureCache(tmp_path)
    a = np.random.default_rng(0).normal(size=(3, spec.dim)).astype(np.float32)
    cache.write(Modality.AUDIO, spec, ["x", "y", "z"], ["h1", "h2", "h3"], a)
    b = np.ones((1, spec.dim), np.float32)
    cache.write(Modality.AUDIO, spec, ["y"], ["h2b"], b)
    index = cache.index(Modality.AUDIO, spec)
    assert index["y"].content_hash == "h2b" and index["x"].content_hash == "h1"
    table = cache.load(Modality.AUDIO, spec, ["z", "y", "unknown"])
    assert table.item_ids == ["z", "y"]
    np.testing.assert_array_equal(table.features, np.stack([a[2], b[0]]))
    assert cache.compact(Modality.AUDIO, spec) == 3
    assert len(list(cache.directory(Modality.AUDIO, spec).glob("shard-*.safetensors"))) == 1
    np.testing.assert_array_equal(cache.load(Modality.AUDIO, spec, ["y"]).features, b)


def test_shards_are_plain_safetensors(tmp_path):
    from safetensors.numpy import load_file

    spec = get_encoder_spec("logmel-stats")
    cache = FeatureCache(tmp_path)
    path = cache.write(Modality.AUDIO, spec, ["x"], ["h"], np.zeros((1, spec.dim), np.float32))
    assert load_file(str(path))["features"].shape == (1, spec.dim)
    assert (path.parent / "encoder.json").exists()


def test_index_sees_shards_written_after_it_was_read(tmp_path):
    spec = get_encoder_spec("logmel-stats")
    cache = FeatureCache(tmp_path)
    cache.write(Modality.AUDIO, spec, ["x"], ["h1"], np.zeros((1, spec.dim), np.float32))
    assert set(cache.index(Modality.AUDIO, spec)) == {"x"}
    FeatureCache(tmp_path).write(Modality.AUDIO, spec, ["y", "x"], ["h2", "h1b"], np.ones((2, spec.dim), np.float32))
    index = cache.index(Modality.AUDIO, spec)
    assert set(index) == {"x", "y"} and index["x"].content_hash == "h1b"
    cache.compact(Modality.AUDIO, spec)
    assert cache.index(Modality.AUDIO, spec)["x"].content_hash == "h1b"
