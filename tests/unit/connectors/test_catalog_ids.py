"""Item ids are normalised to Unicode NFC when a catalog is read (issue #23): ids that differ only by
normalisation are one item, and the second one is a dead letter naming the first."""

from __future__ import annotations

import json
import unicodedata

from mmalign.connectors.sources import open_catalog

NFC = unicodedata.normalize("NFC", "café/crème")
NFD = unicodedata.normalize("NFD", "café/crème")


def test_nfc_and_nfd_spellings_of_one_id_are_one_item_and_the_second_is_a_dead_letter(tmp_path):
    assert NFC != NFD
    lines = [{"id": NFC, "text": "first"}, {"id": NFD, "text": "second"}, {"id": "plain", "text": "other"}]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="utf-8")
    records = list(open_catalog(path).records())
    items = [r.item for r in records if r.item is not None]
    assert [i.id for i in items] == [NFC, "plain"]
    [bad] = [r for r in records if r.error is not None]
    assert bad.source == "c.jsonl:2" and bad.error.item_id == NFC
    assert "c.jsonl:1" in bad.error.reason and "NFC" in bad.error.reason and repr(NFD) in bad.error.reason


def test_an_nfd_id_alone_is_read_as_its_nfc_form(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(f"id,text\n{NFD},a cup\n", encoding="utf-8")
    [item] = open_catalog(path).items()
    assert item.id == NFC


def test_a_folder_catalog_with_nfd_file_names_gets_nfc_ids_and_keeps_the_real_paths(tmp_path):
    from PIL import Image

    from mmalign.schemas import Modality

    root = tmp_path / "media"
    (root / "drinks").mkdir(parents=True)
    name = unicodedata.normalize("NFD", "crème")
    Image.new("RGB", (4, 4)).save(root / "drinks" / f"{name}.png")
    catalog = open_catalog(root)
    [item] = catalog.items()
    assert item.id == "drinks/" + unicodedata.normalize("NFC", "crème")
    assert catalog.resolve(item, Modality.IMAGE).name == f"{name}.png"  # the file as it is on disk
