"""A bad line of a catalog or interactions file is that line's dead letter; long texts are capped in
the payload (issue #14, C)."""

from __future__ import annotations

import json

import pytest

from mmalign.connectors.dead_letter import DeadLetterWriter, read_dead_letters
from mmalign.connectors.interactions import read_interactions
from mmalign.connectors.sources import open_catalog
from mmalign.plugin.index.payload import DEFAULT_MAX_PAYLOAD_TEXT, build_payload
from mmalign.schemas import CatalogItem, Modality


def _records(path):
    records = list(open_catalog(path).records())
    return {r.source: r for r in records}


def test_non_utf8_byte_in_jsonl_is_that_lines_dead_letter(tmp_path):
    path = tmp_path / "cat.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "fine"}\n'
        b'{"id": "b", "text": "caf\xe9 latin-1"}\n'
        b'{"id": "c", "text": "also fine \xc3\xa9"}\n'
    )
    records = _records(path)
    assert [r.item.id for r in records.values() if r.item] == ["a", "c"]
    bad = records["cat.jsonl:2"].error
    assert bad is not None and "byte 0xe9 at column 25 is not valid UTF-8" in bad.reason
    assert records["cat.jsonl:3"].item.text == "also fine é"
    letters = DeadLetterWriter(tmp_path / "dl.jsonl")
    letters.write_error(bad, stage="parse", source="cat.jsonl:2")
    assert read_dead_letters(letters.path)[0].source == "cat.jsonl:2"


def test_non_utf8_byte_in_csv_is_that_rows_dead_letter(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\na,fine\nb,bad \xff byte\nc,fine too\n")  # with a BOM
    records = _records(path)
    assert [r.item.id for r in records.values() if r.item] == ["a", "c"]
    assert "column 'text': byte 0xff at column 5 is not valid UTF-8" in records["cat.csv:3"].error.reason


def test_json_that_python_cannot_hold_is_that_lines_dead_letter(tmp_path):
    path = tmp_path / "cat.jsonl"
    lines = [
        '{"id": "deep", "metadata": ' + "[" * 100000 + "]" * 100000 + "}",
        '{"id": "big", "metadata": {"n": ' + "9" * 5000 + "}}",
        '{"id": "nan", "text": "x", "metadata": {"n": NaN}}',
        '{"id": "huge", "text": "x", "metadata": {"n": 1e999}}',
        '{"id": "lone", "text": "\\ud800"}',
        '{"id": "ok", "text": "x"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    records = _records(path)
    assert [r.item.id for r in records.values() if r.item] == ["ok"]
    reasons = [records[f"cat.jsonl:{n}"].error.reason for n in range(1, 6)]
    assert "RecursionError" in reasons[0] and "digits" in reasons[1]
    assert "NaN is not valid JSON" in reasons[2] and "out of range" in reasons[3]
    assert "not valid Unicode" in reasons[4]


def test_media_path_with_a_nul_byte_is_a_media_error(tmp_path):
    from mmalign.connectors import MediaError

    (tmp_path / "cat.jsonl").write_text(json.dumps({"id": "n", "image": "a\u0000.png"}) + "\n")
    catalog = open_catalog(tmp_path / "cat.jsonl")
    [item] = catalog.items()
    with pytest.raises(MediaError, match="cannot use path"):
        catalog.resolve(item, Modality.IMAGE)


def test_rejected_interaction_rows_have_reasons_and_dead_letters(tmp_path):
    path = tmp_path / "inter.jsonl"
    path.write_bytes(
        b'{"user_id": "u1", "item_id": "a", "weight": 2}\n'
        b'{"user_id": "u1", "item_id": "caf\xe9"}\n'
        b'["u2", "b"]\n'
        b'{"user_id": "u2", "item_id": "b", "weight": "nan"}\n'
        b'{"user_id": {"x": 1}, "item_id": "b"}\n'
        b'{"user_id": "u3", "item_id": "c", "timestamp": "\xc2\xb2"}\n'
        b"{broken\n"
        b'{"user_id": "u3", "item_id": "d", "timestamp": "1700000000"}\n'
    )
    load = read_interactions(path, dead_letter=tmp_path / "dl.jsonl")
    assert [(r.user_id, r.item_id) for r in load.interactions] == [("u1", "a"), ("u3", "d")]
    reasons = dict(load.invalid)
    assert set(reasons) == {f"inter.jsonl:{n}" for n in (2, 3, 4, 5, 6, 7)}
    assert "byte 0xe9" in reasons["inter.jsonl:2"] and "expected a JSON object, got list" in reasons["inter.jsonl:3"]
    assert "weight" in reasons["inter.jsonl:4"] and "user_id must be a string" in reasons["inter.jsonl:5"]
    assert "timestamp" in reasons["inter.jsonl:6"] and "invalid JSON" in reasons["inter.jsonl:7"]
    letters = read_dead_letters(tmp_path / "dl.jsonl")
    assert [(d.source, d.stage) for d in letters] == [(s, "parse") for s, _ in load.invalid]
    assert letters[2].item_id == "b" and letters[2].reason == reasons["inter.jsonl:4"]


def test_rejected_interaction_csv_rows_have_reasons(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_bytes(b"user_id,item_id,weight\nu1,a,1\nu1,\xff,1\nu2,b,inf\n,c,1\n")
    load = read_interactions(path)
    assert [r.item_id for r in load.interactions] == ["a"]
    reasons = dict(load.invalid)
    assert "byte 0xff" in reasons["inter.csv:3"] and "finite" in reasons["inter.csv:4"]
    assert "user_id" in reasons["inter.csv:5"]


def test_long_text_is_capped_in_the_payload():
    text = "word " * 200_000  # 1 MB
    item = CatalogItem(id="x", text=text)
    payload = build_payload(item, [Modality.TEXT], "c", "b")
    assert len(payload["text"]) == DEFAULT_MAX_PAYLOAD_TEXT == 2000 and payload["text_truncated"] is True
    assert text.startswith(payload["text"])
    short = build_payload(CatalogItem(id="y", text="short"), [Modality.TEXT], "c", "b", max_text_chars=3)
    assert short["text"] == "sho" and short["text_truncated"] is True
    assert build_payload(CatalogItem(id="z", text="ok"), [Modality.TEXT], "c", "b")["text_truncated"] is False


def test_hits_carry_the_capped_text_and_vectors_the_full_text(trained, tmp_path):
    """Ingest caps the payload text; the text vector is computed from the full text (the catalog keeps it)."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.search import Searcher
    from mmalign.schemas import StoreConfig

    base, catalog = trained
    long_text = "a red frog " * 100_000
    lines = [json.loads(line) for line in catalog.read_text().splitlines()][:4]
    lines[1]["text"] = long_text
    mine = tmp_path / "catalog.jsonl"
    for line in lines:
        for key in ("image", "audio"):
            if key in line:
                line[key] = str(catalog.parent / line[key])
    mine.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with VectorStore(StoreConfig(path=":memory:")) as store:
        report = ingest(
            open_catalog(mine, media_root=catalog.parent),
            bundle=base / "bundle",
            collection="items",
            store=store,
            features_dir=tmp_path / "features",
            device="cpu",
            max_payload_text=100,
        )
        assert report.ok == 4
        with Searcher("items", store=store, device="cpu") as searcher:
            hits = searcher.search(text=[long_text], using="text", k=4)
        top = hits[0]
        assert top.id == lines[1]["id"] and top.score == pytest.approx(1.0, abs=1e-4)
        assert top.payload["text"] == long_text[:100] and top.payload["text_truncated"] is True
        assert all(len(h.payload["text"] or "") <= 100 for h in hits)
