"""The pooled pretraining corpus on a tiny iconify fixture: licence filter, emoji and clip-art sets
left out, variants of one concept grouped, splits that never cut a group, balanced order."""

import json

import pytest

from mmalign.connectors.datasets.pool import build_pool, concept, excluded_reason, group_split, svg_document

PATH = '<path fill="currentColor" d="M1 1h10v10H1z"/>'


def _set(prefix, names, aliases=None, categories=None):
    return {
        "prefix": prefix,
        "icons": {n: {"body": PATH} for n in names},
        "aliases": aliases or {},
        "categories": categories or {},
        "width": 16,
        "height": 16,
    }


@pytest.fixture()
def modules(tmp_path):
    root = tmp_path / "node_modules" / "@iconify" / "json"
    (root / "json").mkdir(parents=True)
    collections = {
        "good": {"name": "Good Icons", "category": "UI 24px", "license": {"spdx": "MIT"}},
        "other": {"name": "Other Icons", "category": "UI 16px / 32px", "license": {"spdx": "Apache-2.0"}},
        "smileys": {"name": "Smileys", "category": "Emoji", "license": {"spdx": "MIT"}},
        "openmoji": {"name": "OpenMoji", "category": "UI Multicolor", "license": {"spdx": "CC-BY-SA-4.0"}},
        "withicons-kawaii": {"name": "Kawaii", "category": "UI Multicolor", "license": {"spdx": "MIT"}},
        "noncommercial": {"name": "NC", "category": "UI 24px", "license": {"spdx": "CC-BY-NC-4.0"}},
    }
    sets = {
        "good": _set(
            "good",
            ["home", "home-outline", "home-bold", "arrow-left", "arrow-left-thin", "cat", "dog", "tree", "x"],
            aliases={"house": {"parent": "home"}},
            categories={"Buildings": ["home"]},
        ),
        "other": _set("other", ["home-filled", "arrow-left", "bike", "car", "boat", "train"]),
        "smileys": _set("smileys", ["grinning-face"]),
        "openmoji": _set("openmoji", ["cat-face"]),
        "withicons-kawaii": _set("withicons-kawaii", ["bunny"]),
        "noncommercial": _set("noncommercial", ["camera"]),
    }
    (root / "collections.json").write_text(json.dumps(collections))
    for prefix, data in sets.items():
        (root / "json" / f"{prefix}.json").write_text(json.dumps(data))
    return tmp_path / "node_modules"


def test_pool_keeps_licensed_icon_sets_and_leaves_out_emoji_clip_art_and_non_commercial(modules, tmp_path):
    out, rows, description = build_pool(tmp_path / "pool" / "pool.jsonl", modules=modules, echo=lambda line: None)
    sources = {r["metadata"]["source"] for r in rows}
    assert sources == {"iconify:good", "iconify:other"}
    excluded = " ".join(description["excluded"])
    for prefix in ("smileys", "openmoji", "withicons-kawaii", "noncommercial"):
        assert f"iconify:{prefix}:" in excluded
    assert "papirus" in excluded and "tuxpaint" in excluded and "wesnoth" in excluded
    assert {r["metadata"]["licence"] for r in rows if r["metadata"]["source"] == "iconify:good"} == {"MIT"}
    assert {s["source"]: s["pairs"] for s in description["sources"]} == {"iconify:good": 5, "iconify:other": 6}
    assert len(out.read_text().splitlines()) == len(rows) == description["n_pairs"]
    for row in rows:  # every SVG was written and is a document the media loader can render
        svg = (out.parent / row["image"]).read_text()
        assert svg.startswith("<svg") and "currentColor" not in svg


def test_one_variant_per_concept_per_set_and_texts_are_words(modules, tmp_path):
    _, rows, _ = build_pool(tmp_path / "pool.jsonl", modules=modules, echo=lambda line: None)
    by_id = {r["id"]: r for r in rows}
    good = [r for r in rows if r["metadata"]["source"] == "iconify:good"]
    assert len({r["metadata"]["concept"] for r in good}) == len(good)  # home/home-outline/home-bold: one
    assert "good:home" in by_id and "good:home-outline" not in by_id and "good:x" not in by_id
    assert by_id["good:home"]["text"] == "home, buildings; also house"
    assert by_id["good:arrow-left"]["text"] == "arrow left"
    assert by_id["good:home"]["metadata"]["group"] == by_id["other:home-filled"]["metadata"]["group"]


def test_concept_groups_are_never_cut_by_the_split(modules, tmp_path):
    _, rows, _ = build_pool(tmp_path / "pool.jsonl", modules=modules, echo=lambda line: None)
    groups = {r["id"]: r["metadata"]["group"] for r in rows}
    for seed in range(5):
        train, val = group_split(list(groups), groups, 0.3, seed)
        assert val and train and sorted(train + val) == sorted(groups)
        assert not {groups[i] for i in train} & {groups[i] for i in val}


def test_rows_alternate_between_sources_so_any_prefix_is_balanced(modules, tmp_path):
    _, rows, _ = build_pool(tmp_path / "pool.jsonl", modules=modules, echo=lambda line: None)
    first = [r["metadata"]["source"] for r in rows[:4]]
    assert first == ["iconify:good", "iconify:other"] * 2


@pytest.mark.parametrize(
    "name, expected",
    [("home-outline", "home"), ("arrow-left-bold-24", "arrow left"), ("wifi-off", "wifi off"), ("thin", "thin")],
)
def test_concept_drops_style_and_size_words(name, expected):
    assert concept(name) == expected


def test_exclusion_reasons_name_the_rule():
    assert "Emoji" in excluded_reason("x", {"category": "Emoji", "license": {"spdx": "MIT"}})
    assert "noto" in excluded_reason("noto-v1", {"category": "UI 24px", "license": {"spdx": "MIT"}})
    assert "licence" in excluded_reason("y", {"category": "UI 24px", "license": {}})
    assert excluded_reason("mdi", {"category": "Material", "license": {"spdx": "Apache-2.0"}}) is None


def test_svg_document_applies_the_icon_box_and_flips():
    svg = svg_document({"body": PATH, "width": 24, "hFlip": True}, {"height": 16})
    assert 'viewBox="0 0 24 16"' in svg and "scale(-1 1)" in svg
