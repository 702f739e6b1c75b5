"""Battle for Wesnoth's game data (Debian package ``wesnoth-1.16-data``, GPL-2+) as an mmalign catalog.

Three kinds of game assets, each with the words the game itself gives them:

- **units** (``data/core/units/**/*.cfg``, one ``[unit_type]`` each): the unit's sprite is the image;
  the text is its name, race and the game's description ("Elvish Archer, elf unit: As primarily
  foragers and hunters, ...");
- **terrains** (``data/core/terrain.cfg``): the terrain's tile is the image; the text is its editor name
  and name ("Tropical Deep Water, terrain: deep water");
- **scenery items** (``data/core/images/items/*.png``): the picture, and its file name as words.

An image whose bytes repeat an earlier one is left out (its text would be a second answer for the
same picture). Media stay where Debian put them (``data/core/images`` is the media root); nothing of
the game is copied into this repository.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from mmalign.connectors.datasets.jsonl import write_jsonl
from mmalign.connectors.datasets.papirus import words
from mmalign.connectors.errors import SourceError

INSTALL_HINT = "apt-get install -y --no-install-recommends wesnoth-1.16-data"
DEFAULT_DATA = Path("/usr/share/games/wesnoth/1.16/data")
MAX_DESCRIPTION = 400

_KEY = re.compile(r"^\s*(\w+)\s*=\s*(.*)$")
_TRANSLATABLE = re.compile(r'^_?\s*"')


def find_data_dir() -> Path:
    from mmalign.connectors.datasets.debian import package_folder

    found = package_folder("wesnoth-1.16-data", DEFAULT_DATA, "wesnoth/1.16/data")
    if found is not None and (found / "core").is_dir():
        return found
    raise SourceError(f"Battle for Wesnoth's data is not installed: {INSTALL_HINT}")


def parse_wml(text: str, tag: str) -> list[dict[str, str]]:
    """The top-level keys of every ``[tag]`` block (nested blocks skipped); quoted values may span
    lines, ``_ "..."`` marks are dropped, ``""`` is a quote."""
    blocks: list[dict[str, str]] = []
    depth, current = 0, None
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if re.match(r"^\[/\w+\]$", stripped):
            depth -= 1
            if depth == 0 and current is not None:
                blocks.append(current)
                current = None
            continue
        if re.match(r"^\[[+]?\w+\]$", stripped):
            if depth == 0 and stripped == f"[{tag}]":
                current = {}
            depth += 1
            continue
        match = _KEY.match(line)
        if not match or current is None or depth != 1:
            continue
        key, value = match.groups()
        value = value.strip()
        if _TRANSLATABLE.match(value) or value.startswith('"'):
            value = value[value.index('"') + 1 :]
            while _unclosed(value):
                value += "\n" + next(lines, '"')
            value = value[: _closing(value)].replace('""', '"')
        current[key] = value.strip()
    return blocks


def _closing(value: str) -> int:
    i = 0
    while i < len(value):
        if value[i] == '"':
            if value[i + 1 : i + 2] == '"':
                i += 2
                continue
            return i
        i += 1
    return len(value)


def _unclosed(value: str) -> bool:
    return _closing(value) == len(value)


def _image(images: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = images / value.split("~")[0].split(":")[0].strip('"')
    if path.suffix == "":
        path = path.with_suffix(".png")
    return path if path.is_file() else None


def _clean(text: str) -> str:
    text = re.sub(r"\{[^}]*\}", " ", text)  # macros
    text = re.sub(r"<[^>]+>", " ", text)  # markup
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > MAX_DESCRIPTION:
        text = text[:MAX_DESCRIPTION].rsplit(" ", 1)[0] + " ..."
    return text


def build_items(data_dir: Path) -> list[dict]:
    """Units, terrains and scenery items, sorted by id; image paths relative to ``core/images``."""
    images = data_dir / "core" / "images"
    candidates: list[tuple[str, Path, str, dict]] = []
    for cfg in sorted((data_dir / "core" / "units").rglob("*.cfg")):
        for unit in parse_wml(cfg.read_text(errors="replace"), "unit_type"):
            name = _clean(unit.get("name", ""))
            image = _image(images, unit.get("image"))
            if not name or image is None or unit.get("hide_help") == "yes" or "fake" in cfg.parts:
                continue
            race = unit.get("race", "")
            text = f"{name}, {' '.join(words(race))} unit" if race else f"{name}, unit"
            description = _clean(unit.get("description", ""))
            if description:
                text += f": {description}"
            candidates.append((f"unit/{unit.get('id', name)}", image, text, {"kind": "unit", "race": race}))
    terrain_cfg = data_dir / "core" / "terrain.cfg"
    if terrain_cfg.is_file():
        for terrain in parse_wml(terrain_cfg.read_text(errors="replace"), "terrain_type"):
            name = _clean(terrain.get("editor_name") or terrain.get("name", ""))
            image = _image(images / "terrain", terrain.get("symbol_image"))
            if not name or image is None or terrain.get("hidden") == "yes":
                continue
            text = f"{name}, terrain"
            base = _clean(terrain.get("name", ""))
            if base and base.lower() != name.lower():
                text += f": {base.lower()}"
            candidates.append((f"terrain/{terrain.get('id', name)}", image, text, {"kind": "terrain"}))
    for image in sorted((images / "items").glob("*.png")):
        text = " ".join(words(image.stem))
        if re.search(r"[a-z]{3}", text):
            candidates.append((f"item/{image.stem}", image, f"{text}, scenery item", {"kind": "item"}))
    items, seen_ids, seen_bytes = [], set(), set()
    for item_id, image, text, metadata in candidates:
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        if item_id in seen_ids or digest in seen_bytes:
            continue
        seen_ids.add(item_id)
        seen_bytes.add(digest)
        items.append({"id": item_id, "image": image.relative_to(images).as_posix(), "text": text, "metadata": metadata})
    return sorted(items, key=lambda i: i["id"])


def write_catalog(out: str | Path, data_dir: Path | None = None, limit: int | None = None) -> tuple[Path, list[dict]]:
    """Write the catalog JSONL; returns (media root, items)."""
    data_dir = data_dir or find_data_dir()
    items = build_items(data_dir)
    if not items:
        raise SourceError(f"no unit, terrain or item with an image under {str(data_dir)!r}; {INSTALL_HINT}")
    if limit:
        items = items[:limit]
    write_jsonl(out, items)
    return (data_dir / "core" / "images").resolve(), items
