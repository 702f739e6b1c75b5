"""Uploaded query media: what kind of file it is (from its bytes, not its name), base64 bodies, decoding.

The media decoders take files and pick the decoder by suffix, so an upload is written to a private
temporary file with the suffix its content says, decoded, and removed. Error messages never name that
file.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass

from mmalign.plugin.serve.errors import ServiceError

IMAGE_KINDS = {".png": "PNG", ".jpg": "JPEG", ".webp": "WebP", ".svg": "SVG"}
AUDIO_KINDS = {".wav": "WAV", ".ogg": "Ogg", ".flac": "FLAC", ".mp3": "MP3"}
_SVG_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE\s+svg[^>]*>\s*)?<svg[\s>]", re.S | re.I)
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=-]+)*;base64,", re.I)


@dataclass
class Upload:
    """One uploaded query file: its modality, its bytes and a name for messages (never a path)."""

    modality: str
    data: bytes
    name: str


def sniff(data: bytes) -> str | None:
    """The file suffix that ``data``'s content says (``.png``, ``.wav``...), or None."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head.startswith(b"OggS"):
        return ".ogg"
    if head.startswith(b"fLaC"):
        return ".flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return ".mp3"
    text = data[:4096].lstrip(b"\xef\xbb\xbf")
    if _SVG_START.match(text):
        return ".svg"
    return None


def check_kind(upload: Upload) -> str:
    """The upload's suffix; 415 when its content is not a file of its modality."""
    suffix = sniff(upload.data)
    kinds = IMAGE_KINDS if upload.modality == "image" else AUDIO_KINDS
    if not upload.data:
        raise ServiceError(415, "unsupported_media", f"{upload.modality} {upload.name!r} is empty (0 bytes)")
    if suffix not in kinds:
        if suffix is None:
            found = "not a media file"
        elif suffix in IMAGE_KINDS:
            found = f"an image ({IMAGE_KINDS[suffix]})"
        else:
            found = f"a sound ({AUDIO_KINDS[suffix]})"
        raise ServiceError(
            415,
            "unsupported_media",
            f"{upload.modality} {upload.name!r} is {found}; {upload.modality} queries take {', '.join(kinds.values())}",
        )
    return suffix


def decode_base64(value: str, modality: str, index: int) -> Upload:
    """A JSON ``image``/``audio`` value: base64, optionally as a data URL."""
    if not isinstance(value, str) or not value:
        raise ServiceError(400, "bad_request", f"{modality}[{index}] must be a non-empty base64 string")
    body = _DATA_URL.sub("", value.strip(), count=1)
    try:
        data = base64.b64decode(re.sub(r"\s+", "", body), validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(400, "bad_request", f"{modality}[{index}] is not valid base64") from None
    return Upload(modality, data, f"{modality}[{index}]")


def save_upload(upload: Upload) -> str:
    """Check the kind (415 when it is not one of its modality) and write it to a private temporary file
    with the suffix its content says; returns the path (remove it with :func:`remove_upload`)."""
    suffix = check_kind(upload)
    handle, path = tempfile.mkstemp(prefix="mmalign-query-", suffix=suffix)
    with os.fdopen(handle, "wb") as out:
        out.write(upload.data)
    return path


def remove_upload(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
