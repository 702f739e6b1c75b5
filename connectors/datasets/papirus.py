"""The Papirus icon theme (Debian package ``papirus-icon-theme``, GPL-3) as an mmalign catalog.

One item per distinct icon drawing of one size folder (``64x64`` by default): the SVG file is the
image, and the text is built from the freedesktop icon name and the names that are symlinks to
the same file (aliases), e.g. ``apps/firefox`` → "firefox, application icon; also web browser".
The context folder (apps, devices, mimetypes, places) says what kind of icon it is and goes into
the text and the metadata. Names that carry no words (a number, or a generated web-app id with a
32-letter hash) are left out; so are files whose bytes repeat an earlier file (their names become
aliases of the first one). Media stay where Debian put them: image paths are
relative to the size folder, which is the catalog's media root.

Nothing of the theme is copied into this repository; the catalog only points at the files.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from mmalign.connectors.datasets.jsonl import write_jsonl
from mmalign.connectors.errors import SourceError

INSTALL_HINT = "apt-get install -y papirus-icon-theme"
DEFAULT_THEME = Path("/usr/share/icons/Papirus")
DEFAULT_SIZE = "64x64"
#: Context folder -> how the text names the kind of icon. ``categories`` is a symlink to ``apps``.
CONTEXTS = {"apps": "application icon", "devices": "device icon", "mimetypes": "file type icon", "places": "place icon"}
#: Leading parts of reverse-DNS application ids (``org.gnome.Nautilus``) that say nothing about the icon.
REVERSE_DNS_HEADS = {"org", "com", "io", "net", "de", "fr", "me", "ru", "uk", "nl", "it", "ch", "eu", "info", "app"}
MAX_ALIASES = 4

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_HASH = re.compile(r"[a-p]{32}")
#: Tokens that are ids, not words: long numbers (Steam app ids), 32-letter hashes, and 4-hex ids
#: such as ``09BE`` (with a digit, so that words like "face" stay).
_NOISE = re.compile(r"^(\d{5,}|[a-p]{32}|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{4})$")


def words(name: str) -> list[str]:
    """Readable lower-case words of an icon name: separators and camelCase split, hashes and ids dropped."""
    parts = re.split(r"[-_.+@ ]+", name)
    out: list[str] = []
    for part in parts:
        for word in _CAMEL.split(part):
            word = word.lower()
            if word and not _NOISE.match(word):
                out.append(word)
    return out


def readable(name: str, context: str) -> str:
    """The icon name as text. ``org.gnome.Nautilus`` -> "nautilus (gnome)";
    ``application-x-python`` -> "application python"; ``folder-magenta-recent`` -> "folder magenta recent"."""
    dotted = name.split(".")
    if len(dotted) >= 3 and dotted[0].lower() in REVERSE_DNS_HEADS:
        head = " ".join(w for p in dotted[1:-1] for w in words(p))
        main = " ".join(words(dotted[-1]))
        return f"{main} ({head})" if head and main else main or head
    tokens = words(name)
    if context == "mimetypes":
        tokens = [t for t in tokens if t not in ("x", "vnd")]
    return " ".join(tokens)


def find_theme_dir() -> Path:
    """Where the package put the Papirus theme (``dpkg -L`` when the default is not there)."""
    from mmalign.connectors.datasets.debian import package_folder

    found = package_folder("papirus-icon-theme", DEFAULT_THEME, "icons/Papirus")
    if found is not None:
        return found
    raise SourceError(f"the Papirus icon theme is not installed: {INSTALL_HINT}")


def build_items(root: Path) -> list[dict]:
    """Items of one size folder ``root`` (e.g. ``.../Papirus/64x64``), sorted by id."""
    files: dict[Path, str] = {}  # real file -> context
    aliases: dict[Path, list[str]] = {}
    for context in CONTEXTS:
        folder = root / context
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.suffix != ".svg":
                continue
            if entry.is_symlink():
                target = Path(os.path.normpath(entry.parent / os.readlink(entry)))
                aliases.setdefault(target, []).append(entry.stem)
            elif entry.is_file():
                files[entry] = context
    first_by_content: dict[str, dict] = {}
    items = []
    for path in sorted(files):
        context = files[path]
        name = path.stem
        text_name = readable(name, context)
        if not re.search(r"[a-z]{2}", text_name) or _HASH.search(name):
            continue  # a name with no word in it, or a generated id (a web app's hash), cannot be described
        names = [name, *aliases.get(path, [])]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in first_by_content:  # the same drawing under another name: one more alias
            first_by_content[digest]["metadata"]["aliases"].append(name)
            continue
        item = {
            "id": f"{context}/{name}",
            "image": path.relative_to(root).as_posix(),
            "metadata": {"context": context, "name": name, "aliases": names[1:]},
        }
        first_by_content[digest] = item
        items.append(item)
    for item in items:
        item["text"] = describe(item["metadata"]["name"], item["metadata"]["aliases"], item["metadata"]["context"])
    return items


def describe(name: str, alias_names: list[str], context: str) -> str:
    """ "<name>, <kind>" plus up to MAX_ALIASES distinct alias texts: "also <a>; <b>"."""
    main = readable(name, context)
    seen = {main}
    extra = []
    for alias in alias_names:
        text = readable(alias, context)
        if text and re.search(r"[a-z]{2}", text) and text not in seen:
            seen.add(text)
            extra.append(text)
    text = f"{main}, {CONTEXTS[context]}"
    if extra:
        text += "; also " + "; ".join(extra[:MAX_ALIASES])
    return text


def write_catalog(
    out: str | Path, theme: Path | None = None, size: str = DEFAULT_SIZE, limit: int | None = None
) -> tuple[Path, list[dict]]:
    """Write the catalog JSONL; returns (media root, items)."""
    root = ((theme or find_theme_dir()) / size).resolve()
    if not root.is_dir():
        raise SourceError(f"{str(root)!r} is not a folder of the Papirus theme (size {size!r}); {INSTALL_HINT}")
    items = build_items(root)
    if limit:
        items = items[:limit]
    write_jsonl(out, items)
    return root, items
