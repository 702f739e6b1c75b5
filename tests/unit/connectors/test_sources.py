import json

import pytest

from mmalign.connectors import MediaError, SourceError
from mmalign.connectors.sources import CsvColumns, open_catalog
from mmalign.schemas import Modality


def test_jsonl_records_valid_and_invalid(media_dir):
    records = list(open_catalog(media_dir / "catalog.jsonl").records())
    valid = [r.item.id for r in records if r.item]
    errors = {r.error.item_id: r.error.reason for r in records if r.error}
    assert "red" in valid and "escape" in valid  # the path is checked when used, not when read
    assert "no modality" in errors["no-modality"]
    assert any(k is None and "invalid JSON" in v for k, v in errors.items())
    assert len(records) == 11


def test_duplicate_ids_are_reported(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "x"}) + "\n" + json.dumps({"id": "a", "text": "y"}) + "\n")
    records = list(open_catalog(path).records())
    assert records[0].item is not None
    assert "duplicate item id; first defined at c.jsonl:1" in records[1].error.reason


def test_paths_outside_root_and_missing_files_are_rejected(media_dir):
    catalog = open_catalog(media_dir / "catalog.jsonl")
    items = {i.id: i for i in catalog.items()}
    with pytest.raises(MediaError, match="outside the media root"):
        catalog.resolve(items["escape"], Modality.IMAGE)
    with pytest.raises(MediaError, match="file not found") as info:
        catalog.resolve(items["missing-file"], Modality.IMAGE)
    assert info.value.item_id == "missing-file"
    assert catalog.resolve(items["red"], Modality.IMAGE).name == "red.png"


def test_media_root_option(media_dir, tmp_path):
    other = tmp_path / "elsewhere.jsonl"
    other.write_text(json.dumps({"id": "r", "image": "img/red.png"}) + "\n")
    catalog = open_catalog(other, media_root=media_dir)
    assert catalog.resolve(catalog.items()[0], Modality.IMAGE).exists()


def test_csv_with_column_mapping(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("sku,title,picture,price\n1,red shoe,shoe.png,10\n2,,,\n")
    catalog = open_catalog(path, csv_columns=CsvColumns(id="sku", text="title", image="picture", audio=None))
    records = list(catalog.records())
    assert records[0].item.text == "red shoe" and records[0].item.metadata == {"price": "10"}
    assert records[1].error.item_id == "2" and "no modality" in records[1].error.reason
    with pytest.raises(SourceError, match="no id column 'id'"):
        list(open_catalog(path).records())


def test_media_folder_groups_by_stem(tmp_path):
    from tests.conftest import write_png, write_wav

    root = tmp_path / "stamps"
    write_png(root / "animals" / "frog.png")
    (root / "animals" / "frog.txt").write_text("A frog.\nfr.utf8=Une grenouille.\n")
    write_wav(root / "animals" / "frog.wav")
    write_png(root / "car.png")
    (root / "notes.md").write_text("ignored")
    items = {i.id: i for i in open_catalog(root).items()}
    assert set(items) == {"animals/frog", "car"}
    frog = items["animals/frog"]
    assert (frog.text, frog.image, frog.audio) == ("A frog.", "animals/frog.png", "animals/frog.wav")
    assert frog.metadata == {"category": "animals"} and items["car"].metadata == {}


def test_unknown_format_lists_valid(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_text("")
    with pytest.raises(SourceError, match="jsonl"):
        open_catalog(path)
    with pytest.raises(SourceError, match="does not exist"):
        open_catalog(tmp_path / "nope.jsonl")
