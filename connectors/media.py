"""Decode media files into what encoders take: RGB images and mono float32 waveforms.

Every failure raises :class:`MediaError` naming the item, the file and the reason. Decoding has
budgets (:class:`MediaLimits`): large raster images are downscaled while they are decoded, an SVG
is rendered within a pixel budget in a separate process that is killed when it runs past the time
limit, and audio is read up to ``max_seconds``.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import select
import struct
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmalign.connectors.errors import ConfigError, MediaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".svg")
AUDIO_SUFFIXES = (".wav", ".ogg", ".mp3", ".flac")

#: Width an SVG is rendered at before the encoder's own resize (less when the pixel budget says so).
SVG_RENDER_SIZE = 512
#: Shortest audio we accept; anything shorter is reported as empty.
MIN_AUDIO_SECONDS = 0.01
#: Expanded SVGs larger than this are refused (entity-expansion bombs); see ``MediaLimits.max_svg_bytes``.
MAX_EXPANDED_SVG_BYTES = 32 << 20
#: Audio with more channels than this is refused (a header claiming thousands is a damaged file).
MAX_AUDIO_CHANNELS = 64


@dataclass(frozen=True)
class MediaLimits:
    """Per-item budgets of decoding, process-wide. Defaults, each overridable by an environment variable
    (``MMALIGN_`` + the field name in upper case, e.g. ``MMALIGN_DECODE_TIMEOUT_S=10``) or by
    :func:`set_media_limits`.

    - ``decode_timeout_s``: wall-clock limit for decoding or rendering one file. An SVG renders in a
      worker process that is killed at the limit; any other decode runs on a thread that the feature
      extraction abandons at the limit. The item is dead-lettered with the reason. ``0`` disables it.
    - ``max_image_side``: raster images are downscaled while decoding (JPEG draft mode, then
      ``reduce``/resample) so that their longer side is at most this; encoders take 224–448 px.
    - ``max_image_pixels``: images with more pixels than this (declared in their header) are refused.
    - ``max_svg_pixels``: an SVG is rendered SVG_RENDER_SIZE px wide, or smaller so that its raster
      has at most this many pixels (a 1:10000 aspect ratio would otherwise give a huge raster).
    - ``max_svg_bytes``: SVG files, and their text after inline entity expansion, larger than this
      are refused.
    - ``big_decode_bytes``: decodes whose full-size raster would exceed this run one at a time in the
      process (a PNG has no reduced decode: it is decoded at full size, then downscaled).
    - ``max_batch_bytes``: feature extraction hands a batch to the encoder early once its decoded
      inputs reach this size.
    - ``max_inflight_bytes``: feature extraction stops decoding ahead while the decoded inputs
      waiting for the encoder exceed this (at most ``2 × workers`` items more are being decoded).
    """

    decode_timeout_s: float = 30.0
    max_image_side: int = 1024
    max_image_pixels: int = 178_956_970  # Pillow's own decompression-bomb limit
    max_svg_pixels: int = 4_194_304  # 2048 x 2048
    max_svg_bytes: int = MAX_EXPANDED_SVG_BYTES
    big_decode_bytes: int = 256 << 20
    max_batch_bytes: int = 256 << 20
    max_inflight_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ConfigError(f"media limit {item.name} must be a number >= 0, got {value!r}")
            if item.name != "decode_timeout_s" and value < 1:
                raise ConfigError(f"media limit {item.name} must be >= 1, got {value!r}")

    @classmethod
    def from_env(cls, environ=None) -> MediaLimits:
        environ = os.environ if environ is None else environ
        values = {}
        for item in dataclasses.fields(cls):
            raw = environ.get(f"MMALIGN_{item.name.upper()}")
            if raw is None or not raw.strip():
                continue
            try:
                values[item.name] = float(raw) if item.name == "decode_timeout_s" else int(raw)
            except ValueError:
                raise ConfigError(
                    f"environment variable MMALIGN_{item.name.upper()}={raw!r} is not a "
                    f"{'number' if item.name == 'decode_timeout_s' else 'whole number'}"
                ) from None
        return cls(**values)


_limits: MediaLimits | None = None
_limits_lock = threading.Lock()


def media_limits() -> MediaLimits:
    """The limits in force (read from the environment on first use)."""
    global _limits
    with _limits_lock:
        if _limits is None:
            _limits = MediaLimits.from_env()
        return _limits


def set_media_limits(limits: MediaLimits | None = None, **changes) -> MediaLimits:
    """Set the process-wide limits (``None``: back to the environment/defaults); returns the previous ones.

    ``set_media_limits(decode_timeout_s=5)`` changes one field of the limits in force.
    """
    global _limits
    previous = media_limits()
    new = limits if limits is not None else (None if not changes else previous)
    if new is not None and changes:
        new = dataclasses.replace(new, **changes)
    with _limits_lock:
        _limits = new
    return previous


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Full-size decodes larger than ``big_decode_bytes`` take this lock: one at a time per process.
_big_decode = threading.Lock()


def load_image(
    path: str | Path,
    *,
    item_id: str,
    background: tuple[int, int, int] = (255, 255, 255),
    max_side: int | None = None,
):
    """Open PNG/JPEG/WebP (or render SVG) as an RGB ``PIL.Image``; alpha is composited on ``background``.

    The longer side is at most ``max_side`` (default: ``media_limits().max_image_side``); larger
    images are reduced while they are decoded. Every failure is a :class:`MediaError`.
    """
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise MediaError(
            item_id,
            f"unsupported image type {suffix!r}; supported: {list(IMAGE_SUFFIXES)}",
            path=str(path),
            modality="image",
        )
    limits = media_limits()
    side = int(max_side or limits.max_image_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if suffix == ".svg":
                image = Image.open(io.BytesIO(_render_svg(path, item_id, limits)))
            else:
                image = Image.open(path)
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise MediaError(
                    item_id,
                    f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{limits.max_image_pixels:,} (MMALIGN_MAX_IMAGE_PIXELS)",
                    path=str(path),
                    modality="image",
                )
            if width < 1 or height < 1:
                raise MediaError(item_id, "image has zero size", path=str(path), modality="image")
            turn = _exif_transpose_method(image)
            image = _decode_within(image, side, background, limits)
            if turn is not None:  # EXIF orientation: the picture as a viewer shows it, not the stored pixels
                image = image.transpose(turn)
    except MediaError:
        raise
    except MemoryError as exc:
        raise MediaError(item_id, "out of memory decoding the image", path=str(path), modality="image") from exc
    except Exception as exc:  # Pillow raises many types on damaged files
        raise MediaError(
            item_id, f"cannot decode image: {type(exc).__name__}: {exc}", path=str(path), modality="image"
        ) from exc
    if image.width < 1 or image.height < 1:
        raise MediaError(item_id, "image has zero size", path=str(path), modality="image")
    return image


def _decode_within(image, side: int, background: tuple[int, int, int], limits: MediaLimits):
    """Decode (reduced where the format allows: JPEG draft mode), downscale to ``side``, flatten to RGB."""
    from PIL import Image

    width, height = image.size
    big = width * height * max(len(image.getbands()), 3) > limits.big_decode_bytes
    with _big_decode if big else _nothing():
        if image.mode in HIGH_BIT_MODES:
            image = _to_8_bits(image)
        alpha = image.mode in ("RGBA", "LA", "P", "PA", "La", "RGBa") or "transparency" in image.info
        if max(width, height) > side and not alpha:
            image.thumbnail((side, side), Image.Resampling.BICUBIC, reducing_gap=2.0)  # draft + reduce + resample
        image.load()
        if alpha:
            rgba = image.convert("RGBA")
            image.close()
            if max(rgba.size) > side:
                rgba.thumbnail((side, side), Image.Resampling.BICUBIC, reducing_gap=2.0)
            canvas = Image.new("RGBA", rgba.size, (*background, 255))
            canvas.alpha_composite(rgba)
            return canvas.convert("RGB")
        return image.convert("RGB")


#: Pillow modes of one channel with more than 8 bits (16-bit grayscale PNG): ``convert("RGB")`` clips their
#: values at 255 instead of scaling them, so they are scaled to 8 bits first (:func:`_to_8_bits`).
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: EXIF orientation (tag 0x0112) -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_EXIF_ORIENTATION = 0x0112


def _exif_transpose_method(image):
    """The transpose that EXIF orientation 2-8 asks for, or None (read before decoding, which drops EXIF)."""
    from PIL import Image

    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no orientation
        return None
    return {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)


def _to_8_bits(image):
    """A 16-bit grayscale image as 8-bit ``L`` (``LA`` where a tRNS value marks transparent pixels): the
    full 16-bit range maps onto 0-255 (value / 257), as every viewer shows it."""
    from PIL import Image

    image.load()
    values = np.asarray(image).astype(np.uint32)
    gray = Image.fromarray(((values + 128) // 257).clip(0, 255).astype(np.uint8), "L")
    transparent = image.info.get("transparency")
    if isinstance(transparent, int) and not isinstance(transparent, bool):
        alpha = Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8), "L")
        gray = Image.merge("LA", (gray, alpha))
    image.close()
    return gray


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _render_svg(path: Path, item_id: str, limits: MediaLimits) -> bytes:
    """The SVG rendered to PNG bytes by a worker process (killed at ``decode_timeout_s``)."""
    try:
        size = path.stat().st_size
        if size > limits.max_svg_bytes:
            raise MediaError(
                item_id,
                f"SVG file is {size:,} bytes, over the limit of {limits.max_svg_bytes:,} (MMALIGN_MAX_SVG_BYTES)",
                path=str(path),
                modality="image",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(item_id, f"cannot read SVG: {exc}", path=str(path), modality="image") from exc
    request = {
        "url": str(path),
        "width": SVG_RENDER_SIZE,
        "max_side": limits.max_image_side,
        "max_pixels": limits.max_svg_pixels,
        "max_bytes": limits.max_svg_bytes,
    }
    status, payload = _SVG_WORKERS.render(request, data, limits.decode_timeout_s or None, item_id, path)
    if status != 0:
        raise MediaError(
            item_id, "cannot decode image: " + payload.decode("utf-8", "replace"), path=str(path), modality="image"
        )
    return payload


# -- SVG rendering in a worker process ----------------------------------------------------------------
# cairosvg is Python plus C calls into cairo; an SVG built to be slow (entity expansion, huge paths,
# deep nesting) can keep it busy for minutes, and a thread cannot be stopped. A worker process can
# be killed: the parent waits on the pipe with a deadline and kills the worker when it passes.
# Workers are reused (starting one costs ~0.3 s, a render then costs only the pipe transfer).


def _svg_size(tree, width: int, max_side: int, max_pixels: int) -> tuple[int, int | None]:
    """Render size: ``width`` px wide at the SVG's aspect ratio, shrunk so that neither side exceeds
    ``max_side`` and the raster has at most ``max_pixels``. The height is None where cairosvg derives
    it from the width (as it always did); it is given only where a side of 1 px distorts the aspect ratio."""
    from cairosvg.helpers import node_format, size

    class Probe:  # what node_format needs of a surface to resolve units
        dpi = 96
        context_width = context_height = None

    probe = Probe()
    probe.font_size = size(probe, "12pt")
    w, h, _ = node_format(probe, tree)
    if not (w and h and w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
        raise ValueError(f"SVG size is undefined or not positive ({w!r} x {h!r})")
    out_h = width * h / w
    scale = min(1.0, max_side / width, max_side / out_h, (max_pixels / (width * out_h)) ** 0.5)
    out_w = max(1, round(width * scale))
    height = out_w * h / w  # what cairosvg derives from out_w
    bounded = min(max(1.0, height), max_side, max_pixels / out_w)
    return out_w, (None if bounded == height else max(1, int(bounded)))


def _render_svg_bytes(data: bytes, url: str, width: int, max_side: int, max_pixels: int, max_bytes: int) -> bytes:
    """Runs in the worker process."""
    try:
        from cairosvg.parser import Tree
        from cairosvg.surface import PNGSurface
    except (ImportError, OSError) as exc:  # OSError: libcairo missing
        raise RuntimeError(f"SVG needs cairosvg and libcairo2 ({exc}); pip install cairosvg") from exc

    if b"<!ENTITY" in data:
        data = _expand_internal_entities(data, max_bytes)
    tree = Tree(bytestring=data, url=url)
    out_w, out_h = _svg_size(tree, width, max_side, max_pixels)
    output = io.BytesIO()
    surface = PNGSurface(tree, output, 96, output_width=out_w, output_height=out_h)
    surface.finish()
    return output.getvalue()


def _svg_worker_main() -> None:
    """Worker loop: requests on stdin, replies on stdout (length-prefixed)."""
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of libraries must not corrupt the replies
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return
        meta = json.loads(inp.read(struct.unpack(">I", head)[0]))
        (length,) = struct.unpack(">Q", inp.read(8))
        data = inp.read(length)
        try:
            status, payload = (
                0,
                _render_svg_bytes(
                    data, meta["url"], meta["width"], meta["max_side"], meta["max_pixels"], meta["max_bytes"]
                ),
            )
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
            status, payload = 1, f"cannot render SVG: {type(exc).__name__}: {exc}".encode("utf-8", "replace")
        out.write(struct.pack(">BQ", status, len(payload)) + payload)
        out.flush()


class _SvgWorker:
    def __init__(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from mmalign.connectors.media import _svg_worker_main; _svg_worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.renders = 0

    def request(self, meta: dict, data: bytes, timeout: float | None) -> tuple[int, bytes]:
        """Send one render; raises TimeoutError past ``timeout`` and EOFError if the worker died."""
        deadline = None if timeout is None else time.monotonic() + timeout
        blob = json.dumps(meta).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(blob)) + blob + struct.pack(">Q", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise EOFError(f"SVG worker is gone ({exc})") from exc
        self.renders += 1
        head = self._read(9, deadline)
        status, length = struct.unpack(">BQ", head)
        return status, self._read(length, deadline)

    def _read(self, n: int, deadline: float | None) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError("SVG worker exited")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, kill: bool = False) -> None:
        try:
            if kill:
                self.proc.kill()
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass


class _SvgWorkers:
    """Idle workers for reuse; a worker is killed when a render passes the deadline or it misbehaves."""

    #: Idle workers kept; a worker is replaced after this many renders (memory it kept stays bounded).
    MAX_IDLE = 8
    MAX_RENDERS = 200

    def __init__(self):
        self._idle: list[_SvgWorker] = []
        self._lock = threading.Lock()

    def render(self, meta: dict, data: bytes, timeout: float | None, item_id: str, path: Path) -> tuple[int, bytes]:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.alive():
            try:
                worker = _SvgWorker()
            except OSError as exc:
                raise MediaError(
                    item_id, f"cannot start the SVG renderer: {exc}", path=str(path), modality="image"
                ) from exc
        try:
            result = worker.request(meta, data, timeout)
        except TimeoutError:
            worker.close(kill=True)
            raise MediaError(
                item_id,
                f"SVG rendering took longer than {timeout:g} s (MMALIGN_DECODE_TIMEOUT_S); the renderer was stopped",
                path=str(path),
                modality="image",
            ) from None
        except (EOFError, struct.error) as exc:
            worker.close(kill=True)
            raise MediaError(
                item_id, f"the SVG renderer crashed on this file ({exc})", path=str(path), modality="image"
            ) from None
        except BaseException:
            worker.close(kill=True)
            raise
        with self._lock:
            if worker.renders < self.MAX_RENDERS and len(self._idle) < self.MAX_IDLE:
                self._idle.append(worker)
                worker = None
        if worker is not None:
            worker.close()
        return result

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


_SVG_WORKERS = _SvgWorkers()
atexit.register(_SVG_WORKERS.close)


_ENTITY = re.compile(rb'<!ENTITY\s+([A-Za-z_][\w.-]*)\s+"([^"]*)"\s*>')
_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.S)


def _expand_internal_entities(data: bytes, max_bytes: int = MAX_EXPANDED_SVG_BYTES) -> bytes:
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
        reference = b"&" + name + b";"
        if len(body) + body.count(reference) * (len(value) - len(reference)) > max_bytes:
            raise ValueError(f"SVG entity expansion is too large (over {max_bytes:,} bytes)")
        body = body.replace(reference, value)
    return body


def load_audio(path: str | Path, *, item_id: str, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Decode to mono float32 at ``sample_rate``, cut to ``max_seconds``.

    Empty, truncated or undecodable files, and implausible headers (sample rate, channels), raise
    :class:`MediaError`. The file is read block by block and mixed to mono as it is read, so memory
    stays at ``max_seconds`` of one channel whatever its header claims.
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
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise MediaError(item_id, f"cannot read audio: {exc}", path=str(path), modality="audio") from exc
    if empty:
        raise MediaError(item_id, "audio file is empty (0 bytes)", path=str(path), modality="audio")
    check_id3(path, item_id=item_id)
    try:
        wave, source_rate = _read_mono(path, max_seconds)
    except MediaError as exc:
        exc.item_id = item_id
        raise MediaError(item_id, exc.reason, path=str(path), modality="audio") from None
    except Exception as exc:  # noqa: BLE001 - libsndfile refuses MP3 and odd containers: try librosa
        wave, source_rate = _load_audio_fallback(path, item_id, max_seconds, exc)
    if wave.size < MIN_AUDIO_SECONDS * source_rate:
        raise MediaError(
            item_id, f"audio is empty or truncated ({wave.size} samples decoded)", path=str(path), modality="audio"
        )
    if not np.all(np.isfinite(wave)):
        raise MediaError(item_id, "audio contains NaN or infinite samples", path=str(path), modality="audio")
    if source_rate != sample_rate:
        import soxr

        try:
            wave = soxr.resample(wave, source_rate, sample_rate)
        except Exception as exc:  # noqa: BLE001
            raise MediaError(
                item_id, f"cannot resample audio from {source_rate} Hz: {exc}", path=str(path), modality="audio"
            ) from exc
    return np.ascontiguousarray(wave, dtype=np.float32)


def check_id3(path: str | Path, *, item_id: str) -> None:
    """Refuse a file that starts with an ID3v2 tag (MP3 metadata) and ends inside it, or right after it.

    Decoders handed such a file scan it for audio frames for seconds and then blame the file type
    ("possibly a pipe?"); the tag header says how long the tag is, so the cut is named at once.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header = handle.read(10)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise MediaError(item_id, f"cannot read audio: {exc}", path=str(path), modality="audio") from exc
    if len(header) < 10 or header[:3] != b"ID3":
        return
    major, flags, raw = header[3], header[5], header[6:10]
    if major == 0xFF or any(b & 0x80 for b in raw):
        raise MediaError(
            item_id,
            f"damaged ID3 tag header (version byte {major}, size bytes {raw.hex()})",
            path=str(path),
            modality="audio",
        )
    declared = (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]
    end = 10 + declared + (10 if flags & 0x10 else 0)  # + the footer
    if end > size:
        raise MediaError(
            item_id,
            f"the file is cut inside its ID3 tag: the tag declares {declared:,} bytes after its header, the file "
            f"has {size:,} bytes in all",
            path=str(path),
            modality="audio",
        )
    if end == size:
        raise MediaError(item_id, "the file holds an ID3 tag and no audio after it", path=str(path), modality="audio")


#: Sample rates outside this range are a damaged header, not audio.
AUDIO_RATE_RANGE = (1000, 768_000)


def _check_header(rate: int, channels: int) -> None:
    if not AUDIO_RATE_RANGE[0] <= rate <= AUDIO_RATE_RANGE[1]:
        raise MediaError(
            None, f"implausible sample rate {rate} Hz (valid: {AUDIO_RATE_RANGE[0]}-{AUDIO_RATE_RANGE[1]})"
        )
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise MediaError(None, f"implausible channel count {channels} (valid: 1-{MAX_AUDIO_CHANNELS})")


def _read_mono(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    import soundfile

    with soundfile.SoundFile(str(path)) as handle:
        rate, channels = int(handle.samplerate), int(handle.channels)
        _check_header(rate, channels)
        limit = int(max_seconds * rate)
        frames = min(handle.frames, limit) if handle.frames > 0 else limit
        parts = [
            block.mean(axis=1)
            for block in handle.blocks(blocksize=1 << 16, frames=frames, dtype="float32", always_2d=True)
        ]
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), rate


def _load_audio_fallback(path: Path, item_id: str, max_seconds: float, first_error: Exception):
    """MP3 and odd containers that libsndfile refuses: try librosa's audioread path."""
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, rate = librosa.load(str(path), sr=None, mono=True, duration=max_seconds)
        _check_header(int(rate), 1)
    except Exception as exc:  # noqa: BLE001 - every failure is this item's
        raise MediaError(item_id, f"cannot decode audio: {first_error}", path=str(path), modality="audio") from exc
    return np.asarray(wave, dtype=np.float32).reshape(-1), int(rate)
