"""The Battle for Wesnoth catalog on a tiny data folder written by the test: units with their game
descriptions, terrains by editor name, scenery items by file name, repeated pictures left out."""

from mmalign.connectors.datasets.wesnoth import build_items, parse_wml
from tests.conftest import write_png

UNIT = """#textdomain wesnoth-units
[unit_type]
    id=Elvish Archer
    name= _ "Elvish Archer"
    race=elf
    image="units/elves/archer.png"
    description= _ "Elves are ""fine"" archers.
They hunt in forests."
    [attack]
        name=bow
        description=_"bow"
    [/attack]
[/unit_type]
"""
TERRAIN = """[terrain_type]
    symbol_image=water/ocean-tile
    id=deep_water
    name= _ "Deep Water"
    editor_name= _ "Medium Deep Water"
[/terrain_type]
[terrain_type]
    symbol_image=water/missing
    id=nothing
    name= _ "No Image"
[/terrain_type]
"""


def test_wml_blocks_give_top_level_keys_with_multiline_quoted_values():
    (unit,) = parse_wml(UNIT, "unit_type")
    assert unit["name"] == "Elvish Archer" and unit["race"] == "elf"
    assert unit["description"] == 'Elves are "fine" archers.\nThey hunt in forests.'
    assert "range" not in unit and unit.get("description") != "bow"  # nested [attack] keys are skipped


def test_catalog_has_units_terrains_and_items_and_drops_repeated_pictures(tmp_path):
    data = tmp_path / "data"
    (data / "core" / "units" / "elves").mkdir(parents=True)
    (data / "core" / "units" / "elves" / "Archer.cfg").write_text(UNIT)
    (data / "core" / "terrain.cfg").write_text(TERRAIN)
    images = data / "core" / "images"
    write_png(images / "units" / "elves" / "archer.png", color=(10, 200, 10))
    write_png(images / "terrain" / "water" / "ocean-tile.png", color=(10, 10, 200))
    write_png(images / "items" / "altar-evil.png", color=(200, 10, 10))
    write_png(images / "items" / "altar-evil2.png", color=(200, 10, 10))  # the same bytes again
    items = {i["id"]: i for i in build_items(data)}
    assert sorted(items) == ["item/altar-evil", "terrain/deep_water", "unit/Elvish Archer"]
    assert items["unit/Elvish Archer"]["text"].startswith("Elvish Archer, elf unit: Elves are")
    assert items["terrain/deep_water"]["text"] == "Medium Deep Water, terrain: deep water"
    assert items["item/altar-evil"]["text"] == "altar evil, scenery item"
    assert items["terrain/deep_water"]["image"] == "terrain/water/ocean-tile.png"
