"""The ONNX Runtime path on tiny towers: export -> load -> the same features as torch; ids and caches per runtime."""

import json

import numpy as np
import pytest
from PIL import Image

from mmalign import plugin
from mmalign.plugin.encoders import registry
from mmalign.plugin.encoders.registry import encoder_id, get_encoder_spec
from mmalign.plugin.encoders.runtime import (
    AGREEMENT_MIN,
    interchangeable,
    resolve_runtime,
    torch_twin,
    with_runtime,
)

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'mmalign[onnx]')")


@pytest.fixture(scope="module")
def tiny_timm():
    """timm's own test EfficientNet (256-d), random weights seeded from the encoder id."""
    spec = plugin.register_encoder(
        {"kind": "timm_image", "name": "tiny-timm", "dim": 256, "arch": "test_efficientnet", "image_size": 64},
        replace=True,
    )
    yield spec
    registry.unregister_encoder("tiny-timm")


@pytest.fixture
def export_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MMALIGN_ONNX_DIR", str(tmp_path / "onnx"))
    return tmp_path / "onnx"


def _pictures():
    rng = np.random.default_rng(3)
    return [
        Image.new("RGB", (40, 30), (255, 0, 0)),
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)),
        Image.new("RGBA", (64, 64), (0, 0, 255, 128)),
    ]


def test_an_image_tower_exported_to_onnx_gives_the_torch_features(tiny_timm, export_root):
    torch_encoder = plugin.build_encoder(tiny_timm, device="cpu")
    onnx_encoder = plugin.build_encoder(with_runtime(tiny_timm, "onnx"), device="cpu")
    images = _pictures()
    np.testing.assert_allclose(onnx_encoder.encode(images), torch_encoder.encode(images), atol=1e-4, rtol=1e-4)
    assert onnx_encoder.agreement["min_cosine"] > 0.9999
    assert onnx_encoder.agreement["against"] == encoder_id(tiny_timm)
    assert (onnx_encoder.folder / "model.onnx").is_file()
    assert onnx_encoder.folder.parent.parent == export_root


def test_a_text_tower_exported_to_onnx_gives_the_torch_features_with_its_own_tokenizer(tiny_preset, export_root):
    spec = get_encoder_spec("tiny-bert")
    torch_encoder = plugin.build_encoder(spec, device="cpu")
    onnx_encoder = plugin.build_encoder(with_runtime(spec, "onnx"), device="cpu")
    texts = ["a red frog", "the blue car", "frog " * 40, "", "A RED FROG"]  # past max_length: truncated alike
    np.testing.assert_allclose(onnx_encoder.encode(texts, batch_size=2), torch_encoder.encode(texts), atol=1e-5)
    with pytest.raises(TypeError, match="text input 0 is int, not str"):
        onnx_encoder.encode([3])


def test_a_cached_export_is_loaded_again_not_exported_again(tiny_preset, export_root):
    spec = with_runtime(get_encoder_spec("tiny-bert"), "onnx")
    first = plugin.build_encoder(spec, device="cpu")
    model = first.folder / "model.onnx"
    stamp = model.stat().st_mtime_ns
    second = plugin.build_encoder(spec, device="cpu")
    assert second.folder == first.folder and model.stat().st_mtime_ns == stamp
    assert json.loads((first.folder / "meta.json").read_text())["exporter_version"] >= 1


def test_int8_is_kept_only_where_it_agrees_with_torch(tiny_preset, export_root):
    spec = with_runtime(get_encoder_spec("tiny-bert"), "onnx", precision="int8")
    encoder = plugin.build_encoder(spec, device="cpu")
    agreement = encoder.agreement
    assert agreement["min_cosine"] >= AGREEMENT_MIN
    reference = plugin.build_encoder(torch_twin(spec), device="cpu").encode(["a red frog", "the blue car"])
    cos = (encoder.encode(["a red frog", "the blue car"]) * reference).sum(axis=1)
    assert cos.min() >= 0.98
    assert encoder.meta["int8"]["quantized_nodes"] >= 1


def test_an_export_that_disagrees_with_torch_is_refused_naming_the_figure(tiny_preset, export_root):
    from mmalign.plugin.encoders.onnx_runtime import ExportError, ensure_export

    spec = with_runtime(get_encoder_spec("tiny-bert"), "onnx")
    folder = ensure_export(spec)
    meta = json.loads((folder / "meta.json").read_text())
    meta["agreement"]["min_cosine"] = 0.5
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match=r"cosine min 0\.5000.*needed >= 0\.99"):
        plugin.build_encoder(spec, device="cpu")


def test_runtime_and_precision_are_in_the_id_but_torch_ids_stay_what_they_were():
    spec = get_encoder_spec("minilm-l6")
    # the id of before runtimes existed (feature caches and bundles made then stay valid)
    assert encoder_id(spec) == "minilm-l6:0cec907d74cb"
    assert encoder_id(get_encoder_spec("efficientnet-lite0")) == "efficientnet-lite0:568920525829"
    assert encoder_id(get_encoder_spec("speech-whisper-1pass")) == "speech-whisper-1pass:6bba5d8a858d"
    fp32, int8 = with_runtime(spec, "onnx", precision="fp32"), with_runtime(spec, "onnx", precision="int8")
    ids = {encoder_id(spec), encoder_id(fp32), encoder_id(int8)}
    assert len(ids) == 3
    assert encoder_id(int8).startswith("minilm-l6@onnx-int8:")
    assert encoder_id(torch_twin(int8)) == encoder_id(spec)
    # which precision --runtime onnx picks never changes the id of the torch spec
    assert encoder_id(spec.model_copy(update={"onnx_precision": "int8"})) == encoder_id(spec)


def test_features_of_runtimes_are_interchangeable_only_for_the_same_encoder():
    spec = get_encoder_spec("minilm-l6")
    assert interchangeable(with_runtime(spec, "onnx", precision="int8"), spec)
    other = spec.model_copy(update={"max_length": 128})
    assert not interchangeable(with_runtime(other, "onnx"), spec)
    audio = get_encoder_spec("logmel-stats")
    assert with_runtime(audio, "onnx") is audio  # no ONNX path: it runs as it is


def test_auto_runs_onnx_on_a_cpu_and_torch_on_a_gpu(monkeypatch):
    monkeypatch.delenv("MMALIGN_RUNTIME", raising=False)
    assert resolve_runtime(None, "cpu") == "onnx"
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    monkeypatch.setenv("MMALIGN_RUNTIME", "torch")
    assert resolve_runtime(None, "cpu") == "torch"
    with pytest.raises(ValueError, match=r"unknown runtime 'tensorrt'; valid: \['auto', 'torch', 'onnx'\]"):
        resolve_runtime("tensorrt", "cpu")


def test_a_torch_spec_with_int8_is_refused():
    body = {**get_encoder_spec("minilm-l6").model_dump(mode="json"), "precision": "int8"}
    with pytest.raises(ValueError, match="precision 'int8' of 'int8-on-torch' needs runtime 'onnx'"):
        plugin.register_encoder({**body, "name": "int8-on-torch"})


def test_the_feature_cache_keeps_runtimes_apart(tiny_preset, tmp_path):
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.schemas import Modality

    spec = get_encoder_spec("tiny-bert")
    onnx_spec = with_runtime(spec, "onnx")
    cache = FeatureCache(tmp_path)
    cache.write(Modality.TEXT, spec, ["a"], ["h"], np.ones((1, 16), np.float32))
    assert cache.directory(Modality.TEXT, spec) != cache.directory(Modality.TEXT, onnx_spec)
    assert "a" in cache.index(Modality.TEXT, spec)
    assert cache.index(Modality.TEXT, onnx_spec) == {}  # torch features are never read as ONNX ones
    assert len(cache.load(Modality.TEXT, onnx_spec, ["a"])) == 0


def test_new_weights_at_the_same_path_are_exported_again(tiny_hf_text_dir, tmp_path, export_root):
    import shutil

    import torch
    from transformers import BertModel

    folder = tmp_path / "model"
    shutil.copytree(tiny_hf_text_dir, folder)
    spec = plugin.register_encoder(
        {"kind": "hf_text", "name": "tiny-bert-moving", "dim": 16, "weights": str(folder), "max_length": 32},
        replace=True,
    )
    try:
        onnx_spec = with_runtime(spec, "onnx")
        before = plugin.build_encoder(onnx_spec, device="cpu").encode(["a red frog"])
        model = BertModel.from_pretrained(folder)
        with torch.no_grad():
            for param in model.parameters():
                param.mul_(-1.5)
        model.save_pretrained(folder)
        after = plugin.build_encoder(onnx_spec, device="cpu").encode(["a red frog"])
        expected = plugin.build_encoder(spec, device="cpu").encode(["a red frog"])
        np.testing.assert_allclose(after, expected, atol=1e-5)
        assert not np.allclose(before, after, atol=1e-3)
    finally:
        registry.unregister_encoder("tiny-bert-moving")
