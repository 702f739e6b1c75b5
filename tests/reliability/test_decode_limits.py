"""Decoding has budgets: time per file, pixels per image, bytes per batch and in flight (issue #14, A)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from mmalign.connectors import MediaError
from mmalign.connectors.dead_letter import read_dead_letters
from mmalign.connectors.media import MediaLimits, load_image, media_limits, set_media_limits
from mmalign.plugin.encoders.registry import get_encoder_spec
from mmalign.plugin.features.extract import extract_features
from mmalign.schemas import Modality
from tests.conftest import write_png, write_svg


@pytest.fixture
def limits():
    """Set media limits for one test; the previous ones come back afterwards."""
    previous = media_limits()

    def apply(**changes):
        set_media_limits(previous, **changes)

    yield apply
    set_media_limits(previous)


def _slow_svg(path, elements=40000):
    """An SVG that takes cairosvg many seconds: tens of thousands of blurred, translucent shapes."""
    body = "".join(
        f'<circle cx="{i % 400}" cy="{i // 100 % 400}" r="40" fill="red" opacity="0.5" filter="url(#b)"/>'
        for i in range(elements)
    )
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400"><defs><filter id="b">'
        f'<feGaussianBlur stdDeviation="3"/></filter></defs>{body}</svg>'
    )
    return path


# -- per image: downscale at decode, pixel budgets -----------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_large_images_are_downscaled_while_decoding(tmp_path, suffix):
    from PIL import Image

    path = tmp_path / f"big{suffix}"
    Image.new("RGB", (6000, 4000), (30, 160, 40)).save(path)
    image = load_image(path, item_id="big")
    assert max(image.size) == media_limits().max_image_side == 1024
    assert image.size == (1024, 683) and image.mode == "RGB"
    assert image.getpixel((500, 300)) == pytest.approx((30, 160, 40), abs=2)
    small = load_image(write_png(tmp_path / "small.png", size=(40, 30)), item_id="small")
    assert small.size == (40, 30)  # small images are untouched


def test_transparent_large_image_is_downscaled_and_composited(tmp_path):
    path = write_png(tmp_path / "alpha.png", (200, 0, 0), size=(3000, 2000), alpha=True)
    image = load_image(path, item_id="a", max_side=300)
    assert image.size == (300, 200) and image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((150, 100))[0] > 150


def test_image_over_the_pixel_budget_is_refused_by_its_header(tmp_path, limits):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("L", (4000, 1000)).save(path)
    limits(max_image_pixels=1_000_000)
    with pytest.raises(MediaError, match=r"4000x1000 = 4,000,000 pixels, over the limit of 1,000,000"):
        load_image(path, item_id="w")


def test_svg_is_rendered_within_its_pixel_budget(tmp_path, limits):
    tall = tmp_path / "tall.svg"
    tall.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="200">'
        '<rect width="10" height="200" fill="blue"/></svg>'
    )
    limits(max_svg_pixels=20_000)
    image = load_image(tall, item_id="t")
    assert image.width * image.height <= 20_000 and image.height / image.width == pytest.approx(20, rel=0.1)
    limits(max_svg_pixels=10**9)
    image = load_image(tall, item_id="t")
    assert max(image.size) <= media_limits().max_image_side  # 512 px wide would be 10240 px tall
    needle = tmp_path / "needle.svg"  # 1:100000: cairo cannot even make a 512 px wide raster of it
    needle.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="100000"><rect/></svg>')
    assert load_image(needle, item_id="n").size == (1, 1024)


def test_svg_file_over_the_size_limit_is_refused(tmp_path, limits):
    path = write_svg(tmp_path / "g.svg")
    limits(max_svg_bytes=50)
    with pytest.raises(MediaError, match="over the limit of 50"):
        load_image(path, item_id="g")


def test_entity_expansion_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "bomb.svg"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE svg [ <!ENTITY a "{"x" * 1000}"> ]>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>' + "&a;" * 40000 + "</text></svg>"
    )
    with pytest.raises(MediaError, match="entity expansion is too large"):
        load_image(path, item_id="bomb")


# -- per file: time limit -----------------------------------------------------------------------------
def test_slow_svg_render_is_stopped_at_the_time_limit(tmp_path, limits):
    slow = _slow_svg(tmp_path / "slow.svg")
    limits(decode_timeout_s=1.0)
    # the message comes from the deadline path: the renderer process was killed there
    with pytest.raises(MediaError, match=r"SVG rendering took longer than 1 s .*renderer was stopped"):
        load_image(slow, item_id="slow")
    limits(decode_timeout_s=30.0)  # a fresh renderer process starts slowly on a loaded machine
    green = load_image(write_svg(tmp_path / "g.svg"), item_id="g")  # a fresh renderer takes over
    assert green.getpixel((256, 256))[1] > 100


class _FakeEncoder:
    """Decodes with ``decode(path)``, encodes to the mean of each input; records its batches."""

    def __init__(self, spec, decode):
        self.spec, self.modality, self.decode = spec, spec.modality, decode
        self.batches: list[int] = []

    def load_input(self, path, item_id):
        return self.decode(path)

    def encode(self, inputs, batch_size=None):
        self.batches.append(len(inputs))
        return np.stack([np.full(self.spec.dim, float(np.mean(np.asarray(x))) / 255, np.float32) for x in inputs])


def _catalog(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_png(root / f"{name}.png", size=(8, 8))
    lines = [json.dumps({"id": name, "image": f"{name}.png"}) for name in names]
    (root / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    return root / "catalog.jsonl"


def test_stuck_decoder_is_abandoned_and_the_run_goes_on(tmp_path, limits):
    """A decode that never returns (a C-level hang) costs its item, not the run."""
    from PIL import Image

    catalog = _catalog(tmp_path / "cat", ["a", "stuck", "b", "c"])
    release = threading.Event()

    def decode(path):
        if path.stem == "stuck":
            release.wait(30)  # stands for a decoder that hangs
        return Image.open(path).convert("RGB")

    spec = get_encoder_spec("efficientnet-lite0")
    encoder = _FakeEncoder(spec, decode)
    limits(decode_timeout_s=0.5)
    try:
        report = extract_features(
            catalog,
            tmp_path / "features",
            specs={Modality.IMAGE: spec},
            build_encoder=lambda spec, device: encoder,
            workers=2,
        )
    finally:
        release.set()
    counts = report.modalities[Modality.IMAGE]
    assert (counts.encoded, counts.failed) == (3, 1)
    [letter] = read_dead_letters(report.dead_letter)
    assert letter.item_id == "stuck" and letter.stage == "load"
    assert "decoding took longer than 0.5 s" in letter.reason and letter.path.endswith("stuck.png")


def test_slow_svg_in_a_catalog_is_a_dead_letter(tmp_path, limits, tiny_preset):
    root = tmp_path / "cat"
    _catalog(root, ["a", "b"])
    _slow_svg(root / "slow.svg")
    lines = [{"id": "a", "image": "a.png"}, {"id": "slow", "image": "slow.svg"}, {"id": "b", "image": "b.png"}]
    (root / "catalog.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    limits(decode_timeout_s=1.0)
    report = extract_features(
        root / "catalog.jsonl", tmp_path / "features", preset=tiny_preset, modalities=["image"], device="cpu"
    )
    counts = report.modalities[Modality.IMAGE]
    assert (counts.encoded, counts.failed) == (2, 1)
    [letter] = read_dead_letters(report.dead_letter)
    assert letter.item_id == "slow" and "took longer than 1 s" in letter.reason


# -- per batch: decoded bytes -----------------------------------------------------------------------
def test_decoded_bytes_in_flight_and_per_batch_are_capped(tmp_path, limits):
    """Inputs of 1 MB each, batches of up to 8: a batch is cut at 3 MB, and decoding ahead stops
    at 4 MB waiting for the encoder."""
    catalog = _catalog(tmp_path / "cat", [f"i{n:02d}" for n in range(40)])
    lock = threading.Lock()
    state = {"held": 0, "peak": 0}

    def decode(path):
        with lock:
            state["held"] += 1
            state["peak"] = max(state["peak"], state["held"])
        return np.zeros(1 << 18, np.float32)  # 1 MiB

    spec = get_encoder_spec("efficientnet-lite0")
    encoder = _FakeEncoder(spec, decode)
    original = encoder.encode

    def encode(inputs, batch_size=None):
        time.sleep(0.02)  # a slow encoder: decoding runs ahead of it
        out = original(inputs, batch_size)
        with lock:
            state["held"] -= len(inputs)
        return out

    encoder.encode = encode
    limits(max_batch_bytes=3 << 20, max_inflight_bytes=4 << 20)
    report = extract_features(
        catalog,
        tmp_path / "features",
        specs={Modality.IMAGE: spec},
        build_encoder=lambda spec, device: encoder,
        batch_size=8,
        workers=4,
    )
    assert report.modalities[Modality.IMAGE].encoded == 40
    assert max(encoder.batches) == 3 and sum(encoder.batches) == 40
    assert state["peak"] <= 5  # 4 MB in flight, plus the one being decoded when the cap was reached


def test_limits_come_from_the_environment_and_are_checked():
    env = {"MMALIGN_DECODE_TIMEOUT_S": "2.5", "MMALIGN_MAX_IMAGE_SIDE": "640", "MMALIGN_MAX_BATCH_BYTES": ""}
    limits = MediaLimits.from_env(env)
    assert (limits.decode_timeout_s, limits.max_image_side) == (2.5, 640)
    assert limits.max_batch_bytes == MediaLimits().max_batch_bytes
    from mmalign.connectors import ConfigError

    with pytest.raises(ConfigError, match="MMALIGN_MAX_IMAGE_SIDE='big' is not a whole number"):
        MediaLimits.from_env({"MMALIGN_MAX_IMAGE_SIDE": "big"})
    with pytest.raises(ConfigError, match="max_image_side must be >= 1"):
        MediaLimits(max_image_side=0)
