"""Tiny towers built from config: the real loading and encode code paths, random weights."""

import numpy as np
import pytest
from PIL import Image

from mmalign import plugin


@pytest.fixture
def images():
    return [Image.new("RGB", (40, 30), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]


def _check(out, n, dim):
    assert out.shape == (n, dim) and out.dtype == np.float32 and np.all(np.isfinite(out))


def test_open_clip_image_tower(tiny_preset, images):
    enc = plugin.build_encoder("tiny-clip-image", device="cpu")
    out = enc.encode(images, batch_size=2)
    _check(out, 3, 16)
    # batching does not change the result
    np.testing.assert_allclose(out, np.concatenate(list(enc.iter_encode(images, batch_size=1))), atol=1e-5)
    assert not np.allclose(out[0], out[1])


def test_hf_text_tower_mean_pooling(tiny_preset):
    enc = plugin.build_encoder("tiny-bert", device="cpu")
    out = enc.encode(["a red frog", "the blue car", "a red frog"], batch_size=2)
    _check(out, 3, 16)
    np.testing.assert_allclose(out[0], out[2], atol=1e-5)
    assert float(out[0] @ out[1]) < 0.99  # different words, different vectors
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with pytest.raises(TypeError, match="not str"):
        enc.encode([3])


def test_librosa_audio(tiny_preset):
    enc = plugin.build_encoder("tiny-logmel")
    t = np.arange(8000) / 8000
    waves = [np.sin(2 * np.pi * f * t).astype(np.float32) for f in (200, 200, 1500)]
    out = enc.encode(waves)
    _check(out, 3, 24)
    np.testing.assert_allclose(out[0], out[1])
    assert np.linalg.norm(out[0] - out[2]) > 1


def test_empty_input_and_bad_batch_size(tiny_preset):
    enc = plugin.build_encoder("tiny-logmel")
    assert enc.encode([]).shape == (0, 24)
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode([np.zeros(100, np.float32)], batch_size=0)


def test_spec_dim_mismatch_is_refused(tiny_hf_text_dir):
    from mmalign.plugin.encoders.weights import WeightsError

    spec = plugin.register_encoder(
        {"kind": "hf_text", "name": "tiny-bert-wrong", "dim": 99, "weights": str(tiny_hf_text_dir)}, replace=True
    )
    with pytest.raises(WeightsError, match="hidden size is 16, spec says dim=99"):
        plugin.build_encoder(spec, device="cpu")


def test_missing_weights_path_is_clear():
    from mmalign.plugin.encoders.weights import WeightsError

    spec = plugin.get_encoder_spec("minilm-l6").model_copy(update={"weights": "/no/such/model"})
    with pytest.raises(WeightsError, match="does not exist"):
        plugin.build_encoder(spec, device="cpu")
    with pytest.raises(WeightsError, match="unknown weights package"):
        plugin.build_encoder(spec.model_copy(update={"weights": "pkg:nope"}), device="cpu")


def test_device_validation():
    from mmalign.plugin.encoders.device import select_device

    assert select_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        select_device("tpu")


def test_open_clip_tower_loads_a_local_checkpoint(tiny_preset, images, tmp_path):
    """Real CLIP weights come from a local file on offline machines: the same path, tiny weights."""
    from safetensors.torch import save_file

    from mmalign.plugin.encoders.registry import get_encoder_spec, with_weights

    first = plugin.build_encoder("tiny-clip-image", device="cpu")
    checkpoint = tmp_path / "open_clip_model.safetensors"
    state = {k: v.contiguous() for k, v in first.model.state_dict().items()}
    import torch

    with torch.no_grad():  # make the file differ from the seeded init, so loading it is observable
        state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(checkpoint))
    spec = with_weights(get_encoder_spec("tiny-clip-image"), str(checkpoint))
    loaded = plugin.build_encoder(spec, device="cpu")
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not np.allclose(loaded.encode(images), first.encode(images))
    text_spec = with_weights(get_encoder_spec("tiny-bert"), str(tmp_path / "missing-folder"))
    from mmalign.plugin.encoders.weights import WeightsError

    with pytest.raises(WeightsError, match="does not exist"):
        plugin.build_encoder(text_spec, device="cpu")
