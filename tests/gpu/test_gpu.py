"""Device selection, precision and AMP agreement of the torch encoders.

The tests marked ``gpu`` need a CUDA device and skip with the reason elsewhere; the others check the
same code paths on the CPU (default precision, batch sizing, letterboxing on the decode threads).
Tiny random towers (seeded from their spec) stand in for the real models.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmalign import plugin
from mmalign.connectors.errors import ConfigError

torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()
NO_CUDA = "needs a CUDA device: torch.cuda.is_available() is False"

TINY_TIMM = {
    "kind": "timm_image",
    "name": "tiny-timm-effnet",
    "dim": 256,
    "arch": "test_efficientnet",
    "image_size": 64,
    "weights": None,
}


def _images(n: int = 12) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        image = Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))
        ImageDraw.Draw(image).ellipse([5, 5, w - 5, h - 5], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        out.append(image)
    return out


TEXTS = [
    "a red frog",
    "the blue car",
    "a small green tree",
    "the big dog barking",
    "a coin on a leaf",
    "an house",
    "red red red",
    "the cat sitting on the tree",
]


@pytest.fixture(scope="module")
def tiny_timm():
    spec = plugin.register_encoder(TINY_TIMM, replace=True)
    yield spec
    from mmalign.plugin.encoders.registry import unregister_encoder

    unregister_encoder(spec.name)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# -- CPU: runs everywhere ------------------------------------------------------------------------------
def test_cpu_runs_fp32_whatever_is_asked(monkeypatch):
    from mmalign.plugin.encoders.device import autocast, resolve_precision, select_device

    cpu = select_device("cpu")
    assert resolve_precision(cpu) == "fp32"
    assert resolve_precision(cpu, "bf16") == "fp32"  # autocast is CUDA-only here
    monkeypatch.setenv("MMALIGN_PRECISION", "fp16")
    assert resolve_precision(cpu) == "fp32"
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bad_precision_and_device_are_refused(monkeypatch):
    from mmalign.plugin.encoders.device import resolve_precision, select_device

    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        resolve_precision(select_device("cpu"), "int4")
    monkeypatch.setenv("MMALIGN_PRECISION", "half")
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        resolve_precision(select_device("cpu"))
    if not CUDA:
        with pytest.raises(ConfigError, match="no CUDA device"):
            select_device("cuda")


def test_cpu_default_batch_sizes(tiny_preset, tiny_timm):
    from mmalign.plugin.encoders.base import DEFAULT_BATCH_SIZE

    image = plugin.build_encoder(tiny_timm, device="cpu")
    text = plugin.build_encoder("tiny-bert", device="cpu")
    assert image.default_batch_size == DEFAULT_BATCH_SIZE[image.modality]
    assert text.default_batch_size == DEFAULT_BATCH_SIZE[text.modality]
    assert image.precision == text.precision == "fp32"


def test_letterbox_on_decode_gives_the_same_features(tiny_timm, tmp_path):
    """load_input letterboxes on the decode threads; encode of the raw image must give the same rows."""
    from mmalign.connectors.media import load_image

    enc = plugin.build_encoder(tiny_timm, device="cpu")
    paths = []
    for n, image in enumerate(_images(5)):
        rgba = image.convert("RGBA")
        rgba.putpixel((0, 0), (0, 0, 0, 0))  # some transparency: composited on the background
        paths.append(tmp_path / f"{n}.png")
        rgba.save(paths[-1])
    prepared = [enc.load_input(p, p.stem) for p in paths]
    assert all(im.size == (64, 64) and im.mode == "RGB" for im in prepared)
    raw = [load_image(p, item_id=p.stem) for p in paths]
    np.testing.assert_array_equal(enc.encode(prepared), enc.encode(raw))
    # an RGBA image handed to encode directly is composited, not rejected
    assert np.all(np.isfinite(enc.encode([Image.open(paths[0])])))


def test_fp16_checkpoint_loads_as_fp32_model(tiny_preset, tiny_hf_text_dir, tmp_path):
    """transformers 5 would load a fp16 checkpoint as a fp16 model (dtype='auto'): the encoder keeps fp32."""
    import shutil

    from transformers import BertModel

    half = tmp_path / "tiny-bert-fp16"
    shutil.copytree(tiny_hf_text_dir, half)
    BertModel.from_pretrained(str(tiny_hf_text_dir)).half().save_pretrained(str(half))
    spec = plugin.register_encoder(
        {"kind": "hf_text", "name": "tiny-bert-fp16", "dim": 16, "weights": str(half), "max_length": 32}, replace=True
    )
    enc = plugin.build_encoder(spec, device="cpu")
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    full = plugin.build_encoder("tiny-bert", device="cpu")
    assert _cosines(enc.encode(TEXTS), full.encode(TEXTS)).min() > 0.999


# -- CUDA -------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("preference", ["auto", "cuda", "cuda:0"])
def test_cuda_is_selected(preference):
    from mmalign.plugin.encoders.device import select_device

    assert select_device(preference).type == "cuda"


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
def test_cuda_index_out_of_range_and_default_precision(monkeypatch):
    from mmalign.plugin.encoders.device import resolve_precision, select_device

    with pytest.raises(ConfigError, match="CUDA device"):
        select_device(f"cuda:{torch.cuda.device_count()}")
    cuda = select_device("cuda")
    monkeypatch.delenv("MMALIGN_PRECISION", raising=False)
    assert resolve_precision(cuda) == ("bf16" if torch.cuda.get_device_capability()[0] >= 8 else "fp16")
    monkeypatch.setenv("MMALIGN_PRECISION", "fp32")
    assert resolve_precision(cuda) == "fp32"
    assert resolve_precision(cuda, "fp16") == "fp16"


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
def test_encoders_live_on_the_gpu(tiny_preset, tiny_timm):
    from mmalign.plugin.encoders.base import GPU_BATCH_SIZE

    for name in (tiny_timm.name, "tiny-bert"):
        enc = plugin.build_encoder(name, device="cuda")
        assert {p.device.type for p in enc.model.parameters()} == {"cuda"}
        assert {p.dtype for p in enc.model.parameters()} == {torch.float32}  # autocast, not half weights
        assert enc.default_batch_size == GPU_BATCH_SIZE[enc.modality]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_agrees_with_fp32_and_cpu(tiny_preset, tiny_timm, precision):
    """Per item cosine >= 0.99 between fp32 and autocast features, and between GPU fp32 and CPU."""
    images = _images(12)
    for name, inputs in ((tiny_timm.name, images), ("tiny-bert", TEXTS)):
        cpu = plugin.build_encoder(name, device="cpu").encode(inputs)
        enc = plugin.build_encoder(name, device="cuda")
        enc.precision = "fp32"
        fp32 = enc.encode(inputs, batch_size=5)
        enc.precision = precision
        amp = enc.encode(inputs, batch_size=5)
        assert amp.dtype == np.float32 and np.all(np.isfinite(amp))
        assert _cosines(fp32, cpu).min() > 0.999, name
        assert _cosines(amp, fp32).min() >= 0.99, (name, precision)
        # the batch size does not change the rows beyond rounding
        assert _cosines(enc.encode(inputs, batch_size=len(inputs)), amp).min() >= 0.99
