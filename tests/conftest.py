"""Shared fixtures: tiny media written by the tests and tiny encoder towers built from config."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["tests.tiny_catalog"]

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_WORDS = [
    "a",
    "an",
    "the",
    "frog",
    "cat",
    "dog",
    "car",
    "red",
    "green",
    "blue",
    "coin",
    "on",
    "leaf",
    "sitting",
    "barking",
    "big",
    "small",
    "tree",
    "house",
    ".",
]


# -- tiny media ----------------------------------------------------------------------------------
def write_png(path: Path, color=(200, 30, 30), size=(40, 30), alpha=False) -> Path:
    from PIL import Image, ImageDraw

    mode = "RGBA" if alpha else "RGB"
    image = Image.new(mode, size, (255, 255, 255, 0) if alpha else (255, 255, 255))
    ImageDraw.Draw(image).ellipse([4, 4, size[0] - 4, size[1] - 4], fill=(*color, 255) if alpha else color)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_svg(path: Path, color="green") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20">'
        f'<circle cx="10" cy="10" r="8" fill="{color}"/></svg>'
    )
    return path


def write_wav(path: Path, freq=440.0, seconds=0.5, rate=22050) -> Path:
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def write_corrupt_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not a png body" * 4)
    return path


def write_truncated_wav(path: Path) -> Path:
    good = write_wav(path.with_name("tmp_full.wav"), seconds=1.0)
    path.write_bytes(good.read_bytes()[:30])  # cut inside the header
    good.unlink()
    return path


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """A catalog folder with good and bad media and a catalog.jsonl describing them."""
    root = tmp_path / "catalog"
    write_png(root / "img" / "red.png", (220, 20, 20))
    write_png(root / "img" / "blue.png", (20, 20, 220), alpha=True)
    write_svg(root / "img" / "green.svg")
    write_corrupt_png(root / "img" / "broken.png")
    write_wav(root / "snd" / "a440.wav", 440.0)
    write_wav(root / "snd" / "a880.wav", 880.0)
    (root / "snd" / "empty.wav").write_bytes(b"")
    write_truncated_wav(root / "snd" / "truncated.wav")
    (tmp_path / "outside.png").write_bytes((root / "img" / "red.png").read_bytes())
    lines = [
        {"id": "red", "text": "a red circle", "image": "img/red.png", "audio": "snd/a440.wav"},
        {"id": "blue", "text": "a blue circle", "image": "img/blue.png"},
        {"id": "green", "text": "a green circle", "image": "img/green.svg", "audio": "snd/a880.wav"},
        {"id": "text-only", "text": "just words"},
        {"id": "corrupt-image", "text": "broken picture", "image": "img/broken.png"},
        {"id": "empty-audio", "audio": "snd/empty.wav"},
        {"id": "truncated-audio", "audio": "snd/truncated.wav", "text": "cut sound"},
        {"id": "missing-file", "image": "img/nope.png"},
        {"id": "escape", "image": "../outside.png"},
        {"id": "no-modality", "metadata": {"x": 1}},
    ]
    body = "\n".join(json.dumps(line) for line in lines) + "\n{not json\n"
    (root / "catalog.jsonl").write_text(body)
    return root


@pytest.fixture(autouse=True, scope="session")
def _weights_cache(tmp_path_factory):
    """Converted checkpoints and class-name embeddings go to a folder of the test session, not under the working
    directory (a test that needs its own sets ``MMALIGN_WEIGHTS_CACHE`` itself)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MMALIGN_WEIGHTS_CACHE", str(tmp_path_factory.mktemp("weights-cache")))
    yield
    patch.undo()


# -- tiny towers -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_hf_text_dir(tmp_path_factory) -> Path:
    """A 1-layer BERT with random weights and a word-piece vocab, saved like any HF model folder."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    try:  # transformers 5: the vocabulary itself
        tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    except TypeError:  # transformers 4: a vocab file
        tokenizer = BertTokenizer(vocab_file=str(folder / "vocab.txt"))
    assert tokenizer("a red frog")["input_ids"][1:-1] == [vocab.index(w) for w in ("a", "red", "frog")]
    tokenizer.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_preset(tiny_hf_text_dir):
    """Register tiny encoders for every modality and a preset using them (for the whole session)."""
    from mmalign.plugin.encoders import registry

    specs = [
        {
            "kind": "open_clip_image",
            "name": "tiny-clip-image",
            "dim": 16,
            "arch": "tiny-clip-test",
            "model_config_override": TINY_OPEN_CLIP,
            "weights": None,
        },
        {"kind": "hf_text", "name": "tiny-bert", "dim": 16, "weights": str(tiny_hf_text_dir), "max_length": 32},
        {
            "kind": "librosa_audio",
            "name": "tiny-logmel",
            "dim": 2 * (8 + 4),
            "n_mels": 8,
            "n_mfcc": 4,
            "n_fft": 256,
            "hop_length": 128,
            "sample_rate": 8000,
            "max_seconds": 2.0,
        },
    ]
    for spec in specs:
        registry.register_encoder(spec, replace=True)
    registry.register_preset(
        {"name": "tiny", "image": "tiny-clip-image", "text": "tiny-bert", "audio": "tiny-logmel"}, replace=True
    )
    yield "tiny"
    registry.unregister_preset("tiny")
    for spec in specs:
        registry.unregister_encoder(spec["name"])


# -- real data (installed at run time, never committed) --------------------------------------------
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")


@pytest.fixture(scope="session")
def tuxpaint_stamps() -> Path:
    if not (TUXPAINT_STAMPS / "animals" / "amphibians" / "frog.png").exists():
        pytest.skip(
            "real images need the Debian package tuxpaint-stamps-default (apt-get install -y "
            "tuxpaint-stamps-default; .ci/run installs it)"
        )
    return TUXPAINT_STAMPS


@pytest.fixture(scope="session")
def espeak(tmp_path_factory):
    """Speak a sentence to a WAV file with espeak-ng (real speech for audio encoders)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("real speech needs the Debian package espeak-ng (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("speech")

    def speak(text: str, name: str, voice: str = "en-us", speed: int = 160) -> Path:
        out = folder / f"{name}.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(out), text], check=True, capture_output=True)
        return out

    return speak


# -- the store, on each embedded engine ------------------------------------------------------------------
#: Embedded engines every store-backed test runs on: Qdrant Edge (the default) and qdrant-client's local mode.
EMBEDDED_ENGINES = ("edge", "local")


@pytest.fixture(params=EMBEDDED_ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def store_config(engine):
    """An in-process store of ``engine`` (Edge: a real Edge store in a temporary folder)."""
    from mmalign.schemas import StoreConfig

    return StoreConfig(path=":memory:", engine=engine)


@pytest.fixture
def store(store_config):
    from mmalign.connectors.store import VectorStore

    with VectorStore(store_config) as vs:
        yield vs
