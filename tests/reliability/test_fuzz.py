"""Fuzzing the readers and decoders with Hypothesis (issue #14, D).

Random bytes, truncations and byte flips of valid files, odd text encodings and huge declared
dimensions go into the catalog readers (JSONL, CSV, folder), the interactions reader and the media
decoders. A bad input must come out as that item's :class:`ItemError`/:class:`MediaError` (what
the pipeline writes to the dead letter), never as another exception, and everything that comes out
valid must be usable downstream (UTF-8 encodable, finite, within the size limits).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mmalign.connectors import ItemError, MediaError, SourceError
from mmalign.connectors.dead_letter import DeadLetterWriter, read_dead_letters
from mmalign.connectors.interactions import read_interactions
from mmalign.connectors.media import load_audio, load_image, media_limits, set_media_limits
from mmalign.connectors.sources import open_catalog
from mmalign.plugin.features.extract import text_hash
from mmalign.schemas import Modality

FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "shift_jis"]
SUFFIX_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), SUFFIX_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SUFFIX_TEXT, inner, max_size=4),
    max_leaves=12,
)
MEDIA_REF = st.one_of(
    st.sampled_from(["img/a.png", "../outside.png", "/etc/passwd", "img", "a\x00.png", "x" * 5000, "", " "]),
    SUFFIX_TEXT,
)
ITEM_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(SUFFIX_TEXT, st.integers(), st.sampled_from(["", " a", "a" * 600])),
        "text": st.one_of(SUFFIX_TEXT, st.none(), st.integers()),
        "image": st.one_of(MEDIA_REF, st.none()),
        "audio": st.one_of(MEDIA_REF, st.none()),
        "metadata": st.one_of(st.dictionaries(SUFFIX_TEXT, JSON_VALUES, max_size=3), JSON_VALUES),
        "extra": JSON_VALUES,
    },
)


@st.composite
def jsonl_bodies(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            lines.append(draw(st.binary(max_size=80)).replace(b"\n", b" "))
        elif kind == 1:
            lines.append(json.dumps(draw(JSON_VALUES)).encode())
        elif kind == 2:  # an item-like object, in an odd encoding
            text = json.dumps(draw(ITEM_LIKE), ensure_ascii=draw(st.booleans()))
            lines.append(text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace"))
        elif kind == 3:  # valid JSON with a byte flipped
            data = bytearray(json.dumps(draw(ITEM_LIKE)).encode())
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
            lines.append(bytes(data).replace(b"\n", b" "))
        elif kind == 4:
            lines.append(
                draw(st.sampled_from([b"NaN", b"[" * 5000, b'{"id": "x", "text": "\\udc80"}', b"\xef\xbb\xbf{}"]))
            )
        else:
            lines.append(json.dumps(draw(ITEM_LIKE)).encode())
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    return newline.join(lines)


def _check_records(catalog, dead_letter: Path, *, expected: int | None = None) -> tuple[int, int]:
    """Every record is an item or an ItemError; both survive what the pipeline does with them."""
    records = list(catalog.records())
    if expected is not None:
        assert len(records) == expected
    letters = DeadLetterWriter(dead_letter)
    good = bad = 0
    for record in records:
        assert (record.item is None) != (record.error is None)
        if record.error is not None:
            assert isinstance(record.error, ItemError)
            letters.write_error(record.error, stage="parse", source=record.source)
            bad += 1
            continue
        item = record.item
        json.dumps(item.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")
        if item.text is not None:
            text_hash(item.text)
        for modality in item.modalities:
            if modality is Modality.TEXT:
                continue
            try:
                path = catalog.resolve(item, modality)
            except MediaError:
                continue
            assert path.is_relative_to(catalog.media_root)
        good += 1
    assert len(read_dead_letters(dead_letter)) == bad
    dead_letter.unlink(missing_ok=True)
    event("has valid items" if good else "no valid item")
    event("has dead letters" if bad else "no dead letter")
    return good, bad


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "media" / "img").mkdir(parents=True)
    (root / "media" / "img" / "a.png").write_bytes(_png_bytes())
    return root


# -- catalogs ---------------------------------------------------------------------------------------
@fuzz(400)
@given(body=jsonl_bodies())
def test_fuzz_jsonl_catalog(work, body):
    path = work / "cat.jsonl"
    path.write_bytes(body)
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
        expected = sum(1 for line in handle if line.strip())
    _check_records(open_catalog(path, media_root=work / "media"), work / "dl.jsonl", expected=expected)


@st.composite
def csv_bodies(draw) -> bytes:
    header = draw(st.sampled_from([b"id,text,image,audio,kind", b"id\ttext\timage", b"id,text", b'"id",text']))
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            rows.append(draw(st.binary(max_size=60)))
        elif kind == 1:
            cells = draw(st.lists(st.one_of(SUFFIX_TEXT, MEDIA_REF), max_size=6))
            buffer = io.StringIO()
            csv.writer(buffer).writerow(cells)
            rows.append(buffer.getvalue().rstrip("\r\n").encode(draw(st.sampled_from(ENCODINGS)), errors="replace"))
        elif kind == 2:
            rows.append(
                draw(st.sampled_from([b'a,"unterminated', b"x" * 200_000, b"a,b,c,d,e,f,g", b",,,", b'"a""b",c']))
            )
        else:
            rows.append(b"item,some text,img/a.png,,k")
    return header + b"\n" + b"\n".join(rows) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


@fuzz(300)
@given(body=csv_bodies(), suffix=st.sampled_from([".csv", ".tsv"]))
def test_fuzz_csv_catalog(work, body, suffix):
    path = work / f"cat{suffix}"
    path.write_bytes(body)
    try:
        catalog = open_catalog(path, media_root=work / "media")
        _check_records(catalog, work / "dl.jsonl")
    except SourceError as exc:  # the header itself: the catalog cannot be read at all
        assert "column" in str(exc) or "header" in str(exc)


@fuzz(100)
@given(
    files=st.dictionaries(
        st.tuples(
            st.sampled_from(["a", "b", "sub/c", "sub/deep/d", "caf\xe9", "x y", ".hidden", "-"]),
            st.sampled_from([".png", ".txt", ".wav", ".svg", ".TXT", ".jpg", ".md"]),
        ),
        st.one_of(st.binary(max_size=64), SUFFIX_TEXT.map(lambda t: t.encode("utf-16"))),
        max_size=8,
    ),
    bad_name=st.booleans(),
)
def test_fuzz_folder_catalog(work, files, bad_name):
    root = work / "folder"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for (stem, suffix), content in files.items():
        path = root / f"{stem}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    if bad_name:  # a file name that is not UTF-8
        (root / os.fsdecode(b"bad\xff.txt")).write_bytes(b"x")
    _check_records(open_catalog(root), work / "dl.jsonl")


# -- interactions -------------------------------------------------------------------------------------
INTERACTION_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(SUFFIX_TEXT, st.integers(), JSON_VALUES),
        "item_id": st.one_of(SUFFIX_TEXT, st.integers(), JSON_VALUES),
        "weight": st.one_of(JSON_SCALARS, st.sampled_from(["nan", "inf", "1e999", "-3"])),
        "rating": JSON_SCALARS,
        "timestamp": st.one_of(
            JSON_SCALARS, st.sampled_from(["²", "1e30", "2024-02-30", "-1", "1700000000.5", "nan", "٣"])
        ),
    },
)


@st.composite
def interaction_bodies(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".jsonl", ".csv", ".tsv", ".inter"]))
    lines = []
    if suffix == ".jsonl":
        for _ in range(draw(st.integers(0, 8))):
            if draw(st.booleans()):
                lines.append(json.dumps(draw(INTERACTION_LIKE)).encode(draw(st.sampled_from(ENCODINGS)), "replace"))
            else:
                lines.append(draw(st.binary(max_size=60)).replace(b"\n", b" "))
    else:
        sep = "," if suffix == ".csv" else "\t"
        lines.append(
            draw(st.sampled_from(["user_id,item_id,weight,timestamp", "user_id:token\titem_id:token\trating:float"]))
            .replace(",", sep)
            .encode()
        )
        for _ in range(draw(st.integers(0, 8))):
            cells = draw(st.lists(st.one_of(SUFFIX_TEXT, st.sampled_from(["nan", "²", "1e999", '"'])), max_size=5))
            line = sep.join(cells).encode(draw(st.sampled_from(ENCODINGS)), "replace")
            lines.append(line if draw(st.booleans()) else draw(st.binary(max_size=40)).replace(b"\n", b" "))
    return suffix, b"\n".join(lines)


@fuzz(300)
@given(case=interaction_bodies())
def test_fuzz_interactions(work, case):
    suffix, body = case
    path = work / f"inter{suffix}"
    path.write_bytes(body)
    try:
        load = read_interactions(path, dead_letter=work / "dl.jsonl")
    except SourceError as exc:  # the CSV header itself cannot be read
        assert "header" in str(exc)
        return
    for row in load.interactions:
        assert row.user_id and row.item_id and np.isfinite(row.weight)
        json.dumps(row.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")
    assert all(isinstance(s, str) and isinstance(r, str) and r for s, r in load.invalid)
    event("has valid rows" if load.interactions else "no valid row")
    event("has invalid rows" if load.invalid else "no invalid row")
    assert len(read_dead_letters(work / "dl.jsonl")) == len(load.invalid)
    (work / "dl.jsonl").unlink(missing_ok=True)


# -- media: images ------------------------------------------------------------------------------------
def _png_bytes(size=(20, 12), mode="RGBA") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 128) if mode == "RGBA" else (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _valid_images() -> dict[str, bytes]:
    from PIL import Image

    out = {".png": _png_bytes()}
    for suffix, fmt in ((".jpg", "JPEG"), (".webp", "WEBP")):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), (10, 120, 200)).save(buffer, fmt)
        out[suffix] = buffer.getvalue()
    out[".svg"] = (
        b'<?xml version="1.0"?>\n<!DOCTYPE svg [ <!ENTITY c "red"> ]>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10" viewBox="0 0 20 10">'
        b'<rect width="20" height="10" fill="&c;"/><circle cx="5" cy="5" r="3"/></svg>'
    )
    return out


VALID_IMAGES = _valid_images()


def _check_image(path: Path) -> str:
    try:
        image = load_image(path, item_id="fuzz")
    except MediaError as exc:
        assert exc.item_id == "fuzz" and exc.modality == "image" and exc.reason
        event("MediaError")
        return "error"
    event("decoded")
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    assert max(image.size) <= media_limits().max_image_side
    return "ok"


@pytest.fixture(scope="module")
def fast_limits():
    """Smaller pixel budgets than the defaults so each example decodes quickly (the code paths are the same)."""
    previous = set_media_limits(max_image_pixels=4_000_000, max_image_side=256, decode_timeout_s=10)
    yield
    set_media_limits(previous)


@fuzz(250)
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".png", ".jpg", ".jpeg", ".webp", ".svg"]))
def test_fuzz_image_random_bytes(work, fast_limits, data, suffix):
    path = work / f"random{suffix}"
    path.write_bytes(data)
    _check_image(path)


@fuzz(300)
@given(
    suffix=st.sampled_from(sorted(VALID_IMAGES)),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3),
)
def test_fuzz_image_truncations_and_flips(work, fast_limits, suffix, cut, flips):
    data = bytearray(VALID_IMAGES[suffix])
    data = data[: max(1, int(len(data) * cut))] if cut < 0.98 else data
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    path = work / f"cut{suffix}"
    path.write_bytes(bytes(data))
    _check_image(path)


def _png_with_size(width: int, height: int, color_type: int, body: bytes) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


def _jpeg_with_size(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@fuzz(200)
@given(
    kind=st.sampled_from(["png", "jpg", "svg"]),
    width=st.one_of(st.integers(1, 70000), st.sampled_from([0, 2**31 - 1, 2**32 - 1])),
    height=st.one_of(st.integers(1, 70000), st.sampled_from([0, 2**31 - 1, 2**32 - 1])),
    color_type=st.sampled_from([0, 2, 3, 4, 6, 7]),
    body=st.binary(max_size=64),
)
def test_fuzz_image_huge_declared_dimensions(work, fast_limits, kind, width, height, color_type, body):
    if kind == "png":
        data = _png_with_size(width, height, color_type, body)
    elif kind == "jpg":
        data = _jpeg_with_size(min(width, 65535), min(height, 65535))
    else:
        data = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<rect width="{width}" height="{height}" fill="red"/></svg>'
        ).encode()
    path = work / f"huge.{kind}"
    path.write_bytes(data)
    _check_image(path)


SVG_SIZES = st.sampled_from(
    ["0", "-5", "1e9", "1e-9", "nan", "inf", "100%", "10cm", "", "abc", "3em", "1", "20px", "0.0001"]
)


@fuzz(120)
@given(
    width=SVG_SIZES,
    height=SVG_SIZES,
    viewbox=st.one_of(
        st.none(), st.sampled_from(["0 0 10 10", "0 0 0 0", "nan nan 1 1", "1 2", "0 0 1e9 1", "a b c d"])
    ),
    inner=st.lists(
        st.sampled_from(
            [
                '<rect width="10" height="10"/>',
                '<circle r="1e30"/>',
                '<path d="M 0 0 L 1e308 1e308 Z"/>',
                '<text font-size="1e9">x</text>',
                '<image href="/etc/passwd"/>',
                '<use href="#u"/>',
                '<g id="u"><use href="#u"/></g>',
                "<unclosed>",
                "&undefined;",
            ]
        ),
        max_size=4,
    ),
)
def test_fuzz_svg_documents(work, fast_limits, width, height, viewbox, inner):
    box = f' viewBox="{viewbox}"' if viewbox is not None else ""
    body = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"{box}>{"".join(inner)}</svg>'
    path = work / "doc.svg"
    path.write_text(body)
    _check_image(path)


# -- media: audio -----------------------------------------------------------------------------------
def _valid_audio() -> dict[str, bytes]:
    import soundfile

    t = np.arange(4000) / 8000
    wave = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    out = {}
    for suffix, fmt in ((".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")):
        buffer = io.BytesIO()
        soundfile.write(buffer, np.stack([wave, -wave], axis=1), 8000, format=fmt)
        out[suffix] = buffer.getvalue()
    return out


VALID_AUDIO = _valid_audio()


def _check_audio(path: Path) -> str:
    try:
        wave = load_audio(path, item_id="fuzz", sample_rate=16000, max_seconds=2.0)
    except MediaError as exc:
        assert exc.item_id == "fuzz" and exc.modality == "audio" and exc.reason
        event("MediaError")
        return "error"
    event("decoded")
    assert wave.dtype == np.float32 and wave.ndim == 1 and np.isfinite(wave).all()
    assert wave.size <= 2.0 * 16000 + 16
    return "ok"


@fuzz(200)
@given(data=st.binary(min_size=1, max_size=600), suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3"]))
def test_fuzz_audio_random_bytes(work, data, suffix):
    path = work / f"random{suffix}"
    path.write_bytes(data)
    _check_audio(path)


@fuzz(250)
@given(
    suffix=st.sampled_from(sorted(VALID_AUDIO)),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3),
)
def test_fuzz_audio_truncations_and_flips(work, suffix, cut, flips):
    data = bytearray(VALID_AUDIO[suffix])
    data = data[: max(1, int(len(data) * cut))] if cut < 0.98 else data
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    path = work / f"cut{suffix}"
    path.write_bytes(bytes(data))
    _check_audio(path)


@fuzz(200)
@given(
    channels=st.one_of(st.integers(1, 8), st.sampled_from([0, 255, 65535])),
    rate=st.one_of(st.sampled_from([8000, 44100]), st.integers(0, 2**32 - 1)),
    bits=st.sampled_from([8, 16, 24, 32, 0, 7, 64]),
    fmt=st.sampled_from([1, 3, 0xFFFE, 0, 85]),
    declared=st.one_of(st.integers(0, 2**32 - 1), st.just(400)),
    body=st.binary(min_size=0, max_size=400),
)
def test_fuzz_wav_huge_declared_header(work, channels, rate, bits, fmt, declared, body):
    block = max(1, channels * bits // 8) & 0xFFFF
    header = (
        b"RIFF"
        + struct.pack("<I", (36 + declared) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, fmt, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
        + b"data"
        + struct.pack("<I", declared)
    )
    path = work / "header.wav"
    path.write_bytes(header + body)
    _check_audio(path)
