import numpy as np
import pytest

from mmalign.connectors import MediaError
from mmalign.connectors.media import load_audio, load_image


def test_images_decode_to_rgb(media_dir):
    red = load_image(media_dir / "img" / "red.png", item_id="r")
    assert red.mode == "RGB" and red.size == (40, 30)
    blue = load_image(media_dir / "img" / "blue.png", item_id="b")
    assert blue.getpixel((0, 0)) == (255, 255, 255)  # transparency composited on white
    green = load_image(media_dir / "img" / "green.svg", item_id="g")
    r, g, b = green.getpixel((green.width // 2, green.height // 2))
    assert g > 100 and r < 50


def test_jpeg_and_webp(tmp_path):
    from PIL import Image

    for suffix in (".jpg", ".webp"):
        path = tmp_path / f"x{suffix}"
        Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
        assert load_image(path, item_id="x").size == (8, 8)


def test_corrupt_image_names_item_and_file(media_dir):
    with pytest.raises(MediaError, match="item 'c' .*broken.png.*cannot decode image"):
        load_image(media_dir / "img" / "broken.png", item_id="c")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "x.bmp"
    path.write_bytes(b"BM")
    with pytest.raises(MediaError, match="unsupported image type '.bmp'"):
        load_image(path, item_id="x")


def test_audio_mono_resampled_and_capped(media_dir):
    wave = load_audio(media_dir / "snd" / "a440.wav", item_id="a", sample_rate=16000, max_seconds=0.25)
    assert wave.dtype == np.float32 and wave.ndim == 1 and abs(len(wave) - 4000) <= 1


def test_empty_and_truncated_audio(media_dir):
    with pytest.raises(MediaError, match="empty"):
        load_audio(media_dir / "snd" / "empty.wav", item_id="e", sample_rate=16000, max_seconds=1)
    with pytest.raises(MediaError, match="item 't'"):
        load_audio(media_dir / "snd" / "truncated.wav", item_id="t", sample_rate=16000, max_seconds=1)


def test_ogg_and_flac(tmp_path):
    import soundfile

    t = np.arange(8000) / 8000
    for fmt, suffix in (("OGG", ".ogg"), ("FLAC", ".flac")):
        path = tmp_path / f"x{suffix}"
        soundfile.write(path, np.sin(2 * np.pi * 300 * t).astype(np.float32), 8000, format=fmt)
        assert len(load_audio(path, item_id="x", sample_rate=16000, max_seconds=5)) == pytest.approx(16000, abs=50)


def test_svg_internal_entities_render_but_external_ones_do_not(tmp_path):
    good = tmp_path / "ent.svg"
    good.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE svg [ <!ENTITY ns_svg "http://www.w3.org/2000/svg"> ]>\n'
        '<svg xmlns="&ns_svg;" width="20" height="20"><rect width="20" height="20" fill="red"/></svg>'
    )
    assert load_image(good, item_id="e").getpixel((5, 5))[0] > 200
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    evil = tmp_path / "xxe.svg"
    evil.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE svg [ <!ENTITY x SYSTEM "file://{secret}"> ]>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><text>&x;</text></svg>'
    )
    with pytest.raises(MediaError, match="cannot decode image"):
        load_image(evil, item_id="x")
