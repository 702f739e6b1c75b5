"""The tuxpaint stamps (Debian package ``tuxpaint-stamps-default``) as an mmalign catalog.

Each stamp NAME gives one item: ``NAME.png`` (or ``NAME.svg``) image, the first line of
``NAME.txt`` (English description) as text, ``NAME.ogg|wav`` sound effect where present, and its
category (the first sub-folder) in metadata. The spoken English description ``NAME_desc.ogg`` is
recorded in metadata (``spoken_description``). Media stay where Debian put them: item paths are
relative to the stamps folder, which is the catalog's media root.
"""

from __future__ import annotations

from pathlib import Path

from mmalign.connectors.datasets.jsonl import write_jsonl
from mmalign.connectors.errors import SourceError

INSTALL_HINT = "apt-get install -y tuxpaint-stamps-default"

DEFAULT_STAMPS = Path("/usr/share/tuxpaint/stamps")
IMAGE_ORDER = (".png", ".svg")
SOUND_ORDER = (".ogg", ".wav")


def find_stamps_dir() -> Path:
    """Where the package put the stamps (``dpkg -L`` when the default is not there)."""
    from mmalign.connectors.datasets.debian import package_folder

    found = package_folder("tuxpaint-stamps-default", DEFAULT_STAMPS, "share/tuxpaint/stamps")
    if found is not None:
        return found
    raise SourceError(f"tuxpaint stamps not found: {INSTALL_HINT}")


def first_english_line(path: Path) -> str | None:
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and "=" not in line.split(" ")[0]:
                return line
    except OSError:
        return None
    return None


def build_items(root: Path) -> list[dict]:
    items = []
    for txt in sorted(root.rglob("*.txt")):
        stem = txt.with_suffix("")
        name = stem.name
        text = first_english_line(txt)
        image = next((stem.with_suffix(s) for s in IMAGE_ORDER if stem.with_suffix(s).is_file()), None)
        if image is None:
            continue  # a .txt without a stamp image is not a stamp
        sound = next((stem.with_suffix(s) for s in SOUND_ORDER if stem.with_suffix(s).is_file()), None)
        spoken = stem.parent / f"{name}_desc.ogg"
        rel = stem.relative_to(root)
        metadata = {"category": rel.parts[0], "subcategory": "/".join(rel.parts[:-1]), "name": name}
        if spoken.is_file():
            metadata["spoken_description"] = spoken.relative_to(root).as_posix()
        item = {"id": rel.as_posix(), "text": text, "image": image.relative_to(root).as_posix(), "metadata": metadata}
        if sound is not None:
            item["audio"] = sound.relative_to(root).as_posix()
        items.append(item)
    return items


def write_catalog(out: str | Path, root: Path | None = None, limit: int | None = None) -> tuple[Path, list[dict]]:
    """Write the catalog JSONL; returns (media root, items)."""
    root = (root or find_stamps_dir()).resolve()
    items = build_items(root)
    if limit:
        items = items[:limit]
    write_jsonl(out, items)
    return root, items
