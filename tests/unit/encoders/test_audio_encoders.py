"""Audio encoders with tiny towers: aiSFX network, concatenation, distilled student; legacy checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from mmalign import plugin
from mmalign.plugin.encoders.weights import WeightsError

TINY_AISFX = {
    "kind": "aisfx_audio",
    "name": "tiny-aisfx",
    "dim": 2 * 8 * 2,
    "sample_rate": 8000,
    "n_mels": 16,
    "n_fft": 256,
    "hop_length": 128,
    "block_frames": 16,
    "block_hop": 8,
    "channels": 2,
    "weights": None,
}
TINY_LOGMEL = {
    "kind": "librosa_audio",
    "name": "tiny-logmel-16k",
    "dim": 2 * (8 + 4),
    "n_mels": 8,
    "n_mfcc": 4,
    "n_fft": 256,
    "hop_length": 128,
    "sample_rate": 16000,
    "max_seconds": 2.0,
}


def _spec(body: dict):
    from mmalign.schemas.encoders import ENCODER_SPEC_ADAPTER

    return ENCODER_SPEC_ADAPTER.validate_python(body)


def _tone(freq, seconds, rate, noise=0.0, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    if noise:
        wave = wave + noise * np.random.default_rng(seed).standard_normal(len(t))
    return wave.astype(np.float32)


@pytest.fixture
def aisfx():
    return plugin.build_encoder(_spec(TINY_AISFX), device="cpu")


def test_aisfx_blocks_follow_the_reference_blocking(aisfx):
    frames = np.ones((10, 16), np.float32)
    assert aisfx.blocks(frames).shape == (1, 16, 16)  # shorter than a block: one, zero-padded
    assert aisfx.blocks(np.ones((16, 16), np.float32)).shape == (1, 16, 16)
    assert aisfx.blocks(np.ones((40, 16), np.float32)).shape == (4, 16, 16)  # starts 0, 8, 16, 24
    assert aisfx.blocks(np.ones((37, 16), np.float32)).shape == (3, 16, 16)  # a partial last block is dropped
    padded = aisfx.blocks(frames)[0]
    assert padded[:10].min() == 1 and padded[10:].max() == 0


def test_aisfx_encodes_mean_and_max_over_blocks(aisfx):
    waves = [_tone(440, 0.5, 8000), _tone(440, 3.0, 8000, noise=0.05), np.zeros(4000, np.float32)]
    out = aisfx.encode(waves, batch_size=3)
    assert out.shape == (3, 32) and out.dtype == np.float32 and np.isfinite(out).all()
    one = aisfx.encode(waves[1:2], batch_size=1)
    np.testing.assert_allclose(out[1], one[0], rtol=1e-5, atol=1e-6)  # the batch does not change a clip
    mean, peak = out[:, :16], out[:, 16:]
    assert np.all(peak >= mean - 1e-6)
    assert aisfx.log_mel(np.zeros(4000, np.float32)).max() == 0  # silence: no division by a zero peak


def test_aisfx_spec_checks_its_dim():
    with pytest.raises(ValueError, match="dim must be 32"):
        _spec({**TINY_AISFX, "dim": 31})


def test_aisfx_refuses_a_checkpoint_of_another_width(tmp_path):
    from safetensors.torch import save_file

    from mmalign.plugin.encoders.sfx import build_network

    state = {k: v for k, v in build_network(3).state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp_path / "w.safetensors"))
    spec = _spec({**TINY_AISFX, "weights": str(tmp_path / "w.safetensors")})
    with pytest.raises(WeightsError, match=r"conv_block1.conv1.weight is \(3, 1, 3, 3\).*channels=2"):
        plugin.build_encoder(spec, device="cpu")


# -- legacy checkpoints -------------------------------------------------------------------------------
def test_legacy_checkpoint_loads_numpy_scalars_and_nothing_else(tmp_path):
    import argparse

    import torch

    from mmalign.plugin.encoders.weights import load_legacy_checkpoint

    good = tmp_path / "good.pth"
    torch.save(({"w": torch.ones(2)}, {"dataset": (np.int64(3), 78), "x": np.float32(0.5)}), good)
    state, info = load_legacy_checkpoint(good)
    assert torch.equal(state["w"], torch.ones(2)) and int(info["dataset"][0]) == 3
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "opts": argparse.Namespace(a=1)}, evil)
    with pytest.raises(WeightsError, match="weights only"):
        load_legacy_checkpoint(evil)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(WeightsError):
        load_legacy_checkpoint(truncated)


def test_converted_checkpoint_is_kept_as_safetensors(tmp_path, monkeypatch):
    import torch

    from mmalign.plugin.encoders import weights

    source = tmp_path / "ck.pth"
    torch.save(({"a": torch.arange(3.0)}, {}), source)
    monkeypatch.setenv(weights.WEIGHTS_CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    def convert(path):
        calls.append(path)
        return weights.load_legacy_checkpoint(path)[0]

    first = weights.converted_checkpoint(source, "ck", convert)
    again = weights.converted_checkpoint(source, "ck", convert)
    assert len(calls) == 1 and torch.equal(first["a"], again["a"])
    [kept] = (tmp_path / "cache").glob("ck-*.safetensors")
    kept.write_bytes(b"garbage")  # a damaged copy is converted again
    assert torch.equal(weights.converted_checkpoint(source, "ck", convert)["a"], torch.arange(3.0)) and len(calls) == 2
    blocked = tmp_path / "file"
    blocked.write_text("x")
    monkeypatch.setenv(weights.WEIGHTS_CACHE_ENV, str(blocked / "sub"))  # cannot be created: used unsaved
    assert torch.equal(weights.converted_checkpoint(source, "ck", convert)["a"], torch.arange(3.0))


def test_aisfx_package_missing_says_how_to_install(monkeypatch):
    import importlib.util

    from mmalign.plugin.encoders.weights import resolve_packaged

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "aisfx" else real(name, *a))
    with pytest.raises(WeightsError, match=r"pip install --no-deps aisfx==0.1.2"):
        resolve_packaged("pkg:aisfx")


# -- concatenation --------------------------------------------------------------------------------------
def test_concat_is_its_parts_normalised_and_weighted(aisfx):
    from mmalign.plugin.encoders.combined import combine_parts

    logmel = _spec(TINY_LOGMEL)
    spec = _spec(
        {
            "kind": "concat_audio",
            "name": "tiny-concat",
            "dim": 24 + 32,
            "parts": [
                {"encoder": logmel.model_dump(), "weight": 2.0, "keep_last": 1},
                {"encoder": aisfx.spec.model_dump(), "normalize": True},
            ],
        }
    )
    assert spec.sample_rate == 16000 and spec.max_seconds == 30.0
    enc = plugin.build_encoder(spec, device="cpu")
    waves = [_tone(300, 1.0, 16000), _tone(2000, 0.4, 16000, noise=0.1)]
    out = enc.encode(waves)
    assert out.shape == (2, 56) and not enc.annotates
    np.testing.assert_allclose(np.linalg.norm(out[:, :23], axis=1), 2.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out[:, 24:], axis=1), 1.0, rtol=1e-5)
    parts = [enc.parts[0].encode(waves), aisfx.encode([enc._inputs_for(aisfx, [w])[0] for w in waves])]
    np.testing.assert_allclose(out, combine_parts(spec, parts), rtol=1e-5, atol=1e-6)
    assert out[0, 23] == pytest.approx(parts[0][0, 23])  # the kept column is left as it is
    zero = combine_parts(spec, [np.zeros((1, 24), np.float32), parts[1][:1]])
    assert np.isfinite(zero).all() and not zero[0, :24].any()  # an empty part stays zero
    with pytest.raises(ValueError, match="sum of the parts"):
        _spec({**spec.model_dump(), "dim": 55})


# -- the distilled student --------------------------------------------------------------------------------
def _student_spec(**kw):
    from benchmarks.audio_student import AudioStudentSpec

    return AudioStudentSpec(
        **{
            "name": "tiny-student",
            "dim": 6,
            "teacher_id": "t:0",
            "n_mels": 16,
            "channels": (4, 8),
            "hidden": 8,
            "max_seconds": 2.0,
            **kw,
        }
    )


def test_student_default_size_is_under_a_million_parameters():
    from benchmarks.audio_student import build_network

    spec = _student_spec(dim=1409, n_mels=64, channels=(16, 32, 64, 128), hidden=256, hop_length=320)
    assert sum(p.numel() for p in build_network(spec).parameters()) < 1_000_000


def test_student_encodes_each_clip_alone_and_learns(tmp_path):
    import torch
    from safetensors.torch import save_file

    from benchmarks.audio_student import AudioStudentEncoder, train_audio_student

    spec = _student_spec()
    rng = np.random.default_rng(0)
    waves = [_tone(f, s, 16000, noise=0.02, seed=i) for i, (f, s) in enumerate([(200, 1.0), (900, 0.3), (3000, 2.5)])]
    enc = AudioStudentEncoder(spec, device="cpu")
    out = enc.encode(waves, batch_size=3)
    assert out.shape == (3, 6) and np.isfinite(out).all()
    np.testing.assert_allclose(out[1], enc.encode(waves[1:2])[0], rtol=1e-5, atol=1e-6)
    targets = rng.standard_normal((3, 6)).astype(np.float32)
    training = train_audio_student(
        spec,
        waves,
        targets,
        val_waves=waves,
        val_targets=targets,
        epochs=25,
        batch_size=3,
        lr=1e-2,
        aux_columns=[5],
        patience=25,
    )
    losses = [h["train_loss"] for h in training.history]
    assert losses[-1] < losses[0] and training.best_epoch >= 1
    save_file(training.state, str(tmp_path / "student.safetensors"))
    trained = AudioStudentEncoder(spec.model_copy(update={"weights": str(tmp_path / "student.safetensors")}), "cpu")
    with torch.no_grad():
        trained.model.eval()
    assert not np.allclose(trained.encode(waves), out)
    bad = _student_spec(channels=(4, 4), weights=str(tmp_path / "student.safetensors"))
    with pytest.raises(WeightsError, match="does not fit"):
        AudioStudentEncoder(bad, "cpu")
    with pytest.raises(WeightsError, match="safetensors"):
        AudioStudentEncoder(_student_spec(weights=str(tmp_path)), "cpu")
