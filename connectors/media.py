"""Decode media files into what encoders take: RGB images and mono float32 waveforms.

Every failure raises :class:`MediaError` naming the item, the file and the reason.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np

from mmalign.connectors.errors import MediaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".svg")
AUDIO_SUFFIXES = (".wav", ".ogg", ".mp3", ".flac")

#: Largest side an SVG is rendered at before the encoder's own resize.
SVG_RENDER_SIZE = 512
#: Shortest audio we accept; anything shorter is reported as empty.
MIN_AUDIO_SECONDS = 0.01


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_image(path: str | Path, *, item_id: str, background: tuple[int, int, int] = (255, 255, 255)):
    """Open PNG/JPEG/WebP (or render SVG) as an RGB ``PIL.Image``; alpha is composited on ``background``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise MediaError(
            item_id,
            f"unsupported image type {suffix!r}; supported: {list(IMAGE_SUFFIXES)}",
            path=str(path),
            modality="image",
        )
    try:
        if suffix == ".svg":
            image = Image.open(io.BytesIO(_render_svg(path, item_id)))
        else:
            image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MediaError(item_id, f"cannot decode image: {exc}", path=str(path), modality="image") from exc
    if image.width < 1 or image.height < 1:
        raise MediaError(item_id, "image has zero size", path=str(path), modality="image")
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def _render_svg(path: Path, item_id: str) -> bytes:
    try:
        import cairosvg
    except (ImportError, OSError) as exc:  # OSError: libcairo missing
        raise MediaError(
            item_id, f"SVG needs cairosvg and libcairo2 ({exc}); pip install cairosvg", path=str(path), modality="image"
        ) from exc
    data = path.read_bytes()
    try:
        if b"<!ENTITY" in data:
            data = _expand_internal_entities(data)
        return cairosvg.svg2png(bytestring=data, output_width=SVG_RENDER_SIZE, url=str(path))
    except Exception as exc:  # cairosvg raises many types on bad XML
        raise ValueError(f"cannot render SVG: {exc}") from exc


_ENTITY = re.compile(rb'<!ENTITY\s+([A-Za-z_][\w.-]*)\s+"([^"]*)"\s*>')
_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.S)
#: Expanded SVGs larger than this are refused (entity-expansion bombs).
MAX_EXPANDED_SVG_BYTES = 32 << 20


def _expand_internal_entities(data: bytes) -> bytes:
    """Inline the DOCTYPE's internal ``<!ENTITY name "value">`` declarations (Illustrator SVGs use them).

    The safe XML parser refuses any entity; external entities (``SYSTEM``) are never resolved
    here, they stay unexpanded and the parser rejects them.
    """
    doctype = _DOCTYPE.search(data)
    if doctype is None:
        return data
    entities = dict(_ENTITY.findall(doctype.group(0)))
    body = data[: doctype.start()] + data[doctype.end() :]
    for name, value in entities.items():
        body = body.replace(b"&" + name + b";", value)
        if len(body) > MAX_EXPANDED_SVG_BYTES:
            raise ValueError("SVG entity expansion is too large")
    return body


def load_audio(path: str | Path, *, item_id: str, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Decode to mono float32 at ``sample_rate``, cut to ``max_seconds``.

    Empty, truncated or undecodable files raise :class:`MediaError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise MediaError(
            item_id,
            f"unsupported audio type {suffix!r}; supported: {list(AUDIO_SUFFIXES)}",
            path=str(path),
            modality="audio",
        )
    if path.stat().st_size == 0:
        raise MediaError(item_id, "audio file is empty (0 bytes)", path=str(path), modality="audio")
    import soundfile

    try:
        with soundfile.SoundFile(str(path)) as handle:
            source_rate = handle.samplerate
            frames = min(handle.frames, int(max_seconds * source_rate)) if handle.frames > 0 else -1
            data = handle.read(frames=frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        data, source_rate = _load_audio_fallback(path, item_id, max_seconds, exc)
    wave = data.mean(axis=1) if data.ndim == 2 else data
    if wave.size < MIN_AUDIO_SECONDS * source_rate:
        raise MediaError(
            item_id, f"audio is empty or truncated ({wave.size} samples decoded)", path=str(path), modality="audio"
        )
    if not np.all(np.isfinite(wave)):
        raise MediaError(item_id, "audio contains NaN or infinite samples", path=str(path), modality="audio")
    if source_rate != sample_rate:
        import soxr

        wave = soxr.resample(wave, source_rate, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _load_audio_fallback(path: Path, item_id: str, max_seconds: float, first_error: Exception):
    """MP3 and odd containers that libsndfile refuses: try librosa's audioread path."""
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, rate = librosa.load(str(path), sr=None, mono=True, duration=max_seconds)
    except Exception as exc:
        raise MediaError(item_id, f"cannot decode audio: {first_error}", path=str(path), modality="audio") from exc
    return wave.astype(np.float32)[:, None], int(rate)
