"""Decoding gaps found by the reliability probe of issue #23: high-bit-depth images, EXIF orientation,
special files named as such, and an MP3 cut inside its ID3 tag."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

from mmalign.connectors import MediaError
from mmalign.connectors.media import load_audio, load_image
from mmalign.connectors.paths import resolve_media_path


def write_png16(path, pixels: np.ndarray, color_type: int, transparent: int | None = None):
    """A 16-bit PNG written byte by byte (color type 0: gray, 2: RGB, 4: gray + alpha, 6: RGBA)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    extra = chunk(b"tRNS", struct.pack(">H", transparent)) if transparent is not None else b""
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def test_a_16_bit_grayscale_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    image = load_image(write_png16(tmp_path / "ramp.png", ramp, color_type=0), item_id="ramp")
    pixels = np.asarray(image, dtype=np.float64)
    assert image.mode == "RGB"
    assert abs(pixels.mean() - ramp.mean() / 257) < 1.0  # was 254.5: everything above 255 clipped
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
    mid = load_image(write_png16(tmp_path / "mid.png", np.full((8, 8), 30000), color_type=0), item_id="mid")
    assert np.asarray(mid)[0, 0].tolist() == [117, 117, 117]  # 30000 / 257 = 116.7


def test_a_large_16_bit_grayscale_png_is_downscaled_too(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 300).astype(np.uint16), (200, 1))
    image = load_image(write_png16(tmp_path / "wide.png", ramp, color_type=0), item_id="wide", max_side=100)
    assert max(image.size) == 100
    assert abs(np.asarray(image, dtype=np.float64).mean() - ramp.mean() / 257) < 2.0


def test_a_16_bit_grayscale_png_with_a_transparent_value_is_composited_on_white(tmp_path):
    pixels = np.full((8, 8), 1000, dtype=np.uint16)
    pixels[:4] = 0  # the transparent value
    image = load_image(write_png16(tmp_path / "t.png", pixels, color_type=0, transparent=0), item_id="t")
    array = np.asarray(image)
    assert array[0, 0].tolist() == [255, 255, 255] and array[-1, -1].tolist() == [4, 4, 4]


@pytest.mark.parametrize("color_type,channels", [(2, 3), (4, 2), (6, 4)])
def test_16_bit_color_and_alpha_pngs_keep_their_values(tmp_path, color_type, channels):
    pixels = np.full((8, 8, channels), 30000, dtype=np.uint16)
    pixels[..., -1] = 65535 if channels in (2, 4) else 30000  # opaque alpha
    image = load_image(write_png16(tmp_path / "c.png", pixels, color_type=color_type), item_id="c")
    assert np.asarray(image)[0, 0].tolist() == [117, 117, 117]


def _sideways_jpeg(path, orientation: int):
    """A 40x20 upright picture (red left half, blue right half), stored rotated with an EXIF orientation
    tag that tells viewers how to turn it back."""
    from PIL import Image

    upright = Image.new("RGB", (40, 20), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 20, 20))
    inverse = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(inverse[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif.tobytes(), quality=95)
    return upright


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_exif_orientation_tag_is_applied(tmp_path, orientation):
    upright = _sideways_jpeg(tmp_path / "photo.jpg", orientation)
    image = load_image(tmp_path / "photo.jpg", item_id="photo")
    assert image.size == upright.size  # was (20, 40) for 6 and 8: the sideways pixels
    left, right = np.asarray(image)[10, 5], np.asarray(image)[10, 35]
    assert left[0] > 200 and left[2] < 60, left  # red on the left, as the viewer sees it
    assert right[2] > 200 and right[0] < 60, right


def test_an_exif_orientation_is_applied_after_a_reduced_decode(tmp_path):
    from PIL import Image

    stored = Image.new("RGB", (100, 400), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 100, 200))  # stored: red on top; orientation 6 turns it to red on the right
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "big.jpg", exif=exif.tobytes(), quality=95)
    image = load_image(tmp_path / "big.jpg", item_id="big", max_side=80)
    assert image.size == (80, 20)
    assert np.asarray(image)[10, 70][0] > 200 and np.asarray(image)[10, 10][2] > 200


def test_a_fifo_is_named_as_such_not_as_a_missing_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(MediaError, match="is a named pipe \\(FIFO\\), not a regular file"):
        resolve_media_path("pipe.png", tmp_path, item_id="p", modality="image")


def test_a_device_file_is_named_as_such(tmp_path):
    os.symlink("/dev/null", tmp_path / "null.wav")
    with pytest.raises(MediaError, match="outside the media root"):  # the link leaves the root first
        resolve_media_path("null.wav", tmp_path, item_id="d", modality="audio")
    with pytest.raises(MediaError, match="is a character device, not a regular file"):
        resolve_media_path("/dev/null", "/dev", item_id="d", modality="audio")


def test_a_missing_file_is_still_called_missing(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        resolve_media_path("nope.png", tmp_path, item_id="n", modality="image")


def _mp3_frames(seconds: float = 0.5) -> bytes:
    """Valid MPEG-1 layer III frames (silence): 128 kbit/s at 44.1 kHz, 417 bytes each."""
    header = bytes([0xFF, 0xFB, 0x90, 0x00])
    return (header + bytes(413)) * max(1, int(seconds * 44100 / 1152))


def test_an_mp3_cut_inside_its_id3_tag_fails_fast_and_says_so(tmp_path):
    declared = 4096  # the tag says 4096 bytes follow; the file ends after 100
    size = bytes([(declared >> 21) & 0x7F, (declared >> 14) & 0x7F, (declared >> 7) & 0x7F, declared & 0x7F])
    path = tmp_path / "cut.mp3"
    path.write_bytes(b"ID3\x03\x00\x00" + size + b"\x00" * 100)
    # checked before any decoder runs (the probe's decoder scanned for 8 s and said "possibly a pipe?")
    with pytest.raises(MediaError, match="ID3 tag.* 4,096 bytes.* the file has 110"):
        load_audio(path, item_id="cut", sample_rate=16000, max_seconds=5)


def test_an_mp3_with_a_whole_id3_tag_is_not_refused_by_the_tag_check(tmp_path):
    from mmalign.connectors.media import check_id3

    body = b"\x00" * 10
    tag = b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(body)]) + body
    path = tmp_path / "ok.mp3"
    path.write_bytes(tag + _mp3_frames())
    check_id3(path, item_id="ok")  # no error: the tag ends inside the file
